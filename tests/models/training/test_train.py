"""Training: a tiny run writes its checkpoint and curve, and is deterministic given the seed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.grid import ModelGrid
from models.network import NetworkConfig
from models.training.data import DataRecipe
from models.training.train import TrainConfig, load_checkpoint, train

GRID = ModelGrid(64, 96, 5.0)


def _tiny(seed: int) -> TrainConfig:
    recipe = DataRecipe(n_pullbacks=2, pitch_range_mm=(9.0, 9.0), length_mm=19.0, grid=GRID)
    return TrainConfig(
        seed=seed,
        epochs=2,
        batch_size=2,
        threads=1,
        train=recipe,
        validation=replace(recipe, seed_base=500_000, n_pullbacks=1),
        network=NetworkConfig(widths=(8, 8, 16, 16), aline_hidden=8),
    )


@pytest.mark.slow
def test_tiny_training_run_is_deterministic_and_writes_its_artefacts(tmp_path):
    first = train(_tiny(7), tmp_path / "a", cache_dir=tmp_path / "cache")
    second = train(_tiny(7), tmp_path / "b", cache_dir=tmp_path / "cache")
    assert (tmp_path / "a" / "octseg.curve.png").stat().st_size > 1000
    assert (tmp_path / "a" / "octseg.history.json").is_file()
    assert first["train_frames"] == second["train_frames"] > 0
    net_a, data_a = load_checkpoint(tmp_path / "a" / "octseg.pt")
    net_b, _ = load_checkpoint(tmp_path / "b" / "octseg.pt")
    for (name, a), (_, b) in zip(net_a.state_dict().items(), net_b.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert data_a["config"]["seed"] == 7
    assert first["final"]["train_total"] == second["final"]["train_total"]
