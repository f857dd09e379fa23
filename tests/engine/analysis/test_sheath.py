"""The sheath detector finds 1-4 rings at any radius 0.05-0.5 mm, relative to the noise floor."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.sheath import SheathConfig, SheathDetector
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale

SCALE = IntensityScale.log_range(48.0, 65535, source="dicom-lut")
GEOMETRY = FrameGeometry(
    n_alines=256, n_samples=600, aline_spacing_mm=0.0065, refractive_index=1.3,
    intensity_scale=SCALE,
)  # 5 um per sample


def synthetic_frame(
    rings_mm: list[float], *, floor_db: float = 12.0, ring_db: float = 20.0,
    wall_mm: float = 1.5, seed: int = 0, z_offset_px: float = 0.0,
) -> np.ndarray:
    """Noise at floor_db (3 dB sd), Gaussian rings of ring_db above it, a tissue band at wall_mm."""
    rng = np.random.default_rng(seed)
    r = GEOMETRY.radius_mm(np.arange(GEOMETRY.n_samples), z_offset_px)
    level = floor_db + rng.normal(0, 3.0, (GEOMETRY.n_alines, GEOMETRY.n_samples))
    wobble = 0.004 * np.sin(np.linspace(0, 2 * np.pi, GEOMETRY.n_alines))[:, None]
    for ring in rings_mm:
        level += ring_db * np.exp(-0.5 * ((r[None, :] - ring - wobble) / 0.006) ** 2)
    wall = wall_mm + 0.4 * np.sin(np.linspace(0, 2 * np.pi, GEOMETRY.n_alines))[:, None]
    level += np.where(r[None, :] >= wall, 25.0 * np.exp(-(r[None, :] - wall) / 0.4), 0.0)
    return np.clip(np.rint(level / SCALE.db_per_count), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize(
    "rings",
    [[0.05], [0.45], [0.2, 0.39], [0.06, 0.24, 0.36], [0.08, 0.2, 0.3, 0.5], [0.12, 0.15]],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_rings_at_any_radius_are_found(rings: list[float], seed: int) -> None:
    detector = SheathDetector(SheathConfig(catheter_outer_diameter_mm=2 * max(rings)))
    result = detector.detect(synthetic_frame(rings, seed=seed), GEOMETRY)
    assert len(result.rings_mm) == len(rings), result
    np.testing.assert_allclose(result.rings_mm, rings, atol=0.01)
    assert result.outer_radius_mm >= max(rings)
    assert result.exclusion_radius_mm > max(rings) + 0.01
    assert result.calibration == "ok"
    assert abs(result.noise_floor_db - 12.0) < 4.0


def test_a_weak_ghost_line_outside_the_sheath_is_not_its_outer_surface() -> None:
    """A multiple reflection ~20 dB weaker than the sheath's surfaces, at a constant radius
    beyond them, must not move the catheter's outer radius (it made a 0.40 mm sheath read as
    0.56 mm, a calibration mismatch on every frame); a surface only a few dB weaker still counts."""
    frame = synthetic_frame([0.06, 0.24, 0.36], ring_db=30.0)
    r = GEOMETRY.radius_mm(np.arange(GEOMETRY.n_samples))
    ghost = 10.0 * np.exp(-0.5 * ((r - 0.55) / 0.006) ** 2)  # 20 dB below the rings
    frame = np.clip(frame + np.rint(ghost / SCALE.db_per_count), 0, 65535).astype(np.uint16)
    result = SheathDetector(SheathConfig(catheter_outer_diameter_mm=0.8)).detect(frame, GEOMETRY)
    np.testing.assert_allclose(result.rings_mm, [0.06, 0.24, 0.36], atol=0.01)
    assert result.outer_radius_mm < 0.45 and result.calibration == "ok", result
    weak_surface = synthetic_frame([0.2], ring_db=30.0) + np.rint(
        22.0 * np.exp(-0.5 * ((r - 0.4) / 0.006) ** 2) / SCALE.db_per_count).astype(np.uint16)
    kept = SheathDetector(SheathConfig(catheter_outer_diameter_mm=0.8)).detect(weak_surface, GEOMETRY)
    np.testing.assert_allclose(kept.rings_mm, [0.2, 0.4], atol=0.01)


def test_the_wall_touching_on_some_alines_is_not_a_ring() -> None:
    # The wall comes to 0.55 mm on a few A-lines only: not >= 70 % consistent.
    result = SheathDetector().detect(synthetic_frame([0.4], wall_mm=0.95), GEOMETRY)
    assert result.rings_mm == pytest.approx([0.4], abs=0.01)


def test_z_offset_is_applied_and_a_mismatch_is_reported() -> None:
    frame = synthetic_frame([0.2, 0.45], z_offset_px=10)
    right = SheathDetector().detect(frame, GEOMETRY, z_offset_px=10)
    assert right.calibration == "ok"
    # Read with a z offset 24 samples (0.12 mm) off either way: every radius moves.
    for z in (34, -14):
        wrong = SheathDetector().detect(frame, GEOMETRY, z_offset_px=z)
        assert wrong.calibration == "mismatch", z
        assert "z offset" in wrong.reason
        assert wrong.to_record()["calibration"] == "mismatch"


def test_no_ring_falls_back_to_the_previous_frame_then_the_configured_radius() -> None:
    detector = SheathDetector()
    empty = synthetic_frame([], seed=3)
    first = detector.detect(empty, GEOMETRY)
    assert first.calibration == "not_found" and first.rings_mm == ()
    assert first.exclusion_radius_mm == pytest.approx(0.47)
    found = detector.detect(synthetic_frame([0.44]), GEOMETRY)
    carried = detector.detect(empty, GEOMETRY)
    assert carried.carried and carried.rings_mm == found.rings_mm


def test_unstated_scale_is_assumed_and_said() -> None:
    geometry = GEOMETRY.with_(intensity_scale=None)
    result = SheathDetector().detect(synthetic_frame([0.4]), geometry)
    assert result.scale_source == "assumed"
    assert result.rings_mm == pytest.approx([0.4], abs=0.01)
