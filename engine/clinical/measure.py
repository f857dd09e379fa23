"""Per-frame measurements in physical units: the ``frames.jsonl`` record of docs/results.md.

Pure functions shared by the engine (on segmentation output) and by the phantom's ground truth
(on the geometric model's label map), so both follow one definition (DOMAIN.md section 4: arcs
about the lumen centroid, thickness along rays from it). Geometry is always passed in: a polar
map's row angles and column radii (mm from the catheter centre), never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.clinical import contours, kernels
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
    centroid = contours.polygon_centroid(x, y)
    d = contours.chord_diameters(x, y, centroid)
    return LumenMeasurement(
        area_mm2=contours.polygon_area_mm2(x, y),
        min_diameter_mm=d.min_mm,
        max_diameter_mm=d.max_mm,
        mean_diameter_mm=d.mean_mm,
        centroid_xy=centroid,
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

    Notes
    -----
    The masks are packed into one bit per type (and one for the wall) of a single map, so all
    are measured from one pass over it (:class:`engine.clinical.contours.LabelRays`); a caller
    holding a class map saves the packing with :func:`measure_plaque_labels`.
    """
    named = [masks[name] for name in PLAQUE_TYPES] + ([] if wall_mask is None else [wall_mask])
    named = [np.ascontiguousarray(mask, dtype=bool) for mask in named]  # one compiled layout
    shape = named[0].shape
    for mask in named:
        if mask.shape != shape or mask.ndim != 2:
            raise ValueError(f"plaque and wall masks must share one 2-D shape, got {mask.shape} and {shape}")
    bits = np.empty(shape, dtype=np.uint8)
    kernels.pack_masks(tuple(named), bits)
    return _plaque_from_map(bits, _BITS_LUT, wall_mask is not None, grid, lumen, n_stored_alines, cfg,
                            n_rays, step_mm)


def measure_plaque_labels(
    class_map: np.ndarray,
    plaque_labels: dict[str, int],
    lumen_labels: tuple[int, ...] | None,
    grid: PolarGrid,
    lumen: LumenMeasurement,
    n_stored_alines: int,
    cfg: GuidanceConfig,
    n_rays: int = 720,
    step_mm: float = 0.005,
) -> dict:
    """:func:`measure_plaque` straight from a class map, with no mask made per type.

    Parameters
    ----------
    class_map : numpy.ndarray
        ``(R, C)`` uint8 labels on ``grid``.
    plaque_labels : dict of str to int
        The label of ``"calcium"``, ``"lipid"`` and ``"fibrous"`` in ``class_map``.
    lumen_labels : tuple of int or None
        Labels that are not wall (lumen, catheter): the wall is every other label, as
        ``wall_mask`` of :func:`measure_plaque`. None: caps from the lumen contour.
    grid, lumen, n_stored_alines, cfg, n_rays, step_mm
        As in :func:`measure_plaque`, whose result this equals for the masks
        ``class_map == plaque_labels[name]`` and ``~isin(class_map, lumen_labels)``.
    """
    lut = np.zeros(256, dtype=np.uint8)
    for channel, name in enumerate(PLAQUE_TYPES):
        lut[int(plaque_labels[name])] |= np.uint8(1 << channel)
    if lumen_labels is not None:
        wall = np.ones(256, dtype=bool)
        wall[list(lumen_labels)] = False
        lut[wall] |= np.uint8(1 << _WALL_CHANNEL)
    labels = np.asarray(class_map)
    if labels.dtype != np.uint8:
        raise ValueError(f"class_map must be uint8, got {labels.dtype}")
    return _plaque_from_map(labels, lut, lumen_labels is not None, grid, lumen, n_stored_alines, cfg,
                            n_rays, step_mm)


_WALL_CHANNEL = len(PLAQUE_TYPES)  #: bit of the wall after one bit per plaque type
_BITS_LUT = np.arange(256, dtype=np.uint8)  #: a packed bit map is its own channel table


def _plaque_from_map(
    labels: np.ndarray,
    lut: np.ndarray,
    has_wall: bool,
    grid: PolarGrid,
    lumen: LumenMeasurement,
    n_stored_alines: int,
    cfg: GuidanceConfig,
    n_rays: int,
    step_mm: float,
) -> dict:
    """:func:`measure_plaque` on a map whose channel ``i`` is ``PLAQUE_TYPES[i]`` (and the wall
    after them when ``has_wall``)."""
    cx, cy = lumen.centroid_xy
    rays = contours.LabelRays(labels, lut, _WALL_CHANNEL + int(has_wall), grid.column_radius_mm,
                              grid.angles_rad, (cx, cy), n_rays=n_rays, step_mm=step_mm)
    # The lumen distance along the rays is the same for every type: computed once.
    lumen_distance = contours.radii_about_point(*lumen.contour_xy, cx, cy, n_rays)
    profiles = [rays.profiles(channel, lumen_distance_mm=lumen_distance) for channel in range(_WALL_CHANNEL)]
    lipid = profiles[PLAQUE_TYPES.index("lipid")]
    if has_wall and lipid.hit.any():
        # Only where a ray meets lipid is its wall entry needed, and only up to the entry.
        surface = rays.profiles(_WALL_CHANNEL, entry_only=True, rays=lipid.hit).first_distance_mm
        cap_mm = np.maximum(lipid.first_distance_mm - surface, 0.0)
    else:
        cap_mm = lipid.depth_below_lumen_mm()
    # Where the lumen wall slopes, a row-quantised map puts staircase notches of about
    # slope x row pitch (~15 um) into a cap; a running median over CAP_SMOOTH_RAYS rays removes
    # them before the minimum is taken.
    cap_mm = _circular_running_median(cap_mm, CAP_SMOOTH_RAYS)
    # ray_type: 1 + index into PLAQUE_TYPES of the ray's type, 0 for none.
    ray_type = np.zeros(n_rays, dtype=np.int8)
    for index in reversed(range(len(PLAQUE_TYPES))):
        p = profiles[index]
        ray_type[p.hit & (p.thickness_mm >= cfg.plaque_min_thickness_mm)] = index + 1
    plaques = []
    for index, name in enumerate(PLAQUE_TYPES):
        p = profiles[index]
        for first, last in contours.circular_runs(ray_type == index + 1):
            rays_in_run = (np.arange((last - first) % n_rays + 1) + first) % n_rays
            arc = 360.0 * rays_in_run.size / n_rays
            if arc < MIN_PLAQUE_ARC_DEG:
                continue
            ends = []
            for k in (first, last):
                px = cx + p.lumen_distance_mm[k] * np.cos(p.angles_rad[k])
                py = cy + p.lumen_distance_mm[k] * np.sin(p.angles_rad[k])
                row = np.round(np.arctan2(py, px) % (2 * np.pi) / (2 * np.pi) * n_stored_alines)
                ends.append(int(row) % n_stored_alines)
            cap = float(np.nanmin(cap_mm[rays_in_run])) if name == "lipid" else None
            plaques.append(
                {
                    "type": name,
                    "alines": ends,
                    "arc_deg": round(arc, 2),
                    "max_thickness_mm": round_or_none(float(np.nanmax(p.thickness_mm[rays_in_run]))),
                    "min_cap_thickness_mm": round_or_none(cap),
                }
            )
    calcium = PLAQUE_TYPES.index("calcium")
    calcium_rays = ray_type == calcium + 1
    lipid_rays = ray_type == PLAQUE_TYPES.index("lipid") + 1
    calcium_arc = 360.0 * calcium_rays.mean()
    lipid_arc = 360.0 * lipid_rays.mean()
    min_cap = float(np.nanmin(cap_mm[lipid_rays])) if lipid_rays.any() else None
    return {
        "plaque": plaques,
        "plaque_free_arc_deg": round(360.0 * float(np.mean(ray_type == 0)), 2),
        "calcium": {
            "arc_deg": round(calcium_arc, 2),
            "max_thickness_mm": round(float(np.nanmax(profiles[calcium].thickness_mm[calcium_rays])), 4)
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
    """Running median over ``width`` neighbours with wrap-around, ignoring NaN (all-NaN -> NaN;
    NaN where ``values`` is NaN)."""
    return kernels.circular_running_median(np.ascontiguousarray(values, dtype=np.float64), int(width))


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded for a JSON record, None when unknown (None or not finite)."""
    return None if value is None or not np.isfinite(value) else round(float(value), digits)
