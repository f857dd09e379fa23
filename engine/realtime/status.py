"""The engine's status document (the ``status`` control reply and every heartbeat,
docs/protocol.md and docs/schemas/status.schema.json), built from the engine's parts; and the
live end-to-end latency window it reports.

Sections that are typed here (:class:`Admission`, :class:`WarmupStatus`: frozen dataclasses,
units in their field descriptions) have their JSON Schema *generated* from the type
(:func:`section_schema`, pydantic's ``TypeAdapter``) into docs/schemas/status.schema.json, so
the document and its schema cannot drift apart; the other sections are still described by hand
in engine/realtime/schemas.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter

from engine import __version__
from engine.realtime.tracker import PullbackState, PullbackTracker
from streams.wire.protocol import PROTOCOL_VERSION

if TYPE_CHECKING:
    from engine.realtime.server import Engine

LATENCY_WINDOW = 2048  #: live end-to-end times kept for the heartbeat's percentiles

#: Every field of a status section is always present (defaults included), unknown ones never.
_SECTION = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)
Count = Annotated[int, Field(ge=0)]


@dataclass(frozen=True)
class Admission:
    """The pullback admission policy in force (docs/results.md, "Admission")."""

    __pydantic_config__ = _SECTION

    max_open_pullbacks: Annotated[int, Field(ge=0, description="pullbacks open or ending at once; "
                                             "a START beyond it is rejected too_many_pullbacks")]
    open_pullbacks: Annotated[int, Field(ge=0, description="pullbacks open or ending now")]
    pullback_idle_timeout_s: Annotated[float, Field(description="s of sender silence after which a "
                                                    "pullback ends incomplete and frees its place")]
    end_grace_s: Annotated[float, Field(description="s waited for missing frames after END")]
    max_frames_per_pullback: Annotated[int, Field(ge=0, description="frames; more are rejected "
                                                  "pullback_too_long")]


@dataclass(frozen=True)
class WarmupStatus:
    """Worker 0's warm-up before the first live frame, and the STARTs whose geometry tables the
    I/O thread built since (engine/realtime/warmup.py)."""

    __pydantic_config__ = _SECTION

    frames: Annotated[int, Field(ge=0, description="warm frames run through the whole frame path")]
    lumen_frames: Annotated[int, Field(ge=0, description="warm frames whose record measured a lumen "
                                       "(0 for a stage without a model)")]
    failed: Annotated[int, Field(ge=0, description="warm frames that raised (counted, not fatal)")]
    failures: Annotated[tuple[str, ...], Field(max_length=3, description="the first failures' reasons")]
    ms: Annotated[float, Field(ge=0, description="warm-up time, ms")]
    geometries_prepared: Annotated[int, Field(ge=0, description="STARTs whose tables were built "
                                              "before their first frame was offered")] = 0
    last_prepare_ms: Annotated[float | None, Field(description="time of the last START's table "
                                                   "building on the I/O thread, ms")] = None


def section_schema(section: type) -> dict:
    """The JSON Schema of a typed status section, generated from its dataclass."""
    return TypeAdapter(section).json_schema(mode="serialization")


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
    """The pullback admission policy in force (:class:`Admission`) as status states it."""
    return asdict(Admission(cfg.max_open_pullbacks, tracker.open_count(), cfg.pullback_idle_timeout_s,
                            cfg.end_grace_s, cfg.max_frames_per_pullback))


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
        "warmup": asdict(engine.warmup),
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


__all__ = [
    "LATENCY_WINDOW",
    "Admission",
    "LatencyWindow",
    "WarmupStatus",
    "admission",
    "counter_snapshot",
    "pullback_status",
    "section_schema",
    "status_message",
]
