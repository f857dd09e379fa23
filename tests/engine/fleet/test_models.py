"""``octguide model`` (list, show, activate, rollback, a tampered model refused) and the shadow
comparison ``reanalyse --model B --compare A`` (the int8 variant agrees; a perturbed copy flags)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.commands.cli import main
from engine.fleet.compare import compare_runs
from engine.fleet.registry import ModelRegistry, RegistryError
from models.manifest import sha256_of
from tests.engine.fleet.conftest import RAY_WARNINGS

WEIGHTS = ModelRegistry().models_dir


@pytest.fixture
def models_dir(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("octseg.onnx", "octseg.manifest.json", "octseg.int8-static.onnx",
                 "octseg.int8-static.manifest.json"):
        shutil.copy(WEIGHTS / name, folder / name)
    return folder


def perturbed_copy(folder, noise: float = 3.0):
    """``folder/octseg-perturbed.onnx`` + manifest: the float model with seeded Gaussian noise of
    ``noise`` times each convolution kernel's standard deviation added (a candidate that must
    be caught)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(WEIGHTS / "octseg.onnx"))
    rng = np.random.default_rng(0)
    for tensor in model.graph.initializer:
        weights = numpy_helper.to_array(tensor)
        if weights.ndim == 4 and weights.dtype == np.float32:
            noisy = weights + rng.normal(0, noise * weights.std(), weights.shape).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(noisy, tensor.name))
    path = folder / "octseg-perturbed.onnx"
    onnx.save(model, str(path))
    manifest = json.loads((WEIGHTS / "octseg.manifest.json").read_text())
    manifest.update(file=path.name, version="1.0.1-perturbed", sha256=sha256_of(path))
    (folder / "octseg-perturbed.manifest.json").write_text(json.dumps(manifest))
    return path


def test_model_list_show_activate_rollback(models_dir, tmp_path, capsys):
    common = ["--models-dir", str(models_dir), "--state-dir", str(tmp_path / "state")]
    assert main(["model", "list", *common]) == 0
    text = capsys.readouterr().out
    assert "octseg.int8-static" in text and text.count("verified") == 2
    assert main(["model", "show", "octseg.int8-static", *common]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["verified"] and shown["evaluation"] and shown["recipe"] and shown["sha256"]
    assert main(["model", "activate", "octseg.int8-static", *common]) == 0
    assert main(["model", "activate", "octseg@1.0.1", *common]) == 0
    registry = ModelRegistry(models_dir, tmp_path / "state")
    assert registry.resolve().key == "octseg"
    assert main(["model", "rollback", *common]) == 0
    assert registry.resolve().key == "octseg.int8-static"
    capsys.readouterr()
    assert main(["model", "rollback", *common]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    with pytest.raises(RegistryError, match="ambiguous"):
        registry.resolve("1.0.1")


def test_a_model_whose_manifest_does_not_verify_is_refused(models_dir, tmp_path, capsys):
    data = bytearray((models_dir / "octseg.int8-static.onnx").read_bytes())
    data[-10] ^= 0xFF
    (models_dir / "octseg.int8-static.onnx").write_bytes(bytes(data))
    common = ["--models-dir", str(models_dir), "--state-dir", str(tmp_path / "state")]
    assert main(["model", "activate", "octseg.int8-static", *common]) == 1
    assert "refusing model octseg.int8-static" in capsys.readouterr().err
    assert main(["model", "list", *common]) == 0
    assert "REFUSED" in capsys.readouterr().out
    assert not (tmp_path / "state" / "active-model.json").exists()


@pytest.mark.usefixtures("ray_local")
@RAY_WARNINGS
@pytest.mark.timeout(600)
def test_shadow_comparison_flags_a_perturbed_model_and_not_the_int8_variant(archive, models_dir, tmp_path, capsys):
    perturbed_copy(models_dir)
    common = ["--models-dir", str(models_dir), "--state-dir", str(tmp_path / "state")]
    assert main(["reanalyse", str(archive), "--out", str(tmp_path / "int8"), "--model", "octseg.int8-static",
                 "--compare", "octseg", *common]) == 0
    same = json.loads((tmp_path / "int8" / "comparison" / "comparison.json").read_text())
    assert len(same["pullbacks"]) == 3 and same["flagged"] == [], same["flagged"]
    assert all(p["lumen_dice_mean"] > 0.95 for p in same["pullbacks"].values())
    assert main(["reanalyse", str(archive), "--out", str(tmp_path / "bad"), "--model", "octseg-perturbed",
                 *common]) == 0
    changed = compare_runs(tmp_path / "int8" / "compare-octseg", tmp_path / "bad")
    assert changed["flagged"], {k: (p["changes"], p["lumen_dice_mean"]) for k, p in changed["pullbacks"].items()}
    assert "FLAG" not in capsys.readouterr().out
