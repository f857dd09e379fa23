"""Shared test set-up: the one place where GPU tests are skipped.

Mark a test ``@pytest.mark.gpu`` (any usable GPU library) or ``@pytest.mark.gpu("cupy")`` /
``@pytest.mark.gpu("numba_cuda")`` (that library). It is skipped, with the probe's reason, when
the library does not import or no CUDA device answers: any import or driver failure counts.
"""

from __future__ import annotations

import pytest

from engine.compute.backends import registry

GPU_LIBRARIES = ("cupy", "numba_cuda")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(name="gpu"):
        wanted = tuple(mark.args) or GPU_LIBRARIES
        probes = [registry().probe(name) for name in wanted]
        if not any(p.available for p in probes):
            reasons = "; ".join(f"{p.name}: {p.reason}" for p in probes)
            pytest.skip(f"no usable GPU ({reasons})")


def backend_params(kind: str) -> list:
    """``pytest.param`` per implementation of ``kind``, GPU ones marked ``gpu(<library>)``."""
    params = []
    for impl in registry().implementations(kind):
        marks = [pytest.mark.gpu(*impl.requires)] if impl.device == "gpu" else []
        params.append(pytest.param(impl.name, marks=marks, id=impl.name))
    return params
