"""``octguide model`` (list, show, activate, rollback, a tampered model refused) and the shadow
comparison ``reanalyse --model B --compare A`` (the int8 variant agrees; a perturbed copy flags)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.commands.cli import main
from engine.config import Config, ConfigError, load_config
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


def test_the_model_version_is_a_validated_config_field_hashed_only_when_set():
    assert Config().segment.model_version == ""
    assert Config().config_hash() == Config.from_dict({"segment": {"model_version": ""}}).config_hash()
    assert Config.from_dict({"segment": {"model_version": "octseg@1.0.1"}}).config_hash() != Config().config_hash()
    with pytest.raises(ConfigError, match="not an installed model's key"):
        Config.from_dict({"segment": {"model_version": "../octseg"}})
    with pytest.raises(ConfigError, match="both name the model"):
        Config.from_dict({"segment": {"model_version": "octseg", "model": "/m/octseg.onnx"}})


def test_activate_writes_the_config_and_the_config_wins(models_dir, tmp_path, capsys):
    common = ["--models-dir", str(models_dir), "--state-dir", str(tmp_path / "state")]
    config = tmp_path / "engine.toml"
    config.write_text("# site settings\n[guidance]\nmalapposition_threshold_um = 200.0\n\n[segment]\n"
                      "threads = 1  # shared machine\n")
    assert main(["model", "activate", "octseg.int8-static", "--config", str(config), *common]) == 0
    assert "written to" in capsys.readouterr().out
    text = config.read_text()
    assert "# site settings" in text and "threads = 1  # shared machine" in text
    loaded = load_config(config)
    assert (loaded.segment.model_version, loaded.segment.threads) == ("octseg.int8-static", 1)
    assert loaded.guidance.malapposition_threshold_um == 200.0
    assert main(["model", "activate", "octseg", *common]) == 0  # the state file only: says how
    assert 'model_version = "octseg"' in capsys.readouterr().out
    registry = ModelRegistry(models_dir, tmp_path / "state")
    assert registry.resolve().key == "octseg"  # no config: the state file
    assert registry.active_spec(loaded.segment) == ("octseg.int8-static", "config")
    assert registry.resolve(None, loaded.segment).key == "octseg.int8-static"  # the config wins
    assert registry.resolve("octseg", loaded.segment).key == "octseg"  # and --model wins over it
    assert main(["model", "list", "--config", str(config), *common]) == 0
    assert "* octseg.int8-static" in capsys.readouterr().out
    assert main(["model", "rollback", "--config", str(config), *common]) == 0
    assert load_config(config).segment.model_version == "octseg.int8-static"  # the history's last
    assert main(["model", "activate", "octseg", "--config", str(config), *common]) == 0
    assert load_config(config).segment.model_version == "octseg"
    assert config.read_text().count("model_version") == 1


def test_activate_refuses_a_config_that_names_a_model_path(models_dir, tmp_path, capsys):
    config = tmp_path / "engine.toml"
    config.write_text('[segment]\nmodel = "/models/octseg.onnx"\n')
    before = config.read_text()
    assert main(["model", "activate", "octseg", "--config", str(config), "--models-dir", str(models_dir),
                 "--state-dir", str(tmp_path / "state")]) == 1
    assert "both name the model" in capsys.readouterr().err
    assert config.read_text() == before and not list(tmp_path.glob(".engine.toml.tmp*"))
    fresh = tmp_path / "new" / "engine.toml"
    ModelRegistry(models_dir, tmp_path / "state").activate("octseg", fresh)
    assert load_config(fresh).segment.model_version == "octseg"


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
