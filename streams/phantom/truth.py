"""Per-frame ground truth of the phantom, computed from the geometric model.

Boundary radii come from exact ray-contour crossings (``render._crossing``), areas from the
contour tables, and arcs and thicknesses from rays about the lumen centroid through the
geometric label map (DOMAIN.md section 4: "arcs are measured about the lumen centroid;
thickness along rays from it"), using the same :mod:`engine.contours` functions as the
measurement stage, so truth and measurement differ only by what the image hides.
"""

from __future__ import annotations

import numpy as np

from engine import contours
from engine.config import GuidanceConfig
from streams.geometry import FrameGeometry
from streams.phantom import model as m
from streams.phantom.render import Rendered
from streams.truth import FrameTruth, Label

N_RAYS = 720
BLOOD_LOW_CONFIDENCE_MU_T = 2.0  #: residual blood above this attenuation (1/mm) spoils the frame
_TYPES = (("calcium", Label.CALCIUM), ("lipid", Label.LIPID), ("fibrous", Label.FIBROUS))
_TABLE_STRIDE = 4  #: contour tables are subsampled to 512 vertices for diameter measurement


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _table_area_mm2(radius: np.ndarray) -> float:
    """Area enclosed by a contour tabulated at equally spaced angles about its origin."""
    return float(np.pi * np.mean(radius * radius))


def _table_diameters(radius: np.ndarray, phi: np.ndarray) -> contours.Diameters:
    return contours.diameters_through_centroid(radius[::_TABLE_STRIDE], phi[::_TABLE_STRIDE])


def _arc_about_point_deg(x: np.ndarray, y: np.ndarray, flags: np.ndarray, cx: float, cy: float) -> float:
    """Arc subtended about (cx, cy) by the flagged points of a closed contour, degrees.

    Each contour point owns half the angle to each neighbour, as seen from the centre.
    """
    angle = np.arctan2(y - cy, x - cx)
    to_next = (np.roll(angle, -1) - angle + np.pi) % (2 * np.pi) - np.pi
    to_prev = (angle - np.roll(angle, 1) + np.pi) % (2 * np.pi) - np.pi
    span = 0.5 * (np.abs(to_next) + np.abs(to_prev))
    return float(np.degrees(np.sum(span[flags])))


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
    eel_arc = _arc_about_point_deg(ex, ey, eel_visible, cx, cy)
    eel_mean = (
        _table_diameters(section.layers[m.EEL], section.phi).mean_mm
        if eel_arc > config.eel_visible_arc_deg
        else None
    )

    step = max(0.005, 0.5 * geometry.sample_spacing_mm)
    profiles = {
        name: contours.ray_profiles(
            labels == label, radii, angles, (cx, cy), n_rays=N_RAYS, step_mm=step,
            lumen_xy=(lumen_x, lumen_y),
        )
        for name, label in _TYPES
    }
    # A ray's plaque type: calcium over lipid over fibrous (a lipid cap is fibrous tissue).
    ray_type = np.full(N_RAYS, "", dtype=object)
    for name, _ in reversed(_TYPES):
        ray_type[profiles[name].hit] = name
    plaque_any = ray_type != ""
    plaque_free_arc = 360.0 * (1.0 - plaque_any.mean())

    plaques = []
    for name, _ in _TYPES:
        p = profiles[name]
        for first, last in contours.circular_runs(ray_type == name):
            rays = (np.arange((last - first) % N_RAYS + 1) + first) % N_RAYS
            arc = 360.0 * rays.size / N_RAYS
            if arc < 1.0:
                continue
            ends = []
            for k in (first, last):
                surface = p.lumen_distance_mm[k]
                px = cx + surface * np.cos(p.angles_rad[k])
                py = cy + surface * np.sin(p.angles_rad[k])
                ends.append(int(np.round(np.arctan2(py, px) % (2 * np.pi) / (2 * np.pi) * a)) % a)
            plaques.append(
                {
                    "type": name,
                    "alines": ends,
                    "arc_deg": round(arc, 2),
                    "max_thickness_mm": _round(np.nanmax(p.thickness_mm[rays])),
                    "min_cap_thickness_mm": None,
                }
            )
    calcium_arc = 360.0 * np.mean(ray_type == "calcium")
    lipid_arc = 360.0 * np.mean(ray_type == "lipid")
    calcium_thickness = float(np.nanmax(profiles["calcium"].thickness_mm)) if calcium_arc > 0 else 0.0
    # Cap thickness from the model, radially about the vessel centre: rays through a label map
    # quantised to the stored grid would be off by a sample or two on a 50 um cap.
    lipid_core = (section.layers[m.CORE_KIND] == m.CORE_LIPID) & (section.layers[m.CORE_T] > 0.01)
    min_cap = float(section.layers[m.FIBROUS_T][lipid_core].min()) if lipid_arc > 0 and lipid_core.any() else None
    for entry in plaques:
        if entry["type"] == "lipid":
            entry["min_cap_thickness_mm"] = _round(min_cap)

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
            "radius_mm": [_round(v) for v in lumen_padded],
            "centroid_mm": [round(cx, 4), round(cy, 4)],
        },
        "eel": {
            "radius_mm": [_round(v) for v in eel_vis_padded],
            "visible_arc_deg": round(eel_arc, 2),
            "mean_diameter_mm": _round(eel_mean),
            "area_mm2": round(_table_area_mm2(section.layers[m.EEL]), 4),
        },
        "plaque": plaques,
        "plaque_free_arc_deg": round(plaque_free_arc, 2),
        "calcium": {"arc_deg": round(calcium_arc, 2), "max_thickness_mm": round(calcium_thickness, 4)},
        "lipid": {
            "arc_deg": round(lipid_arc, 2),
            "min_cap_thickness_mm": _round(min_cap),
            "tcfa": bool(
                min_cap is not None
                and min_cap * 1000.0 < config.tcfa_cap_thickness_um
                and lipid_arc >= config.tcfa_lipid_arc_deg
            ),
        },
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
