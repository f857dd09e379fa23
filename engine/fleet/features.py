"""Per-frame features a re-analysis keeps for drift monitoring and its Parquet table: the
measurements of the frame's record plus what the stored samples say about the acquisition."""

from __future__ import annotations

import numpy as np

from streams.pullback import Frame

DEEP_FRACTION = 0.05  #: deepest share of each A-line's samples taken as the noise floor's window

#: Parquet columns of a frame row, in order, with their arrow types (``engine.fleet.tables``).
FRAME_COLUMNS = {
    "pullback_id": "string", "source": "string", "frame": "int64", "status": "string",
    "reason": "string", "confidence": "float64", "low_confidence": "bool_",
    "lumen_area_mm2": "float64", "lumen_min_diameter_mm": "float64",
    "lumen_mean_diameter_mm": "float64", "eel_mean_diameter_mm": "float64",
    "plaque_free_arc_deg": "float64", "calcium_arc_deg": "float64", "lipid_arc_deg": "float64",
    "n_struts": "int64", "n_malapposed": "int64", "sheath_radius_mm": "float64",
    "z_offset_px": "int64", "intensity_p50": "float64", "intensity_p99": "float64",
    "noise_floor": "float64",
}


def pixel_features(frame: Frame) -> dict:
    """Acquisition features of one frame's stored samples (valid A-lines only).

    Returns
    -------
    dict
        ``z_offset_px`` (catheter Z offset correction, px), ``intensity_p50`` and
        ``intensity_p99`` (percentiles of the stored sample values, stored units), and
        ``noise_floor`` (median of the deepest :data:`DEEP_FRACTION` of every A-line's samples,
        stored units: beyond the tissue the signal is noise).

    """
    pixels = np.asarray(frame.pixels[: frame.geometry.n_valid_alines], dtype=np.float64)
    deep = max(1, round(pixels.shape[1] * DEEP_FRACTION))
    p50, p99 = np.percentile(pixels, [50.0, 99.0])
    return {"z_offset_px": int(frame.z_offset_px), "intensity_p50": float(p50),
            "intensity_p99": float(p99), "noise_floor": float(np.median(pixels[:, -deep:]))}


def _get(record: dict, *keys: str) -> float | None:
    value: object = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return None if value is None else float(value)


def frame_row(record: dict, pixels: dict, source: str) -> dict:
    """One Parquet row (:data:`FRAME_COLUMNS`) from a frame's record and pixel features."""
    struts = record.get("struts") or []
    return {
        "pullback_id": record.get("pullback_id"), "source": source, "frame": int(record["frame"]),
        "status": record.get("status"), "reason": record.get("reason"),
        "confidence": _get(record, "confidence"),
        "low_confidence": record.get("status") == "low_confidence",
        "lumen_area_mm2": _get(record, "lumen", "area_mm2"),
        "lumen_min_diameter_mm": _get(record, "lumen", "min_diameter_mm"),
        "lumen_mean_diameter_mm": _get(record, "lumen", "mean_diameter_mm"),
        "eel_mean_diameter_mm": _get(record, "eel", "mean_diameter_mm"),
        "plaque_free_arc_deg": _get(record, "plaque_free_arc_deg"),
        "calcium_arc_deg": _get(record, "calcium", "arc_deg"),
        "lipid_arc_deg": _get(record, "lipid", "arc_deg"),
        "n_struts": len(struts), "n_malapposed": sum(1 for s in struts if s.get("malapposed")),
        "sheath_radius_mm": _get(record, "sheath", "radius_mm"),
        **{k: pixels.get(k) for k in ("z_offset_px", "intensity_p50", "intensity_p99", "noise_floor")},
    }
