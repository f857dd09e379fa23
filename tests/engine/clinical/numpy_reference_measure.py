"""engine.clinical.measure before the Numba kernels (issue 17 item 3), on the frozen NumPy
contours (numpy_reference.py): the reference bench/bench_cpu_reference.py times against.

Per-frame measurements in physical units: the ``frames.jsonl`` record of docs/results.md.

Pure functions shared by the engine (on segmentation output) and by the phantom's ground truth
(on the geometric model's label map), so both follow one definition (DOMAIN.md section 4: arcs
about the lumen centroid, thickness along rays from it). Geometry is always passed in: a polar
map's row angles and column radii (mm from the catheter centre), never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.engine.clinical import numpy_reference as contours
from engine.config import GuidanceConfig

PLAQUE_TYPES = ("calcium", "lipid", "fibrous")  #: a ray's type: first of these it meets
MIN_PLAQUE_ARC_DEG = 1.0  #: runs of rays narrower than this are not reported as a plaque
CAP_SMOOTH_RAYS = 9  #: running-median window for cap thickness (4.5 degrees at 720 rays)


@dataclass(frozen=True)
class PolarGrid:
    """Where the rows and columns of a polar map lie.

    Attributes
    ----------
    angles_rad : numpy.ndarray
        ``(R,)`` equally spaced row angles, radians (row ``i`` at ``2*pi*i/R``).
    column_radius_mm : numpy.ndarray
        ``(C,)`` equally spaced column radii, mm from the catheter centre.
    """

    angles_rad: np.ndarray
    column_radius_mm: np.ndarray


@dataclass(frozen=True)
class LumenMeasurement:
    """Lumen of one frame.

    Attributes
    ----------
    area_mm2 : float
    min_diameter_mm, max_diameter_mm, mean_diameter_mm : float
        Chords through the area centroid (:func:`engine.clinical.contours.diameters_through_centroid`).
    centroid_xy : tuple of float
        Area centroid in the catheter-centred plane, mm.
    contour_xy : tuple of numpy.ndarray
        Contour vertices (undetermined rows interpolated), mm.
    """

    area_mm2: float
    min_diameter_mm: float
    max_diameter_mm: float
    mean_diameter_mm: float
    centroid_xy: tuple[float, float]
    contour_xy: tuple[np.ndarray, np.ndarray]


def measure_lumen(radius_mm: np.ndarray, angles_rad: np.ndarray) -> LumenMeasurement:
    """Lumen area, diameters and centroid from per-A-line radii (NaN rows interpolated).

    Parameters
    ----------
    radius_mm : numpy.ndarray
        ``(A,)`` lumen radius along each valid stored A-line, mm; NaN where undetermined.
    angles_rad : numpy.ndarray
        ``(A,)`` row angles, radians.

    Examples
    --------
    >>> angles = 2 * np.pi * np.arange(360) / 360
    >>> m = measure_lumen(np.full(360, 1.5), angles)
    >>> round(m.area_mm2, 2), round(m.mean_diameter_mm, 3)
    (7.07, 3.0)
    """
    filled = contours.fill_undetermined(radius_mm)
    x, y = contours.polar_to_xy(filled, angles_rad)
    d = contours.diameters_through_centroid(filled, angles_rad)
    return LumenMeasurement(
        area_mm2=contours.polygon_area_mm2(x, y),
        min_diameter_mm=d.min_mm,
        max_diameter_mm=d.max_mm,
        mean_diameter_mm=d.mean_mm,
        centroid_xy=contours.polygon_centroid(x, y),
        contour_xy=(x, y),
    )


def arc_about_point_deg(x: np.ndarray, y: np.ndarray, flags: np.ndarray, cx: float, cy: float) -> float:
    """Arc subtended about ``(cx, cy)`` by the flagged vertices of a closed contour, degrees.

    Each vertex owns half the angle to each neighbour as seen from the centre, so the arcs of
    all vertices add up to 360 degrees for a contour that winds once around the centre.

    >>> t = 2 * np.pi * np.arange(8) / 8
    >>> arc_about_point_deg(np.cos(t), np.sin(t), np.arange(8) < 4, 0.0, 0.0)
    180.0
    """
    angle = np.arctan2(y - cy, x - cx)
    to_next = (np.roll(angle, -1) - angle + np.pi) % (2 * np.pi) - np.pi
    to_prev = (angle - np.roll(angle, 1) + np.pi) % (2 * np.pi) - np.pi
    span = 0.5 * (np.abs(to_next) + np.abs(to_prev))
    return float(np.degrees(np.sum(span[np.asarray(flags, dtype=bool)])))


def measure_plaque(
    masks: dict[str, np.ndarray],
    grid: PolarGrid,
    lumen: LumenMeasurement,
    n_stored_alines: int,
    cfg: GuidanceConfig,
    n_rays: int = 720,
    step_mm: float = 0.005,
    wall_mask: np.ndarray | None = None,
) -> dict:
    """Plaque arcs, thicknesses and caps about the lumen centroid.

    Parameters
    ----------
    masks : dict of str to numpy.ndarray
        ``"calcium"``, ``"lipid"``, ``"fibrous"``: ``(R, C)`` bool masks on ``grid`` (a lipid
        plaque's fibrous cap belongs to ``"fibrous"``).
    grid : PolarGrid
        Row angles and column radii of the masks.
    lumen : LumenMeasurement
        The frame's lumen (centroid and contour).
    n_stored_alines : int
        Valid stored A-lines: plaque extents are reported as stored rows.
    cfg : GuidanceConfig
        TCFA thresholds and ``plaque_min_thickness_mm`` (thinner runs on a ray are not plaque).
    n_rays, step_mm : int, float
        Rays about the centroid and sampling step along them.
    wall_mask : numpy.ndarray, optional
        ``(R, C)`` bool, everything that is not lumen, on ``grid``. When given, a fibrous cap is
        measured from where each ray enters this mask, on the same grid as the lipid, rather than
        from the lumen contour: a 50 um cap is a few pixels, and the two grids' quantisation
        would otherwise dominate it.

    Returns
    -------
    dict
        ``plaque`` (list of {type, alines, arc_deg, max_thickness_mm, min_cap_thickness_mm}),
        ``plaque_free_arc_deg``, ``calcium`` {arc_deg, max_thickness_mm}, ``lipid`` {arc_deg,
        min_cap_thickness_mm, tcfa}. A ray's type is the first of calcium, lipid, fibrous it meets
        at least ``cfg.plaque_min_thickness_mm`` thick.
    """
    cx, cy = lumen.centroid_xy
    profiles = {
        name: contours.ray_profiles(
            masks[name], grid.column_radius_mm, grid.angles_rad, (cx, cy), n_rays=n_rays,
            step_mm=step_mm, lumen_xy=lumen.contour_xy,
        )
        for name in PLAQUE_TYPES
    }
    if wall_mask is not None and profiles["lipid"].hit.any():
        surface = contours.ray_profiles(
            wall_mask, grid.column_radius_mm, grid.angles_rad, (cx, cy), n_rays=n_rays, step_mm=step_mm
        ).first_distance_mm
        cap_mm = np.maximum(profiles["lipid"].first_distance_mm - surface, 0.0)
    else:
        cap_mm = profiles["lipid"].depth_below_lumen_mm()
    # Where the lumen wall slopes, a row-quantised map puts staircase notches of about
    # slope x row pitch (~15 um) into a cap; a running median over CAP_SMOOTH_RAYS rays removes
    # them before the minimum is taken.
    cap_mm = _circular_running_median(cap_mm, CAP_SMOOTH_RAYS)
    ray_type = np.full(n_rays, "", dtype=object)
    for name in reversed(PLAQUE_TYPES):
        p = profiles[name]
        ray_type[p.hit & (p.thickness_mm >= cfg.plaque_min_thickness_mm)] = name
    plaques = []
    for name in PLAQUE_TYPES:
        p = profiles[name]
        for first, last in contours.circular_runs(ray_type == name):
            rays = (np.arange((last - first) % n_rays + 1) + first) % n_rays
            arc = 360.0 * rays.size / n_rays
            if arc < MIN_PLAQUE_ARC_DEG:
                continue
            ends = []
            for k in (first, last):
                px = cx + p.lumen_distance_mm[k] * np.cos(p.angles_rad[k])
                py = cy + p.lumen_distance_mm[k] * np.sin(p.angles_rad[k])
                row = np.round(np.arctan2(py, px) % (2 * np.pi) / (2 * np.pi) * n_stored_alines)
                ends.append(int(row) % n_stored_alines)
            cap = float(np.nanmin(cap_mm[rays])) if name == "lipid" else None
            plaques.append(
                {
                    "type": name,
                    "alines": ends,
                    "arc_deg": round(arc, 2),
                    "max_thickness_mm": round_or_none(float(np.nanmax(p.thickness_mm[rays]))),
                    "min_cap_thickness_mm": round_or_none(cap),
                }
            )
    calcium_rays = ray_type == "calcium"
    lipid_rays = ray_type == "lipid"
    calcium_arc = 360.0 * calcium_rays.mean()
    lipid_arc = 360.0 * lipid_rays.mean()
    min_cap = float(np.nanmin(cap_mm[lipid_rays])) if lipid_rays.any() else None
    return {
        "plaque": plaques,
        "plaque_free_arc_deg": round(360.0 * float(np.mean(ray_type == "")), 2),
        "calcium": {
            "arc_deg": round(calcium_arc, 2),
            "max_thickness_mm": round(float(np.nanmax(profiles["calcium"].thickness_mm[calcium_rays])), 4)
            if calcium_rays.any()
            else 0.0,
        },
        "lipid": {
            "arc_deg": round(lipid_arc, 2),
            "min_cap_thickness_mm": round_or_none(min_cap),
            "tcfa": tcfa(min_cap, lipid_arc, cfg),
        },
    }


def tcfa(min_cap_thickness_mm: float | None, lipid_arc_deg: float, cfg: GuidanceConfig) -> bool:
    """Thin-cap fibroatheroma flag (cap < cfg.tcfa_cap_thickness_um, arc >= cfg.tcfa_lipid_arc_deg)."""
    return bool(
        min_cap_thickness_mm is not None
        and min_cap_thickness_mm * 1000.0 < cfg.tcfa_cap_thickness_um
        and lipid_arc_deg >= cfg.tcfa_lipid_arc_deg
    )


def measure_struts(
    strut_rows: np.ndarray,
    strut_radius_mm: np.ndarray,
    lumen_radius_mm: np.ndarray,
    angles_rad: np.ndarray,
    cfg: GuidanceConfig,
) -> tuple[list[dict], dict | None]:
    """Strut apposition and the stent contour through the struts.

    Parameters
    ----------
    strut_rows : numpy.ndarray
        ``(n,)`` stored row of each strut's reflection centre.
    strut_radius_mm : numpy.ndarray
        ``(n,)`` radius of each reflection centre, mm.
    lumen_radius_mm : numpy.ndarray
        ``(A,)`` lumen radius per row, mm, NaN where undetermined (behind struts it is
        interpolated from the neighbouring rows).
    angles_rad : numpy.ndarray
        ``(A,)`` row angles.
    cfg : GuidanceConfig
        ``malapposition_threshold_um``.

    Returns
    -------
    struts : list of dict
        {aline, radius_mm, distance_to_lumen_um, malapposed}, in row order.
    stent : dict or None
        {area_mm2, min_diameter_mm} of the contour through the struts (None with fewer than 3
        struts). The contour interpolates the struts' radii about their centroid, so a round
        stent measures round however few struts it shows (chords would under-read ~6% at 10).
    """
    rows = np.asarray(strut_rows, dtype=int)
    radius = np.asarray(strut_radius_mm, dtype=np.float64)
    order = np.argsort(rows)
    rows, radius = rows[order], radius[order]
    lumen = contours.fill_undetermined(lumen_radius_mm)
    distance_um = (lumen[rows] - radius) * 1000.0
    struts = [
        {
            "aline": int(r),
            "radius_mm": round(float(rad), 4),
            "distance_to_lumen_um": round(float(d), 1),
            "malapposed": bool(d > cfg.malapposition_threshold_um),
        }
        for r, rad, d in zip(rows, radius, distance_um)
    ]
    if rows.size < 3:
        return struts, None
    x, y = contours.polar_to_xy(radius, angles_rad[rows])
    cx, cy = float(x.mean()), float(y.mean())
    phi = np.arctan2(y - cy, x - cx)
    rho = np.hypot(x - cx, y - cy)
    fine = 2 * np.pi * np.arange(360) / 360
    rho_fine = np.interp(fine, phi, rho, period=2 * np.pi)
    fx, fy = cx + rho_fine * np.cos(fine), cy + rho_fine * np.sin(fine)
    diameters = contours.diameters_through_centroid(np.hypot(fx, fy), np.arctan2(fy, fx) % (2 * np.pi))
    return struts, {
        "area_mm2": round(contours.polygon_area_mm2(fx, fy), 4),
        "min_diameter_mm": round(diameters.min_mm, 4),
    }


def _circular_running_median(values: np.ndarray, width: int) -> np.ndarray:
    """Running median over ``width`` neighbours with wrap-around, ignoring NaN (all-NaN -> NaN)."""
    half = width // 2
    windows = np.stack([np.roll(values, shift) for shift in range(-half, half + 1)])
    with np.errstate(all="ignore"):
        finite = np.isfinite(windows).any(axis=0)
        out = np.full(values.shape, np.nan)
        out[finite] = np.nanmedian(windows[:, finite], axis=0)
    return np.where(np.isfinite(values), out, np.nan)


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded for a JSON record, None when unknown (None or not finite)."""
    return None if value is None or not np.isfinite(value) else round(float(value), digits)
