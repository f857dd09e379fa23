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
from engine.analysis.sheath import SheathConfig
from engine.analysis.struts import MetalDetection, MetalDetectorConfig, detect_metal
from engine.analysis import struts
from engine.clinical import contours, kernels, measure
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
    #: Lumen boundary within this of the catheter's outer radius counts as inside it, mm.
    catheter_margin_mm: float = 0.05
    #: Fraction of A-lines with the boundary inside the catheter that makes a frame unfit.
    inside_catheter_fraction: float = 0.1
    #: Boundary within this of a sheath ring radius counts as "on the ring", mm.
    ring_tolerance_mm: float = 0.02
    #: Fraction of A-lines with the boundary on a ring radius that makes a frame unfit.
    on_ring_fraction: float = 0.25
    #: Frame-to-frame lumen area ratio (either way) beyond which a frame is unfit.
    max_area_ratio: float = 1.6
    #: Normalised entropy (0..1) of the class probabilities near the boundary that is "uncertain".
    uncertain_entropy: float = 0.6
    #: Arc (degrees) of uncertain A-lines that makes a frame unfit.
    uncertain_arc_deg: float = 90.0
    #: Plausible noise floor (dB) on an assumed intensity scale; outside it the scale is suspect.
    assumed_floor_db: tuple[float, float] = (0.0, 36.0)


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
    uncertainty = boundary_uncertainty(seg, a)
    reasons = out_of_distribution(lumen_r, lumen.area_mm2, seg, uncertainty, analysis)
    if seg.confidence < analysis.min_confidence:
        reasons.insert(0, f"model confidence {seg.confidence:.2f} < {analysis.min_confidence}")
    record["status"] = "low_confidence" if reasons else "ok"
    if reasons:
        record["reason"] = "; ".join(reasons)
    if seg.sheath is not None:
        record["sheath"] = seg.sheath.to_record()
    record["uncertainty"] = _rounded_list(uncertainty, 2) + pad
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
    # Straight from the class map (one pass finds each ray's reach per type; no mask per type):
    # the same record as measure_plaque on the masks (tests/engine/clinical/test_measure_reference.py).
    plaque_labels = {"calcium": int(TissueClass.CALCIUM), "lipid": int(TissueClass.LIPID),
                     "fibrous": int(TissueClass.FIBROUS)}
    record.update(measure.measure_plaque_labels(
        seg.class_map, plaque_labels, (int(TissueClass.LUMEN),), polar, lumen, a, cfg,
        n_rays=PLAQUE_RAYS, step_mm=grid.depth_step_mm / 2,
    ))
    runs = contours.circular_runs(guidewire)
    record["guidewire"] = {"alines": list(max(runs, key=lambda r: (r[1] - r[0]) % a))} if runs else None
    struts, stent = measure.measure_struts(metal.strut_rows, metal.strut_radius_mm, lumen_r, angles, cfg)
    record["struts"] = struts
    record["stent"] = stent if len(struts) >= analysis.min_stent_struts else None
    return record


def boundary_uncertainty(seg: Segmentation, n_valid_alines: int) -> np.ndarray:
    """Per stored valid A-line, the normalised entropy (0..1) of the class probabilities in a
    +-3-sample window about the lumen boundary (NaN where there is no boundary)."""
    prob = seg.probabilities
    n_classes, k, j = prob.shape
    rows = np.minimum((np.arange(k) * n_valid_alines) // k, n_valid_alines - 1)
    radius = seg.lumen_radius_mm[rows] / seg.grid.depth_step_mm
    centre = np.where(np.isfinite(radius), np.rint(np.nan_to_num(radius)), 0).astype(np.int64)
    cols = np.clip(centre[:, None] + np.arange(-3, 4)[None, :], 0, j - 1)
    p = np.clip(prob[:, np.arange(k)[:, None], cols].astype(np.float64), 1e-9, 1.0)
    entropy = (-(p * np.log(p)).sum(axis=0) / np.log(n_classes)).mean(axis=1)
    entropy = np.where(np.isfinite(radius), entropy, np.nan)
    # Back onto the stored rows (nearest model A-line).
    model_row = np.minimum((np.arange(n_valid_alines) * k) // n_valid_alines, k - 1)
    return entropy[model_row]


def out_of_distribution(
    lumen_r: np.ndarray,
    area_mm2: float,
    seg: Segmentation,
    uncertainty: np.ndarray,
    analysis: AnalysisConfig,
) -> list[str]:
    """One-line reasons why a frame's measurement is not to be trusted (empty: none)."""
    reasons: list[str] = []
    finite = np.isfinite(lumen_r)
    n = max(int(np.count_nonzero(finite)), 1)
    sheath = seg.sheath
    if sheath is not None:
        if sheath.calibration == "mismatch":
            reasons.append(sheath.reason)
        outer = sheath.outer_radius_mm if np.isfinite(sheath.outer_radius_mm) else None
        if outer is not None:
            inside = np.count_nonzero(lumen_r[finite] <= outer + analysis.catheter_margin_mm)
            if inside / n > analysis.inside_catheter_fraction or area_mm2 <= np.pi * outer**2:
                reasons.append(
                    f"lumen inside the catheter on {100 * inside / n:.0f} % of A-lines "
                    f"(outer radius {outer:.3f} mm)"
                )
        if sheath.rings_mm:
            rings = np.asarray(sheath.rings_mm)
            near = np.abs(lumen_r[finite][:, None] - rings[None, :]).min(axis=1)
            on_ring = np.count_nonzero(near <= analysis.ring_tolerance_mm) / n
            if on_ring > analysis.on_ring_fraction:
                reasons.append(f"lumen boundary on a sheath ring radius on {100 * on_ring:.0f} % of A-lines")
        low, high = analysis.assumed_floor_db
        if sheath.scale_source == "assumed" and not low <= sheath.noise_floor_db <= high:
            reasons.append(
                f"intensity scale assumed and the noise floor {sheath.noise_floor_db:.1f} dB is "
                f"outside {low}..{high} dB"
            )
    uncertain = np.nan_to_num(uncertainty, nan=0.0) >= analysis.uncertain_entropy
    arc = 360.0 * np.count_nonzero(uncertain) / max(uncertain.size, 1)
    if arc > analysis.uncertain_arc_deg:
        reasons.append(f"model uncertain near the boundary over {arc:.0f} deg")
    return reasons


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
        sheath: SheathConfig = SheathConfig(),
    ):
        self.guidance = guidance or GuidanceConfig()
        self.metal_config = metal
        self.analysis = analysis
        self.segmenter = Segmenter(segmenter, sheath=sheath)
        self._previous_area: tuple[int, float] | None = None  # (frame index, lumen area mm2)

    def start(self, geometry: FrameGeometry | None = None) -> None:
        """Load and warm the model (and the preprocessing tables for ``geometry``), and compile
        the measurement and metal kernels, so the first frame does not pay for them."""
        self.segmenter.start(geometry)
        kernels.warm_up()
        struts.warm_up()

    def process(self, frame: Frame) -> FrameAnalysis:
        t0 = time.perf_counter()
        seg = self.segmenter.process(frame)
        t1 = time.perf_counter()
        metal = detect_metal(frame, self.metal_config, sheath=seg.sheath)
        t2 = time.perf_counter()
        record = frame_record(frame, seg, metal, self.guidance, self.analysis)
        self._check_area_jump(frame.index, record)
        t3 = time.perf_counter()
        latency = {
            "segment": round(1000 * (t1 - t0), 3),
            "detect_metal": round(1000 * (t2 - t1), 3),
            "measure": round(1000 * (t3 - t2), 3),
        }
        record["latency_ms"] = latency
        return FrameAnalysis(record, seg, metal, latency)

    def _check_area_jump(self, index: int, record: dict) -> None:
        """Flag a lumen area that jumps from the previous (adjacent) frame beyond the bound."""
        area = (record.get("lumen") or {}).get("area_mm2")
        previous, self._previous_area = self._previous_area, (
            (index, float(area)) if area else None
        )
        if not area or previous is None or abs(previous[0] - index) != 1 or previous[1] <= 0:
            return
        ratio = float(area) / previous[1]
        bound = self.analysis.max_area_ratio
        if ratio > bound or ratio < 1.0 / bound:
            why = f"lumen area {area:.2f} mm2 vs {previous[1]:.2f} mm2 on the adjacent frame"
            record["status"] = "low_confidence"
            record["reason"] = f"{record['reason']}; {why}" if record.get("reason") else why

    def reset(self) -> None:
        """Forget the state carried from frame to frame (the sheath tracked across frames, the
        previous frame's lumen area), as at the start of a new pullback."""
        sheath = getattr(self.segmenter, "sheath", None)
        if sheath is not None:
            sheath.reset()
        self._previous_area = None

    def status(self) -> dict:
        return {"segment": self.segmenter.status()}

    def stop(self) -> None:
        self.segmenter.stop()
