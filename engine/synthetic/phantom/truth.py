"""Per-frame ground truth of the phantom, computed from the geometric model.

Boundary radii come from exact ray-contour crossings (``render._crossing``), areas from the
contour tables, and arcs and thicknesses from rays about the lumen centroid through the
geometric label map (DOMAIN.md section 4: "arcs are measured about the lumen centroid;
thickness along rays from it"), using the same :mod:`engine.clinical.contours` functions as the
measurement stage, so truth and measurement differ only by what the image hides.
"""

from __future__ import annotations

import numpy as np

from engine.clinical import contours, measure
from engine.config import GuidanceConfig
from engine.synthetic.phantom import model as m
from engine.synthetic.phantom.render import Rendered, _crossing
from streams.geometry import FrameGeometry
from streams.truth import FrameTruth, Label

N_RAYS = 720
_NO_SURFACE_MM = 50.0  #: stands in for "no lipid at this angle" in a crossing table
_CAP_SEARCH_MM = 1.0  #: a pool further than this behind the lumen surface has no cap to speak of
BLOOD_LOW_CONFIDENCE_MU_T = 2.0  #: residual blood above this attenuation (1/mm) spoils the frame
_TYPES = (("calcium", Label.CALCIUM), ("lipid", Label.LIPID), ("fibrous", Label.FIBROUS))
_TABLE_STRIDE = 4  #: contour tables are subsampled to 512 vertices for diameter measurement


def _table_area_mm2(radius: np.ndarray) -> float:
    """Area enclosed by a contour tabulated at equally spaced angles about its origin."""
    return float(np.pi * np.mean(radius * radius))


def _table_diameters(radius: np.ndarray, phi: np.ndarray) -> contours.Diameters:
    return contours.diameters_through_centroid(radius[::_TABLE_STRIDE], phi[::_TABLE_STRIDE])


def _min_cap_along_rays_mm(section: m.CrossSection, centroid_xy: tuple[float, float]) -> float | None:
    """Thinnest fibrous cap over a lipid pool along rays from the lumen centroid (vessel frame).

    Exact ray-contour crossings of the lumen surface and of the pool's front surface (the
    model's continuous geometry), so the cap does not depend on any sampling grid.
    """
    layers = section.layers
    lipid = (layers[m.CORE_KIND] == m.CORE_LIPID) & (layers[m.CORE_T] > 0.0)
    front = np.where(lipid, layers[m.LUMEN] + layers[m.FIBROUS_T], _NO_SURFACE_MM)
    table = np.stack([layers[m.LUMEN], front])
    caps = []
    for angle in 2 * np.pi * np.arange(N_RAYS) / N_RAYS:
        ux, uy = np.cos(angle), np.sin(angle)
        surface = _crossing(table, 0, centroid_xy[0], centroid_xy[1], ux, uy, 0.0, 12.0, 0.002)
        pool = _crossing(table, 1, centroid_xy[0], centroid_xy[1], ux, uy, 0.0, 12.0, 0.002)
        if np.isfinite(surface) and np.isfinite(pool) and pool - surface < _CAP_SEARCH_MM:
            caps.append(pool - surface)
    return float(min(caps)) if caps else None


def _middle_of_run(first: int, last: int, n: int) -> int:
    length = (last - first) % n + 1
    return (first + length // 2) % n


def frame_truth(
    index: int,
    section: m.CrossSection,
    rendered: Rendered,
    geometry: FrameGeometry,
    z_offset_px: int,
    config: GuidanceConfig,
) -> FrameTruth:
    """Ground truth of one rendered frame (see :class:`streams.truth.FrameTruth`)."""
    a = geometry.n_valid_alines
    pad = geometry.n_padded_alines
    angles = geometry.aline_angles_rad()
    radii = geometry.radius_mm(np.arange(geometry.n_samples), z_offset_px)
    labels = rendered.labels[:a]
    cat = section.catheter_xy

    lumen_r = rendered.lumen_radius_mm
    lumen_x, lumen_y = contours.polar_to_xy(lumen_r, angles)
    table_lumen = section.layers[m.LUMEN]
    lx_table = table_lumen * np.cos(section.phi) - cat[0]
    ly_table = table_lumen * np.sin(section.phi) - cat[1]
    cx, cy = contours.polygon_centroid(lx_table, ly_table)
    lumen_d = _table_diameters(table_lumen, section.phi)

    eel_full = rendered.eel_radius_mm
    eel_visible = rendered.eel_visible
    ex, ey = contours.polar_to_xy(eel_full, angles)
    eel_arc = measure.arc_about_point_deg(ex, ey, eel_visible, cx, cy)
    eel_mean = (
        _table_diameters(section.layers[m.EEL], section.phi).mean_mm
        if eel_arc > config.eel_visible_arc_deg
        else None
    )

    step = max(0.005, 0.5 * geometry.sample_spacing_mm)
    lumen = measure.LumenMeasurement(
        area_mm2=_table_area_mm2(table_lumen),
        min_diameter_mm=lumen_d.min_mm,
        max_diameter_mm=lumen_d.max_mm,
        mean_diameter_mm=lumen_d.mean_mm,
        centroid_xy=(cx, cy),
        contour_xy=(lumen_x, lumen_y),
    )
    masks = {name: labels == label for name, label in _TYPES}
    # Caps too are measured along rays from the lumen centroid (the perpendicular thickness on
    # a sloping lumen wall is less than the model's radial cap thickness).
    wall = ~np.isin(labels, (Label.CATHETER, Label.LUMEN, Label.GUIDEWIRE, Label.STRUT))
    plaque = measure.measure_plaque(
        masks, measure.PolarGrid(angles, radii), lumen, a, config, n_rays=N_RAYS, step_mm=step, wall_mask=wall
    )
    if plaque["lipid"]["arc_deg"] > 0:
        # A cap is a few samples thick on the stored grid: measure it on the model itself.
        cap = _min_cap_along_rays_mm(section, (cx + cat[0], cy + cat[1]))
        plaque["lipid"]["min_cap_thickness_mm"] = measure.round_or_none(cap)
        plaque["lipid"]["tcfa"] = measure.tcfa(cap, plaque["lipid"]["arc_deg"], config)
        for entry in plaque["plaque"]:
            if entry["type"] == "lipid":
                entry["min_cap_thickness_mm"] = measure.round_or_none(cap)


    guidewire_runs = contours.circular_runs(rendered.blocker_kind == Label.GUIDEWIRE)
    guidewire = {"alines": list(max(guidewire_runs, key=lambda r: (r[1] - r[0]) % a))} if guidewire_runs else None

    struts = []
    hidden = 0
    for k in range(section.struts.shape[0]):
        runs = contours.circular_runs(rendered.strut_of_row == k)
        if not runs:
            hidden += 1
            continue
        row = _middle_of_run(*max(runs, key=lambda r: (r[1] - r[0]) % a), a)
        front = float(rendered.blocker_front_mm[row])
        distance_um = (lumen_r[row] - front) * 1000.0
        struts.append(
            {
                "aline": row,
                "radius_mm": round(front, 4),
                "distance_to_lumen_um": round(float(distance_um), 1),
                "malapposed": bool(distance_um > config.malapposition_threshold_um),
            }
        )
    struts.sort(key=lambda s: s["aline"])
    stent = None
    if section.stent_radius_mm is not None:
        stent = {
            "area_mm2": round(_table_area_mm2(section.stent_radius_mm), 4),
            "min_diameter_mm": round(_table_diameters(section.stent_radius_mm, section.phi).min_mm, 4),
        }

    blood = section.blood_mu_t > BLOOD_LOW_CONFIDENCE_MU_T
    lumen_padded = np.concatenate([lumen_r, np.full(pad, np.nan)])
    eel_vis_padded = np.concatenate([np.where(eel_visible, eel_full, np.nan), np.full(pad, np.nan)])
    record = {
        "frame": int(index),
        "status": "low_confidence" if blood else "ok",
        "lumen": {
            "area_mm2": round(_table_area_mm2(table_lumen), 4),
            "min_diameter_mm": round(lumen_d.min_mm, 4),
            "max_diameter_mm": round(lumen_d.max_mm, 4),
            "mean_diameter_mm": round(lumen_d.mean_mm, 4),
            "radius_mm": [measure.round_or_none(v) for v in lumen_padded],
            "centroid_mm": [round(cx, 4), round(cy, 4)],
        },
        "eel": {
            "radius_mm": [measure.round_or_none(v) for v in eel_vis_padded],
            "visible_arc_deg": round(eel_arc, 2),
            "mean_diameter_mm": measure.round_or_none(eel_mean),
            "area_mm2": round(_table_area_mm2(section.layers[m.EEL]), 4),
        },
        **plaque,
        "guidewire": guidewire,
        "struts": struts,
        "hidden_struts": hidden,
        "stent": stent,
        "blood": bool(blood),
        "nurd_deg": round(float(np.degrees(section.nurd_rad)), 2),
    }
    return FrameTruth(
        lumen_radius_mm=lumen_padded,
        eel_radius_mm=eel_vis_padded,
        eel_radius_full_mm=np.concatenate([eel_full, np.full(pad, np.nan)]),
        labels=rendered.labels,
        shadow=rendered.shadow,
        record=record,
    )
