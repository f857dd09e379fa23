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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from engine.clinical.levels import percentiles
from models.grid import IntensityMapping, normalise_reference
from streams.pullback import Frame

if TYPE_CHECKING:
    from engine.analysis.sheath import SheathResult

SATURATED = 0.999  #: normalised intensity at which the detector saturates
SHADOW_BLOCK = 4  #: samples averaged per block when testing the shadow behind a peak
CONTRAST_HALF_WINDOW_MM = 0.03  #: radial half-window of the neighbours' level at a peak's radius
SPECULAR_SHADOW_MM = 0.5  #: depth behind a specular peak compared with its neighbours
SPECULAR_SMOOTH_MM = 0.012  #: half-width of the mean a specular peak's level is taken over


@dataclass(frozen=True)
class MetalDetectorConfig:
    """Detector thresholds (all on intensities normalised to [0, 1]; distances in mm).

    Attributes
    ----------
    min_radius_mm : float
        Search from here outward when no sheath was detected: inside the phantom catheter's
        sheath (~0.39-0.45 mm), so a guidewire lying on the sheath is still seen; the sheath's
        own rings are rejected by the shadow test (tissue lies behind them). With a detected
        sheath the search starts at its outermost ring when that lies further in
        (:func:`search_start_mm`).
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
    specular_margin : float
        The second test, for a strut whose shadow is only partial (blooming, multiple scattering,
        another console's point-spread function: tissue signal behind it stays well above the
        noise floor): a peak this far from the bright-tissue level to full scale...
    contrast_arc_mm : float
        ...that stands out from the same radius (+-0.03 mm) of the A-lines this far away along the
        arc on both sides (beyond a strut's ~0.1-0.15 mm width, inside a wire's 0.27 mm front)...
    contrast_margin : float
        ...by at least this fraction of (full scale - bright-tissue level)...
    shadow_drop : float
        ...and casts a partial shadow: the mean behind it (``shadow_start_mm`` to 0.5 mm) is
        darker than those A-lines' at the same radii by this fraction of (tissue - noise)...
    lumen_fraction : float
        ...unless it stands in the lumen: those A-lines stay below noise + this fraction of
        (tissue - noise) at its radius (a malapposed strut: its shadow falls on the wall, far
        behind it, and the lumen around it is dark). A sheath ring or a guide catheter is the same at every A-line (no
        contrast), a bright fibrous cap or calcium edge is wide along the arc, lipid's
        attenuation darkens the neighbours as well.
    """

    min_radius_mm: float = 0.40
    peak_margin: float = 0.3
    shadow_start_mm: float = 0.06
    shadow_fraction: float = 0.3
    max_strut_width_mm: float = 0.2
    max_step_mm: float = 0.2
    specular_margin: float = 0.6
    contrast_arc_mm: float = 0.25
    contrast_margin: float = 0.35
    shadow_drop: float = 0.08
    lumen_fraction: float = 0.5


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


def search_start_mm(sheath: SheathResult | None, cfg: MetalDetectorConfig) -> float:
    """Radius the metal search starts from, mm: the detected sheath's outermost ring (so a
    guidewire lying on a smaller catheter's sheath is seen, and no ring inside it is searched),
    but never beyond ``cfg.min_radius_mm`` (the start without a sheath).

    The cap is there because a "ring" found outside the real sheath (a ghost line, or the
    surface of a wire lying on the sheath along most A-lines) would otherwise hide a wire lying
    on the real sheath: on the foreign renderer a ring detected at 0.55 mm around a 0.40 mm
    sheath made the wire's flank read as two struts. Rings inside the start are harmless: tissue
    lies behind them, so the shadow test rejects them.
    """
    if sheath is not None and sheath.rings_mm:
        return min(float(sheath.rings_mm[-1]), cfg.min_radius_mm)
    return cfg.min_radius_mm


def detect_metal(
    frame: Frame,
    cfg: MetalDetectorConfig = MetalDetectorConfig(),
    sheath: SheathResult | None = None,
) -> MetalDetection:
    """Find stent struts and the guidewire in a stored polar frame.

    Parameters
    ----------
    frame : Frame
        The polar frame (padded rows are ignored).
    cfg : MetalDetectorConfig
    sheath : SheathResult, optional
        The frame's detected sheath (``Segmentation.sheath``): the search starts at its outermost
        ring, at most ``cfg.min_radius_mm`` (:func:`search_start_mm`); without it at
        ``cfg.min_radius_mm``.

    One compiled pass per row finds the peak, its sub-sample position and, only on rows whose
    peak is bright enough to be metal, the shadow behind it; one more pass groups the metal rows
    into struts and the guidewire. The stored samples are read in place (a LOG frame of unsigned
    integers is never copied).
    """
    g = frame.geometry
    a = g.n_valid_alines
    step = g.sample_spacing_mm
    first = int(np.searchsorted(frame.radius_mm(np.arange(g.n_samples)), search_start_mm(sheath, cfg)))
    if first >= g.n_samples - 4 * SHADOW_BLOCK:
        empty = np.zeros(a, dtype=bool)
        return MetalDetection(np.zeros(0, int), np.zeros(0), empty, empty)
    pixels, scale = _samples(frame.pixels[:a], g.intensity)
    # Levels from every 4th row and column of the search region: plenty for two percentiles.
    # (On the stored values: scaling is monotonic, so order statistics and argmax are the same.)
    levels = percentiles(pixels[:, first:][::4, ::4], (50.0, 99.0)) * scale
    noise, tissue = float(levels[0]), float(levels[1])
    bright_level = tissue + cfg.peak_margin * (1.0 - tissue)
    shadow_level = noise + cfg.shadow_fraction * (tissue - noise)
    peak_col = np.argmax(pixels[:, first:], axis=1)  # NumPy's SIMD argmax: the one full pass
    radius0 = float(frame.radius_mm(np.zeros(1))[0])
    peak, metal, refined = _row_peaks(
        pixels, np.float32(scale), first, peak_col, np.float32(bright_level),
        np.float32(shadow_level), int(round(cfg.shadow_start_mm / step)), SHADOW_BLOCK,
    )
    _specular_rows(
        pixels, np.float32(scale), first, peak_col, metal,
        np.float32(tissue + cfg.specular_margin * (1.0 - tissue)),
        np.float32(cfg.contrast_margin * (1.0 - tissue)),
        np.float32(cfg.shadow_drop * (tissue - noise)),
        np.float32(noise + cfg.lumen_fraction * (tissue - noise)), radius0, step, cfg.contrast_arc_mm,
        max(1, int(round(CONTRAST_HALF_WINDOW_MM / step))),
        max(1, int(round(SPECULAR_SMOOTH_MM / step))), int(round(cfg.shadow_start_mm / step)),
        max(2, int(round(SPECULAR_SHADOW_MM / step))),
    )
    metal = _close_circular(metal)  # a strut or wire edge may miss a row or two to speckle
    _saturated_centres(pixels, np.float32(scale), first, peak_col, metal, peak, np.float32(SATURATED), refined)
    peak_radius = frame.radius_mm(refined)
    is_strut, guidewire = _group(metal, peak_radius, cfg.max_step_mm, cfg.max_strut_width_mm)
    strut_rows = np.flatnonzero(is_strut)
    return MetalDetection(strut_rows.astype(int), peak_radius[strut_rows], guidewire, metal)


def _samples(pixels: np.ndarray, intensity: str) -> tuple[np.ndarray, float]:
    """Stored samples and the factor that brings them to [0, 1]: LOG unsigned integers as
    stored (scaled on the fly), anything else normalised once (LIN: log-compressed first)."""
    if intensity == "LOG" and pixels.dtype.kind == "u":
        return pixels, 1.0 / np.iinfo(pixels.dtype).max
    return normalise_reference(pixels, intensity, IntensityMapping()).astype(np.float32), 1.0


@numba.njit(cache=True)
def _row_peaks(pixels, scale, first, peak_col, bright_level, shadow_level, shadow_offset, block):
    """Per row, given its peak column (from ``first``): peak value, metal flag (bright peak and
    everything from ``shadow_offset`` samples behind it, in means of ``block`` samples, below
    ``shadow_level``) and the refined peak column (parabola through the peak), all in float32 on
    ``pixels * scale`` as the NumPy formulation computed them. The shadow is read only on rows
    whose peak is bright, from the peak outward, stopping at the first bright block (tissue
    behind a sheath ring or the wall surface ends the read within a few blocks).
    """
    a, n = pixels.shape
    width = n - first
    n_blocks = width // block
    peak = np.zeros(a, dtype=np.float32)
    metal = np.zeros(a, dtype=np.bool_)
    refined = np.zeros(a, dtype=np.float64)
    inv_block = np.float32(block)
    for r in range(a):
        col = peak_col[r]
        best = np.float32(pixels[r, first + col]) * scale
        peak[r] = best
        start = -(-(col + shadow_offset) // block)
        is_metal = False
        if best >= bright_level and start < n_blocks - 1:
            is_metal = True
            for b in range(start, n_blocks):
                total = np.float32(0.0)
                for k in range(block):
                    total += np.float32(pixels[r, first + b * block + k]) * scale
                if total / inv_block > shadow_level:
                    is_metal = False
                    break
        metal[r] = is_metal
        cc = min(max(col, 1), width - 2)
        left = np.float32(pixels[r, first + cc - 1]) * scale
        mid = np.float32(pixels[r, first + cc]) * scale
        right = np.float32(pixels[r, first + cc + 1]) * scale
        denom = left - np.float32(2.0) * mid + right
        offset = 0.0
        if denom < 0:
            offset = min(max(np.float32(0.5) * (left - right) / denom, -0.5), 0.5)
        refined[r] = col + first + ((cc - col) + offset)
    return peak, metal, refined


@numba.njit(cache=True)
def _window_mean(pixels, row, centre, half, scale):
    """Mean of ``pixels[row, centre - half : centre + half + 1]`` (clipped) times ``scale``."""
    n = pixels.shape[1]
    lo = max(centre - half, 0)
    hi = min(centre + half + 1, n)
    total = np.float32(0.0)
    for j in range(lo, hi):
        total += np.float32(pixels[row, j]) * scale
    return total / np.float32(max(hi - lo, 1))


@numba.njit(cache=True)
def _specular_rows(pixels, scale, first, peak_col, metal, specular_level, contrast_level,
                   shadow_drop, lumen_level, radius0_mm, step_mm, arc_mm, half_window, smooth, shadow_offset,
                   depth):
    """Flag, in ``metal``, the rows whose peak failed the full-shadow test but is specular.

    The peak's level is its mean over ``smooth`` samples either side (a specular surface is
    wider than one speckle grain, which the phantom's tissue surface reaches full scale with);
    it must reach ``specular_level``, exceed by ``contrast_level`` the brightest such mean within
    ``half_window`` samples of its radius on the rows ``arc_mm`` away along the arc on both sides,
    and either stand in the lumen (that brightest mean at most ``lumen_level``: a malapposed
    strut, whose shadow falls on the wall far behind it) or its mean over ``depth`` samples
    from ``shadow_offset`` behind it must be at least ``shadow_drop`` darker than theirs. Only
    rows with a bright peak are read beyond it. A row whose reference A-lines lie in a full
    shadow (the guidewire's) is not tested: tissue beside a wire would look like it stands in
    the lumen.
    """
    a, n = pixels.shape
    shadowed = metal.copy()  # rows behind metal by the full-shadow test: no reference level
    for r in range(a):
        if metal[r]:
            continue
        c = first + peak_col[r]
        level = _window_mean(pixels, r, c, smooth, scale)
        if level < specular_level:
            continue
        radius = radius0_mm + c * step_mm
        if radius <= 0.0:
            continue
        k = max(3, int(math.ceil(arc_mm * a / (2.0 * math.pi * radius))))
        if 2 * k >= a or shadowed[(r - k) % a] or shadowed[(r + k) % a]:
            continue
        brightest = np.float32(0.0)
        for nb in ((r - k) % a, (r + k) % a):
            for j in range(max(c - half_window, 0), min(c + half_window + 1, n)):
                v = _window_mean(pixels, nb, j, smooth, scale)
                if v > brightest:
                    brightest = v
        if level - brightest < contrast_level:
            continue
        if brightest <= lumen_level:
            metal[r] = True
            continue
        s0 = c + shadow_offset
        s1 = min(s0 + depth, n)
        if s1 - s0 < 2:
            continue
        own = np.float32(0.0)
        beside = np.float32(0.0)
        for j in range(s0, s1):
            own += np.float32(pixels[r, j]) * scale
            beside += np.float32(pixels[(r - k) % a, j]) * scale + np.float32(pixels[(r + k) % a, j]) * scale
        count = np.float32(s1 - s0)
        if own / count <= np.float32(0.5) * beside / count - shadow_drop:
            metal[r] = True


@numba.njit(cache=True)
def _saturated_centres(pixels, scale, first, peak_col, metal, peak, saturated, refined):
    """A saturated reflection is a plateau: its centre, where argmax gave its first sample."""
    width = pixels.shape[1] - first
    for r in range(metal.size):
        if not (metal[r] and peak[r] >= saturated):
            continue
        length = 0
        for c in range(peak_col[r], width):
            if np.float32(pixels[r, first + c]) * scale >= saturated:
                length += 1
            else:
                break
        refined[r] = peak_col[r] + first + 0.5 * (length - 1)


@numba.njit(cache=True)
def _close_circular(flags):
    """Binary closing (one dilation, one erosion, 3 rows) of a circular row flag array."""
    n = flags.size
    dilated = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        dilated[i] = flags[(i - 1) % n] or flags[i] or flags[(i + 1) % n]
    closed = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        closed[i] = dilated[(i - 1) % n] and dilated[i] and dilated[(i + 1) % n]
    return closed


@numba.njit(cache=True)
def _group(metal, peak_radius, max_step_mm, max_strut_width_mm):
    """Struts (centre row flags) and guidewire rows from the circular metal rows.

    Runs of metal rows, in order of their first row (a run across the wrap last), split where
    the peak radius jumps by more than ``max_step_mm``: adjacent objects at different depths.
    Parts wider than ``max_strut_width_mm`` at their median peak radius are the guidewire; the
    wire's flanks, where its surface turns away steeply, can split off as narrow parts: a narrow
    part touching the wire's rows no deeper than the wire's far flank is the wire too. Every
    other part is a strut through its centre row.
    """
    a = metal.size
    order = np.empty(a, dtype=np.int64)
    part_start = np.empty(a + 1, dtype=np.int64)
    n_parts = 0
    n = 0
    all_metal = True
    for i in range(a):
        if not metal[i]:
            all_metal = False
            break
    for lo in range(a):
        if not metal[lo] or (metal[(lo - 1) % a] and not (all_metal and lo == 0)):
            continue
        part_start[n_parts] = n
        n_parts += 1
        i = lo
        while True:
            order[n] = i
            n += 1
            nxt = (i + 1) % a
            if not metal[nxt] or nxt == lo:
                break
            if abs(peak_radius[nxt] - peak_radius[i]) > max_step_mm:
                part_start[n_parts] = n
                n_parts += 1
            i = nxt
        if all_metal:
            break
    part_start[n_parts] = n
    guidewire = np.zeros(a, dtype=np.bool_)
    wire_depth = -np.inf
    for p in range(n_parts):
        rows = order[part_start[p] : part_start[p + 1]]
        radii = np.sort(peak_radius[rows])
        size = rows.size
        median = radii[size // 2] if size % 2 else (radii[size // 2 - 1] + radii[size // 2]) / 2.0
        if size * 2.0 * math.pi * median / a > max_strut_width_mm:
            for r in rows:
                guidewire[r] = True
            wire_depth = max(wire_depth, radii[-1])
    is_strut = np.zeros(a, dtype=np.bool_)
    for p in range(n_parts):
        rows = order[part_start[p] : part_start[p + 1]]
        if guidewire[rows[0]]:
            continue
        touching = guidewire[(rows[0] - 1) % a] or guidewire[(rows[-1] + 1) % a]
        if touching and peak_radius[rows].min() <= wire_depth + max_step_mm:
            for r in rows:
                guidewire[r] = True
            continue
        is_strut[rows[rows.size // 2]] = True
    return is_strut, guidewire


def warm_up() -> None:
    """Compile (or load from the cache) the detector's kernels before the first frame."""
    for dtype in (np.uint16, np.float32):
        pixels = np.zeros((4, 64), dtype=dtype)
        col = np.argmax(pixels[:, 4:], axis=1)
        peak, metal, refined = _row_peaks(pixels, np.float32(1.0), 4, col, np.float32(0.5),
                                          np.float32(0.1), 2, SHADOW_BLOCK)
        _specular_rows(pixels, np.float32(1.0), 4, col, metal, np.float32(0.5), np.float32(0.1),
                       np.float32(0.05), np.float32(0.2), 0.1, 0.01, 0.25, 1, 1, 2, 8)
        _saturated_centres(pixels, np.float32(1.0), 4, col, metal, peak, np.float32(SATURATED), refined)
    flags = np.array([True, True, False, True])
    _group(_close_circular(flags), np.ones(4), 0.2, 0.2)
