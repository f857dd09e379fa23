"""The NumPy metal detector before the Numba kernels (issue 17 item 3), frozen as the reference
the compiled detector must equal on the phantom's stent and guidewire frames (and on noise)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from engine.analysis.struts import (
    SATURATED,
    SHADOW_BLOCK,
    MetalDetection,
    MetalDetectorConfig,
    detect_metal,
)
from engine.clinical import contours
from engine.synthetic.phantom import generate_pullback
from models.grid import IntensityMapping, normalise_reference
from streams.pullback import Frame


def reference_detect_metal(frame: Frame, cfg: MetalDetectorConfig = MetalDetectorConfig()) -> MetalDetection:
    """Find stent struts and the guidewire in a stored polar frame.

    Parameters
    ----------
    frame : Frame
        The polar frame (padded rows are ignored).
    cfg : MetalDetectorConfig
    """
    g = frame.geometry
    a = g.n_valid_alines
    radii = frame.radius_mm(np.arange(g.n_samples))
    step = g.sample_spacing_mm
    first = int(np.searchsorted(radii, cfg.min_radius_mm))
    if first >= g.n_samples - 4 * SHADOW_BLOCK:
        empty = np.zeros(a, dtype=bool)
        return MetalDetection(np.zeros(0, int), np.zeros(0), empty, empty)
    search = _normalised(frame.pixels[:a, first:], g.intensity)
    # Levels from every 4th row and column: a 16x smaller sample is plenty for two percentiles.
    levels = np.percentile(search[::4, ::4], [50.0, 99.0])
    noise, tissue = float(levels[0]), float(levels[1])
    peak_col = np.argmax(search, axis=1)
    peak = search[np.arange(a), peak_col]
    bright = peak >= tissue + cfg.peak_margin * (1.0 - tissue)

    # Brightest signal anywhere behind each peak, on means of SHADOW_BLOCK samples (which also
    # smooths the speckle): noise in a metal shadow, tissue behind anything else. A maximum over
    # the rest of the A-line, because a wide dark lumen between a bright sheath ring and a distant
    # wall would fool any shorter window.
    n_blocks = search.shape[1] // SHADOW_BLOCK
    blocks = search[:, : n_blocks * SHADOW_BLOCK].reshape(a, n_blocks, SHADOW_BLOCK).mean(axis=2)
    behind_max = np.maximum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1]
    start = -(-(peak_col + int(round(cfg.shadow_start_mm / step))) // SHADOW_BLOCK)  # first whole block
    inside = start < n_blocks - 1
    behind = behind_max[np.arange(a), np.minimum(start, n_blocks - 1)]
    shadowed = inside & (behind <= noise + cfg.shadow_fraction * (tissue - noise))
    # A strut or wire edge may miss a row or two to speckle; close such gaps.
    metal = bright & shadowed
    metal = ndimage.binary_closing(np.concatenate([metal[-2:], metal, metal[:2]]), iterations=1)[2:-2]

    refined = peak_col + first + _parabolic_offset(search, peak_col)
    # A saturated reflection is a plateau: take its centre (argmax gives its first sample).
    for row in np.flatnonzero(metal & (peak >= SATURATED)):
        tail = search[row, peak_col[row]:] >= SATURATED
        refined[row] = peak_col[row] + first + 0.5 * (np.argmin(tail) - 1 if not tail.all() else tail.size - 1)
    peak_radius = frame.radius_mm(refined)
    # Split runs where the peak radius jumps: adjacent objects at different depths.
    jump = np.abs(np.diff(peak_radius, append=peak_radius[:1])) > cfg.max_step_mm
    parts = []
    for lo, hi in contours.circular_runs(metal):
        run = (np.arange((hi - lo) % a + 1) + lo) % a
        parts.extend(np.split(run, np.flatnonzero(jump[run[:-1]]) + 1))
    wide = [p for p in parts if _width_mm(p, peak_radius, a) > cfg.max_strut_width_mm]
    guidewire = np.zeros(a, dtype=bool)
    for part in wide:
        guidewire[part] = True
    # The wire's flanks, where its surface turns away steeply, can split off as narrow runs: a
    # narrow run touching the wire's run no deeper than the wire's far flank is the wire.
    wire_depth = max((float(peak_radius[p].max()) for p in wide), default=-np.inf)
    strut_rows, strut_radius = [], []
    for part in parts:
        if guidewire[part[0]]:
            continue
        touching = guidewire[(part[0] - 1) % a] or guidewire[(part[-1] + 1) % a]
        if touching and float(peak_radius[part].min()) <= wire_depth + cfg.max_step_mm:
            guidewire[part] = True
            continue
        centre = part[part.size // 2]
        strut_rows.append(int(centre))
        strut_radius.append(float(peak_radius[centre]))
    return MetalDetection(np.asarray(strut_rows, dtype=int), np.asarray(strut_radius), guidewire, metal)


def _normalised(pixels: np.ndarray, intensity: str) -> np.ndarray:
    """Stored samples as float32 in [0, 1] (LOG: scaled; LIN: log-compressed first)."""
    if intensity == "LOG" and pixels.dtype.kind == "u":
        return pixels.astype(np.float32) * np.float32(1.0 / np.iinfo(pixels.dtype).max)
    return normalise_reference(pixels, intensity, IntensityMapping()).astype(np.float32)


def _width_mm(run: np.ndarray, peak_radius: np.ndarray, a: int) -> float:
    """Arc length of a run of A-lines at the median radius of its peaks, mm."""
    return run.size * 2.0 * np.pi * float(np.median(peak_radius[run])) / a


def _parabolic_offset(image: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sub-sample position of each row's peak from a parabola through it and its neighbours."""
    rows = np.arange(image.shape[0])
    c = np.clip(cols, 1, image.shape[1] - 2)
    left, mid, right = image[rows, c - 1], image[rows, c], image[rows, c + 1]
    denom = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    return (c - cols) + np.clip(offset, -0.5, 0.5)


def _assert_same(new: MetalDetection, old: MetalDetection) -> None:
    order = np.argsort(old.strut_rows)
    np.testing.assert_array_equal(new.strut_rows, old.strut_rows[order])
    np.testing.assert_allclose(new.strut_radius_mm, old.strut_radius_mm[order], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(new.guidewire_rows, old.guidewire_rows)
    np.testing.assert_array_equal(new.shadow_rows, old.shadow_rows)


@pytest.mark.parametrize(
    "scenario, geometry",
    [
        ("stented-malapposed", dict(n_alines=500, n_samples=1000)),
        ("stented-good", dict(n_alines=384, n_samples=700, ranging_depth_mm=5.5, z_offset_px=-10)),
        ("calcified", dict(n_alines=504, n_samples=970)),
    ],
)
def test_compiled_detector_equals_numpy(scenario, geometry):
    pb = generate_pullback(scenario, seed=41, n_frames=6, frame_pitch_mm=2.0, **geometry)
    found = 0
    for i in range(len(pb)):
        new, old = detect_metal(pb.frame(i)), reference_detect_metal(pb.frame(i))
        _assert_same(new, old)
        found += old.strut_rows.size + int(old.guidewire_rows.any())
    assert found > 0


def test_compiled_detector_equals_numpy_with_saturated_struts_and_noise():
    """Random frames with saturated plateaus over shadows (struts), bright tissue and speckle."""
    pb = generate_pullback("stented-malapposed", seed=43, n_frames=1, n_alines=360, n_samples=600)
    frame = pb.frame(0)
    rng = np.random.default_rng(7)
    for trial in range(4):
        pixels = rng.integers(0, 9000, size=frame.pixels.shape, dtype=np.uint16)
        pixels[:, 300:] = rng.integers(20000, 40000, size=(pixels.shape[0], 300), dtype=np.uint16)
        for row in rng.choice(frame.geometry.n_valid_alines, 12, replace=False):
            col = int(rng.integers(150, 280))
            pixels[row, col : col + 3 + trial] = 65535
            pixels[row, col + 3 + trial :] = rng.integers(0, 3000, size=pixels.shape[1] - col - 3 - trial)
        test_frame = dataclasses.replace(frame, pixels=pixels)
        new = detect_metal(test_frame)
        _assert_same(new, reference_detect_metal(test_frame))
        assert new.strut_rows.size >= 6


@pytest.mark.parametrize("n", [1, 2, 7, 100, 30001])
def test_levels_percentiles_equal_numpy(n):
    from engine.clinical.levels import percentiles

    rng = np.random.default_rng(n)
    q = (50.0, 99.0, 12.3, 0.0, 100.0, 60.0, 99.9)
    for values in (rng.integers(0, 65535, n).astype(np.uint16), rng.random(n, dtype=np.float32) * 4e4):
        np.testing.assert_array_equal(percentiles(values, q), np.percentile(values, list(q)))


def test_search_starts_at_the_sheath_but_never_beyond_the_default():
    from engine.analysis.sheath import SheathResult
    from engine.analysis.struts import search_start_mm

    cfg = MetalDetectorConfig()

    def sheath(rings):
        return SheathResult(rings, rings[-1] + 0.02 if rings else float("nan"), 0.45, "ok", 0.0, "assumed")

    assert search_start_mm(None, cfg) == cfg.min_radius_mm
    assert search_start_mm(sheath(()), cfg) == cfg.min_radius_mm
    assert search_start_mm(sheath((0.06, 0.21)), cfg) == pytest.approx(0.21)  # a small catheter
    assert search_start_mm(sheath((0.24, 0.55)), cfg) == cfg.min_radius_mm  # a ring outside: capped


def test_a_wire_on_a_small_catheter_is_seen_only_from_its_sheath():
    """A bright peak with a full shadow at 0.3 mm: beyond a 0.21 mm sheath, inside 0.40 mm."""
    from engine.analysis.sheath import SheathResult

    pb = generate_pullback("calcified", seed=44, n_frames=1, n_alines=360, n_samples=600)
    frame = pb.frame(0)
    pixels = frame.pixels.copy()
    col = int(np.searchsorted(frame.radius_mm(np.arange(pixels.shape[1])), 0.30))
    rows = np.arange(100, 140)  # ~0.06 rad at 0.3 mm: 40 rows span ~0.2 mm, a wire
    pixels[rows, col : col + 3] = 65535
    pixels[rows, col + 3 :] = 300
    wired = dataclasses.replace(frame, pixels=pixels)
    small = SheathResult((0.06, 0.21), 0.23, 0.25, "mismatch", 0.0, "assumed")
    assert detect_metal(wired, sheath=small).shadow_rows[rows].all()
    assert not detect_metal(wired).shadow_rows[rows].any()
