"""Frames in (I/O thread only): read the frames socket, decode and validate each frame
(:mod:`streams.wire.protocol`), open and track its pullback (:mod:`engine.realtime.tracker`),
offer it to the scheduler, and record the fate of every frame that never reaches a worker
(``rejected`` with its reason, ``skipped`` at a limit or at stop)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from engine import __version__
from engine.realtime.messages import BeginPullback
from engine.realtime.publisher import Publisher
from engine.realtime.scheduler import FrameJob, FrameScheduler
from engine.realtime.tracker import INDEX_USING_REJECTIONS, PullbackState, PullbackTracker
from engine.realtime.writer import CaseLogWriter
from streams.geometry import FrameGeometry
from streams.wire.protocol import (
    FrameHeader,
    Limits,
    ProtocolError,
    decode_payload,
    frame_from_header,
    unpack_header,
)

FRAME_BURST = 64  #: frames read per poll wake-up before results are handled again
GEOMETRY_FIELDS = ("n_alines", "n_samples", "aline_spacing_mm", "refractive_index",
                   "refractive_index_applied", "n_padded_alines", "rotation", "intensity")


class FrameIntake:
    """The frames socket's reading side (module docstring).

    Parameters
    ----------
    counters : dict
        The engine's counters (received, accepted, rejected, skipped, pullbacks_opened).
    tracker, scheduler, limits :
        The engine's pullback tracker, frame scheduler and payload limits.
    publisher : Publisher
        Events (pullback opened, frame rejected or skipped).
    writer : CaseLogWriter
        The case log's queue (pullback rows, frame records).
    prepare : callable
        ``prepare(geometry, dtype)``: build a START's tables in every stage before its first
        frame is offered.
    audit : callable
        ``audit() -> dict``: model, engine version and config hash of every record.
    running : callable
        ``running() -> bool``: the engine is not stopping (a frame skipped while it stops gives
        its pullback the reason).
    """

    def __init__(self, counters: dict[str, Any], tracker: PullbackTracker, scheduler: FrameScheduler,
                 limits: Limits, publisher: Publisher, writer: CaseLogWriter,
                 prepare: Callable[[FrameGeometry, np.dtype], None], audit: Callable[[], dict],
                 running: Callable[[], bool]):
        self.counters = counters
        self.tracker = tracker
        self.scheduler = scheduler
        self.limits = limits
        self.publisher = publisher
        self.writer = writer
        self._prepare = prepare
        self._audit = audit
        self._running = running

    def read(self, sock: zmq.Socket) -> None:
        """Take up to :data:`FRAME_BURST` frames off the socket (fewer when ``block`` is full)."""
        for _ in range(FRAME_BURST):
            if self.scheduler.policy == "block" and not self.scheduler.has_room():
                return
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.intake(parts, time.perf_counter_ns())

    def intake(self, parts: list, received_ns: int) -> None:
        """One frames message: rejected with its reason, or accepted and offered. A START opens
        its pullback only when the frame itself is accepted; a frame of a known pullback with a
        valid new index that is still inadmissible uses up that index (docs/protocol.md)."""
        c = self.counters
        c["received"] += 1
        try:
            if len(parts) != 2:
                raise ProtocolError("malformed_header",
                                    f"{len(parts)} message parts, expected 2 (header, payload)")
            header = unpack_header(parts[0].buffer)
        except ProtocolError as exc:
            self.reject(exc, None, None)
            return
        pb = self.tracker.pullbacks.get(header.pullback_id)
        pixels = None
        inadmissible = None  # a frame of this pullback with a valid new index, still rejected
        try:
            if pb is None:  # a START: nothing opens unless the frame itself is accepted
                candidate = self.tracker.candidate(header, time.monotonic(), time.time())
                pixels = decode_payload(header, parts[1], self.limits)
                pb = self.register(candidate)
            else:
                self.tracker.admit(pb, header)
        except ProtocolError as exc:
            if pb is None or exc.reason not in INDEX_USING_REJECTIONS:
                self.reject(exc, header, None)
                return
            inadmissible = exc
        if pb.geometry is None:
            self.describe(pb, header)
        self.tracker.note_frame(pb, header, time.monotonic(), time.time())
        if inadmissible is not None:
            self.reject(inadmissible, header, pb)
            return
        try:
            if pixels is None:
                pixels = decode_payload(header, parts[1], self.limits)
        except ProtocolError as exc:
            self.reject(exc, header, pb)
            return
        c["accepted"] += 1
        frame = frame_from_header(header, pixels, pb.geometry, pb.position_mm)
        pb.outstanding += 1
        evicted = self.scheduler.offer(FrameJob(frame, received_ns, pixels.nbytes))
        if evicted:
            self.skip(evicted, "overload: pending frame limit reached (server.max_pending_*)")

    def new_pullback(self, pid: str, n_frames: int) -> PullbackState:
        """Open a pullback announced on the control channel (``start_pullback``)."""
        now = time.monotonic()
        return self.register(PullbackState(pid, now, time.time(), n_frames_expected=n_frames,
                                           last_frame_monotonic=now))

    def register(self, pb: PullbackState) -> PullbackState:
        """Open ``pb``: known from now on (the tracker), counted, announced."""
        self.tracker.register(pb)
        self.counters["pullbacks_opened"] += 1
        self.publisher.event("pullback_opened", pullback_id=pb.pullback_id,
                             n_frames=pb.n_frames_expected or None)
        return pb

    def describe(self, pb: PullbackState, header: FrameHeader) -> None:
        """The first frame of a pullback fixes its geometry (its tables built now, before the
        frame is offered) and opens its case-log row."""
        pb.geometry = header.geometry()
        pb.dtype_code = header.dtype_code
        pb.frame_rate_hz = header.frame_rate_hz
        pb.n_frames_expected = pb.n_frames_expected or header.n_frames
        self._prepare(pb.geometry, np.dtype(header.dtype))
        geometry = {**{k: getattr(pb.geometry, k) for k in GEOMETRY_FIELDS}, "dtype": str(header.dtype),
                    "frame_spacing_mm": header.step_mm, "pullback_rate_mm_s": header.pullback_rate_mm_s}
        audit = self._audit()
        self.writer.put(BeginPullback(pb.pullback_id, {
            "geometry": geometry, "frame_rate_hz": header.frame_rate_hz,
            "n_frames_expected": pb.n_frames_expected or None, "model": audit["model"],
            "engine_version": __version__, "config_hash": audit["config_hash"],
            "opened_unix": pb.opened_unix}))
        pb.logged = True

    def reject(self, exc: ProtocolError, header: FrameHeader | None, pb: PullbackState | None) -> None:
        """Count a rejected frame, report it, and record its fate when its pullback is known."""
        rejected = self.counters["rejected"]
        rejected[exc.reason] = rejected.get(exc.reason, 0) + 1
        pid = header.pullback_id if header is not None else None
        index = header.frame_index if header is not None else None
        self.publisher.event("rejected", reason=exc.reason, detail=exc.detail, pullback_id=pid, frame=index)
        if pb is not None:
            pb.counts["rejected"] += 1
            self.writer.record(pb, {"frame": index, "status": "rejected",
                                    "reason": f"{exc.reason}: {exc.detail}"}, self._audit())

    def skip(self, jobs: list[FrameJob], reason: str) -> None:
        """Frames that will never be analysed (evicted at a limit, or the engine stopped)."""
        for job in jobs:
            skipped = self.counters["skipped"]
            key = reason.split(":")[0]
            skipped[key] = skipped.get(key, 0) + 1
            pb = self.tracker.pullbacks.get(job.frame.pullback_id)
            if pb is None:
                continue
            pb.outstanding -= 1
            pb.counts["skipped"] += 1
            if not self._running() and pb.reason is None:
                pb.reason = "the engine stopped before analysing every frame"
            self.writer.record(pb, {"frame": job.frame.index, "status": "skipped", "reason": reason},
                               self._audit())
            self.publisher.event("skipped", pullback_id=pb.pullback_id, frame=job.frame.index, reason=reason)


__all__ = ["FRAME_BURST", "FrameIntake"]
