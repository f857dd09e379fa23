"""The segmentation stage on phantom frames of several input geometries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.analysis.segment import Segmentation, Segmenter, SegmenterConfig
from engine.config import ConfigError
from engine.synthetic.phantom import generate_pullback
from models.classes import N_CLASSES
from models.training.targets import guidewire_rows
from tests.models.conftest import needs_onnxruntime

# (A-lines, padded, samples, ranging depth mm, refractive index, z offset): the extremes of what
# real systems store, a padded DICOM-like frame, and a negative z offset.
GEOMETRIES = [
    (256, 0, 512, 5.0, 1.40, -20),
    (504, 4, 968, 6.2, 1.36, 9),
    (1024, 0, 1200, 7.5, 1.30, 40),
    (720, 0, 800, 5.5, 1.34, 0),
]


@pytest.fixture(scope="module")
def segmenter():
    seg = Segmenter(SegmenterConfig(warmup_frames=1))
    seg.start()
    yield seg
    seg.stop()


@needs_onnxruntime
@pytest.mark.parametrize("spec", GEOMETRIES, ids=lambda s: f"A{s[0]}+{s[1]}n{s[2]}z{s[5]}")
def test_segments_any_input_geometry(segmenter, spec):
    a, pad, n, depth, index, z = spec
    pb = generate_pullback(
        "fibrous-stenosis",
        seed=4242,
        n_frames=2,
        n_alines=a,
        n_padded_alines=pad,
        n_samples=n,
        ranging_depth_mm=depth,
        refractive_index=index,
        z_offset_px=z,
        frame_pitch_mm=12.0,
    )
    frame, truth = pb.frame(1), pb.truth.frames[1]
    seg = segmenter.process(frame)
    assert isinstance(seg, Segmentation)
    assert (seg.pullback_id, seg.frame_index) == (pb.pullback_id, 1)
    grid = segmenter.grid
    assert seg.class_map.shape == (grid.n_alines, grid.n_depth) and seg.class_map.dtype == np.uint8
    assert seg.probabilities.shape == (N_CLASSES, grid.n_alines, grid.n_depth)
    for name in ("lumen_radius_mm", "eel_radius_mm", "guidewire", "strut_shadow"):
        assert getattr(seg, name).shape == (a,), name
    assert 0.0 <= seg.confidence <= 1.0
    # The lumen follows the truth on every stored row outside the guidewire shadow.
    lumen_t = truth.lumen_radius_mm[:a]
    found = np.isfinite(seg.lumen_radius_mm)
    assert found.mean() > 0.85
    error_um = np.abs(seg.lumen_radius_mm[found] - lumen_t[found]) * 1000
    assert np.median(error_um) < 15.0
    # The guidewire sector is found where the truth has it.
    gw = guidewire_rows(truth, a)
    assert np.sum(gw & seg.guidewire) / np.sum(gw | seg.guidewire) > 0.7
    assert np.all(np.isnan(seg.lumen_radius_mm[seg.guidewire]))


@needs_onnxruntime
def test_rotating_the_frame_rotates_the_result(segmenter):
    pb = generate_pullback(
        "calcified", seed=99, n_frames=1, n_alines=512, n_samples=1000, frame_pitch_mm=20.0
    )
    frame = pb.frame(0)
    shift = 128  # stored rows; 64 model A-lines, a multiple of the network stride
    rolled = dataclasses.replace(frame, pixels=np.roll(frame.pixels, shift, axis=0))
    a, b = segmenter.process(frame), segmenter.process(rolled)
    np.testing.assert_allclose(np.roll(a.lumen_radius_mm, shift), b.lumen_radius_mm, atol=1e-4)
    assert np.mean(np.roll(a.class_map, 64, axis=0) == b.class_map) > 0.999


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown segment key"):
        SegmenterConfig.from_dict({"runtime": "onnxruntime", "thread": 2})
    with pytest.raises(ConfigError, match="runtime"):
        SegmenterConfig(runtime="tensorflow")
    with pytest.raises(ConfigError, match="threads"):
        SegmenterConfig(threads=0)
    with pytest.raises(RuntimeError, match="start"):
        Segmenter().process(None)


def test_lumen_read_out_is_ring_proof() -> None:
    """Thin non-lumen rings (sheath, ghost line) inside and outside the catheter are not walls."""
    from engine.analysis.segment import boundary_radii_px

    j = np.arange(200, dtype=np.float64)
    lumen = np.clip(120.3 - (j - 0.5), 0, 1)[None, :].repeat(4, axis=0)
    beyond = np.clip(j + 0.5 - 160.6, 0, 1)[None, :].repeat(4, axis=0)
    lumen[:, 2:5] = 0.0  # ghost line near the centre
    lumen[:, 40:43] = 0.05  # the sheath's outer ring, 3 samples thick
    lumen[1, 70:72] = 0.2  # a ring outside the catheter on one A-line
    naive, _ = boundary_radii_px(lumen, beyond)
    assert np.all(naive < 10)  # the first non-lumen sample: the ghost line
    lumen_px, eel_px = boundary_radii_px(lumen, beyond, start_px=45.0, min_wall_px=6)
    np.testing.assert_allclose(lumen_px, 120.3, atol=1e-6)
    np.testing.assert_allclose(eel_px, 160.6, atol=1e-6)
