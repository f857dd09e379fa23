"""The engine: frames in over ZeroMQ, overlays and guidance out, status and control, audit.

``Engine`` keeps the lifecycle (start, stop, the threads, the I/O loop); its parts live in their
own modules: :mod:`~engine.realtime.intake` (frames in, fates of frames never analysed),
:mod:`~engine.realtime.frame_path` (a worker's per-frame path and warm-up),
:mod:`~engine.realtime.outcomes` (fates of analysed frames, acknowledgements, finishing
pullbacks), :mod:`~engine.realtime.publisher` (display messages, events, heartbeats and their
sequence numbers), :mod:`~engine.realtime.controller` (control requests),
:mod:`~engine.realtime.status` (the status document) and :mod:`~engine.realtime.writer` (the
case log's thread).

Threads (each socket is used by exactly one thread; docs/architecture.md has the picture):

* **I/O thread** - owns every socket: receives frames (PULL, ``copy=False``), decodes and
  validates them (:mod:`streams.wire.protocol`), tracks each pullback, offers frames to the
  :class:`~engine.realtime.scheduler.FrameScheduler`, publishes overlays, images and guidance (XPUB) and
  heartbeats/events (PUB), answers control requests (ROUTER), watches connections (socket
  monitors) and times out silent senders.
* **worker threads** (``server.workers``, default 1) - each owns one analysis stage
  (:class:`~engine.realtime.scheduler.AnalysisStage`), takes the next frame from the scheduler (live slot
  first, backfill when idle), analyses it, builds the vector overlay and, if wanted, the
  rendered image; results go back to the I/O thread through a queue plus an ``inproc`` wake-up.
* **writer thread** - owns the SQLite case log (:mod:`engine.realtime.caselog`): commits frame records
  in batches and only then acknowledges them, finalises pullbacks (guidance, results folder
  written atomically) and recovers pullbacks a killed engine left open.

Every frame the engine receives ends in exactly one counted fate: ``rejected`` (with a reason),
``shown`` (analysed on the live lane and published as the live overlay), ``backfilled``
(analysed later, published on the backfill topic), ``late`` (analysed on the live lane but a
newer overlay went out first), ``failed`` (the stage raised: the record is ``rejected`` with
the reason) or ``skipped`` (evicted at a limit, or the engine stopped before analysing it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq

from engine import __version__
from engine.analysis.stage import AnalysisStage
from engine.analysis.stages import stage_factory
from engine.compute.backends import registry
from engine.compute.scan_convert import CartesianGrid
from engine.config import Config
from engine.realtime.controller import ControlDispatcher
from engine.realtime.dicom_export import DicomExport
from engine.realtime.errors import EngineError
from engine.realtime.intake import FrameIntake
from engine.realtime.messages import (
    Acknowledged,
    Analysed,
    ControlReply,
    Outgoing,
    PullbackWritten,
    Skipped,
)
from engine.realtime.outcomes import Outcomes
from engine.realtime.publisher import Publisher
from engine.realtime.scheduler import FrameScheduler
from engine.realtime.security import CurveServer, SecurityPolicy, decide
from engine.realtime.sockets import MONITOR_EVENTS, bind_sockets, read_monitor
from engine.realtime.status import LatencyWindow, WarmupStatus, counter_snapshot, status_message
from engine.realtime.tracker import PullbackTracker
from engine.realtime.workers import WorkerPool
from engine.realtime.writer import INTERRUPTED_REASON, CaseLogWriter
from streams.errors import OctguideError
from streams.wire.protocol import Limits

log = logging.getLogger(__name__)

COUNTERS = ("received", "accepted", "rejected", "shown", "backfilled", "late", "failed", "skipped",
            "never_received", "acknowledged", "overlays_published", "overlays_without_display",
            "images_published", "guidance_published", "control_requests", "control_errors",
            "pullbacks_opened", "pullbacks_complete", "pullbacks_incomplete", "connections_accepted",
            "connections_closed", "auth_failures", "handshake_failures")  #: status ``counters``, in order
PER_REASON = ("rejected", "skipped")  #: counters kept per reason


class Engine:
    """The octguide engine (module docstring).

    Parameters
    ----------
    config : Config
        Validated configuration (``config.server`` for endpoints, limits, security).
    make_stage : callable, optional
        Builds one analysis stage per worker (default: :func:`stage_factory`).

    Examples
    --------
    ``start()`` binds and returns the endpoints; ``stop()`` drains, flushes and closes::

        engine = Engine(Config.from_dict({"server": {"frames_endpoint": "tcp://127.0.0.1:*"}}))
        endpoints = engine.start()
        ...
        engine.stop()
    """

    def __init__(self, config: Config, make_stage: Callable[[], AnalysisStage] | None = None):
        self.config = config
        self.cfg = cfg = config.server
        self.make_stage = make_stage or stage_factory(config)
        self.config_hash = config.config_hash()
        self.results_dir = Path(cfg.results_dir)
        self.scheduler = FrameScheduler(cfg.max_pending_frames, int(cfg.max_pending_mib * (1 << 20)),
                                        cfg.overload_policy)
        self.endpoints: dict[str, str] = {}
        self.policy: SecurityPolicy | None = None
        self.stage_status: dict = {}
        self.model: dict = {}
        self.backends: dict = {}
        self.fallbacks: list[str] = []
        self.context: zmq.Context | None = None
        self.phase = "new"  # new -> running -> draining -> closing -> stopped
        self.started_monotonic = 0.0
        self.wake_endpoint = f"inproc://octguide-wake-{id(self):x}"
        self.readers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octguide-results")
        self.dicom_export = DicomExport(config, self.results_dir) if config.dicom.write_sr else None
        self.counters: dict[str, Any] = {k: {} if k in PER_REASON else 0 for k in COUNTERS}
        self.latency = LatencyWindow()
        self._errors: list[BaseException] = []  # the first one stops the engine (failure)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.tracker = PullbackTracker(cfg.max_open_pullbacks, cfg.max_frames_per_pullback,
                                       cfg.pullback_idle_timeout_s, cfg.end_grace_s, self.results_dir)
        self.publisher = Publisher(self.counters, self._audit)

        def post(item: Outgoing) -> None:  # late-bound, so a test that replaces _post sees every post
            self._post(item)

        self.workers = WorkerPool(self.make_stage, self.scheduler,
                                  CartesianGrid(cfg.image_size_px, cfg.image_fov_mm), cfg.render_image,
                                  lambda: (self.publisher.image_wanted, self.publisher.display_wanted),
                                  post, self._errors)
        self.writer = CaseLogWriter(config, self.config_hash, lambda: self.model, self.tracker, post,
                                    self._errors, maxsize=4 * cfg.max_pending_frames + 1024)
        self.intake = FrameIntake(self.counters, self.tracker, self.scheduler,
                                  Limits(max_payload_bytes=int(cfg.max_frame_mib * (1 << 20))),
                                  self.publisher, self.writer, self.workers.prepare_geometry, self._audit,
                                  lambda: self.phase == "running")
        self.outcomes = Outcomes(self.counters, self.tracker, self.publisher, self.writer, self.latency,
                                 cfg.image_fov_mm, self.dicom_export, self._audit)
        self.control = ControlDispatcher(self)
        self._curve: CurveServer | None = None
        self._io: threading.Thread | None = None
        self._io_ready = threading.Event()
        self._sock: dict[str, zmq.Socket] = {}

    @property
    def warmup(self) -> WarmupStatus:
        """Worker 0's warm-up (frames, lumen_frames, failed, ms) and the STARTs prepared (status)."""
        return self.workers.warmup

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> dict[str, str]:
        """Start the writer, the workers (stages loaded and warmed up) and the I/O thread, in that
        order, so no frame is accepted before it can be analysed and persisted.

        Returns
        -------
        dict
            ``{"frames", "overlay", "status", "control"}``: the bound endpoints (ports resolved).

        Raises
        ------
        SecurityError, EngineError
        """
        cfg = self.cfg
        endpoints = [cfg.frames_endpoint, cfg.overlay_endpoint, cfg.status_endpoint, cfg.control_endpoint]
        self.policy = decide(endpoints, curve=cfg.curve, insecure=cfg.insecure)
        self.started_monotonic = time.monotonic()
        self.context = zmq.Context()
        try:
            if self.policy.mode == "curve":
                self._curve = CurveServer(cfg.server_secret_key, cfg.authorized_clients)
                self._curve.start(self.context)
            self.writer.start(self.context, self.wake_endpoint)
            self._wait(self.writer.ready, "the case log")
            for ready in self.workers.start(cfg.workers, self.context, self.wake_endpoint):
                self._wait(ready, "an analysis stage")
            self.stage_status = self.workers.stage_status
            self.model = dict(self.stage_status.get("model") or {})
            self.backends = registry().report()
            self.fallbacks = [
                f"{kind}: {d['preferred']} unavailable ({d['fallback_reason']}), using {d['selected']}"
                for kind, d in self.backends["selected"].items() if d.get("fallback_reason")
            ] + list(self.stage_status.get("fallbacks") or [])
            self.phase = "running"
            self._io = threading.Thread(target=self._io_main, name="octguide-io", daemon=True)
            self._io.start()
            self._wait(self._io_ready, "the sockets")
        except BaseException:
            self.phase = "closing"
            self._shutdown_threads()
            self.phase = "stopped"
            raise
        log.info("engine %s serving: %s (security: %s)", __version__, self.endpoints, self.policy.mode)
        return dict(self.endpoints)

    def _wait(self, event: threading.Event, what: str) -> None:
        while not event.wait(0.05):
            if self._errors:
                break
        if self._errors:
            exc = self._errors[0]
            if isinstance(exc, OctguideError):
                raise exc
            raise EngineError(f"{what} failed to start: {type(exc).__name__}: {exc}") from exc

    def stop(self, drain_s: float | None = None) -> None:
        """Stop reading frames, analyse what is pending for up to ``drain_s`` (default
        ``server.stop_drain_s``), record the rest as skipped, close open pullbacks as incomplete,
        flush the case log and results, close every socket."""
        if self.phase in ("new", "stopped"):
            return
        self.phase = "draining"
        if self._errors:  # a dead thread: what is pending may never be analysed, do not wait on it
            drain_s = 0.0
        self.scheduler.wait_idle(self.cfg.stop_drain_s if drain_s is None else drain_s)
        leftovers = self.scheduler.drain()
        if leftovers:
            self._post(Skipped(tuple(leftovers), "engine stopped before analysing it"))
        self.scheduler.close()
        self.workers.join()
        self.phase = "closing"
        self._shutdown_threads()
        self.phase = "stopped"
        log.info("engine stopped")

    def _shutdown_threads(self) -> None:
        self.scheduler.close()
        self.readers.shutdown(wait=True)
        self.workers.join(timeout_s=30)
        if self._io is not None:
            self._io.join(timeout=60)
        else:
            self.writer.close()
        self.writer.join(timeout_s=60)
        if self.dicom_export is not None:
            self.dicom_export.close()
        if self._curve is not None:
            self._curve.stop()
        if self.context is not None:
            self.context.destroy(linger=0)
            self.context = None

    @property
    def failure(self) -> BaseException | None:
        """The first error that stopped a thread of the engine, if any (``serve`` exits on it)."""
        return self._errors[0] if self._errors else None

    def __enter__(self) -> Engine:  # noqa: PYI034 (Engine is not subclassed)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _audit(self) -> dict:
        return {"model": self.model, "engine_version": __version__, "config_hash": self.config_hash}

    def _post(self, item: Outgoing) -> None:
        self._outbox.put(item)

    # -- I/O thread --------------------------------------------------------------------------------
    def _io_main(self) -> None:
        sockets: list[zmq.Socket] = []
        try:
            self._sock, endpoints = bind_sockets(self.context, self.cfg, self._curve, self.wake_endpoint,
                                                 self.intake.limits.max_payload_bytes, sockets)
            self.endpoints.update(endpoints)
            monitors = {self._sock["frames"].get_monitor_socket(MONITOR_EVENTS): "frames",
                        self._sock["control"].get_monitor_socket(MONITOR_EVENTS): "control"}
            sockets.extend(monitors)
        except BaseException as exc:  # noqa: BLE001 (re-raised by start() in the caller's thread)
            self._errors.append(exc)
            for sock in sockets:
                sock.close(0)
            self.writer.close()
            return
        self.publisher.attach(self._sock["overlay"], self._sock["status"])
        self._io_ready.set()
        event = self.publisher.event
        event("engine_started", endpoints=self.endpoints, security=self.policy.describe())
        if self.policy.mode == "insecure":
            event("insecure", detail="non-loopback endpoints without CurveZMQ (--insecure)",
                  endpoints=list(self.policy.public_endpoints))
        for fallback in self.fallbacks:
            log.warning("backend fallback: %s", fallback)
            event("fallback", detail=fallback)
        for pid in sorted(self.writer.interrupted_ids):
            event("pullback_interrupted", pullback_id=pid, reason=INTERRUPTED_REASON)
        try:
            self._io_loop(monitors)
        except BaseException as exc:
            log.exception("engine I/O thread failed")
            self._errors.append(exc)
        finally:
            self._io_close(sockets)

    def _io_loop(self, monitors: dict) -> None:
        frames, overlay, control, wake_sock = (self._sock[k] for k in ("frames", "overlay", "control", "wake"))
        poller = zmq.Poller()
        for sock in (overlay, control, wake_sock, *monitors):
            poller.register(sock, zmq.POLLIN)
        reading = False
        next_heartbeat = time.monotonic()
        while True:
            want_frames = self.phase == "running" and (
                self.scheduler.policy == "skip" or self.scheduler.has_room())
            if want_frames != reading:
                if want_frames:
                    poller.register(frames, zmq.POLLIN)
                else:
                    poller.unregister(frames)
                reading = want_frames
            events = dict(poller.poll(0 if not self._outbox.empty() else 50))
            if frames in events:
                self.intake.read(frames)
            if wake_sock in events:
                while True:
                    try:
                        wake_sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            self._handle_outbox()
            if control in events:
                self.control.handle(control)
            if overlay in events:
                self.publisher.handle_subscriptions()
            for monitor, name in monitors.items():
                if monitor in events:
                    read_monitor(monitor, name, self.counters, self.publisher.event)
            now = time.monotonic()
            self.outcomes.check(now)
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self.cfg.heartbeat_s
            if self.phase == "closing":
                self._handle_outbox()
                self.outcomes.close_all()
                break

    def _io_close(self, sockets: list) -> None:
        """Flush: finish every pullback through the writer, publish what it returns, close."""
        try:
            self.writer.close()
            deadline = time.monotonic() + 60
            while self.writer.alive() and time.monotonic() < deadline:
                self.writer.join(timeout_s=0.02)
                self._handle_outbox()
            self._handle_outbox()
            self.publisher.event("engine_stopped", counters=counter_snapshot(self.counters))
        finally:
            for sock in sockets:
                if sock.type in (zmq.PUB, zmq.XPUB):
                    sock.close(linger=200)
                else:
                    sock.close(linger=0)

    def _handle_outbox(self) -> None:
        """Hand everything the workers, the writer and the reader threads sent to its handler."""
        while True:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Analysed):
                self.outcomes.analysed(item.job, item.outcome)
            elif isinstance(item, Acknowledged):
                self.outcomes.acknowledged(item.pullback_id, list(item.frames))
            elif isinstance(item, PullbackWritten):
                self.outcomes.finished(item.pullback_id, {"pullback": item.pullback,
                                                          "results_dir": item.results_dir})
            elif isinstance(item, Skipped):
                self.intake.skip(list(item.jobs), item.reason)
            elif isinstance(item, ControlReply):  # a control reply prepared off the I/O thread
                self.control.send_reply(self._sock["control"], item)

    def _heartbeat(self) -> None:
        if self.dicom_export is not None:
            self.dicom_export.poll()
        self.publisher.heartbeat(status_message(self))


__all__ = ["Engine", "EngineError"]
