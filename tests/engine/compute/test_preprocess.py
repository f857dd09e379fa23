"""Preprocessing: every backend against the float64 reference; the reference against the
physical definition of the model grid; the inverse A-line mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.compute.preprocess import Preprocessor, model_alines_to_stored
from models.grid import IntensityMapping, ModelGrid, normalise_reference
from streams.errors import GeometryError
from streams.geometry import FrameGeometry
from streams.pullback import Frame
from tests.conftest import backend_params

BACKENDS = backend_params("preprocess")

# (stored A-lines, padded, samples, spacing mm, refractive index, z, intensity, dtype)
INPUTS = [
    (256, 0, 512, 0.0100, 1.00, 7, "LOG", np.uint16),
    (504, 4, 968, 0.0065, 1.34, -23, "LIN", np.uint16),
    (1024, 0, 1200, 0.0048, 1.33, 41, "LOG", np.float32),
    (497, 3, 701, 0.0070, 1.30, 0, "LIN", np.float32),
]
GRIDS = [ModelGrid(256, 256, 4.0), ModelGrid(512, 384, 5.5)]


def _frame(spec, rng) -> Frame:
    a, pad, n, spacing, index, z, intensity, dtype = spec
    g = FrameGeometry(n_alines=a, n_samples=n, aline_spacing_mm=spacing, refractive_index=index,
                      n_padded_alines=pad, intensity=intensity)
    raw = rng.integers(0, 65536, (a, n))
    pixels = raw.astype(np.uint16) if dtype == np.uint16 else (raw / 65535.0).astype(np.float32)
    return Frame("t", 0, 0.0, pixels, g, z_offset_px=z)


def _stage(backend, grid, mapping=IntensityMapping()) -> Preprocessor:
    stage = Preprocessor(grid, mapping, backend=backend, strict=True)
    stage.start()
    return stage


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g.n_alines}x{g.n_depth}")
@pytest.mark.parametrize("spec", INPUTS, ids=lambda s: f"A{s[0]}n{s[2]}{s[6]}{np.dtype(s[7]).name}")
def test_matches_reference(backend, grid, spec):
    mapping = IntensityMapping(dynamic_range_db=45.0, low=0.05, high=0.95)
    frame = _frame(spec, np.random.default_rng(spec[0]))
    expected = _stage("numpy", grid, mapping).process(frame)
    got = _stage(backend, grid, mapping).process(frame)
    assert got.dtype == np.float32 and got.shape == (grid.n_alines, grid.n_depth)
    error = np.abs(got.astype(np.float64) - expected).max()
    assert error <= 1e-3, f"max error {error:.2e} of full scale"
    assert expected.min() >= 0.0 and expected.max() <= 1.0


def test_normalisation_mapping():
    log = normalise_reference(np.array([0, 6553, 65535], np.uint16), "LOG", IntensityMapping())
    assert np.allclose(log, [0.0, 6553 / 65535, 1.0])
    # LIN: full scale is 0 dB -> 1, DR below it -> 0, -DR/2 -> 0.5, non-positive -> 0.
    lin = normalise_reference(np.array([1000.0, 10.0, 100.0, 0.0, -3.0, 5000.0]), "LIN",
                              IntensityMapping(full_scale=1000.0, dynamic_range_db=20.0))
    assert np.allclose(lin, [1.0, 0.0, 0.5, 0.0, 0.0, 1.0])
    windowed = normalise_reference(np.array([0.25, 0.5, 0.75]), "LOG", IntensityMapping(low=0.25, high=0.75))
    assert np.allclose(windowed, [0.0, 0.5, 1.0])
    with pytest.raises(GeometryError, match="window"):
        IntensityMapping(low=0.6, high=0.5)
    with pytest.raises(GeometryError, match="dynamic_range_db"):
        IntensityMapping(dynamic_range_db=5.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_model_sample_is_the_same_physical_size_for_every_input(backend):
    grid = ModelGrid(128, 256, 3.2)  # 12.5 um per model sample
    stage = _stage(backend, grid)
    radius_mm = 1.6
    for spacing, index, z, n in ((0.005, 1.34, 30, 900), (0.0075, 1.0, -12, 500), (0.003, 1.3, 0, 1500)):
        g = FrameGeometry(n_alines=300, n_samples=n, aline_spacing_mm=spacing, refractive_index=index)
        column = radius_mm / g.sample_spacing_mm - z
        pixels = np.zeros((300, n), np.uint16)
        c0 = int(math.floor(column))
        pixels[:, c0] = 65535 * (1 - (column - c0))
        pixels[:, c0 + 1] = 65535 * (column - c0)
        profile = stage.process(Frame("t", 0, 0.0, pixels, g, z_offset_px=z)).mean(axis=0)
        samples = np.arange(grid.n_depth)
        peak = (profile * samples).sum() / profile.sum()
        assert abs(grid.radius_mm(peak) - radius_mm) <= grid.depth_step_mm / 2, (spacing, z)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_valid,k_out", [(500, 512), (1000, 256), (256, 512)])
def test_aline_angles_and_circular_wrap(backend, n_valid, k_out):
    grid = ModelGrid(k_out, 64, 1.0)
    stage = _stage(backend, grid)
    g = FrameGeometry(n_alines=n_valid + 2, n_samples=200, aline_spacing_mm=0.01, n_padded_alines=2)
    constant = np.full((n_valid + 2, 200), 40000, np.uint16)
    constant[n_valid:] = 0  # padded rows must not pull the wrap-around down
    flat = stage.process(Frame("t", 0, 0.0, constant, g))
    assert np.allclose(flat[:, 5:90], 40000 / 65535, atol=1e-5)
    for row in (0, n_valid // 3, n_valid - 1):
        pixels = np.zeros((n_valid + 2, 200), np.uint16)
        pixels[row] = 65535
        out = stage.process(Frame("t", 0, 0.0, pixels, g)).mean(axis=1)
        theta = 2 * np.pi * np.arange(k_out) / k_out
        angle = math.atan2((out * np.sin(theta)).sum(), (out * np.cos(theta)).sum()) % (2 * np.pi)
        expected = 2 * np.pi * row / n_valid
        off = (angle - expected + np.pi) % (2 * np.pi) - np.pi
        assert abs(off) < 0.1 * 2 * np.pi / min(n_valid, k_out), row


def test_model_alines_to_stored():
    assert np.allclose(model_alines_to_stored(np.array([1.0, 2.0, 3.0, 4.0]), 8),
                       [1, 1.5, 2, 2.5, 3, 3.5, 4, 2.5])
    k = 360
    theta_model = 2 * np.pi * np.arange(k) / k
    radius = 2.0 + 0.3 * np.cos(theta_model) + 0.1 * np.sin(3 * theta_model)
    stored = model_alines_to_stored(radius, 497)
    theta_stored = 2 * np.pi * np.arange(497) / 497
    truth = 2.0 + 0.3 * np.cos(theta_stored) + 0.1 * np.sin(3 * theta_stored)
    assert np.abs(stored - truth).max() < 1e-4
    with_gap = radius.copy()
    with_gap[10] = np.nan
    mapped = model_alines_to_stored(with_gap, 720)  # stored rows 2x denser: row 20 is model line 10
    assert np.isnan(mapped[19]) and np.isnan(mapped[20]) and np.isnan(mapped[21])
    assert not np.isnan(mapped[18]) and not np.isnan(mapped[22])
    assert model_alines_to_stored(np.zeros((16, 3)), 10).shape == (10, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_shape_is_a_value_error_naming_it(backend):
    stage = _stage(backend, ModelGrid(64, 64, 1.0))
    g = FrameGeometry(n_alines=100, n_samples=120, aline_spacing_mm=0.01)
    plan = stage.plan(g, np.uint16)
    with pytest.raises(ValueError, match=r"\(99, 120\)"):
        stage.kernel.run(np.zeros((99, 120), np.uint16), plan, 0)
    with pytest.raises(ValueError, match="dtype"):
        stage.kernel.run(np.zeros((100, 120), np.float32), plan, 0)


def test_model_grid_validates():
    with pytest.raises(GeometryError, match="n_depth"):
        ModelGrid(256, 10, 4.0)
    with pytest.raises(GeometryError, match="depth_mm"):
        ModelGrid(256, 256, 40.0)
