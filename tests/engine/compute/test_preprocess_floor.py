"""The noise-floor-relative dB mapping (octseg 2.x): invariance to how a file stores its
intensities, stated vs assumed scales, the floor estimator, and every backend against the
reference."""

from __future__ import annotations

import numpy as np
import pytest

from engine.compute.preprocess import Preprocessor
from engine.synthetic.phantom import generate_pullback
from engine.synthetic.phantom.render import ImagingDomain
from models.grid import (
    NOISE_FLOOR_MAPPING,
    IntensityMapping,
    ModelGrid,
    estimate_noise_floor_db,
    floor_relative_reference,
    resolve_scale,
)
from streams.errors import GeometryError
from streams.geometry import FrameGeometry
from streams.intensity import ASSUMED_LOG_RANGE_DB, IntensityScale
from streams.pullback import Frame
from tests.conftest import backend_params

BACKENDS = backend_params("preprocess")
GRID = ModelGrid(128, 192, 5.0)


def _stage(backend="numpy", mapping=NOISE_FLOOR_MAPPING) -> Preprocessor:
    stage = Preprocessor(GRID, mapping, backend=backend, strict=True)
    stage.start()
    return stage


def _phantom_frame(domain: ImagingDomain, intensity: str = "LOG") -> Frame:
    pb = generate_pullback("calcified", seed=7, n_frames=1, n_alines=200, n_samples=400,
                           ranging_depth_mm=5.0, intensity=intensity, domain=domain)
    return pb.frame(0)


def test_same_tissue_stored_at_other_ranges_offsets_and_full_scales_gives_the_same_input():
    # One scene (same seed: same speckle and noise), stored three ways.
    storages = [((-52.0, 18.0), 65535), ((-60.0, 20.0), 4095), ((-50.5, 15.0), 30000)]
    frames = [_phantom_frame(ImagingDomain(stored_range_db=r, full_scale=f)) for r, f in storages]
    stage = _stage()
    results = [stage.process_frame(f) for f in frames]
    assert len({round(r.noise_floor_db, 1) for r in results}) == 1
    reference = results[0].input
    assert reference.max() > 0.8 and reference.mean() > 0.05  # a real image, not zeros
    for r in results[1:]:
        assert np.abs(r.input - reference).max() < 0.01
    # The old window mapping does depend on the storage: the check above can fail.
    window = _stage(mapping=IntensityMapping())
    assert np.abs(window.process(frames[1]) - window.process(frames[0])).max() > 0.05


def test_a_gain_common_to_signal_and_noise_does_not_change_the_input():
    base = ImagingDomain(stored_range_db=(-65.0, 25.0))
    louder = ImagingDomain(stored_range_db=(-65.0, 25.0), gain_db=6.0, noise_floor=2e-5 * 10**0.6)
    stage = _stage()
    a, b = stage.process_frame(_phantom_frame(base)), stage.process_frame(_phantom_frame(louder))
    assert b.noise_floor_db == pytest.approx(a.noise_floor_db + 6.0, abs=0.05)
    assert np.abs(a.input - b.input).max() < 0.01


def test_stated_scale_is_used_and_an_unstated_one_is_assumed():
    frame = _phantom_frame(ImagingDomain())
    stated = frame.geometry.intensity_scale
    assert stated is not None and stated.source == "header"
    assert stated.db_per_count == pytest.approx(70.0 / 65535)
    unstated = Frame(frame.pullback_id, 0, 0.0, frame.pixels,
                     FrameGeometry(**{**frame.geometry.__dict__, "intensity_scale": None}),
                     z_offset_px=frame.z_offset_px)
    stage = _stage()
    a, b = stage.process_frame(frame), stage.process_frame(unstated)
    assert a.scale is stated
    assert b.scale.source == "assumed"
    assert b.scale.db_per_count == pytest.approx(ASSUMED_LOG_RANGE_DB / 65535)
    # Floor-relative dB scale with the dB per count: the assumed frame is 48/70 of the stated one
    # wherever neither clips.
    inside = (a.input > 0.05) & (a.input < 0.6)
    ratio = b.input[inside] / a.input[inside]
    assert np.median(ratio) == pytest.approx(ASSUMED_LOG_RANGE_DB / 70.0, rel=0.02)


def test_resolve_scale_defaults():
    assert resolve_scale(None, "LOG", np.dtype(np.uint8)).db_per_count == pytest.approx(48.0 / 255)
    assert resolve_scale(None, "LOG", np.dtype(np.float32)).db_per_count == pytest.approx(48.0)
    assert resolve_scale(None, "LIN", np.dtype(np.uint16)).source == "linear"
    s = IntensityScale.log_range(40.0, 4095, "dicom-lut")
    assert resolve_scale(s, "LOG", np.dtype(np.uint16)) is s


def test_noise_floor_is_the_median_of_the_deepest_samples_and_ignores_a_minority_of_signal():
    rng = np.random.default_rng(0)
    scale = IntensityScale.log_range(60.0, 6000, "header", offset_db=-40.0)
    pixels = np.full((300, 500), 1000, np.uint16)  # noise level: -40 + 10 dB = -30 dB
    pixels[:, :350] = rng.integers(2000, 6000, (300, 350))  # tissue, shallow
    pixels[:120, 420:] = 5500  # a bright reflector in 40% of the deep samples' rows
    assert estimate_noise_floor_db(pixels, "LOG", scale) == pytest.approx(-30.0)
    y, floor = floor_relative_reference(pixels, "LOG", scale, NOISE_FLOOR_MAPPING)
    assert floor == pytest.approx(-30.0)
    assert y[200, 450] == 0.0 and y[0, 450] == pytest.approx(45.0 / 60.0, abs=1e-3)
    # LIN: 10 log10 of the floor value.
    lin = np.full((64, 100), 100.0, np.float32)
    assert estimate_noise_floor_db(lin, "LIN", IntensityScale(1.0, 0.0, "linear")) == pytest.approx(20.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,intensity", [(np.uint16, "LOG"), (np.uint16, "LIN"),
                                             (np.float32, "LOG"), (np.float32, "LIN")])
def test_backends_match_the_reference(backend, dtype, intensity):
    rng = np.random.default_rng(3)
    g = FrameGeometry(n_alines=300, n_samples=640, aline_spacing_mm=0.008, intensity=intensity,
                      intensity_scale=IntensityScale.log_range(55.0, 65535, "header", offset_db=-30)
                      if intensity == "LOG" else None)
    raw = rng.integers(0, 65536, (300, 640))
    pixels = raw.astype(np.uint16) if dtype == np.uint16 else (raw / 65535.0).astype(np.float32)
    frame = Frame("t", 0, 0.0, pixels, g, z_offset_px=11)
    expected = _stage("numpy").process_frame(frame)
    got = _stage(backend).process_frame(frame)
    assert got.noise_floor_db == pytest.approx(expected.noise_floor_db)
    assert np.abs(got.input.astype(np.float64) - expected.input).max() <= 1e-3
    assert 0.0 <= expected.input.min() and expected.input.max() <= 1.0


def test_window_mode_still_reports_the_floor_and_mapping_validates():
    frame = _phantom_frame(ImagingDomain())
    r = _stage(mapping=IntensityMapping()).process_frame(frame)
    assert np.isfinite(r.noise_floor_db)
    with pytest.raises(GeometryError, match="mode"):
        IntensityMapping(mode="linear-ish")
    with pytest.raises(GeometryError, match="span_db"):
        IntensityMapping(mode="noise-floor-db", span_db=5.0)
