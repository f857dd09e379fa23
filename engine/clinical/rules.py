"""Clinical rules of OCT-guided PCI as pure functions on per-frame arrays.

Pre-PCI planning follows MLD MAX (ILUMIEN III; DOMAIN.md section 4): lesion, references, stent
diameter and length, calcium score, thin-cap fibroatheroma. Post-PCI: expansion and apposition
(DOMAIN.md section 5). ``docs/guidance_rules.md`` states every rule, its source and the
definitions chosen where the sources are silent.

Conventions
-----------
* Per-frame inputs are 1-D arrays over the frames of one pullback, NaN where unknown. Frame 0 is
  the most **distal**; a higher index is more **proximal**. ``positions_mm`` is each frame's
  longitudinal position, strictly increasing (cumulative Intravascular Longitudinal Distance).
* Each frame stands for the slab from half-way to its previous frame to half-way to its next one
  (the end frames: half their one gap on both sides), so a run of frames spans
  ``positions[last] - positions[first]`` plus one frame pitch when the pitch is uniform
  (:func:`frames_extent_mm`). Longitudinal lengths of findings (calcium, malapposition) use it.
* "Greater than" thresholds are strict, "at least" ones inclusive, as the sources word them; a
  1e-9 tolerance in the threshold's unit absorbs floating-point error so that a value equal to a
  threshold on paper (e.g. a length summed from frame pitches) compares as equal.
* Results are small frozen dataclasses; ``to_dict()`` gives JSON-ready values (NaN -> None).

This module imports only :mod:`engine.config` (no ``streams``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from engine.config import GuidanceConfig

__all__ = [
    "Apposition",
    "CalciumScore",
    "Expansion",
    "Lesion",
    "References",
    "Sizing",
    "apposition_summary",
    "calcium_length_mm",
    "calcium_score",
    "expansion",
    "find_lesion",
    "find_mla",
    "find_references",
    "frames_extent_mm",
    "is_tcfa",
    "round_down_to_step",
    "round_up_to_step",
    "stent_sizing",
]

# Tolerance of threshold comparisons, in the threshold's own unit (deg, mm, %, um, mm2).
_TOLERANCE = 1e-9
# Tolerance of rounding to a step, mm: values within it of a multiple count as that multiple.
_ROUNDING_TOLERANCE_MM = 1e-6


def _greater(value: Any, threshold: float) -> Any:
    return value > threshold + _TOLERANCE


def _at_least(value: Any, threshold: float) -> Any:
    return value >= threshold - _TOLERANCE


def _plain(value: Any) -> Any:
    if isinstance(value, _Result):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Result:
    """``to_dict()`` for the frozen result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Field name -> JSON-ready value (numpy scalars as Python numbers, NaN as None)."""
        items = fields(self)  # type: ignore[arg-type]
        return {f.name: _plain(getattr(self, f.name)) for f in items}


def _config(cfg: GuidanceConfig | None) -> GuidanceConfig:
    if cfg is None:
        return GuidanceConfig()
    if not isinstance(cfg, GuidanceConfig):
        raise TypeError(f"cfg must be a GuidanceConfig, got {type(cfg).__name__}")
    return cfg


def _per_frame(name: str, values: object, n_frames: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D per-frame array, got shape {array.shape}")
    if n_frames is not None and array.size != n_frames:
        raise ValueError(f"{name} has {array.size} frames, expected {n_frames}")
    return array


def _flags(name: str, values: object, n_frames: int, unknown: bool) -> np.ndarray:
    """Per-frame booleans; a float input's NaN (unknown) becomes ``unknown``."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size != n_frames:
        raise ValueError(f"{name} must be 1-D with {n_frames} frames, got shape {array.shape}")
    if array.dtype.kind == "f":
        return np.where(np.isnan(array), unknown, array != 0.0)
    return array.astype(bool)


def _positions(values: object, n_frames: int | None = None) -> np.ndarray:
    positions = _per_frame("positions_mm", values, n_frames)
    if not np.all(np.isfinite(positions)):
        raise ValueError("positions_mm must be finite")
    if np.any(np.diff(positions) <= 0.0):
        raise ValueError("positions_mm must be strictly increasing (frame 0 most distal)")
    return positions


def _step(step: float) -> float:
    if isinstance(step, bool) or not (np.isfinite(step) and step > 0.0):
        raise ValueError(f"step must be a positive number, got {step!r}")
    return float(step)


def _rounded(x: object, step: float, round_fn: Any, nudge: float) -> Any:
    values = np.asarray(x, dtype=np.float64)
    result = np.round(round_fn(values / step + nudge / step) * step, 10)
    return float(result) if result.ndim == 0 else result


def round_down_to_step(x: object, step: float) -> Any:
    """Round down to a multiple of ``step``; a value within 1e-6 mm of a multiple is that multiple.

    Parameters
    ----------
    x : float or array_like
        Value(s), mm.
    step : float
        Positive step, mm (0.25 for stent diameters).

    Returns
    -------
    float or ndarray
        Rounded value(s), mm; NaN stays NaN.

    Examples
    --------
    >>> [round_down_to_step(x, 0.25) for x in (3.2, 3.0, 2.9999999)]
    [3.0, 3.0, 3.0]
    """
    return _rounded(x, _step(step), np.floor, _ROUNDING_TOLERANCE_MM)


def round_up_to_step(x: object, step: float) -> Any:
    """Round up to the next multiple of ``step`` ("round up 0-0.25 mm"); an exact multiple, or a
    value within 1e-6 mm of one, stays.

    Parameters
    ----------
    x : float or array_like
        Value(s), mm.
    step : float
        Positive step, mm.

    Returns
    -------
    float or ndarray
        Rounded value(s), mm; NaN stays NaN.

    Examples
    --------
    >>> round_up_to_step(3.0, 0.25), round_up_to_step(3.0000001, 0.25), round_up_to_step(3.01, 0.25)
    (3.0, 3.0, 3.25)
    """
    return _rounded(x, _step(step), np.ceil, -_ROUNDING_TOLERANCE_MM)


def _frame_bounds(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitudinal slab [lower, upper] each frame stands for, mm."""
    gaps = np.diff(positions)
    if gaps.size == 0:
        return positions.copy(), positions.copy()
    before = np.concatenate(([gaps[0]], gaps))
    after = np.concatenate((gaps, [gaps[-1]]))
    return positions - 0.5 * before, positions + 0.5 * after


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) inclusive runs of True in a linear boolean array."""
    step = np.diff(flags.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(step == 1)
    ends = np.flatnonzero(step == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def frames_extent_mm(positions_mm: object, first: int, last: int) -> float:
    """Longitudinal extent of the frames ``first..last`` (inclusive), mm.

    Each frame stands for the slab between the midpoints to its neighbours (an end frame: half its
    one gap on its open side too), so with a uniform pitch ``p`` the extent is
    ``positions[last] - positions[first] + p``; one frame is one pitch long.

    Examples
    --------
    >>> frames_extent_mm([0.0, 0.2, 0.4, 0.6], 1, 2)
    0.4
    """
    positions = _positions(positions_mm)
    if not 0 <= first <= last < positions.size:
        raise ValueError(f"frames {first}..{last} are not a run within 0..{positions.size - 1}")
    lower, upper = _frame_bounds(positions)
    return round(float(upper[last] - lower[first]), 12)


@dataclass(frozen=True)
class CalciumScore(_Result):
    """OCT calcium score (Fujino, EuroIntervention 2018), 0-4; 4 predicts underexpansion.

    Attributes
    ----------
    score : int
        ``arc_points + thickness_points + length_points``.
    arc_points, thickness_points, length_points : int
        2 if max arc > threshold (180 deg); 1 if max thickness > 0.5 mm; 1 if length > 5 mm.
    max_arc_deg, max_thickness_mm, length_mm : float
        The inputs (deg, mm, mm).
    """

    score: int
    arc_points: int
    thickness_points: int
    length_points: int
    max_arc_deg: float
    max_thickness_mm: float
    length_mm: float


def calcium_score(
    max_arc_deg: float,
    max_thickness_mm: float,
    length_mm: float,
    cfg: GuidanceConfig | None = None,
) -> CalciumScore:
    """Fujino OCT calcium score of one lesion.

    Parameters
    ----------
    max_arc_deg : float
        Largest per-frame calcium arc over the lesion, degrees (0 when there is no calcium).
    max_thickness_mm : float
        Largest calcium thickness, mm.
    length_mm : float
        Calcium length, mm (:func:`calcium_length_mm`).
    cfg : GuidanceConfig, optional
        Thresholds (``calcium_arc_deg``, ``calcium_thickness_mm``, ``calcium_length_mm``).

    Returns
    -------
    CalciumScore

    Raises
    ------
    ValueError
        If an input is negative or not finite (pass 0 for "no calcium", not NaN).

    Examples
    --------
    >>> calcium_score(200.0, 0.5, 6.0).score  # 2 (arc) + 0 (0.5 is not > 0.5) + 1 (length)
    3
    """
    cfg = _config(cfg)
    values = {
        "max_arc_deg": max_arc_deg,
        "max_thickness_mm": max_thickness_mm,
        "length_mm": length_mm,
    }
    for name, value in values.items():
        if not (np.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    arc = 2 if _greater(max_arc_deg, cfg.calcium_arc_deg) else 0
    thickness = 1 if _greater(max_thickness_mm, cfg.calcium_thickness_mm) else 0
    length = 1 if _greater(length_mm, cfg.calcium_length_mm) else 0
    return CalciumScore(
        arc + thickness + length, arc, thickness, length,
        float(max_arc_deg), float(max_thickness_mm), float(length_mm),
    )  # fmt: skip


def calcium_length_mm(calcium_present_per_frame: object, positions_mm: object) -> float:
    """Length of the longest contiguous run of frames with calcium, mm.

    Parameters
    ----------
    calcium_present_per_frame : array_like of bool, shape (F,)
        Calcium seen on the frame (NaN in a float array counts as absent).
    positions_mm : array_like, shape (F,)
        Frame positions, mm, strictly increasing.

    Returns
    -------
    float
        Extent of the longest run (:func:`frames_extent_mm`: span plus one frame pitch), mm; 0
        without calcium.

    Examples
    --------
    >>> calcium_length_mm([0, 1, 1, 1, 0, 1], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    0.6
    """
    positions = _positions(positions_mm)
    present = _flags("calcium_present_per_frame", calcium_present_per_frame, positions.size, False)
    lower, upper = _frame_bounds(positions)
    lengths = [float(upper[b] - lower[a]) for a, b in _runs(present)]
    return round(max(lengths, default=0.0), 12)


def find_mla(lumen_area_mm2: object) -> int:
    """Frame of the minimum lumen area (MLA), ignoring NaN; ties go to the most distal frame.

    Examples
    --------
    >>> find_mla([5.0, np.nan, 2.0, 3.0, 2.0])
    2
    """
    area = _per_frame("lumen_area_mm2", lumen_area_mm2)
    if not np.any(np.isfinite(area)):
        raise ValueError("lumen_area_mm2 has no known frame: no minimum lumen area")
    return int(np.nanargmin(area))


@dataclass(frozen=True)
class Lesion(_Result):
    """The lesion to stent: contiguous abnormal frames around the MLA (frame indices).

    Attributes
    ----------
    distal_edge_frame : int
        Most distal frame of the lesion (lowest index).
    proximal_edge_frame : int
        Most proximal frame of the lesion (highest index).
    mla_frame : int
        Frame of the minimum lumen area.
    """

    distal_edge_frame: int
    proximal_edge_frame: int
    mla_frame: int


def _normal_frames(
    plaque_free_arc_deg: np.ndarray, lipid: np.ndarray, cfg: GuidanceConfig
) -> np.ndarray:
    """Frames fit to land a stent on: plaque-free arc at least the threshold and no lipid.
    Unknown (NaN) arcs and unknown lipid are not normal."""
    with np.errstate(invalid="ignore"):
        clear = _at_least(plaque_free_arc_deg, cfg.landing_plaque_free_arc_deg)
    return clear & ~lipid


def find_lesion(
    lumen_area_mm2: object,
    plaque_free_arc_deg: object,
    lipid_present: object,
    cfg: GuidanceConfig | None = None,
) -> Lesion | None:
    """The lesion: the contiguous run of abnormal frames that contains the MLA.

    A frame is normal when its plaque-free arc is at least ``cfg.landing_plaque_free_arc_deg``
    (220 deg: plaque burden < 40%) and it has no lipid (DOMAIN.md section 4, landing zones);
    otherwise, or when either is unknown, it is abnormal.

    Parameters
    ----------
    lumen_area_mm2 : array_like, shape (F,)
        Lumen area per frame, mm^2 (NaN unknown).
    plaque_free_arc_deg : array_like, shape (F,)
        Plaque-free arc per frame, degrees (NaN unknown).
    lipid_present : array_like of bool, shape (F,)
        Lipid seen on the frame (NaN in a float array: unknown).
    cfg : GuidanceConfig, optional

    Returns
    -------
    Lesion or None
        None when the MLA frame itself is normal: there is no lesion to stent.

    Examples
    --------
    >>> find_lesion([6, 5, 3, 2, 4, 6], [300, 200, 100, 90, 210, 250], [0, 0, 0, 1, 0, 0])
    Lesion(distal_edge_frame=1, proximal_edge_frame=4, mla_frame=3)
    """
    cfg = _config(cfg)
    area = _per_frame("lumen_area_mm2", lumen_area_mm2)
    arc = _per_frame("plaque_free_arc_deg", plaque_free_arc_deg, area.size)
    lipid = _flags("lipid_present", lipid_present, area.size, True)
    mla = find_mla(area)
    normal = _normal_frames(arc, lipid, cfg)
    if normal[mla]:
        return None
    normal_distal = np.flatnonzero(normal[:mla])
    normal_proximal = np.flatnonzero(normal[mla + 1 :])
    distal = int(normal_distal[-1]) + 1 if normal_distal.size else 0
    proximal = mla + int(normal_proximal[0]) if normal_proximal.size else area.size - 1
    return Lesion(distal, proximal, mla)


@dataclass(frozen=True)
class References(_Result):
    """Reference frames either side of a lesion or stent: largest lumen within a window.

    Attributes
    ----------
    distal_frame, proximal_frame : int or None
        Reference frame on each side; None when the side has no frame with a known area.
    distal_area_mm2, proximal_area_mm2 : float or None
        Lumen area at the reference, mm^2.
    """

    distal_frame: int | None
    proximal_frame: int | None
    distal_area_mm2: float | None
    proximal_area_mm2: float | None


def _edges(span: Lesion | Sequence[int], n_frames: int) -> tuple[int, int]:
    if isinstance(span, Lesion):
        distal, proximal = span.distal_edge_frame, span.proximal_edge_frame
    else:
        distal, proximal = (int(v) for v in span)
    if not 0 <= distal <= proximal < n_frames:
        raise ValueError(
            f"edges ({distal}, {proximal}) are not frames distal <= proximal in 0..{n_frames - 1}"
        )
    return distal, proximal


def _largest_in_window(
    area: np.ndarray, positions: np.ndarray, edge: int, window_mm: float, outward: int
) -> tuple[int | None, float | None]:
    """Frame of largest known area among frames strictly beyond ``edge`` in direction
    ``outward`` (-1 distal, +1 proximal) within ``window_mm`` of it; ties go to the nearer frame."""
    frames = np.arange(edge - 1, -1, -1) if outward < 0 else np.arange(edge + 1, area.size)
    distance = np.abs(positions[frames] - positions[edge])
    frames = frames[(distance <= window_mm + _TOLERANCE) & np.isfinite(area[frames])]
    if frames.size == 0:
        return None, None
    best = int(frames[np.argmax(area[frames])])
    return best, float(area[best])


def find_references(
    lumen_area_mm2: object,
    positions_mm: object,
    lesion: Lesion | Sequence[int],
    window_mm: float,
) -> References:
    """Reference frames: the largest lumen within ``window_mm`` outside each edge of a span.

    Parameters
    ----------
    lumen_area_mm2 : array_like, shape (F,)
        Lumen area per frame, mm^2 (NaN unknown, never chosen).
    positions_mm : array_like, shape (F,)
        Frame positions, mm, strictly increasing.
    lesion : Lesion or (distal_edge_frame, proximal_edge_frame)
        The span: a lesion (pre-PCI, window 10 mm) or the stented frames (post-PCI, 5 mm).
    window_mm : float
        How far beyond each edge to look, mm (inclusive).

    Returns
    -------
    References

    Examples
    --------
    >>> r = find_references([7, 8, 6, 3, 2, 4, 9, 5], np.arange(8) * 1.0, (3, 5), 2.0)
    >>> r.distal_frame, r.proximal_frame
    (1, 6)
    """
    area = _per_frame("lumen_area_mm2", lumen_area_mm2)
    positions = _positions(positions_mm, area.size)
    if not (np.isfinite(window_mm) and window_mm > 0.0):
        raise ValueError(f"window_mm must be positive, got {window_mm!r}")
    distal, proximal = _edges(lesion, area.size)
    distal_frame, distal_area = _largest_in_window(area, positions, distal, window_mm, -1)
    proximal_frame, proximal_area = _largest_in_window(area, positions, proximal, window_mm, +1)
    return References(distal_frame, proximal_frame, distal_area, proximal_area)


@dataclass(frozen=True)
class Sizing(_Result):
    """Stent diameter and length from MLD MAX.

    Attributes
    ----------
    basis : str
        "eel" (EEL visible > threshold at both references), "lumen" (distal reference lumen) or
        "undetermined" (no usable reference).
    diameter_mm : float or None
        Stent diameter, mm, rounded per the basis.
    length_mm : float
        Available stent length chosen, mm.
    proximal_landing_frame, distal_landing_frame : int
        Frames where the stent edges land.
    required_length_mm : float
        Distance between the landing frames, mm, before rounding to an available length.
    warnings : tuple of str
        Findings the operator must see (lipid at a landing zone, no normal landing zone, length
        beyond the longest stent, calcium score 4, no usable reference).
    """

    basis: str
    diameter_mm: float | None
    length_mm: float
    proximal_landing_frame: int
    distal_landing_frame: int
    required_length_mm: float
    warnings: tuple[str, ...]


def _landing_frame(normal: np.ndarray, edge: int, outward: int) -> int | None:
    """First normal frame beyond ``edge`` going ``outward``; None when the pullback ends first."""
    frames = np.arange(edge - 1, -1, -1) if outward < 0 else np.arange(edge + 1, normal.size)
    found = frames[normal[frames]]
    return int(found[0]) if found.size else None


def stent_sizing(
    lesion: Lesion | Sequence[int],
    references: References,
    *,
    mean_lumen_diameter_mm: object,
    mean_eel_diameter_mm: object,
    eel_visible_arc_deg: object,
    plaque_free_arc_deg: object,
    lipid_present: object,
    positions_mm: object,
    cfg: GuidanceConfig | None = None,
    calcium: CalciumScore | None = None,
) -> Sizing:
    """Stent diameter and length (MLD MAX "D" and "L"; ILUMIEN III, DOMAIN.md section 4).

    Diameter: when the EEL is visible over more than ``cfg.eel_visible_arc_deg`` at BOTH
    reference frames, the smaller of the two mean EEL diameters rounded DOWN to
    ``cfg.diameter_step_mm``; otherwise the mean lumen diameter at the distal reference rounded UP.
    Landing frames: the first frame beyond each lesion edge, searching outward, that is normal
    (plaque-free arc >= ``cfg.landing_plaque_free_arc_deg`` and no lipid); when the pullback ends
    first, the end frame, with a warning. Length: distance between the landing frames rounded up to
    the next of ``cfg.stent_lengths_mm`` (beyond the longest: the longest, with a warning).

    Parameters
    ----------
    lesion : Lesion or (distal_edge_frame, proximal_edge_frame)
    references : References
        Pre-PCI references (:func:`find_references` with ``cfg.reference_window_pre_mm``).
    mean_lumen_diameter_mm, mean_eel_diameter_mm : array_like, shape (F,)
        Mean diameters per frame, mm (NaN unknown).
    eel_visible_arc_deg, plaque_free_arc_deg : array_like, shape (F,)
        Arcs per frame, degrees (NaN unknown).
    lipid_present : array_like of bool, shape (F,)
    positions_mm : array_like, shape (F,)
        Frame positions, mm, strictly increasing.
    cfg : GuidanceConfig, optional
    calcium : CalciumScore, optional
        The lesion's calcium score; 4 adds the vessel-preparation warning.

    Returns
    -------
    Sizing

    Examples
    --------
    EEL visible at only one reference: lumen basis, 2.9 mm rounded up to 3.0 mm; landing frames
    1 and 6 are 5 mm apart, so an 8 mm stent.

    >>> f = 8
    >>> s = stent_sizing(
    ...     (2, 5), References(1, 6, 7.0, 8.0),
    ...     mean_lumen_diameter_mm=np.full(f, 2.9), mean_eel_diameter_mm=np.full(f, 3.6),
    ...     eel_visible_arc_deg=[0, 200, 0, 0, 0, 0, 90, 0], plaque_free_arc_deg=np.full(f, 300.0),
    ...     lipid_present=np.zeros(f, bool), positions_mm=np.arange(f) * 1.0)
    >>> s.basis, s.diameter_mm, s.length_mm, s.distal_landing_frame, s.proximal_landing_frame
    ('lumen', 3.0, 8.0, 1, 6)
    """
    cfg = _config(cfg)
    positions = _positions(positions_mm)
    n = positions.size
    lumen_d = _per_frame("mean_lumen_diameter_mm", mean_lumen_diameter_mm, n)
    eel_d = _per_frame("mean_eel_diameter_mm", mean_eel_diameter_mm, n)
    eel_arc = _per_frame("eel_visible_arc_deg", eel_visible_arc_deg, n)
    free_arc = _per_frame("plaque_free_arc_deg", plaque_free_arc_deg, n)
    lipid = _flags("lipid_present", lipid_present, n, True)
    distal_edge, proximal_edge = _edges(lesion, n)
    for frame in (references.distal_frame, references.proximal_frame):
        if frame is not None and not 0 <= frame < n:
            raise ValueError(f"reference frame {frame} is outside 0..{n - 1}")
    warnings: list[str] = []

    refs = (references.distal_frame, references.proximal_frame)
    with np.errstate(invalid="ignore"):
        eel_usable = all(
            f is not None
            and _greater(eel_arc[f], cfg.eel_visible_arc_deg)
            and np.isfinite(eel_d[f])
            for f in refs
        )
    basis: str
    diameter: float | None
    if eel_usable:
        basis = "eel"
        smaller_eel = min(float(eel_d[f]) for f in refs if f is not None)
        diameter = round_down_to_step(smaller_eel, cfg.diameter_step_mm)
    elif references.distal_frame is not None and np.isfinite(lumen_d[references.distal_frame]):
        basis = "lumen"
        diameter = round_up_to_step(lumen_d[references.distal_frame], cfg.diameter_step_mm)
    else:
        basis, diameter = "undetermined", None
        warnings.append("no distal reference with a known lumen diameter: diameter undetermined")

    normal = _normal_frames(free_arc, lipid, cfg)
    landings = {}
    for side, edge, outward, pullback_end in (
        ("distal", distal_edge, -1, 0),
        ("proximal", proximal_edge, +1, n - 1),
    ):
        frame = _landing_frame(normal, edge, outward)
        if frame is None:
            frame = pullback_end
            warnings.append(
                f"no normal {side} landing zone within the pullback: {side} edge placed at the "
                "pullback end, length is a lower bound"
            )
            if lipid[frame]:
                warnings.append(f"lipid at {side} landing zone")
        landings[side] = frame

    required = round(float(positions[landings["proximal"]] - positions[landings["distal"]]), 9)
    available = np.asarray(cfg.stent_lengths_mm)
    fitting = available[available >= required - _TOLERANCE]
    if fitting.size:
        length = float(fitting[0])
    else:
        length = float(available[-1])
        warnings.append(
            f"required length {required:.1f} mm exceeds the longest available stent "
            f"({length:g} mm): overlapping stents needed"
        )
    if calcium is not None and calcium.score >= 4:
        warnings.append("calcium score 4: vessel preparation advised")
    return Sizing(
        basis, diameter, length, landings["proximal"], landings["distal"], required, tuple(warnings)
    )


@dataclass(frozen=True)
class Expansion(_Result):
    """Stent expansion after PCI (ILUMIEN III per stent half; CLI-OPCI absolute MSA).

    Attributes
    ----------
    msa_mm2 : float or None
        Minimum stent area over the stented frames, mm^2.
    msa_frame : int or None
        Frame of the MSA.
    expansion_pct : float or None
        MSA / mean of the known reference lumen areas x 100, %.
    proximal_expansion_pct, distal_expansion_pct : float or None
        MSA of the proximal (distal) stent half / proximal (distal) reference area x 100, %.
    proximal_reference_frame, distal_reference_frame : int or None
        Largest lumen within ``cfg.reference_window_post_mm`` outside each stent edge.
    proximal_reference_area_mm2, distal_reference_area_mm2 : float or None
    classification : str
        "optimal", "acceptable", "suboptimal" or "undetermined".
    msa_below_threshold : bool
        MSA < ``cfg.msa_min_mm2`` (suboptimal whatever the relative expansion).
    warnings : tuple of str
    """

    msa_mm2: float | None
    msa_frame: int | None
    expansion_pct: float | None
    proximal_expansion_pct: float | None
    distal_expansion_pct: float | None
    proximal_reference_frame: int | None
    distal_reference_frame: int | None
    proximal_reference_area_mm2: float | None
    distal_reference_area_mm2: float | None
    classification: str
    msa_below_threshold: bool
    warnings: tuple[str, ...]


def _min_in(area: np.ndarray, frames: np.ndarray) -> tuple[int | None, float | None]:
    frames = frames[np.isfinite(area[frames])]
    if frames.size == 0:
        return None, None
    best = int(frames[np.argmin(area[frames])])
    return best, float(area[best])


def _percent(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or not denominator > 0.0:
        return None
    return 100.0 * numerator / denominator


def expansion(
    stent_area_mm2: object,
    lumen_area_mm2: object,
    positions_mm: object,
    stented_frames: object,
    cfg: GuidanceConfig | None = None,
) -> Expansion:
    """Stent expansion against the post-PCI references (DOMAIN.md section 5).

    The stent spans its most distal to its most proximal stented frame. References: the largest
    lumen within ``cfg.reference_window_post_mm`` outside each stent edge. Each half (split at the
    midpoint of the stent's length; the frame on the midpoint belongs to both) is compared with its
    nearer reference; the classification uses the worse half (both halves must reach the
    threshold), or the overall expansion when no half has a reference, and is "suboptimal"
    whenever MSA < ``cfg.msa_min_mm2``.

    Parameters
    ----------
    stent_area_mm2 : array_like, shape (F,)
        Stent area per frame, mm^2 (NaN where unknown or unstented).
    lumen_area_mm2 : array_like, shape (F,)
        Lumen area per frame, mm^2 (for the references).
    positions_mm : array_like, shape (F,)
        Frame positions, mm, strictly increasing.
    stented_frames : array_like of bool, shape (F,)
        Frames inside the stent.
    cfg : GuidanceConfig, optional

    Returns
    -------
    Expansion

    Examples
    --------
    >>> stent = [np.nan, np.nan, 7.0, 6.0, 7.2, 7.6, np.nan, np.nan]
    >>> lumen = [7.0, 8.0, 7.0, 6.0, 7.2, 7.6, 8.0, 7.5]
    >>> e = expansion(stent, lumen, np.arange(8) * 1.0, np.isfinite(stent))
    >>> round(e.expansion_pct, 1), round(e.distal_expansion_pct, 1), e.classification
    (75.0, 75.0, 'suboptimal')
    """
    cfg = _config(cfg)
    stent = _per_frame("stent_area_mm2", stent_area_mm2)
    lumen = _per_frame("lumen_area_mm2", lumen_area_mm2, stent.size)
    positions = _positions(positions_mm, stent.size)
    stented = _flags("stented_frames", stented_frames, stent.size, False)
    inside = np.flatnonzero(stented)
    if inside.size == 0:
        raise ValueError("stented_frames has no stented frame")
    distal_edge, proximal_edge = int(inside[0]), int(inside[-1])
    span = np.arange(distal_edge, proximal_edge + 1)
    refs = find_references(
        lumen, positions, (distal_edge, proximal_edge), cfg.reference_window_post_mm
    )
    warnings: list[str] = []
    for side, frame in (("distal", refs.distal_frame), ("proximal", refs.proximal_frame)):
        if frame is None:
            warnings.append(
                f"no {side} reference within {cfg.reference_window_post_mm:g} mm of the stent edge"
            )

    msa_frame, msa = _min_in(stent, span)
    middle = 0.5 * (positions[distal_edge] + positions[proximal_edge])
    _, distal_half_msa = _min_in(stent, span[positions[span] <= middle + _TOLERANCE])
    _, proximal_half_msa = _min_in(stent, span[positions[span] >= middle - _TOLERANCE])
    known_refs = [a for a in (refs.distal_area_mm2, refs.proximal_area_mm2) if a is not None]
    overall = _percent(msa, float(np.mean(known_refs)) if known_refs else None)
    distal_pct = _percent(distal_half_msa, refs.distal_area_mm2)
    proximal_pct = _percent(proximal_half_msa, refs.proximal_area_mm2)

    below = msa is not None and msa < cfg.msa_min_mm2 - _TOLERANCE
    judged = [p for p in (distal_pct, proximal_pct) if p is not None] or (
        [overall] if overall is not None else []
    )
    if msa is None:
        classification = "undetermined"
        warnings.append("no stented frame with a known stent area")
    elif below:
        classification = "suboptimal"
    elif not judged:
        classification = "undetermined"
    elif _at_least(min(judged), cfg.expansion_optimal_pct):
        classification = "optimal"
    elif _at_least(min(judged), cfg.expansion_acceptable_pct):
        classification = "acceptable"
    else:
        classification = "suboptimal"
    return Expansion(
        msa, msa_frame, overall, proximal_pct, distal_pct,
        refs.proximal_frame, refs.distal_frame, refs.proximal_area_mm2, refs.distal_area_mm2,
        classification, bool(below), tuple(warnings),
    )  # fmt: skip


@dataclass(frozen=True)
class Apposition(_Result):
    """Strut apposition summary (DOMAIN.md section 5).

    Attributes
    ----------
    struts_total : int
        Struts given.
    struts_measured : int
        Struts with a known distance.
    struts_malapposed : int
        Struts farther than ``cfg.malapposition_threshold_um`` from the lumen surface.
    max_malapposition_um : float or None
        Largest distance among malapposed struts, um; None without malapposition.
    malapposed_length_mm : float
        Longitudinal extent of the frames holding malapposed struts, summed over runs, mm.
    struts_relevant : int
        Struts farther than ``cfg.malapposition_relevant_um``.
    relevant_length_mm : float
        Longitudinal extent of the frames holding such struts, summed over runs, mm.
    clinically_relevant : bool
        Some run of relevant malapposition is longer than ``cfg.malapposition_relevant_length_mm``.
    """

    struts_total: int
    struts_measured: int
    struts_malapposed: int
    max_malapposition_um: float | None
    malapposed_length_mm: float
    struts_relevant: int
    relevant_length_mm: float
    clinically_relevant: bool


def apposition_summary(
    strut_frames: object,
    strut_distance_um: object,
    positions_mm: object,
    cfg: GuidanceConfig | None = None,
) -> Apposition:
    """Count malapposed struts and measure how long the malapposition runs.

    Parameters
    ----------
    strut_frames : array_like of int, shape (N,)
        Frame index of each strut.
    strut_distance_um : array_like, shape (N,)
        Axial distance from the strut's reflection centre to the lumen surface behind it, um (NaN
        where the lumen behind it is unknown: counted in the total, never malapposed).
    positions_mm : array_like, shape (F,)
        Frame positions, mm, strictly increasing.
    cfg : GuidanceConfig, optional

    Returns
    -------
    Apposition

    Examples
    --------
    >>> a = apposition_summary([0, 0, 1, 2, 4], [50, 150, 250, 90, 130], np.arange(5) * 0.2)
    >>> a.struts_malapposed, a.max_malapposition_um, round(a.malapposed_length_mm, 3)
    (3, 250.0, 0.6)
    """
    cfg = _config(cfg)
    positions = _positions(positions_mm)
    frames = np.asarray(strut_frames)
    distance = np.asarray(strut_distance_um, dtype=np.float64)
    if frames.ndim != 1 or distance.shape != frames.shape:
        raise ValueError(
            f"strut_frames and strut_distance_um must be 1-D of equal length, got {frames.shape} "
            f"and {distance.shape}"
        )
    if frames.size == 0:
        frames = frames.astype(np.int64)  # an empty list arrives as float64
    elif frames.dtype.kind not in "iu" or frames.min() < 0 or frames.max() >= positions.size:
        raise ValueError(f"strut_frames must be integer frame indices in 0..{positions.size - 1}")
    lower, upper = _frame_bounds(positions)

    def runs_over(threshold_um: float) -> tuple[np.ndarray, float, float]:
        with np.errstate(invalid="ignore"):
            flagged = _greater(distance, threshold_um)
        on_frame = np.zeros(positions.size, dtype=bool)
        on_frame[frames[flagged]] = True
        lengths = [float(upper[b] - lower[a]) for a, b in _runs(on_frame)]
        return flagged, round(sum(lengths), 12), max(lengths, default=0.0)

    malapposed, malapposed_length, _ = runs_over(cfg.malapposition_threshold_um)
    relevant, relevant_length, longest_relevant = runs_over(cfg.malapposition_relevant_um)
    return Apposition(
        struts_total=int(frames.size),
        struts_measured=int(np.count_nonzero(np.isfinite(distance))),
        struts_malapposed=int(np.count_nonzero(malapposed)),
        max_malapposition_um=float(distance[malapposed].max()) if malapposed.any() else None,
        malapposed_length_mm=malapposed_length,
        struts_relevant=int(np.count_nonzero(relevant)),
        relevant_length_mm=relevant_length,
        clinically_relevant=bool(_greater(longest_relevant, cfg.malapposition_relevant_length_mm)),
    )


def is_tcfa(
    min_cap_thickness_mm: object, lipid_arc_deg: object, cfg: GuidanceConfig | None = None
) -> Any:
    """Thin-cap fibroatheroma: minimum cap thickness < ``cfg.tcfa_cap_thickness_um`` and lipid
    arc >= ``cfg.tcfa_lipid_arc_deg`` (DOMAIN.md section 4). Unknown (NaN) inputs give False.

    Parameters
    ----------
    min_cap_thickness_mm : float or array_like
        Minimum fibrous-cap thickness over the lipid, mm (per frame or per plaque).
    lipid_arc_deg : float or array_like
        Lipid arc, degrees, same shape.
    cfg : GuidanceConfig, optional

    Returns
    -------
    bool or ndarray of bool

    Examples
    --------
    >>> is_tcfa(0.060, 120.0), is_tcfa(0.065, 120.0), is_tcfa(0.060, 80.0)
    (True, False, False)
    """
    cfg = _config(cfg)
    cap = np.asarray(min_cap_thickness_mm, dtype=np.float64)
    arc = np.asarray(lipid_arc_deg, dtype=np.float64)
    if cap.shape != arc.shape:
        raise ValueError(
            "min_cap_thickness_mm and lipid_arc_deg must have the same shape, "
            f"got {cap.shape} and {arc.shape}"
        )
    with np.errstate(invalid="ignore"):
        thin = cap * 1000.0 < cfg.tcfa_cap_thickness_um - _TOLERANCE
        wide = _at_least(arc, cfg.tcfa_lipid_arc_deg)
    result = thin & wide
    return bool(result) if result.ndim == 0 else result
