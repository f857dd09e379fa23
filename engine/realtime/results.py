"""Results on disk (docs/results.md): guidance over a finished pullback, the atomic results folder,
and the summaries the case log and the replay report print."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine import __version__
from engine.clinical.guidance import pullback_guidance
from engine.config import GuidanceConfig
from streams.wire.protocol import dumps


def _guidance(records: list[dict], spacing: list[float], cfg: GuidanceConfig) -> dict:
    """``pullback_guidance`` over a complete pullback; a pullback whose frames carry no lumen
    (the metal-only stage, or every frame rejected) gets the same keys, null, and the reason."""
    steps = spacing[: len(records)] or [0.0]
    try:
        return pullback_guidance(records, steps, cfg=cfg)
    except ValueError as exc:
        return {"n_frames": len(records), "frame_spacing_mm": float(np.mean(steps)), "mla": None,
                "references": None, "calcium": None, "sizing": None, "stent": None,
                "warnings": [f"no guidance: {exc}"]}


def guidance_summary(pullback: dict) -> dict:
    """The few numbers the case log and the replay summary show of a pullback.json."""
    sizing, stent, mla, calcium = (pullback.get(k) or {} for k in ("sizing", "stent", "mla", "calcium"))
    return {
        "status": pullback.get("status"),
        "n_frames": pullback.get("n_frames"),
        "mla_frame": mla.get("frame"),
        "mla_mm2": mla.get("area_mm2"),
        "calcium_score": calcium.get("score"),
        "stent_diameter_mm": sizing.get("diameter_mm"),
        "stent_length_mm": sizing.get("length_mm"),
        "expansion_pct": stent.get("expansion_pct"),
        "expansion_class": stent.get("classification"),
        "warnings": pullback.get("warnings", []),
    }


def write_results(root: Path, pullback_id: str, records: list[dict], pullback: dict) -> Path:
    """Write ``root/<pullback_id>/{frames.jsonl,pullback.json}`` atomically.

    Both files go to a hidden temporary folder beside the final one, are fsynced, and the folder
    is renamed into place, so a reader (or a crash) sees either no folder or a complete one. An
    existing folder (an interrupted run's) is replaced.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / pullback_id
    partial = root / f".{pullback_id}.partial-{os.getpid()}-{threading.get_ident()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    lines = b"".join(dumps(r) + b"\n" for r in records)
    for name, data in (("frames.jsonl", lines), ("pullback.json", dumps(pullback) + b"\n")):
        with open(partial / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    if final.exists():
        stale = root / f".{pullback_id}.replaced-{time.time_ns()}"
        final.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    partial.rename(final)
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def percentile_summary(values_ms: list[float] | np.ndarray) -> dict:
    """p50/p99/p99.9/max of latencies (ms), the way docs/architecture.md reports them."""
    v = np.asarray(values_ms, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"n": 0}
    p = np.percentile(v, [50, 99, 99.9])
    return {"n": int(v.size), "p50": round(float(p[0]), 3), "p99": round(float(p[1]), 3),
            "p99.9": round(float(p[2]), 3), "max": round(float(v.max()), 3),
            "mean": round(float(v.mean()), 3)}


def finished_record(record: dict, latency_ms: dict, lane: str, pullback_id: str, audit: dict) -> dict:
    """A frame's final ``frames.jsonl`` record (docs/results.md): the stage's record, then its
    latencies (ms, rounded to 3 dp), lane (``live`` or ``backfill``), pullback id and audit
    (model, engine version, config hash), in that key order (the engine's ``_publish_result``
    and ``_record`` add the same keys in the same order).

    >>> finished_record({"frame": 3, "status": "ok"}, {"analysis": 12.34567}, "backfill", "pb", {})
    {'frame': 3, 'status': 'ok', 'latency_ms': {'analysis': 12.346}, 'lane': 'backfill', 'pullback_id': 'pb', 'audit': {}}
    """
    out = dict(record)
    out["latency_ms"] = {k: round(v, 3) for k, v in latency_ms.items()}
    out["lane"] = lane
    out["pullback_id"] = pullback_id
    out["audit"] = audit
    return out


def pullback_document(records: list[dict], *, pullback_id: str, state: str, spacing: list[float],
                      reason: str | None, counts: dict, guidance_config: GuidanceConfig, model: dict,
                      engine_version: str, config_hash: str, opened_unix: float | None,
                      last_frame_unix: float | None, clock: Callable[[], float] | None = None,
                      extra: dict | None = None) -> dict:
    """The ``pullback.json`` document of a finished pullback (docs/results.md) from its frame
    records: no I/O, one implementation for the engine's writer thread and for re-analysis.

    Parameters
    ----------
    records : list of dict
        The pullback's frame records in frame order (``frames.jsonl``).
    state : str
        ``complete`` (guidance is computed, with a warning naming the frames without a
        measurement), or why it is not (``interrupted``, ...: no guidance, the reason says why).
    spacing : list of float
        Frame spacing per frame, mm.
    counts : dict
        Frame counts (``received``, ``shown``, ``backfilled``, ``rejected``, ...).
    model, engine_version, config_hash
        The audit identity of the results.
    opened_unix, last_frame_unix : float or None
        When the pullback was opened and its last frame received, s since the epoch.
    clock : callable
        Wall clock, s since the epoch, read once the guidance is computed
        (``guidance_ready_unix``; default :func:`time.time`).
    extra : dict, optional
        Keys appended after the guidance (re-analysis adds ``reanalysis``).
    """
    guidance = None
    if state == "complete" and records:
        guidance = _guidance(records, spacing, guidance_config)
        unmeasured = {k: counts[k] for k in ("rejected", "failed", "skipped", "never_received")
                      if counts.get(k)}
        if unmeasured:
            guidance["warnings"].append(
                f"{sum(unmeasured.values())} of {len(records)} frames have no measurement ("
                + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in unmeasured.items()) + ")")
    ready_unix = (clock or time.time)()
    return {
        "pullback_id": pullback_id,
        "status": state,
        "reason": reason,
        "model": model,
        "engine_version": engine_version,
        "config_hash": config_hash,
        "counts": counts,
        "timing": {
            "opened_unix": opened_unix,
            "last_frame_received_unix": last_frame_unix,
            "guidance_ready_unix": ready_unix,
            "guidance_delay_s": round(ready_unix - last_frame_unix, 3) if last_frame_unix else None,
            **_first_live(records),
        },
        **(guidance or {"n_frames": len(records), "warnings": [
            f"no guidance: the pullback is {state}" + (f" ({reason})" if reason else "")]}),
        **(extra or {}),
    }


def export_pullback(caselog: Any, pullbacks_root: Path, pullback_id: str, state: str, spacing: list,
                    reason: str | None, summary: dict, guidance_config: Any, model: dict,
                    config_hash: str) -> dict:
    """Build a finished pullback's document (:func:`pullback_document`) from its case-log
    records, write its results folder atomically and close its case-log row (the writer
    thread's part of finishing a pullback; no engine state).

    Returns ``{"pullback": the pullback.json dict, "results_dir": str}``.
    """
    records = caselog.frame_records(pullback_id)
    row = caselog.pullback(pullback_id) or {}
    pullback = pullback_document(
        records, pullback_id=pullback_id, state=state, spacing=spacing, reason=reason,
        counts=summary.get("counts", {}), guidance_config=guidance_config,
        model=row.get("model") or model, engine_version=row.get("engine_version") or __version__,
        config_hash=row.get("config_hash") or config_hash, opened_unix=row.get("opened_unix"),
        last_frame_unix=summary.get("last_frame_unix"))
    folder = write_results(pullbacks_root, pullback_id, records, pullback)
    caselog.finish_pullback(pullback_id, state=state, counts=pullback["counts"],
                            guidance_summary=guidance_summary(pullback), results_dir=str(folder),
                            reason=reason)
    return {"pullback": pullback, "results_dir": str(folder)}


def _first_live(records: list[dict]) -> dict:
    """``first_live_ms`` (receipt to send of the first frame shown live) and ``live_median_ms``
    (median over the live frames) of a pullback's records, ms; None without live frames."""
    live = [r["latency_ms"]["end_to_end"] for r in sorted(records, key=lambda r: r.get("frame", 0))
            if r.get("lane") == "live" and "end_to_end" in (r.get("latency_ms") or {})]
    return {"first_live_ms": round(live[0], 3) if live else None,
            "live_median_ms": round(float(np.median(live)), 3) if live else None}
