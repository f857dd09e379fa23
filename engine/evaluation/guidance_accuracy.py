"""Accuracy of the guidance against synthetic ground truth (``octguide eval-guidance``).

Two sources: the phantom (``source="phantom"``) and the independent foreign renderer
(``source="foreign"``, :mod:`engine.synthetic.foreign`, never used for training). Every held-out pullback goes through the shipped analysis (:class:`FrameAnalyser`) and
:func:`engine.clinical.guidance.pullback_guidance`, and the results are compared with the truth records,
key by key. Geometries and seeds are chosen unlike the model's training data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from engine.analysis.analyse import FrameAnalyser
from engine.clinical.guidance import pullback_guidance
from engine.config import GuidanceConfig
from engine.synthetic import foreign
from engine.synthetic.phantom import SCENARIOS, generate_pullback
from streams.pullback import Pullback

#: Held-out acquisition geometry: not the phantom's 500 x 1000 default.
EVAL_GEOMETRY = {"n_alines": 448, "n_samples": 900, "ranging_depth_mm": 5.8, "refractive_index": 1.36, "z_offset_px": 25}
EVAL_SEED = 9100
SOURCES = ("phantom", "foreign")
#: Lumen Dice below which a frame counts as badly analysed (honest-confidence metrics).
BAD_FRAME_DICE = 0.9

#: Targets of the guidance issue (docs/results.md); "max" bounds are upper limits.
TARGETS = {
    "lumen_dice": (">=", 0.97),
    "lumen_area_error_pct": ("<=", 3.0),
    "strut_precision": (">=", 0.95),
    "strut_recall": (">=", 0.95),
    "apposition_mae_um": ("<=", 30.0),
    "malapposition_accuracy": (">=", 0.95),
    "calcium_arc_iou": (">=", 0.75),
    "calcium_thickness_mae_mm": ("<=", 0.1),
    "msa_error_pct": ("<=", 5.0),
}


def lumen_dice(pred_mm: np.ndarray, true_mm: np.ndarray) -> float:
    """Dice of two lumens given as radii along the same A-lines (star-shaped about the catheter).

    Per A-line the overlap of the two sectors is ``min(r1, r2)^2 / 2`` per radian, so the Dice is
    ``2 * sum(min^2) / (sum(r1^2) + sum(r2^2))`` over A-lines where both are known.

    >>> round(lumen_dice(np.full(8, 1.0), np.full(8, 1.1)), 4)
    0.905
    """
    ok = np.isfinite(pred_mm) & np.isfinite(true_mm)
    p, t = pred_mm[ok], true_mm[ok]
    return float(2.0 * np.sum(np.minimum(p, t) ** 2) / (np.sum(p * p) + np.sum(t * t)))


def _rows(entries: Sequence[dict] | None, n: int, kind: str | None = None) -> np.ndarray:
    """Stored rows covered by plaque (or guidewire) entries with ``[first, last]`` extents."""
    flags = np.zeros(n, dtype=bool)
    for e in entries or ():
        if kind is None or e.get("type") == kind:
            first, last = e["alines"]
            flags[(np.arange((last - first) % n + 1) + first) % n] = True
    return flags


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = np.count_nonzero(a | b)
    return None if union == 0 else np.count_nonzero(a & b) / union


@dataclass
class _Tally:
    lumen_dice: list
    area_error_pct: list
    tp: int = 0
    fp: int = 0
    fn: int = 0
    apposition_error_um: list = None
    malapposition_correct: int = 0
    calcium_iou: list = None
    calcium_thickness_error: list = None
    bad_frames: int = 0  #: truth-ok frames with a lumen whose Dice < BAD_FRAME_DICE
    bad_flagged: int = 0
    good_frames: int = 0
    good_flagged: int = 0
    no_lumen_frames: int = 0  #: truth-ok frames the analysis gave no lumen (counted bad, Dice 0)
    truth_flagged: int = 0  #: frames the truth itself marks not ok (residual blood)
    truth_flagged_caught: int = 0


def _flagged(record: dict) -> bool:
    """The analysis told the operator not to trust this frame's numbers."""
    return record.get("status") != "ok" or bool(record.get("low_confidence"))


def tally_confidence(pb: Pullback, records: Sequence[dict], tally: _Tally) -> None:
    """Honest confidence: are badly analysed frames the flagged ones (issue 16 item 5)?

    Of truth-ok frames, those with Dice < :data:`BAD_FRAME_DICE` are bad (no lumen at all counts
    as Dice 0); each is
    counted flagged when its record's status is not "ok" or it says ``low_confidence``. Frames
    the truth marks not ok (residual blood) are tallied separately.
    """
    a = pb.geometry.n_valid_alines
    for record, truth in zip(records, (t.record for t in pb.truth.frames)):
        flagged = _flagged(record)
        if truth["status"] != "ok":
            tally.truth_flagged += 1
            tally.truth_flagged_caught += int(flagged)
            continue
        if record.get("lumen") is None:  # no lumen at all: Dice 0
            tally.no_lumen_frames += 1
            dice = 0.0
        else:
            pred_r = np.array([np.nan if v is None else v for v in record["lumen"]["radius_mm"][:a]], dtype=float)
            true_r = np.array(truth["lumen"]["radius_mm"][:a], dtype=float)
            dice = lumen_dice(pred_r, true_r) if np.isfinite(pred_r).any() else 0.0
        if dice < BAD_FRAME_DICE:
            tally.bad_frames += 1
            tally.bad_flagged += int(flagged)
        else:
            tally.good_frames += 1
            tally.good_flagged += int(flagged)


def compare_frames(pb: Pullback, records: Sequence[dict], tally: _Tally) -> None:
    """Accumulate per-frame metrics of ``records`` against ``pb``'s truth (status-ok frames)."""
    a = pb.geometry.n_valid_alines
    for record, truth in zip(records, (t.record for t in pb.truth.frames)):
        if truth["status"] != "ok" or record.get("status") != "ok" or record.get("lumen") is None:
            continue
        pred_r = np.array([np.nan if v is None else v for v in record["lumen"]["radius_mm"][:a]])
        true_r = np.array(truth["lumen"]["radius_mm"][:a], dtype=float)
        tally.lumen_dice.append(lumen_dice(pred_r, true_r))
        tally.area_error_pct.append(100 * abs(record["lumen"]["area_mm2"] / truth["lumen"]["area_mm2"] - 1))
        used = set()
        pred_rows = np.array([s["aline"] for s in record["struts"]], dtype=int)
        for strut in truth["struts"]:
            gap = np.abs((pred_rows - strut["aline"] + a // 2) % a - a // 2)
            candidates = [k for k in np.argsort(gap) if gap[k] <= max(4, a // 120) and k not in used]
            if not candidates:
                tally.fn += 1
                continue
            k = candidates[0]
            used.add(k)
            tally.tp += 1
            mine = record["struts"][k]
            tally.apposition_error_um.append(abs(mine["distance_to_lumen_um"] - strut["distance_to_lumen_um"]))
            tally.malapposition_correct += int(mine["malapposed"] == strut["malapposed"])
        tally.fp += len(pred_rows) - len(used)
        true_ca = _rows(truth["plaque"], a, "calcium")
        if true_ca.any():
            iou = _iou(_rows(record["plaque"], a, "calcium"), true_ca)
            tally.calcium_iou.append(iou)
            tally.calcium_thickness_error.append(
                abs(record["calcium"]["max_thickness_mm"] - truth["calcium"]["max_thickness_mm"])
            )


def evaluate(
    scenarios: Sequence[str] | None = None,
    n_frames: int = 60,
    seed: int = EVAL_SEED,
    analyser: FrameAnalyser | None = None,
    progress: Callable[[str], None] | None = None,
    source: str = "phantom",
) -> dict:
    """Run the analysis over held-out synthetic pullbacks and report every accuracy metric.

    Parameters
    ----------
    scenarios : sequence of str, optional
        Scenario names (default: all).
    n_frames : int
        Frames per pullback; the frame pitch is stretched so every pullback spans its scenario.
    seed : int
        First seed (scenario ``k`` uses ``seed + k``); keep it away from the training seeds.
    analyser : FrameAnalyser, optional
        The analysis to evaluate (default: the shipped model on ONNX Runtime).
    source : str
        "phantom" (the training renderer's held-out geometry) or "foreign" (the independent
        renderer, :mod:`engine.synthetic.foreign`, its own geometry, catheter and intensity scale).

    Returns
    -------
    dict
        ``metrics`` holds the targeted metrics plus the honest-confidence fractions
        ``bad_frames_flagged_fraction`` (of frames with lumen Dice < 0.9, the share the analysis
        flagged) and ``good_frames_flagged_fraction``; ``confidence`` holds their counts.
    """
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {SOURCES}")
    table = foreign.SCENARIOS if source == "foreign" else SCENARIOS
    names = list(scenarios or table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown {source} scenario(s) {unknown}; known: {sorted(table)}")
    analyser = analyser or FrameAnalyser()
    tally = _Tally([], [], apposition_error_um=[], calcium_iou=[], calcium_thickness_error=[])
    per_scenario = {}
    started = False
    seconds = 0.0
    frames = 0
    for k, name in enumerate(names):
        scenario = table[name]
        pitch = scenario.length_mm / max(n_frames - 1, 1)
        if source == "foreign":
            pb = foreign.generate_pullback(name, seed=seed + k, n_frames=n_frames, frame_pitch_mm=pitch)
        else:
            pb = generate_pullback(name, seed=seed + k, n_frames=n_frames, frame_pitch_mm=pitch, **EVAL_GEOMETRY)
        if not started:
            analyser.start(pb.geometry)
            started = True
        t0 = time.perf_counter()
        records = [analyser.process(frame).record for frame in pb]
        seconds += time.perf_counter() - t0
        frames += len(pb)
        compare_frames(pb, records, tally)
        tally_confidence(pb, records, tally)
        try:
            guidance = pullback_guidance(records, pb.frame_spacing_mm, cfg=analyser.guidance)
        except ValueError as e:  # e.g. no frame with a lumen: a result to report, not a crash
            per_scenario[name] = {"guidance_error": str(e),
                                  "frames_ok": sum(r.get("status") == "ok" for r in records)}
        else:
            per_scenario[name] = _compare_guidance(guidance, pb.truth.guidance, analyser.guidance)
        if progress is not None:
            progress(name)
    analyser.stop()
    metrics = {
        "lumen_dice": _mean(tally.lumen_dice),
        "lumen_area_error_pct": _mean(tally.area_error_pct),
        "strut_precision": tally.tp / (tally.tp + tally.fp) if tally.tp + tally.fp else None,
        "strut_recall": tally.tp / (tally.tp + tally.fn) if tally.tp + tally.fn else None,
        "apposition_mae_um": _mean(tally.apposition_error_um),
        "malapposition_accuracy": tally.malapposition_correct / tally.tp if tally.tp else None,
        "calcium_arc_iou": _mean([v for v in tally.calcium_iou if v is not None]),
        "calcium_thickness_mae_mm": _mean(tally.calcium_thickness_error),
        "msa_error_pct": _mean([s["msa_error_pct"] for s in per_scenario.values() if s.get("msa_error_pct") is not None]),
        "bad_frames_flagged_fraction": tally.bad_flagged / tally.bad_frames if tally.bad_frames else None,
        "good_frames_flagged_fraction": tally.good_flagged / tally.good_frames if tally.good_frames else None,
    }
    geometry = asdict(foreign.ForeignGeometry()) if source == "foreign" else EVAL_GEOMETRY
    return {
        "source": source,
        "geometry": geometry,
        "seed": seed,
        "frames_per_pullback": n_frames,
        "analysis_ms_per_frame": round(1000 * seconds / max(frames, 1), 2),
        "metrics": {k: None if v is None else round(v, 4) for k, v in metrics.items()},
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "met": {k: _met(metrics[k], *TARGETS[k]) for k in TARGETS},
        "scenarios": per_scenario,
        "confidence": {
            "bad_frame_dice": BAD_FRAME_DICE,
            "bad_frames": tally.bad_frames,
            "bad_frames_flagged": tally.bad_flagged,
            "good_frames": tally.good_frames,
            "good_frames_flagged": tally.good_flagged,
            "frames_without_lumen": tally.no_lumen_frames,
            "truth_not_ok_frames": tally.truth_flagged,
            "truth_not_ok_frames_flagged": tally.truth_flagged_caught,
        },
    }


def _compare_guidance(result: dict, truth: dict, cfg: GuidanceConfig) -> dict:
    out = {
        "mla_frame": [result["mla"]["frame"], truth["mla"]["frame"]],
        "calcium_score": [result["calcium"]["score"], truth["calcium"]["score"]],
        "calcium_score_exact": result["calcium"]["score"] == truth["calcium"]["score"],
    }
    rs, ts = result.get("sizing"), truth.get("sizing")
    if ts is not None or rs is not None:
        out["sizing_basis"] = [rs and rs["basis"], ts and ts["basis"]]
        out["sizing_diameter_mm"] = [rs and rs["diameter_mm"], ts and ts["diameter_mm"]]
        out["sizing_length_mm"] = [rs and rs["length_mm"], ts and ts["length_mm"]]
        out["sizing_basis_equal"] = bool(rs and ts and rs["basis"] == ts["basis"])
        out["sizing_diameter_equal"] = bool(
            rs and ts and rs["diameter_mm"] is not None and ts["diameter_mm"] is not None
            and abs(rs["diameter_mm"] - ts["diameter_mm"]) < 0.5 * cfg.diameter_step_mm
        )
        unrounded = [_eel_sizing_diameter(result), _eel_sizing_diameter(truth)]
        if rs and ts and None not in unrounded:
            out["sizing_eel_diameter_unrounded_mm"] = [round(v, 4) for v in unrounded]
        # A diameter that sits within measurement precision of a rounding step may round either
        # way: one step apart with unrounded values within 1% is a boundary flip, not an error.
        out["sizing_diameter_within_precision"] = bool(
            out["sizing_diameter_equal"]
            or (
                rs and ts and None not in unrounded
                and abs(abs(rs["diameter_mm"] - ts["diameter_mm"]) - cfg.diameter_step_mm) < 1e-9
                and abs(unrounded[0] / unrounded[1] - 1) < 0.01
            )
        )
        out["sizing_length_within_one_step"] = bool(
            rs and ts and _length_steps(rs["length_mm"], ts["length_mm"], cfg.stent_lengths_mm) <= 1
        )
    rst, tst = result.get("stent"), truth.get("stent")
    if tst is not None and rst is not None and rst.get("msa_mm2") and tst.get("msa_mm2"):
        out["msa_mm2"] = [rst["msa_mm2"], tst["msa_mm2"]]
        out["msa_error_pct"] = 100 * abs(rst["msa_mm2"] / tst["msa_mm2"] - 1)
        out["struts_malapposed"] = [rst["struts_malapposed"], tst["struts_malapposed"]]
    return out


def _eel_sizing_diameter(guidance: dict) -> float | None:
    """The unrounded EEL diameter an EEL-based sizing rounds down: the smaller reference's."""
    refs = guidance.get("references") or {}
    values = [refs.get("proximal_eel_mean_diameter_mm"), refs.get("distal_eel_mean_diameter_mm")]
    return None if None in values else float(min(values))


def _length_steps(a: float, b: float, available: Sequence[float]) -> int:
    """How many available stent lengths apart two chosen lengths are."""
    lengths = list(available)
    return abs(lengths.index(a) - lengths.index(b)) if a in lengths and b in lengths else 99


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _met(value: float | None, op: str, target: float) -> bool | None:
    if value is None:
        return None
    return value >= target if op == ">=" else value <= target
