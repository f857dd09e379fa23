"""The Numba kernels behind contours/measure against the NumPy implementation they replaced
(tests/engine/clinical/numpy_reference.py), on random contours and masks: equal to round-off."""

from __future__ import annotations

import numpy as np
import pytest

from engine.clinical import contours, measure
from tests.engine.clinical import numpy_reference as ref

SEEDS = range(12)


def _random_contour(rng: np.random.Generator, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """A lumen-like, possibly non-convex contour seen from an eccentric catheter, mm."""
    angles = 2 * np.pi * np.arange(n) / n
    k = np.arange(1, 7)
    amp = rng.normal(0.0, 0.12, k.size) / k
    phase = rng.uniform(0, 2 * np.pi, k.size)
    radius = 1.6 + (amp[:, None] * np.cos(k[:, None] * angles + phase[:, None])).sum(axis=0)
    x, y = radius * np.cos(angles), radius * np.sin(angles)
    return x + rng.uniform(-0.5, 0.5), y + rng.uniform(-0.5, 0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_radii_about_point_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    x, y = _random_contour(rng)
    cx, cy = ref.polygon_centroid(x, y)
    for n in (360, 720, 7):
        new = contours.radii_about_point(x, y, cx, cy, n)
        old = ref.radii_about_point(x, y, cx, cy, n)
        np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_area_centroid_and_diameters_equal_numpy(seed):
    x, y = _random_contour(np.random.default_rng(seed))
    assert contours.polygon_area_mm2(x, y) == pytest.approx(ref.polygon_area_mm2(x, y), rel=1e-12)
    np.testing.assert_allclose(contours.polygon_centroid(x, y), ref.polygon_centroid(x, y), atol=1e-12)
    r, a = np.hypot(x, y), np.arctan2(y, x) % (2 * np.pi)
    order = np.argsort(a)
    new = contours.diameters_through_centroid(r[order], a[order])
    old = ref.diameters_through_centroid(r[order], a[order])
    np.testing.assert_allclose(tuple(new), tuple(old), rtol=1e-12)


def test_outside_point_still_rejected():
    x, y = _random_contour(np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside"):
        contours.radii_about_point(x, y, 10.0, 10.0, 360)


def _random_mask(rng: np.random.Generator, rows: int = 252, cols: int = 256) -> np.ndarray:
    """Blobs of plaque-like bands with speckle holes, some touching the last column."""
    mask = np.zeros((rows, cols), dtype=bool)
    for _ in range(rng.integers(1, 5)):
        r0 = rng.integers(0, rows)
        width = rng.integers(5, rows // 2)
        c0 = rng.integers(40, cols - 20)
        depth = rng.integers(5, 120)
        rr = (r0 + np.arange(width)) % rows
        mask[rr, c0 : c0 + depth] = True
    mask &= rng.random(mask.shape) > 0.03
    return mask


@pytest.mark.parametrize("seed", SEEDS)
def test_ray_profiles_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    mask = _random_mask(rng)
    rows, cols = mask.shape
    angles = 2 * np.pi * np.arange(rows) / rows + rng.uniform(-0.01, 0.01)
    radii = 0.3 + 0.0125 * np.arange(cols)
    centre = (float(rng.uniform(-0.4, 0.4)), float(rng.uniform(-0.4, 0.4)))
    depth = None if seed % 2 else 2.0
    new = contours.ray_profiles(mask, radii, angles, centre, n_rays=720, step_mm=0.00625, max_depth_mm=depth)
    old = ref.ray_profiles(mask, radii, angles, centre, n_rays=720, step_mm=0.00625, max_depth_mm=depth)
    assert old.hit.any()
    np.testing.assert_array_equal(new.hit, old.hit)
    np.testing.assert_array_equal(new.truncated, old.truncated)
    np.testing.assert_allclose(new.first_distance_mm, old.first_distance_mm, atol=1e-12)
    np.testing.assert_allclose(new.thickness_mm, old.thickness_mm, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_running_median_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(0.1, 0.05, 720)
    values[rng.random(720) < 0.4] = np.nan
    values[100:130] = np.nan
    for width in (9, 4, 1):
        np.testing.assert_array_equal(
            measure._circular_running_median(values, width), ref.circular_running_median(values, width)
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_label_rays_equal_numpy_per_channel(seed):
    """One LabelRays over a map of several overlapping masks equals the reference on each mask;
    an entry-only march finds the same entry; a ray subset leaves the other rays missed."""
    rng = np.random.default_rng(seed)
    masks = [_random_mask(rng) for _ in range(3)]
    masks.append(masks[0] | masks[2])  # overlapping channels: one label carries two bits
    bits = np.zeros(masks[0].shape, dtype=np.uint8)
    for channel, mask in enumerate(masks):
        bits |= mask.view(np.uint8) << np.uint8(channel)
    rows, cols = bits.shape
    angles = 2 * np.pi * np.arange(rows) / rows + rng.uniform(-0.01, 0.01)
    radii = 0.3 + 0.0125 * np.arange(cols)
    centre = (float(rng.uniform(-0.4, 0.4)), float(rng.uniform(-0.4, 0.4)))
    depth = None if seed % 2 else 2.0
    rays = contours.LabelRays(bits, np.arange(256, dtype=np.uint8), len(masks), radii, angles, centre,
                              n_rays=720, step_mm=0.00625, max_depth_mm=depth)
    for channel, mask in enumerate(masks):
        old = ref.ray_profiles(mask, radii, angles, centre, n_rays=720, step_mm=0.00625, max_depth_mm=depth)
        new = rays.profiles(channel)
        np.testing.assert_array_equal(new.hit, old.hit)
        np.testing.assert_array_equal(new.truncated, old.truncated)
        np.testing.assert_allclose(new.first_distance_mm, old.first_distance_mm, atol=1e-12)
        np.testing.assert_allclose(new.thickness_mm, old.thickness_mm, atol=1e-12)
        subset = rng.random(720) < 0.5
        entry = rays.profiles(channel, entry_only=True, rays=subset)
        np.testing.assert_array_equal(entry.hit, old.hit & subset)
        np.testing.assert_allclose(entry.first_distance_mm, np.where(subset, old.first_distance_mm, np.nan), atol=1e-12)
        assert np.isnan(entry.thickness_mm).all() and not entry.truncated.any()


def test_label_rays_reject_bad_input_with_a_reason():
    labels = np.zeros((8, 16), dtype=np.uint8)
    angles, radii = 2 * np.pi * np.arange(8) / 8, 0.1 * np.arange(16)
    lut = np.zeros(256, dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        contours.LabelRays(labels.astype(np.int16), lut, 1, radii, angles, (0.0, 0.0))
    with pytest.raises(ValueError, match="lut"):
        contours.LabelRays(labels, lut[:10], 1, radii, angles, (0.0, 0.0))
    with pytest.raises(ValueError, match="n_channels"):
        contours.LabelRays(labels, lut, 9, radii, angles, (0.0, 0.0))
    with pytest.raises(ValueError, match="does not match"):
        contours.LabelRays(labels, lut, 1, radii[:5], angles, (0.0, 0.0))
    rays = contours.LabelRays(labels, lut, 2, radii, angles, (0.0, 0.0), n_rays=16)
    with pytest.raises(ValueError, match="channel"):
        rays.profiles(2)
    with pytest.raises(ValueError, match="rays must be"):
        rays.profiles(0, rays=np.ones(5, dtype=bool))
    assert not rays.profiles(1).hit.any()  # an empty channel: no ray sampled, no hit
