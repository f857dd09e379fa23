"""Every worked example in the project's docstrings runs and holds (issue 12 item 9).

The modules are found by their text (a ``>>>`` line), not listed by hand, so a new doctest is run
without anyone remembering to add it; each module must yield at least one example, so a doctest
that the finder cannot see (in a comment, in a nested function) fails here instead of passing by
running nothing.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "streams", "models")
OPTIONAL = {"cupy", "tensorrt", "torch", "onnx"}  # a module may need one; it skips without it


def _modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>> " in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()

BROKEN: dict[str, str] = {}  # module -> why its examples fail (strict xfail: a fix makes it fail here)


def test_the_modules_the_review_named_are_run():
    assert {"engine.compute.scan_convert", "streams.wire.protocol", "engine.compute.backends",
            "streams.geometry", "streams.files.dicom"} <= set(MODULES)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=BROKEN[n], strict=True)) if n in BROKEN else n
    for n in MODULES])
def test_doctests_run_and_pass(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}")
        raise
    with np.printoptions(legacy=False):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>>' lines but no example the doctest finder runs"
    assert result.failed == 0
