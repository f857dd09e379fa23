"""Pipeline stage: one polar frame -> its ``frames.jsonl`` record (docs/results.md).

:class:`FrameAnalyser` runs the segmentation stage (:class:`engine.analysis.segment.Segmenter`), the
classical metal detector (:mod:`engine.analysis.struts`) and the measurements (:mod:`engine.clinical.measure`),
timing each. The engine, the in-process replay and the benchmarks all use it, so what is
measured is what is shipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from engine.analysis.segment import Segmentation, Segmenter, SegmenterConfig
from engine.analysis.struts import MetalDetection, MetalDetectorConfig, detect_metal
from engine.clinical import contours, measure
from engine.config import GuidanceConfig
from models.classes import TissueClass
from streams.geometry import FrameGeometry
from streams.pullback import Frame

MIN_STENT_STRUTS = 4  #: fewer struts in a frame give no stent contour (one stray reflection is not a stent)
PLAQUE_RAYS = 360  #: rays about the lumen centroid per frame: 1 degree, finer than the model's A-lines


@dataclass(frozen=True)
class AnalysisConfig:
    """Thresholds of the per-frame analysis.

    Attributes
    ----------
    min_confidence : float
        Frames whose model confidence is below this are ``low_confidence``: the display shows
        the frame but no numbers (DOMAIN.md section 6: say when unsure).
    min_stent_struts : int
        Struts needed in a frame to report a stent contour.
    """

    min_confidence: float = 0.5
    min_stent_struts: int = MIN_STENT_STRUTS


@dataclass(frozen=True)
class FrameAnalysis:
    """One frame's analysis with its intermediate outputs. The engine publishes the record in
    its own message (:class:`engine.realtime.scheduler.FrameResult`); the segmentation and metal
    detection stay here for callers that draw or test them.

    Attributes
    ----------
    record : dict
        The ``frames.jsonl`` object.
    segmentation : Segmentation
        Model output (class map on the model grid, boundaries per stored row).
    metal : MetalDetection
        Struts and guidewire found in the frame.
    latency_ms : dict
        Per-stage processing time, ms.
    """

    record: dict
    segmentation: Segmentation
    metal: MetalDetection
    latency_ms: dict = field(default_factory=dict)


def frame_record(
    frame: Frame,
    seg: Segmentation,
    metal: MetalDetection,
    cfg: GuidanceConfig,
    analysis: AnalysisConfig = AnalysisConfig(),
) -> dict:
    """Measure one frame from its segmentation and metal detection (pure function).

    Lumen rows behind metal (guidewire or strut shadow) are undetermined and interpolated; the
    EEL counts only where the model says it is visible; plaque arcs and thicknesses are
    measured about the lumen centroid on the model grid; struts and the stent contour come from
    the metal detector, their apposition from the lumen surface behind each strut.
    """
    g = frame.geometry
    a = g.n_valid_alines
    angles = g.aline_angles_rad()
    pad = [None] * g.n_padded_alines
    guidewire = metal.guidewire_rows if metal.guidewire_rows.any() else seg.guidewire
    lumen_r = np.where(guidewire | metal.shadow_rows, np.nan, seg.lumen_radius_mm)
    record: dict = {"frame": int(frame.index), "confidence": round(float(seg.confidence), 4)}
    if np.count_nonzero(np.isfinite(lumen_r)) < max(8, a // 8):
        record.update(status="low_confidence", reason="lumen boundary not found on enough A-lines",
                      lumen=None, eel=None, plaque=[], guidewire=None, struts=[], stent=None)
        return record
    lumen = measure.measure_lumen(lumen_r, angles)
    record["status"] = "ok" if seg.confidence >= analysis.min_confidence else "low_confidence"
    record["lumen"] = {
        "area_mm2": round(lumen.area_mm2, 4),
        "min_diameter_mm": round(lumen.min_diameter_mm, 4),
        "max_diameter_mm": round(lumen.max_diameter_mm, 4),
        "mean_diameter_mm": round(lumen.mean_diameter_mm, 4),
        "radius_mm": _rounded_list(lumen_r) + pad,
        "centroid_mm": [round(lumen.centroid_xy[0], 4), round(lumen.centroid_xy[1], 4)],
    }
    record["eel"] = _eel(seg.eel_radius_mm, angles, lumen, cfg) | {"radius_mm": _rounded_list(seg.eel_radius_mm) + pad}

    grid = seg.grid
    polar = measure.PolarGrid(grid.angle_rad(np.arange(grid.n_alines)), grid.radius_mm(np.arange(grid.n_depth)))
    masks = {
        "calcium": seg.class_map == TissueClass.CALCIUM,
        "lipid": seg.class_map == TissueClass.LIPID,
        "fibrous": seg.class_map == TissueClass.FIBROUS,
    }
    record.update(measure.measure_plaque(
        masks, polar, lumen, a, cfg, n_rays=PLAQUE_RAYS, step_mm=grid.depth_step_mm / 2,
        wall_mask=seg.class_map != TissueClass.LUMEN,
    ))
    runs = contours.circular_runs(guidewire)
    record["guidewire"] = {"alines": list(max(runs, key=lambda r: (r[1] - r[0]) % a))} if runs else None
    struts, stent = measure.measure_struts(metal.strut_rows, metal.strut_radius_mm, lumen_r, angles, cfg)
    record["struts"] = struts
    record["stent"] = stent if len(struts) >= analysis.min_stent_struts else None
    return record


def _eel(eel_r: np.ndarray, angles: np.ndarray, lumen: measure.LumenMeasurement, cfg: GuidanceConfig) -> dict:
    visible = np.isfinite(eel_r)
    if np.count_nonzero(visible) < 3:
        return {"visible_arc_deg": 0.0, "mean_diameter_mm": None}
    filled = contours.fill_undetermined(eel_r)
    x, y = contours.polar_to_xy(filled, angles)
    arc = measure.arc_about_point_deg(x, y, visible, *lumen.centroid_xy)
    mean = contours.diameters_through_centroid(filled, angles).mean_mm if arc > cfg.eel_visible_arc_deg else None
    return {"visible_arc_deg": round(arc, 2), "mean_diameter_mm": measure.round_or_none(mean)}


def _rounded_list(values: np.ndarray, digits: int = 4) -> list:
    """JSON list of floats rounded to ``digits``, None for NaN (vectorised rounding)."""
    rounded = np.round(np.asarray(values, dtype=np.float64), digits)
    return [None if v != v else v for v in rounded.tolist()]


class FrameAnalyser:
    """Stage: Frame -> :class:`FrameAnalysis` (segment, detect metal, measure)."""

    def __init__(
        self,
        guidance: GuidanceConfig | None = None,
        segmenter: SegmenterConfig = SegmenterConfig(),
        metal: MetalDetectorConfig = MetalDetectorConfig(),
        analysis: AnalysisConfig = AnalysisConfig(),
    ):
        self.guidance = guidance or GuidanceConfig()
        self.metal_config = metal
        self.analysis = analysis
        self.segmenter = Segmenter(segmenter)

    def start(self, geometry: FrameGeometry | None = None) -> None:
        """Load and warm the model (and the preprocessing tables for ``geometry``)."""
        self.segmenter.start(geometry)

    def process(self, frame: Frame) -> FrameAnalysis:
        t0 = time.perf_counter()
        seg = self.segmenter.process(frame)
        t1 = time.perf_counter()
        metal = detect_metal(frame, self.metal_config)
        t2 = time.perf_counter()
        record = frame_record(frame, seg, metal, self.guidance, self.analysis)
        t3 = time.perf_counter()
        latency = {
            "segment": round(1000 * (t1 - t0), 3),
            "detect_metal": round(1000 * (t2 - t1), 3),
            "measure": round(1000 * (t3 - t2), 3),
        }
        record["latency_ms"] = latency
        return FrameAnalysis(record, seg, metal, latency)

    def status(self) -> dict:
        return {"segment": self.segmenter.status()}

    def stop(self) -> None:
        self.segmenter.stop()
