"""Targets from the phantom truth, their read-out, and the data partition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.segment import boundary_radii_px, read_out
from engine.synthetic.phantom import generate_pullback
from models.classes import N_ALINE_OUTPUTS, N_CLASSES, ALineOutput, TissueClass
from models.grid import ModelGrid
from models.training.data import (
    EVAL_GEOMETRIES,
    EVAL_SEED_BASE,
    HELD_OUT_ALINES,
    HELD_OUT_SAMPLES,
    TRAIN_SEED_BASE,
    VALIDATION_SEED_BASE,
    DataRecipe,
    draw_geometry,
)
from models.training.targets import (
    frame_targets,
    guidewire_rows,
    hard_class_map,
    soft_class_targets,
    stored_to_model_alines,
)
from streams.truth import Label

GRID = ModelGrid(256, 384, 5.0)


@pytest.fixture(scope="module")
def calcified():
    return generate_pullback(
        "calcified",
        seed=77,
        n_frames=3,
        n_alines=500,
        n_samples=1000,
        frame_pitch_mm=10.0,
        z_offset_px=17,
    )


def test_stored_to_model_alines_is_the_identity_on_equal_grids_and_averages_when_coarser():
    values = np.random.default_rng(0).random(256)
    np.testing.assert_allclose(stored_to_model_alines(values, 256), values)
    # 512 stored rows -> 256 model A-lines: a triangle of half-width 2 rows, weights 1/4, 1/2, 1/4.
    fine = np.random.default_rng(1).random(512)
    expected = 0.25 * np.roll(fine, 1)[::2] + 0.5 * fine[::2] + 0.25 * np.roll(fine, -1)[::2]
    np.testing.assert_allclose(stored_to_model_alines(fine, 256), expected)


def test_frame_targets_follow_the_truth(calcified):
    frame, truth = calcified.frame(2), calcified.truth.frames[2]  # at the lesion (20 mm)
    t = frame_targets(truth, calcified.geometry, frame.z_offset_px, GRID)
    a = calcified.geometry.n_valid_alines
    rows = np.arange(GRID.n_alines) * a // GRID.n_alines
    # Radii: within a fraction of a model sample of the truth on the nearest stored row.
    assert (
        np.median(np.abs(t.lumen_px * GRID.depth_step_mm - truth.lumen_radius_mm[rows]))
        < 0.3 * GRID.depth_step_mm
    )
    assert t.tissue.dtype == np.uint8 and set(np.unique(t.tissue)) <= {1, 2, 3, 4}
    assert (t.tissue == TissueClass.CALCIUM).any()
    # The guidewire sector: 1 inside, 0 outside, fractions only at its two edges.
    gw = guidewire_rows(truth, a)
    inside = stored_to_model_alines(gw.astype(float), GRID.n_alines)
    np.testing.assert_allclose(t.aline[ALineOutput.GUIDEWIRE], inside)
    assert np.sum((inside > 0) & (inside < 1)) <= 4
    assert t.confidence == 1.0
    # The class map's calcium agrees with the stored labels sampled at the pixel centres.
    hard = hard_class_map(t.tissue, t.lumen_px, t.eel_px)
    columns = np.rint(
        calcified.geometry.column(GRID.radius_mm(np.arange(GRID.n_depth)), frame.z_offset_px)
    )
    columns = np.clip(columns.astype(int), 0, calcified.geometry.n_samples - 1)
    stored = truth.labels[rows][:, columns] == Label.CALCIUM
    assert np.mean((hard == TissueClass.CALCIUM) == stored) > 0.995


def test_soft_targets_are_distributions_that_cross_one_half_at_the_radii():
    rng = np.random.default_rng(3)
    tissue = rng.integers(1, 5, (8, 50)).astype(np.uint8)
    lumen = rng.uniform(5, 20, 8).astype(np.float32)
    eel = (lumen + rng.uniform(5, 20, 8)).astype(np.float32)
    soft = soft_class_targets(tissue, lumen, eel)
    assert soft.shape == (N_CLASSES, 8, 50)
    np.testing.assert_allclose(soft.sum(axis=0), 1.0, atol=1e-6)
    lumen_px, eel_px = boundary_radii_px(soft[TissueClass.LUMEN], soft[TissueClass.BEYOND_EEL])
    np.testing.assert_allclose(lumen_px, lumen, atol=1e-5)
    np.testing.assert_allclose(eel_px, eel, atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(lumen=st.floats(0.6, 300.0), wall=st.floats(3.5, 60.0))
def test_read_out_inverts_the_soft_targets(lumen, wall):
    j = np.arange(384, dtype=np.float64)
    eel = min(lumen + wall, 380.0)
    p_lumen = np.clip(lumen - (j - 0.5), 0, 1)
    p_beyond = np.minimum(np.clip(j + 0.5 - eel, 0, 1), 1 - p_lumen)
    got_lumen, got_eel = boundary_radii_px(p_lumen[None], p_beyond[None])
    assert abs(got_lumen[0] - lumen) < 1e-9
    assert abs(got_eel[0] - eel) < 1e-9


def test_read_out_maps_to_stored_rows_and_blanks_the_guidewire():
    k, j, a = 64, 100, 500
    radius_px = np.full(k, 40.3)
    soft = soft_class_targets(np.ones((k, j), np.uint8), radius_px, radius_px + 20.0)
    aline = np.zeros((N_ALINE_OUTPUTS, k), np.float32)
    aline[ALineOutput.EEL_VISIBLE] = 1.0
    aline[ALineOutput.GUIDEWIRE, 10:14] = 1.0
    grid = ModelGrid(k, j, 2.0)
    out = read_out(soft, aline, grid, a)
    assert out["lumen_radius_mm"].shape == (a,) and out["class_map"].shape == (k, j)
    gw = out["guidewire"]
    assert gw.sum() == pytest.approx(4 * a / k, abs=a / k + 1)
    assert np.all(np.isnan(out["lumen_radius_mm"][gw])) and np.all(
        np.isnan(out["eel_radius_mm"][gw])
    )
    np.testing.assert_allclose(out["lumen_radius_mm"][~gw], 40.3 * grid.depth_step_mm)
    np.testing.assert_allclose(out["eel_radius_mm"][~gw], 60.3 * grid.depth_step_mm)


def test_training_never_draws_the_held_out_band_and_evaluation_uses_it():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        g = draw_geometry(rng)
        assert not HELD_OUT_ALINES[0] <= g.n_alines <= HELD_OUT_ALINES[1]
        assert not HELD_OUT_SAMPLES[0] <= g.n_samples <= HELD_OUT_SAMPLES[1]
        assert (
            256 <= g.n_alines <= 1024 and 500 <= g.n_samples <= 1200 and -20 <= g.z_offset_px <= 40
        )
        spacing_um = 1e3 * g.ranging_depth_mm / g.n_samples
        assert 3.99 <= spacing_um <= 10.01 and g.ranging_depth_mm >= 2.999
    held_out = EVAL_GEOMETRIES[0]
    assert HELD_OUT_ALINES[0] <= held_out.n_alines <= HELD_OUT_ALINES[1]
    assert HELD_OUT_SAMPLES[0] <= held_out.n_samples <= HELD_OUT_SAMPLES[1]
    # Seed ranges: training and validation recipes stay below the evaluation seeds.
    assert (
        TRAIN_SEED_BASE + DataRecipe().n_pullbacks < VALIDATION_SEED_BASE < EVAL_SEED_BASE - 100_000
    )


def test_recipe_pullbacks_are_deterministic():
    recipe = DataRecipe(n_pullbacks=2, pitch_range_mm=(12.0, 12.0), length_mm=13.0)
    first, second = recipe.pullback(1), recipe.pullback(1)
    assert first.geometry == second.geometry
    np.testing.assert_array_equal(first.frames, second.frames)
    assert (
        recipe.key() == DataRecipe(n_pullbacks=2, pitch_range_mm=(12.0, 12.0), length_mm=13.0).key()
    )
