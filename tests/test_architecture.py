"""The layers of docs/architecture.md hold (import-linter contracts in pyproject.toml), and the
check can fail: a forbidden import planted in a copy of the tree breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (extra [test])")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_layer_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, planted, contract", [
    ("streams/geometry.py", "import engine.realtime.server", "know no pipeline"),
    ("engine/clinical/measure.py", "import engine.realtime.server", "layers"),
    ("engine/realtime/scheduler.py", "import engine.commands.cli", "layers"),
])
def test_a_forbidden_import_breaks_the_check(tmp_path, module, planted, contract):
    for name in ("engine", "streams", "models", "tests", "bench"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "weights", "results", "*.onnx"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and contract in result.stdout
