"""Pullback-level guidance from per-frame records (the ``pullback.json`` of docs/results.md).

The same function serves the phantom's ground truth (records computed from the geometric model)
and the engine (records measured on segmentation output), so truth and result follow one
implementation of the MLD MAX rules in :mod:`engine.clinical.rules`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.clinical import rules
from engine.config import GuidanceConfig


def _column(records: Sequence[dict], *keys: str) -> np.ndarray:
    """Per-frame float array of a nested key; NaN where missing, null or the frame is unusable."""
    values = []
    for r in records:
        v = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        usable = r.get("status") in ("ok", None)
        values.append(np.nan if v is None or not usable else float(v))
    return np.asarray(values, dtype=np.float64)


def pullback_guidance(
    records: Sequence[dict],
    frame_spacing_mm: float | Sequence[float],
    stented: bool | None = None,
    cfg: GuidanceConfig | None = None,
) -> dict:
    """MLA, references, calcium score, and either pre-PCI sizing or post-PCI stent results.

    Parameters
    ----------
    records : sequence of dict
        One ``frames.jsonl`` object per frame, in acquisition order (frame 0 most distal).
        Frames whose status is not "ok" contribute no measurement.
    frame_spacing_mm : float or sequence of float
        Distance between consecutive frames, mm (one value, or one per frame as DICOM gives it).
    stented : bool, optional
        A stent is present: report post-PCI expansion and apposition instead of sizing.
        Default: whether any frame's record has a stent.
    cfg : GuidanceConfig, optional

    Returns
    -------
    dict
        Keys ``n_frames``, ``frame_spacing_mm``, ``mla``, ``references``, ``calcium``,
        ``sizing`` (None when stented or no lesion), ``stent`` (None unless stented),
        ``warnings`` (list of str).
    """
    cfg = cfg or GuidanceConfig()
    n = len(records)
    if stented is None:
        stented = any(r.get("stent") is not None for r in records)
    steps = np.broadcast_to(np.asarray(frame_spacing_mm, dtype=np.float64), (n,)).copy()
    steps[0] = 0.0
    positions = np.cumsum(steps)
    area = _column(records, "lumen", "area_mm2")
    plaque_free = _column(records, "plaque_free_arc_deg")
    lipid_arc = _column(records, "lipid", "arc_deg")
    lipid = np.where(np.isfinite(lipid_arc), lipid_arc > 0, np.nan)
    calcium_arc = np.nan_to_num(_column(records, "calcium", "arc_deg"))
    calcium_thickness = np.nan_to_num(_column(records, "calcium", "max_thickness_mm"))
    warnings: list[str] = []

    mla = rules.find_mla(area)
    calcium = rules.calcium_score(
        float(calcium_arc.max(initial=0.0)),
        float(calcium_thickness.max(initial=0.0)),
        rules.calcium_length_mm(calcium_arc > 0, positions),
        cfg,
    )
    out: dict = {
        "n_frames": n,
        "frame_spacing_mm": float(np.mean(np.asarray(frame_spacing_mm, dtype=np.float64))),
        "mla": {"frame": int(mla), "area_mm2": float(area[mla])},
        "references": None,
        "calcium": calcium.to_dict(),
        "sizing": None,
        "stent": None,
    }
    if calcium.score == 4:
        warnings.append("calcium score 4: vessel preparation advised")

    if stented:
        stent_area = _column(records, "stent", "area_mm2")
        stented_frames = np.array([r.get("stent") is not None for r in records])
        expansion = rules.expansion(stent_area, area, positions, stented_frames, cfg)
        strut_frames, distances = [], []
        for r in records:
            for s in r.get("struts") or ():
                strut_frames.append(r["frame"])
                d = s.get("distance_to_lumen_um")
                distances.append(np.nan if d is None else d)
        apposition = rules.apposition_summary(
            np.asarray(strut_frames, dtype=int), np.asarray(distances, dtype=float), positions, cfg
        )
        out["references"] = {
            "proximal_frame": expansion.proximal_reference_frame,
            "distal_frame": expansion.distal_reference_frame,
            "proximal_lumen_area_mm2": expansion.proximal_reference_area_mm2,
            "distal_lumen_area_mm2": expansion.distal_reference_area_mm2,
            "proximal_eel_mean_diameter_mm": None,
            "distal_eel_mean_diameter_mm": None,
        }
        out["stent"] = {**expansion.to_dict(), **apposition.to_dict()}
        warnings.extend(expansion.warnings)
        out["warnings"] = warnings
        return out

    lesion = rules.find_lesion(area, plaque_free, lipid, cfg)
    if lesion is None:
        warnings.append("no lesion: the minimum-lumen-area frame is normal")
        out["warnings"] = warnings
        return out
    references = rules.find_references(area, positions, lesion, cfg.reference_window_pre_mm)
    eel_mean = _column(records, "eel", "mean_diameter_mm")
    out["lesion"] = lesion.to_dict()
    out["references"] = {
        "proximal_frame": references.proximal_frame,
        "distal_frame": references.distal_frame,
        "proximal_lumen_area_mm2": references.proximal_area_mm2,
        "distal_lumen_area_mm2": references.distal_area_mm2,
        "proximal_eel_mean_diameter_mm": _at(eel_mean, references.proximal_frame),
        "distal_eel_mean_diameter_mm": _at(eel_mean, references.distal_frame),
    }
    sizing = rules.stent_sizing(
        lesion,
        references,
        mean_lumen_diameter_mm=_column(records, "lumen", "mean_diameter_mm"),
        mean_eel_diameter_mm=eel_mean,
        eel_visible_arc_deg=_column(records, "eel", "visible_arc_deg"),
        plaque_free_arc_deg=plaque_free,
        lipid_present=lipid,
        positions_mm=positions,
        cfg=cfg,
        calcium=calcium,
    )
    out["sizing"] = sizing.to_dict()
    warnings.extend(w for w in sizing.warnings if w not in warnings)
    out["warnings"] = warnings
    return out


def _at(values: np.ndarray, frame: int | None) -> float | None:
    if frame is None or not np.isfinite(values[frame]):
        return None
    return float(values[frame])
