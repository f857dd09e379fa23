"""Finds the project's CUDA ``.cu`` sources and compiles them once per device with CuPy.

The kernels live as real ``.cu`` files in the repository's ``cuda/`` folder (not a Python package:
a package named ``cuda`` would shadow NVIDIA's ``cuda`` namespace package that CuPy and
numba-cuda import). The wheel ships them as ``engine/kernels/*.cu`` (pyproject force-include);
in a source checkout they are read from ``<repo>/cuda/``. This module is deliberately not named
``engine/kernels.py``, which would collide with that folder in the installed wheel.

>>> source_path("scan_convert.cu").name
'scan_convert.cu'
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from engine.compute.backends import registry

_HERE = Path(__file__).resolve().parent
SEARCH_PATH = (_HERE.parent / "kernels", _HERE.parents[1] / "cuda")
"""Where ``.cu`` files are looked for, installed location first."""

COMPILE_OPTIONS = ("-std=c++14",)


def source_path(name: str) -> Path:
    """Path of a ``.cu`` source by file name; FileNotFoundError names every place searched."""
    for folder in SEARCH_PATH:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"CUDA source {name!r} not found in {[str(f) for f in SEARCH_PATH]}")


@functools.lru_cache(maxsize=None)
def source_text(name: str) -> str:
    """Text of a ``.cu`` source (read once)."""
    return source_path(name).read_text(encoding="utf-8")


_compile_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _compiled(name: str, device_id: int) -> Any:
    cupy = registry().module("cupy")
    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=source_text(name), options=COMPILE_OPTIONS)
        module.compile()
    return module


def cupy_module(name: str) -> Any:
    """The compiled ``cupy.RawModule`` of ``name`` for the current device (memoized per device).

    CuPy also caches the binary on disk, so a later process skips NVRTC.
    """
    cupy = registry().module("cupy")
    device_id = cupy.cuda.Device().id
    with _compile_lock:
        return _compiled(name, device_id)


def cupy_kernel(source: str, function: str) -> Any:
    """One ``cupy.RawKernel`` (an ``extern "C"`` function) from a compiled source."""
    return cupy_module(source).get_function(function)
