"""The engine's status document (the ``status`` control reply and every heartbeat,
docs/protocol.md and docs/schemas/status.schema.json), built from the engine's parts; and the
live end-to-end latency window it reports."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import __version__
from engine.realtime.tracker import PullbackState, PullbackTracker
from streams.wire.protocol import PROTOCOL_VERSION

if TYPE_CHECKING:
    from engine.realtime.server import Engine

LATENCY_WINDOW = 2048  #: live end-to-end times kept for the heartbeat's percentiles


class LatencyWindow:
    """The last :data:`LATENCY_WINDOW` live end-to-end times, ms (a ring: bounded memory)."""

    def __init__(self, size: int = LATENCY_WINDOW):
        self._values = np.full(size, np.nan)
        self._n = 0

    def add(self, ms: float) -> None:
        self._values[self._n % self._values.size] = ms
        self._n += 1

    def summary(self) -> dict | None:
        """``{"frames", "p50", "p99", "max"}`` (ms, rounded to us) or None before any frame."""
        window = self._values[np.isfinite(self._values)]
        if not window.size:
            return None
        p50, p99 = np.percentile(window, [50, 99])
        return {"frames": int(window.size), "p50": round(float(p50), 3),
                "p99": round(float(p99), 3), "max": round(float(window.max()), 3)}


def pullback_status(pb: PullbackState) -> dict:
    """One pullback as the ``pullback`` reply and status's ``pullbacks`` state it."""
    analysed = sum(pb.counts[k] for k in ("shown", "backfilled", "late", "failed"))
    return {"pullback_id": pb.pullback_id, "state": pb.state, "reason": pb.reason,
            "n_frames_expected": pb.n_frames_expected or None, "end_index": pb.end_index,
            "highest": pb.highest, "outstanding": pb.outstanding, "analysed": analysed,
            **pb.counts, "results_dir": pb.results_dir, "guidance_delay_s": pb.guidance_delay_s}


def admission(cfg: Any, tracker: PullbackTracker) -> dict:
    """The pullback admission policy in force (docs/results.md, "Admission"): at most
    ``max_open_pullbacks`` open or ending at once (a START beyond it is rejected
    ``too_many_pullbacks``); a pullback whose sender is silent for ``pullback_idle_timeout_s``
    ends incomplete and frees its place; ``end_grace_s`` waits for missing frames after END."""
    return {"max_open_pullbacks": cfg.max_open_pullbacks, "open_pullbacks": tracker.open_count(),
            "pullback_idle_timeout_s": cfg.pullback_idle_timeout_s,
            "end_grace_s": cfg.end_grace_s,
            "max_frames_per_pullback": cfg.max_frames_per_pullback}


def counter_snapshot(counters: dict) -> dict:
    """A copy of the engine's counters (the nested per-reason counts copied too)."""
    return {**counters, "rejected": dict(counters["rejected"]), "skipped": dict(counters["skipped"])}


def status_message(engine: Engine) -> dict:
    """The status document of ``engine`` now (I/O thread)."""
    failure = engine.failure
    return {
        "engine_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "uptime_s": round(time.monotonic() - engine.started_monotonic, 3),
        "phase": "failed" if failure is not None and engine.phase == "running" else engine.phase,
        "error": f"{type(failure).__name__}: {failure}" if failure is not None else None,
        "config_hash": engine.config_hash,
        "model": engine.model,
        "stage": engine.stage_status,
        "warmup": engine.warmup,
        "backends": engine.backends,
        "fallbacks": engine.fallbacks,
        "security": engine.policy.describe() if engine.policy else None,
        "endpoints": engine.endpoints,
        "counters": counter_snapshot(engine.counters),
        "scheduler": engine.scheduler.snapshot(),
        "admission": admission(engine.cfg, engine.tracker),
        "dicom": engine.dicom_export.status() if engine.dicom_export is not None else {"write_sr": False},
        "end_to_end_ms": engine.latency.summary(),
        "displays": engine.publisher.displays(),
        "pullbacks": {pid: pullback_status(pb) for pid, pb in engine.tracker.pullbacks.items()
                      if pb.state in ("open", "ending", "finalizing")},
    }


__all__ = ["LATENCY_WINDOW", "LatencyWindow", "admission", "counter_snapshot", "pullback_status",
           "status_message"]
