"""The imaging catheter's sheath, found per frame as an object (DOMAIN.md section 8).

Catheters differ: one to four bright concentric rings (sheath surfaces, lens and fibre
reflections, a ghost line near column 0) at radii anywhere from ~0.05 to ~0.5 mm. No fixed radius
is assumed here. A ring is a sample radius that is bright, relative to the frame's own noise
floor, on most A-lines at the same radius:

1. the stored frame is mapped to dB through the pullback's intensity scale (an assumed LOG range
   where it states none, reported as such);
2. the noise floor is a low percentile of the frame in dB (the flushed lumen and the depth beyond
   the tissue are at the floor on every console);
3. along each A-line a short running maximum (``wobble_samples``) lets a slightly eccentric ring
   still line up; the ``100 - consistency`` percentile over A-lines of that is above
   ``floor + ring_threshold_db`` exactly where >= ``consistency`` % of A-lines are bright;
4. rings are the local maxima of that profile within ``max_radius_mm``, separated by a dip of
   ``min_dip_db``; lines more than ``ghost_db`` weaker than the brightest ring are ghost lines
   (multiple reflections), not surfaces, and are dropped; the catheter's outer radius is the
   outermost ring plus its half-width.

Nothing inside :attr:`SheathResult.exclusion_radius_mm` may carry a lumen boundary, a strut or
plaque. The calibration guard compares the outer radius with the configured catheter's: a
mismatch beyond ``calibration_tolerance_mm`` means the z offset (or the catheter setting) is
wrong and the frame's radii are not to be trusted.

Units: radii in mm from the catheter centre, levels in dB (the scale's arbitrary reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streams.geometry import FrameGeometry
from streams.intensity import ASSUMED_LOG_RANGE_DB, IntensityScale


@dataclass(frozen=True)
class SheathConfig:
    """Settings of the sheath detector (wired to the ``[analysis]`` config section).

    Attributes
    ----------
    catheter_outer_diameter_mm : float
        Outer diameter of the imaging catheter's sheath, mm (Dragonfly-class ~0.9 mm).
    source : str
        Where ``catheter_outer_diameter_mm`` comes from (shown with a calibration mismatch).
    calibration_tolerance_mm : float
        Largest |detected outer radius - diameter/2| that still counts as calibrated, mm.
    max_radius_mm : float
        Rings are searched from the centre out to this radius, mm.
    ring_threshold_db : float
        A ring sample is at least this far above the frame's noise floor, dB.
    consistency : float
        Fraction of valid A-lines on which a ring must be bright at the same radius (0..1).
    min_dip_db : float
        Two rings are separate when the profile dips this far below the lower of them, dB.
    wobble_samples : int
        Running-maximum half-width along each A-line, samples (eccentric or tilted rings).
    floor_percentile : float
        Percentile of the frame's dB values taken as the noise floor.
    margin_mm : float
        Added beyond the outer ring's edge for :attr:`SheathResult.exclusion_radius_mm`, mm.
    ghost_db : float
        A constant-radius line more than this far below the brightest ring (median over
        A-lines, dB) is a ghost line (a multiple reflection, some 20 dB weaker than the sheath's
        surfaces), not a sheath surface: it neither sets the outer radius nor is reported as a ring.
    """

    catheter_outer_diameter_mm: float = 0.9
    source: str = "Dragonfly-class default"
    calibration_tolerance_mm: float = 0.1
    max_radius_mm: float = 0.6
    ring_threshold_db: float = 8.0
    consistency: float = 0.7
    min_dip_db: float = 3.0
    wobble_samples: int = 2
    floor_percentile: float = 20.0
    margin_mm: float = 0.02
    ghost_db: float = 15.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.catheter_outer_diameter_mm <= 2.0:
            raise ValueError(
                f"catheter_outer_diameter_mm={self.catheter_outer_diameter_mm} is outside 0.05..2 mm"
            )
        if not 0.0 < self.consistency <= 1.0:
            raise ValueError(f"consistency={self.consistency} must be in (0, 1]")
        if not (self.max_radius_mm > 0 and self.ring_threshold_db > 0 and self.wobble_samples >= 0):
            raise ValueError("max_radius_mm, ring_threshold_db must be > 0, wobble_samples >= 0")


@dataclass(frozen=True)
class SheathResult:
    """The sheath of one frame.

    Attributes
    ----------
    rings_mm : tuple of float
        Radii of the detected rings, mm, innermost first (empty when none was found).
    outer_radius_mm : float
        The catheter's outer radius: outermost ring plus its half-width, mm; NaN when no ring.
    exclusion_radius_mm : float
        Nothing analysed lies inside this radius, mm (outer radius + margin; the configured
        catheter radius when no ring was found).
    calibration : str
        ``"ok"``, ``"mismatch"`` (outer radius vs the configured catheter beyond the tolerance)
        or ``"not_found"``.
    noise_floor_db : float
        The frame's noise floor, dB on the scale used.
    scale_source : str
        Source of the intensity scale used (``"assumed"`` when the pullback states none).
    carried : bool
        True when no ring was found on this frame and the previous frame's sheath was used.
    reason : str
        One line for a mismatch or a missing sheath; empty otherwise.
    """

    rings_mm: tuple[float, ...]
    outer_radius_mm: float
    exclusion_radius_mm: float
    calibration: str
    noise_floor_db: float
    scale_source: str
    carried: bool = False
    reason: str = ""

    def to_record(self) -> dict:
        """The ``record["sheath"]`` object (JSON-ready, rounded to um / 0.1 dB)."""
        return {
            "outer_radius_mm": None
            if math.isnan(self.outer_radius_mm)
            else round(self.outer_radius_mm, 3),
            "rings_mm": [round(r, 3) for r in self.rings_mm],
            "calibration": self.calibration,
            "noise_floor_db": round(self.noise_floor_db, 1),
            "scale_source": self.scale_source,
            "carried": self.carried,
            "reason": self.reason,
        }


def _scale(pixels: np.ndarray, geometry: FrameGeometry) -> IntensityScale:
    """The pullback's intensity scale, or the assumed LOG range of the stored dtype."""
    scale = geometry.intensity_scale
    if scale is None:
        full = float(np.iinfo(pixels.dtype).max) if pixels.dtype.kind in "ui" else 1.0
        scale = IntensityScale.log_range(ASSUMED_LOG_RANGE_DB, full, source="assumed")
    return scale


def frame_db(
    pixels: np.ndarray, geometry: FrameGeometry
) -> tuple[np.ndarray, IntensityScale]:
    """Valid rows of a stored frame in dB (float32), and the scale used (assumed if none)."""
    scale = _scale(pixels, geometry)
    valid = pixels[: geometry.n_valid_alines]
    if geometry.intensity == "LIN":
        level = scale.to_db(np.maximum(valid, 1), "LIN")
    else:
        level = scale.to_db(valid, "LOG")
    return level.astype(np.float32, copy=False), scale


def _running_max(level: np.ndarray, half_width: int) -> np.ndarray:
    out = level.copy()
    for k in range(1, half_width + 1):
        np.maximum(out[:, k:], level[:, :-k], out=out[:, k:])
        np.maximum(out[:, :-k], level[:, k:], out=out[:, :-k])
    return out


@dataclass
class SheathDetector:
    """Finds the sheath on each frame; keeps the last found sheath for frames without one."""

    config: SheathConfig = field(default_factory=SheathConfig)
    _previous: SheathResult | None = None

    def reset(self) -> None:
        """Forget the previous frame (a new pullback)."""
        self._previous = None

    def detect(
        self, pixels: np.ndarray, geometry: FrameGeometry, z_offset_px: float = 0.0
    ) -> SheathResult:
        """The sheath of one stored polar frame (``(n_alines, n_samples)``)."""
        cfg = self.config
        scale = _scale(pixels, geometry)
        valid = pixels[: geometry.n_valid_alines]
        kind = "LIN" if geometry.intensity == "LIN" else "LOG"

        def to_db(stored: np.ndarray) -> np.ndarray:
            # The scale is monotonic, so percentiles are taken on stored values (cheap) and only
            # the 1-D results are mapped to dB.
            return scale.to_db(np.maximum(stored, 1) if kind == "LIN" else stored, kind)

        # The floor from a strided subsample: an order statistic of ~1/8 of the samples.
        sub = valid[::4, ::2].ravel()
        kf = int(round(cfg.floor_percentile / 100.0 * (sub.size - 1)))
        floor = float(to_db(np.partition(sub, kf)[kf]))
        step = geometry.sample_spacing_mm
        last = int(np.clip(np.floor(geometry.column(cfg.max_radius_mm, z_offset_px)), 0,
                           geometry.n_samples - 1))
        # Columns x A-lines, contiguous, so that order statistics over A-lines are row-wise.
        window = np.ascontiguousarray(valid[:, : last + 1 + cfg.wobble_samples].T)
        n_lines = window.shape[1]
        kq = int(round((1.0 - cfg.consistency) * (n_lines - 1)))
        km = (n_lines - 1) // 2
        peaks = _running_max(window.T, cfg.wobble_samples).T
        profile = to_db(np.partition(np.ascontiguousarray(peaks), kq, axis=1)[: last + 1, kq])
        median = to_db(np.partition(window[: last + 1], km, axis=1)[:, km])
        rings = self._rings(profile, median, floor)
        if rings:
            levels = [float(median[int(round(c))]) for c, _ in rings]
            strongest = max(levels)
            rings = [ring for ring, level in zip(rings, levels) if level >= strongest - cfg.ghost_db]
        expected = cfg.catheter_outer_diameter_mm / 2.0
        if not rings:
            return self._not_found(floor, scale.source, expected)
        radii = [float(geometry.radius_mm(c, z_offset_px)) for c, _ in rings]
        outer_col, outer_half = rings[-1]
        outer = float(geometry.radius_mm(outer_col + outer_half, z_offset_px))
        if abs(outer - expected) <= cfg.calibration_tolerance_mm:
            calibration, reason = "ok", ""
        else:
            calibration = "mismatch"
            reason = (
                f"sheath outer radius {outer:.3f} mm vs {expected:.3f} mm "
                f"({cfg.source}) beyond {cfg.calibration_tolerance_mm} mm: z offset suspect"
            )
        result = SheathResult(
            rings_mm=tuple(radii),
            outer_radius_mm=outer,
            exclusion_radius_mm=outer + cfg.margin_mm + step,
            calibration=calibration,
            noise_floor_db=floor,
            scale_source=scale.source,
            reason=reason,
        )
        self._previous = result
        return result

    def _rings(
        self, profile: np.ndarray, median: np.ndarray, floor: float
    ) -> list[tuple[float, float]]:
        """(sub-sample column, half-width in samples) of each ring, innermost first."""
        cfg = self.config
        bright = profile >= floor + cfg.ring_threshold_db
        found: list[tuple[float, float]] = []
        j, n = 0, profile.size
        while j < n:
            if not bright[j]:
                j += 1
                continue
            # One bright run; split it at dips of min_dip_db between local maxima.
            end = j
            while end + 1 < n and bright[end + 1]:
                end += 1
            self._split_run(median, profile, j, end, found)
            j = end + 1
        return found

    def _split_run(
        self, median: np.ndarray, profile: np.ndarray, start: int, end: int,
        found: list[tuple[float, float]],
    ) -> None:
        dip = self.config.min_dip_db
        segment = median[start : end + 1]
        peaks: list[int] = []
        low = np.inf
        for k in range(segment.size):
            v = segment[k]
            if not peaks:
                peaks.append(k)
                low = v
                continue
            top = segment[peaks[-1]]
            low = min(low, v)
            if v > top and top - low < dip:
                peaks[-1] = k  # still the same ring, rising
                low = v
            elif v - low >= dip and top - low >= dip:
                peaks.append(k)  # a new ring after a real dip
                low = v
            elif v > top:
                peaks[-1] = k
                low = v
        for k in peaks:
            c = start + k
            # Sub-sample centre (parabola on the median) and the half-maximum half-width.
            if 0 < c < median.size - 1:
                a, b, d = median[c - 1], median[c], median[c + 1]
                denom = a - 2 * b + d
                shift = 0.5 * (a - d) / denom if denom < 0 else 0.0
            else:
                shift = 0.0
            half_level = median[c] - 3.0
            right = c
            while right + 1 <= end and median[right + 1] > half_level:
                right += 1
            found.append((c + float(np.clip(shift, -0.5, 0.5)), float(right - c) + 0.5))

    def _not_found(self, floor: float, scale_source: str, expected: float) -> SheathResult:
        prev = self._previous
        if prev is not None:
            return SheathResult(
                prev.rings_mm, prev.outer_radius_mm, prev.exclusion_radius_mm, prev.calibration,
                floor, scale_source, carried=True,
                reason="no sheath ring on this frame; previous frame's sheath used",
            )
        return SheathResult(
            (), math.nan, expected + self.config.margin_mm, "not_found", floor, scale_source,
            reason=f"no sheath ring found; the configured catheter radius {expected:.3f} mm is used",
        )


__all__ = ["SheathConfig", "SheathDetector", "SheathResult", "frame_db"]
