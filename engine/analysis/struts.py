"""Classical detection of metal in a polar frame: stent struts and the guidewire.

Metal reflects a bright, narrow peak and casts a full shadow (DOMAIN.md section 3), so an A-line
crosses metal where its brightest sample beyond the sheath stands well above the frame's bright
tissue level and the signal behind it falls to the noise floor. Neighbouring such A-lines form a
run; a run whose physical width at its radius exceeds ``max_strut_width_mm`` is the guidewire
(0.36 mm across), narrower runs are struts (about 0.1 mm). Classical rather than learned: the
physics is unambiguous, it needs no training data of stents, and it is exact to a sample in
radius, which the apposition distance (threshold ~110 um) needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from engine.clinical import contours
from models.grid import IntensityMapping, normalise_reference
from streams.pullback import Frame

SATURATED = 0.999  #: normalised intensity at which the detector saturates
SHADOW_BLOCK = 4  #: samples averaged per block when testing the shadow behind a peak


@dataclass(frozen=True)
class MetalDetectorConfig:
    """Detector thresholds (all on intensities normalised to [0, 1]; distances in mm).

    Attributes
    ----------
    min_radius_mm : float
        Search from here outward: inside the sheath (~0.39-0.45 mm), so a guidewire lying on the
        sheath is still seen; the sheath's own rings are rejected by the shadow test (tissue
        lies behind them).
    peak_margin : float
        A metal peak exceeds the frame's bright-tissue level (99th percentile) by this fraction of
        the way from that level to full scale.
    shadow_start_mm : float
        Everything from this far behind the peak to the end of the A-line must be in shadow.
    shadow_fraction : float
        Everything in the shadow window stays below noise + this fraction of (tissue - noise).
    max_strut_width_mm : float
        Wider runs are the guidewire: its front arc spans ~0.27 mm (0.36 mm wire seen from 0.6-1 mm),
        a strut ~0.11-0.15 mm (width plus blooming).
    max_step_mm : float
        Neighbouring metal A-lines whose peaks differ more than this in radius belong to different
        objects (a strut next to the guidewire's shadow).
    """

    min_radius_mm: float = 0.40
    peak_margin: float = 0.3
    shadow_start_mm: float = 0.06
    shadow_fraction: float = 0.3
    max_strut_width_mm: float = 0.2
    max_step_mm: float = 0.2


@dataclass(frozen=True)
class MetalDetection:
    """Metal found in one frame.

    Attributes
    ----------
    strut_rows : numpy.ndarray
        ``(n,)`` int, stored row through each strut's centre.
    strut_radius_mm : numpy.ndarray
        ``(n,)`` radius of each strut's reflection peak (sub-sample), mm.
    guidewire_rows : numpy.ndarray
        ``(A,)`` bool, rows in the guidewire's shadow.
    shadow_rows : numpy.ndarray
        ``(A,)`` bool, rows behind any metal (lumen and tissue undetermined there).
    """

    strut_rows: np.ndarray
    strut_radius_mm: np.ndarray
    guidewire_rows: np.ndarray
    shadow_rows: np.ndarray


def detect_metal(frame: Frame, cfg: MetalDetectorConfig = MetalDetectorConfig()) -> MetalDetection:
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
