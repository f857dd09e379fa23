"""The engine: frames in over ZeroMQ, overlays and guidance out, status and control, audit.

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

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from engine import __version__
from engine.analysis.stage import AnalysisStage
from engine.analysis.stages import stage_factory
from engine.compute.backends import registry
from engine.compute.scan_convert import (
    CartesianGrid,
    DisplayOrientation,
)
from engine.config import Config
from engine.display.overlay import build_overlay, burn_overlay, display_grey, lmode_cuts
from engine.realtime.caselog import CaseLog
from engine.realtime.control import (
    ControlRequest,
    ControlRequestError,
    parse_request,
    results_folder,
    safe_id,
)
from engine.realtime.dicom_export import DicomExport
from engine.realtime.encoding import encode
from engine.realtime.messages import (
    Acknowledged,
    Analysed,
    BeginPullback,
    ControlReply,
    FinishPullback,
    FrameOutcome,
    FrameRecord,
    Outgoing,
    PullbackWritten,
    Skipped,
    Write,
)
from engine.realtime.results import export_pullback
from engine.realtime.scheduler import FrameJob, FrameScheduler
from engine.realtime.security import CurveServer, SecurityPolicy, decide
from engine.realtime.tracker import INDEX_USING_REJECTIONS, PullbackState, PullbackTracker
from engine.realtime.warmup import (
    WARM_GEOMETRIES,
    forget_warm_frames,
    prepare_geometry,
    warm_frames,
)
from streams.errors import OctguideError
from streams.geometry import FrameGeometry
from streams.wire.protocol import (
    LMODE_ANGLES_DEG,
    PROTOCOL_VERSION,
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_EVENT,
    TOPIC_GUIDANCE,
    TOPIC_HEARTBEAT,
    TOPIC_IMAGE,
    TOPIC_OVERLAY,
    FrameHeader,
    Limits,
    ProtocolError,
    decode_payload,
    dumps,
    frame_from_header,
    unpack_header,
)

log = logging.getLogger(__name__)

FRAME_BURST = 64  #: frames read per poll wake-up before results are handled again
LATENCY_WINDOW = 2048  #: live end-to-end times kept for the heartbeat's percentiles
WRITER_BATCH = 256  #: frame records committed per transaction at most
_STOP = object()  #: the writer queue's end marker (not None: the batching loop holds None as "nothing held")
INTERRUPTED_REASON = "the engine stopped without closing it"  #: of pullbacks a previous run left open
MONITOR_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                  | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
STRUT_STATES = ("apposed", "malapposed", "unknown")
class EngineError(OctguideError):
    """The engine could not start (a stage, the case log or a socket failed)."""


# ---------------------------------------------------------------------------------------------
# Per-pullback bookkeeping (I/O thread only)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


class FailureLog:
    """Throttled logging of failed frames: the first ``first_n`` in full, then one line per
    ``interval_s`` seconds saying how many more failed (thread-safe; workers share it)."""

    def __init__(self, first_n: int = 10, interval_s: float = 10.0):
        self.first_n = first_n
        self.interval_s = interval_s
        self.total = 0
        self._suppressed = 0
        self._last_s = 0.0
        self._lock = threading.Lock()

    def failed(self, pullback_id: str, index: int, exc: BaseException) -> None:
        with self._lock:
            self.total += 1
            if self.total <= self.first_n:
                log.warning("analysis of %s frame %d failed: %s: %s", pullback_id, index,
                            type(exc).__name__, exc)
                self._last_s = time.monotonic()
                return
            self._suppressed += 1
            now = time.monotonic()
            if now - self._last_s >= self.interval_s:
                log.warning("%d more frames failed in the last %.0f s (latest: %s frame %d: %s: %s)",
                            self._suppressed, now - self._last_s, pullback_id, index,
                            type(exc).__name__, exc)
                self._suppressed = 0
                self._last_s = now


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
        self.cfg = config.server
        self.make_stage = make_stage or stage_factory(config)
        self.config_hash = config.config_hash()
        self.results_dir = Path(self.cfg.results_dir)
        self.limits = Limits(max_payload_bytes=int(self.cfg.max_frame_mib * (1 << 20)))
        self.scheduler = FrameScheduler(self.cfg.max_pending_frames,
                                        int(self.cfg.max_pending_mib * (1 << 20)),
                                        self.cfg.overload_policy)
        self.endpoints: dict[str, str] = {}
        self.policy: SecurityPolicy | None = None
        self.stage_status: dict = {}
        self.model: dict = {}
        self.backends: dict = {}
        self.fallbacks: list[str] = []
        self.context: zmq.Context | None = None
        self._curve: CurveServer | None = None
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._writes: queue.Queue = queue.Queue(maxsize=4 * self.cfg.max_pending_frames + 1024)
        self._workers: list[threading.Thread] = []
        self._io: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._io_ready = threading.Event()
        self._writer_ready = threading.Event()
        self._errors: list[BaseException] = []
        self._failure_log = FailureLog()
        self._stages: list[AnalysisStage] = []  # every worker's, started and warmed (prepared on START)
        self._stages_lock = threading.Lock()
        self.warmup: dict = {}  # worker 0's warm-up: frames run, failures, time; STARTs prepared (status)
        self.dicom_export = DicomExport(config, self.results_dir) if config.dicom.write_sr else None
        self.tracker = PullbackTracker(self.cfg.max_open_pullbacks, self.cfg.max_frames_per_pullback,
                                       self.cfg.pullback_idle_timeout_s, self.cfg.end_grace_s, self.results_dir)
        self._interrupted_ids: set[str] = set()  # left open by a previous run, marked interrupted
        self._readers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octguide-results")
        self._phase = "new"  # new -> running -> draining -> closing -> stopped
        self._image_wanted = False
        self._display_wanted = False
        self._wake_endpoint = f"inproc://octguide-wake-{id(self):x}"
        self._started_monotonic = 0.0
        # I/O-thread state
        self._pullbacks = self.tracker.pullbacks  # the tracker's, read here for status and results
        self._counters: dict[str, Any] = {
            "received": 0, "accepted": 0, "rejected": {}, "shown": 0, "backfilled": 0, "late": 0,
            "failed": 0, "skipped": {}, "never_received": 0, "acknowledged": 0,
            "overlays_published": 0, "overlays_without_display": 0, "images_published": 0,
            "guidance_published": 0, "control_requests": 0, "control_errors": 0,
            "pullbacks_opened": 0, "pullbacks_complete": 0, "pullbacks_incomplete": 0,
            "connections_accepted": 0, "connections_closed": 0, "auth_failures": 0,
            "handshake_failures": 0,
        }
        self._latency = np.full(LATENCY_WINDOW, np.nan)
        self._latency_n = 0
        self._subscriptions: set[bytes] = set()
        self._topic_seq: dict[bytes, int] = {}  # per display topic: messages published
        self._status_seq = 0
        self._sock: dict[str, zmq.Socket] = {}

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
        self._started_monotonic = time.monotonic()
        self.context = zmq.Context()
        try:
            if self.policy.mode == "curve":
                self._curve = CurveServer(cfg.server_secret_key, cfg.authorized_clients)
                self._curve.start(self.context)
            self._writer = threading.Thread(target=self._writer_main, name="octguide-writer", daemon=True)
            self._writer.start()
            self._wait(self._writer_ready, "the case log")
            stages_ready = [threading.Event() for _ in range(cfg.workers)]
            for k, ready in enumerate(stages_ready):
                worker = threading.Thread(target=self._worker_main, args=(k, ready),
                                          name=f"octguide-worker-{k}", daemon=True)
                self._workers.append(worker)
                worker.start()
            for ready in stages_ready:
                self._wait(ready, "an analysis stage")
            self.backends = registry().report()
            self.fallbacks = [
                f"{kind}: {d['preferred']} unavailable ({d['fallback_reason']}), using {d['selected']}"
                for kind, d in self.backends["selected"].items() if d.get("fallback_reason")
            ] + list(self.stage_status.get("fallbacks") or [])
            self._phase = "running"
            self._io = threading.Thread(target=self._io_main, name="octguide-io", daemon=True)
            self._io.start()
            self._wait(self._io_ready, "the sockets")
        except BaseException:
            self._phase = "closing"
            self._shutdown_threads()
            self._phase = "stopped"
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
        if self._phase in ("new", "stopped"):
            return
        self._phase = "draining"
        if self._errors:  # a dead thread: what is pending may never be analysed, do not wait on it
            drain_s = 0.0
        self.scheduler.wait_idle(self.cfg.stop_drain_s if drain_s is None else drain_s)
        leftovers = self.scheduler.drain()
        if leftovers:
            self._post(Skipped(tuple(leftovers), "engine stopped before analysing it"))
        self.scheduler.close()
        for worker in self._workers:
            worker.join()
        self._phase = "closing"
        self._shutdown_threads()
        self._phase = "stopped"
        log.info("engine stopped")

    def _shutdown_threads(self) -> None:
        self.scheduler.close()
        self._readers.shutdown(wait=True)
        for worker in self._workers:
            worker.join(timeout=30)
        if self._io is not None:
            self._io.join(timeout=60)
        else:
            self._writes.put(_STOP)
        if self._writer is not None:
            self._writer.join(timeout=60)
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

    # -- worker threads ----------------------------------------------------------------------------
    def _worker_main(self, k: int, ready: threading.Event) -> None:
        try:
            stage = self.make_stage()
            stage.start()
        except BaseException as exc:  # noqa: BLE001 (re-raised by start() in the caller's thread)
            self._errors.append(exc)
            return
        wake = None
        try:
            if k == 0:
                self.stage_status = stage.status()
                self.model = dict(self.stage_status.get("model") or {})
            wake = self.context.socket(zmq.PUSH)
            wake.linger = 0
            wake.connect(self._wake_endpoint)
            grid = CartesianGrid(self.cfg.image_size_px, self.cfg.image_fov_mm)
            orientation = getattr(stage, "orientation", DisplayOrientation())
            self._warm_up(k, stage, grid, orientation)
            with self._stages_lock:
                self._stages.append(stage)
            ready.set()
            while True:
                job = self.scheduler.take(timeout_s=0.25)
                if job is None:
                    if self.scheduler.closed:
                        break
                    continue
                try:
                    self._post(Analysed(job, self._analyse(stage, job, grid, orientation)))
                finally:
                    self.scheduler.done(job)
                self._wake(wake)
        except BaseException as exc:  # noqa: BLE001 (a dead worker stops the engine: serve exits on it)
            log.error("engine worker %d died: %s: %s", k, type(exc).__name__, exc)
            self._errors.append(EngineError(f"worker {k} died: {type(exc).__name__}: {exc}"))
        finally:
            if wake is not None:
                wake.close()
            stage.stop()

    def _warm_up(self, k: int, stage: AnalysisStage, grid: CartesianGrid,
                 orientation: DisplayOrientation) -> None:
        """Run the whole per-frame path on live-typed, realistic warm frames (a phantom
        cross-section in every wire dtype, then an all-zero frame; engine/realtime/warmup.py) of
        every warm geometry, so the first live frame compiles and builds nothing; then clear
        what they left in the stage's cross-frame state. A warm frame that fails is counted and
        logged, never fatal (a stage may refuse an all-zero frame)."""
        t0 = time.perf_counter()
        frames = lumen = 0
        failed: list[str] = []
        for geometry in WARM_GEOMETRIES:
            for frame in warm_frames(geometry):
                job = FrameJob(frame, time.perf_counter_ns(), frame.pixels.nbytes)
                job.started_ns = job.received_ns
                frames += 1
                try:
                    out = self._analyse_frame(stage, job, grid, orientation, 0.0, time.perf_counter(),
                                              image_wanted=self.cfg.render_image,
                                              display_wanted=self.cfg.render_image)
                except Exception as exc:  # noqa: BLE001 (warm-up is best effort: counted, reported)
                    failed.append(f"{geometry.n_alines}x{geometry.n_samples} {frame.pixels.dtype}: "
                                  f"{type(exc).__name__}: {exc}"[:200])
                    continue
                lumen += out.record.get("lumen") is not None
        forget_warm_frames(stage)
        if k == 0:
            self.warmup = {"frames": frames, "lumen_frames": lumen, "failed": len(failed),
                           "failures": failed[:3], "ms": round((time.perf_counter() - t0) * 1e3, 1),
                           "geometries_prepared": 0}
        if failed:
            log.warning("worker %d: %d warm-up frames failed (first: %s)", k, len(failed), failed[0])

    def _prepare_geometry(self, geometry: FrameGeometry, dtype: np.dtype) -> None:
        """Build a START's geometry tables in every worker's stage, on the I/O thread, before its
        first frame is offered to the scheduler (cached tables are looked up, not rebuilt; the
        stages' caches are locked, engine/realtime/warmup.py). A failure is the frame's to
        report when it is analysed, not the engine's."""
        t0 = time.perf_counter()
        with self._stages_lock:
            stages = list(self._stages)
        for k, stage in enumerate(stages):
            try:
                prepare_geometry(stage, geometry, dtype)
            except Exception as exc:  # noqa: BLE001 (the frame itself will fail with the reason)
                log.warning("worker %d: preparing geometry %s failed: %s: %s", k, geometry,
                            type(exc).__name__, exc)
        self.warmup["geometries_prepared"] = self.warmup.get("geometries_prepared", 0) + 1
        self.warmup["last_prepare_ms"] = round((time.perf_counter() - t0) * 1e3, 3)

    def _analyse(self, stage: AnalysisStage, job: FrameJob, grid: CartesianGrid,
                 orientation: DisplayOrientation) -> FrameOutcome:
        """Run the whole per-frame path (stage, overlay build, render, encoding) on one frame;
        never raises: any exception becomes a ``failed`` frame whose record is rejected with
        the reason (logged through :attr:`_failure_log`, throttled)."""
        frame = job.frame
        queue_ms = (job.started_ns - job.received_ns) / 1e6
        start = time.perf_counter()
        try:
            return self._analyse_frame(stage, job, grid, orientation, queue_ms, start)
        except Exception as exc:  # noqa: BLE001 (the frame's fate: counted, reported, recorded)
            self._failure_log.failed(frame.pullback_id, frame.index, exc)
            reason = f"analysis_error: {type(exc).__name__}: {exc}"[:500]
            record = {"frame": frame.index, "status": "rejected", "reason": reason}
            latency = {"queue": queue_ms, "analysis": (time.perf_counter() - start) * 1e3}
            try:
                overlay = encode(build_overlay(record, frame, grid, orientation, latency))
            except Exception:  # noqa: BLE001 (the overlay build itself failed: a bare rejected overlay)
                overlay = encode({"frame": frame.index, "status": "rejected", "reason": reason})
            return FrameOutcome(record, latency, overlay, failed=True)

    def _analyse_frame(self, stage: AnalysisStage, job: FrameJob, grid: CartesianGrid,
                       orientation: DisplayOrientation, queue_ms: float, start: float, *,
                       image_wanted: bool | None = None, display_wanted: bool | None = None
                       ) -> FrameOutcome:
        frame = job.frame
        result = stage.process(frame)
        latency = {"queue": queue_ms, **result.latency_ms}
        overlay = build_overlay(result.record, frame, grid, orientation, latency)
        image = grey = lmode = None
        image_wanted = self._image_wanted if image_wanted is None else image_wanted
        display_wanted = self._display_wanted if display_wanted is None else display_wanted
        if self.cfg.render_image and (image_wanted or display_wanted) and result.image is not None:
            t = time.perf_counter()
            grey = display_grey(result.image)
            if image_wanted:
                image = burn_overlay(grey, overlay)
            if display_wanted:
                lmode = lmode_cuts(grey)
            latency["render"] = (time.perf_counter() - t) * 1e3
        latency["analysis"] = (time.perf_counter() - start) * 1e3
        overlay["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        return FrameOutcome(dict(result.record), latency, encode(overlay), image,
                            grey if display_wanted else None, lmode)

    def _post(self, item: Outgoing) -> None:
        self._outbox.put(item)

    # -- writer thread -----------------------------------------------------------------------------
    def _writer_main(self) -> None:
        caselog = CaseLog(self.results_dir / "caselog.sqlite")
        wake = self.context.socket(zmq.PUSH)
        wake.linger = 0
        wake.connect(self._wake_endpoint)  # inproc: connecting before the I/O thread binds is fine
        try:
            caselog.open()
            interrupted = caselog.interrupt_open(INTERRUPTED_REASON)
            self._interrupted_ids = set(interrupted)
            for pullback_id in interrupted:
                self._export(caselog, pullback_id, "interrupted", [], None, {})
                log.warning("pullback %s was left open by a previous run: marked interrupted", pullback_id)
            self.tracker.known_ids = caselog.known_ids()  # read by the I/O thread only after this
        except BaseException as exc:  # noqa: BLE001 (re-raised by start() in the caller's thread)
            self._errors.append(exc)
            caselog.close()
            wake.close()
            return
        self._writer_ready.set()
        held = None  # an item taken while batching frames, handled next
        try:
            while True:
                item = held if held is not None else self._writes.get()
                held = None
                if item is _STOP:
                    break
                if isinstance(item, FrameRecord):
                    batch = [item]
                    while len(batch) < WRITER_BATCH:
                        try:
                            held = self._writes.get_nowait()
                        except queue.Empty:
                            break
                        if not isinstance(held, FrameRecord):
                            break
                        batch.append(held)
                        held = None
                    self._commit_frames(caselog, batch)
                else:
                    self._write_one(caselog, item)
                self._wake(wake)
        except BaseException as exc:  # the case log failing is fatal for acknowledgement
            log.exception("case log writer failed")
            self._errors.append(exc)
        finally:
            caselog.close()
            wake.close()

    @staticmethod
    def _wake(sock: zmq.Socket) -> None:
        """Wake the I/O thread's poll (results or acknowledgements are in the outbox)."""
        try:
            sock.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # wake-ups are queued already

    def _commit_frames(self, caselog: CaseLog, batch: list[FrameRecord]) -> None:
        if not batch:
            return
        by_pullback: dict[str, list[dict]] = {}
        for item in batch:
            by_pullback.setdefault(item.pullback_id, []).append(item.record)
        for pullback_id, records in by_pullback.items():
            caselog.add_frames(pullback_id, records)
            self._post(Acknowledged(pullback_id, tuple(r["frame"] for r in records)))

    def _write_one(self, caselog: CaseLog, item: Write) -> None:
        if isinstance(item, BeginPullback):
            caselog.begin_pullback(item.pullback_id, **item.fields)
        elif isinstance(item, FinishPullback):
            result = self._export(caselog, item.pullback_id, item.state, list(item.spacing_mm),
                                  item.reason, item.summary)
            self._post(PullbackWritten(item.pullback_id, result["pullback"], result["results_dir"]))

    def _export(self, caselog: CaseLog, pullback_id: str, state: str, spacing: list,
                reason: str | None, summary: dict) -> dict:
        """Compute the guidance (complete pullbacks) and write the results folder atomically
        (:func:`engine.realtime.results.export_pullback`)."""
        return export_pullback(caselog, self.results_dir / "pullbacks", pullback_id, state, spacing, reason,
                               summary, self.config.guidance, self.model, self.config_hash)

    # -- I/O thread --------------------------------------------------------------------------------
    def _io_main(self) -> None:
        ctx = self.context
        cfg = self.cfg
        sockets: list[zmq.Socket] = []
        try:
            def make(kind: int, endpoint: str, name: str) -> zmq.Socket:
                sock = ctx.socket(kind)
                sockets.append(sock)
                sock.linger = 0
                if self._curve is not None:
                    self._curve.apply(sock)
                return sock

            wake = make(zmq.PULL, "", "wake")
            wake.bind(self._wake_endpoint)
            frames = make(zmq.PULL, cfg.frames_endpoint, "frames")
            frames.rcvhwm = cfg.frames_hwm
            frames.maxmsgsize = 2 * self.limits.max_payload_bytes
            overlay = make(zmq.XPUB, cfg.overlay_endpoint, "overlay")
            overlay.sndhwm = cfg.overlay_hwm
            overlay.linger = 500
            status = make(zmq.PUB, cfg.status_endpoint, "status")
            status.sndhwm = cfg.status_hwm
            status.linger = 500
            control = make(zmq.ROUTER, cfg.control_endpoint, "control")
            control.maxmsgsize = 1 << 20
            control.router_mandatory = False
            monitors = {frames.get_monitor_socket(MONITOR_EVENTS): "frames",
                        control.get_monitor_socket(MONITOR_EVENTS): "control"}
            sockets.extend(monitors)
            for sock, endpoint, name in ((frames, cfg.frames_endpoint, "frames"),
                                         (overlay, cfg.overlay_endpoint, "overlay"),
                                         (status, cfg.status_endpoint, "status"),
                                         (control, cfg.control_endpoint, "control")):
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as exc:
                    raise EngineError(f"cannot bind {name} endpoint {endpoint}: {exc}") from exc
                self.endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException as exc:  # noqa: BLE001 (re-raised by start() in the caller's thread)
            self._errors.append(exc)
            for sock in sockets:
                sock.close(0)
            self._writes.put(_STOP)
            return
        self._sock = {"frames": frames, "overlay": overlay, "status": status, "control": control}
        self._io_ready.set()
        self._event("engine_started", endpoints=self.endpoints, security=self.policy.describe())
        if self.policy.mode == "insecure":
            self._event("insecure", detail="non-loopback endpoints without CurveZMQ (--insecure)",
                        endpoints=list(self.policy.public_endpoints))
        for fallback in self.fallbacks:
            log.warning("backend fallback: %s", fallback)
            self._event("fallback", detail=fallback)
        try:
            self._io_loop(frames, overlay, control, wake, monitors)
        except BaseException as exc:
            log.exception("engine I/O thread failed")
            self._errors.append(exc)
        finally:
            self._io_close(sockets)

    def _io_loop(self, frames, overlay, control, wake, monitors) -> None:
        cfg = self.cfg
        self._sock["control"] = control
        for pid in sorted(self._interrupted_ids):
            self._event("pullback_interrupted", pullback_id=pid, reason=INTERRUPTED_REASON)
        poller = zmq.Poller()
        for sock in (overlay, control, wake, *monitors):
            poller.register(sock, zmq.POLLIN)
        reading = False
        next_heartbeat = time.monotonic()
        while True:
            want_frames = self._phase == "running" and (
                self.scheduler.policy == "skip" or self.scheduler.has_room())
            if want_frames != reading:
                if want_frames:
                    poller.register(frames, zmq.POLLIN)
                else:
                    poller.unregister(frames)
                reading = want_frames
            events = dict(poller.poll(0 if not self._outbox.empty() else 50))
            if frames in events:
                self._read_frames(frames)
            if wake in events:
                while True:
                    try:
                        wake.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            self._handle_outbox()
            if control in events:
                self._handle_control(control)
            if overlay in events:
                self._handle_subscriptions(overlay)
            for monitor, name in monitors.items():
                if monitor in events:
                    self._handle_monitor(monitor, name)
            now = time.monotonic()
            self._check_pullbacks(now)
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + cfg.heartbeat_s
            if self._phase == "closing":
                self._close_pullbacks()
                break

    def _io_close(self, sockets: list) -> None:
        """Flush: finish every pullback through the writer, publish what it returns, close."""
        try:
            self._writes.put(_STOP)
            deadline = time.monotonic() + 60
            while self._writer is not None and self._writer.is_alive() and time.monotonic() < deadline:
                self._writer.join(timeout=0.02)
                self._handle_outbox()
            self._handle_outbox()
            self._event("engine_stopped", counters=self._counter_snapshot())
        finally:
            for sock in sockets:
                if sock.type in (zmq.PUB, zmq.XPUB):
                    sock.close(linger=200)
                else:
                    sock.close(linger=0)

    # frames ----------------------------------------------------------------------------------------
    def _read_frames(self, sock: zmq.Socket) -> None:
        for _ in range(FRAME_BURST):
            if self.scheduler.policy == "block" and not self.scheduler.has_room():
                return
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._intake(parts, time.perf_counter_ns())

    def _intake(self, parts: list, received_ns: int) -> None:
        c = self._counters
        c["received"] += 1
        try:
            if len(parts) != 2:
                raise ProtocolError("malformed_header",
                                    f"{len(parts)} message parts, expected 2 (header, payload)")
            header = unpack_header(parts[0].buffer)
        except ProtocolError as exc:
            self._reject(exc, None, None)
            return
        pb = self._pullbacks.get(header.pullback_id)
        pixels = None
        inadmissible = None  # a frame of this pullback with a valid new index, still rejected
        try:
            if pb is None:  # a START: nothing opens unless the frame itself is accepted
                candidate = self.tracker.candidate(header, time.monotonic(), time.time())
                pixels = decode_payload(header, parts[1], self.limits)
                pb = self._register(candidate)
            else:
                self.tracker.admit(pb, header)
        except ProtocolError as exc:
            if pb is None or exc.reason not in INDEX_USING_REJECTIONS:
                self._reject(exc, header, None)
                return
            inadmissible = exc
        if pb.geometry is None:
            self._describe(pb, header)
        self.tracker.note_frame(pb, header, time.monotonic(), time.time())
        if inadmissible is not None:
            self._reject(inadmissible, header, pb)
            return
        try:
            if pixels is None:
                pixels = decode_payload(header, parts[1], self.limits)
        except ProtocolError as exc:
            self._reject(exc, header, pb)
            return
        c["accepted"] += 1
        frame = frame_from_header(header, pixels, pb.geometry, pb.position_mm)
        pb.outstanding += 1
        evicted = self.scheduler.offer(FrameJob(frame, received_ns, pixels.nbytes))
        if evicted:
            self._skip(evicted, "overload: pending frame limit reached (server.max_pending_*)")

    def _new_pullback(self, pid: str, n_frames: int) -> PullbackState:
        now = time.monotonic()
        return self._register(PullbackState(pid, now, time.time(), n_frames_expected=n_frames,
                                            last_frame_monotonic=now))

    def _register(self, pb: PullbackState) -> PullbackState:
        """Open ``pb``: known from now on (the tracker), counted, announced."""
        self.tracker.register(pb)
        self._counters["pullbacks_opened"] += 1
        self._event("pullback_opened", pullback_id=pb.pullback_id, n_frames=pb.n_frames_expected or None)
        return pb

    def _describe(self, pb: PullbackState, header: FrameHeader) -> None:
        """The first frame of a pullback fixes its geometry and opens its case-log row."""
        pb.geometry = header.geometry()
        pb.dtype_code = header.dtype_code
        pb.frame_rate_hz = header.frame_rate_hz
        pb.n_frames_expected = pb.n_frames_expected or header.n_frames
        self._prepare_geometry(pb.geometry, np.dtype(header.dtype))  # before the frame is offered
        geometry = {**{k: getattr(pb.geometry, k) for k in (
            "n_alines", "n_samples", "aline_spacing_mm", "refractive_index", "refractive_index_applied",
            "n_padded_alines", "rotation", "intensity")}, "dtype": str(header.dtype),
            "frame_spacing_mm": header.step_mm, "pullback_rate_mm_s": header.pullback_rate_mm_s}
        self._writes.put(BeginPullback(pb.pullback_id, {
            "geometry": geometry, "frame_rate_hz": header.frame_rate_hz,
            "n_frames_expected": pb.n_frames_expected or None, "model": self.model,
            "engine_version": __version__, "config_hash": self.config_hash,
            "opened_unix": pb.opened_unix}))
        pb.logged = True

    def _known_pullback(self, pullback_id: str) -> bool:
        return self.tracker.known(pullback_id)

    def _trim_pullbacks(self) -> None:
        self.tracker.trim()

    def _reject(self, exc: ProtocolError, header: FrameHeader | None, pb: PullbackState | None) -> None:
        """Count a rejected frame, report it, and record its fate when its pullback is known."""
        rejected = self._counters["rejected"]
        rejected[exc.reason] = rejected.get(exc.reason, 0) + 1
        pid = header.pullback_id if header is not None else None
        index = header.frame_index if header is not None else None
        self._event("rejected", reason=exc.reason, detail=exc.detail, pullback_id=pid, frame=index)
        if pb is not None:
            pb.counts["rejected"] += 1
            self._record(pb, {"frame": index, "status": "rejected", "reason": f"{exc.reason}: {exc.detail}"})

    def _skip(self, jobs: list[FrameJob], reason: str) -> None:
        for job in jobs:
            skipped = self._counters["skipped"]
            key = reason.split(":")[0]
            skipped[key] = skipped.get(key, 0) + 1
            pb = self._pullbacks.get(job.frame.pullback_id)
            if pb is None:
                continue
            pb.outstanding -= 1
            pb.counts["skipped"] += 1
            if self._phase != "running" and pb.reason is None:
                pb.reason = "the engine stopped before analysing every frame"
            self._record(pb, {"frame": job.frame.index, "status": "skipped", "reason": reason})
            self._event("skipped", pullback_id=pb.pullback_id, frame=job.frame.index, reason=reason)

    def _record(self, pb: PullbackState, record: dict) -> None:
        """Hand a frame's final record to the writer, with its audit fields."""
        record["pullback_id"] = pb.pullback_id
        record["audit"] = self._audit()
        if not pb.logged:  # a frame rejected before any frame described the pullback
            return
        self._writes.put(FrameRecord(pb.pullback_id, record))

    def _audit(self) -> dict:
        return {"model": self.model, "engine_version": __version__, "config_hash": self.config_hash}

    # results ---------------------------------------------------------------------------------------
    def _handle_outbox(self) -> None:
        while True:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Analysed):
                self._publish_result(item.job, item.outcome)
            elif isinstance(item, Acknowledged):
                self._acknowledge(item.pullback_id, list(item.frames))
            elif isinstance(item, PullbackWritten):
                self._finished(item.pullback_id, {"pullback": item.pullback, "results_dir": item.results_dir})
            elif isinstance(item, Skipped):
                self._skip(list(item.jobs), item.reason)
            elif isinstance(item, ControlReply):  # a control reply prepared off the I/O thread
                if not item.reply["ok"]:
                    self._counters["control_errors"] += 1
                self._sock["control"].send_multipart([*item.route, dumps(item.reply), *item.parts])

    def _publish_result(self, job: FrameJob, out: FrameOutcome) -> None:
        frame = job.frame
        pb = self._pullbacks.get(frame.pullback_id)
        record, latency = out.record, out.latency_ms
        c = self._counters
        if out.failed:
            fate, topic = "failed", TOPIC_OVERLAY if job.lane == "live" else TOPIC_BACKFILL
            rejected = c["rejected"]
            rejected["analysis_error"] = rejected.get("analysis_error", 0) + 1
            self._event("rejected", reason="analysis_error", detail=record["reason"],
                        pullback_id=frame.pullback_id, frame=frame.index)
        elif job.lane == "live" and pb is not None and frame.index > pb.last_shown:
            fate, topic = "shown", TOPIC_OVERLAY
        elif job.lane == "live":
            fate, topic = "late", TOPIC_BACKFILL
        else:
            fate, topic = "backfilled", TOPIC_BACKFILL
        if topic == TOPIC_OVERLAY and pb is not None:
            pb.last_shown = max(pb.last_shown, frame.index)
        envelope = self._envelope(frame.pullback_id, frame.index, job.lane, record.get("status"))
        end_to_end_ms = (time.perf_counter_ns() - job.received_ns) / 1e6
        envelope["end_to_end_ms"] = round(end_to_end_ms, 3)
        parts = [out.overlay]
        if out.lmode is not None:
            envelope["lmode"] = {"angles_deg": list(LMODE_ANGLES_DEG),
                                 "length_px": int(out.lmode.shape[1]), "dtype": "uint8"}
            parts.append(out.lmode)
        self._send(self._sock["overlay"], topic, envelope, parts)
        envelope.pop("lmode", None)
        if out.image is not None and topic == TOPIC_OVERLAY:
            image = out.image
            envelope["image"] = {"shape": list(image.shape), "dtype": "uint8", "colour": "BGR",
                                 "fov_mm": self.cfg.image_fov_mm}
            if self._send(self._sock["overlay"], TOPIC_IMAGE, envelope, [image]):
                c["images_published"] += 1
        if out.grey is not None:  # every lane: a display scrubbing back needs backfill frames too
            grey = out.grey
            envelope["image"] = {"shape": list(grey.shape), "dtype": "uint8", "colour": "GREY",
                                 "fov_mm": self.cfg.image_fov_mm}
            if self._send(self._sock["overlay"], TOPIC_DISPLAY, envelope, [grey]):
                c["images_published"] += 1
        if fate == "shown":
            self._latency[self._latency_n % LATENCY_WINDOW] = end_to_end_ms
            self._latency_n += 1
        c[fate] += 1
        if pb is None:
            return
        pb.outstanding -= 1
        pb.counts[fate] += 1
        latency["end_to_end"] = end_to_end_ms
        record["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        record["lane"] = "live" if topic == TOPIC_OVERLAY else "backfill"
        self._record(pb, record)

    def _envelope(self, pullback_id: str, frame: int | None, lane: str | None, status: str | None) -> dict:
        """The envelope of a display message; ``seq`` is set by :meth:`_send` per topic."""
        return {"v": PROTOCOL_VERSION, "seq": None, "pullback_id": pullback_id, "frame": frame,
                "lane": lane, "status": status, "sent_unix_ns": time.time_ns(), **self._audit()}

    def _send(self, sock: zmq.Socket, topic: bytes, envelope: dict, parts: list) -> bool:
        """Publish without ever blocking; counts messages that no display subscribes to.

        ``envelope["seq"]`` is the topic's own sequence number, taken only for a message that
        goes out: +1 per message published on that topic, so a display subscribed to any set of
        topics sees, per topic, consecutive numbers unless it lost a message."""
        subscribed = any(topic.startswith(s) for s in self._subscriptions)
        overlay = topic in (TOPIC_OVERLAY, TOPIC_BACKFILL)
        if not subscribed:
            if overlay:
                self._counters["overlays_without_display"] += 1
            return False
        seq = self._topic_seq.get(topic, 0) + 1
        envelope["seq"] = seq
        try:
            sock.send_multipart([topic, encode(envelope), *parts], zmq.NOBLOCK, copy=False)
        except zmq.Again:  # XPUB drops per subscriber at its HWM; this is the whole socket refusing
            return False
        self._topic_seq[topic] = seq
        if overlay:
            self._counters["overlays_published"] += 1
        return True

    def _acknowledge(self, pullback_id: str, frames: list[int]) -> None:
        self._counters["acknowledged"] += len(frames)
        pb = self._pullbacks.get(pullback_id)
        if pb is not None:
            pb.counts["acknowledged"] += len(frames)
        self._event("ack", pullback_id=pullback_id, frames=frames)

    def _finished(self, pullback_id: str, result: dict) -> None:
        pb = self._pullbacks.get(pullback_id)
        pullback = result["pullback"]
        if pb is not None:
            pb.state = pullback["status"] if pullback["status"] in ("complete", "incomplete") else "incomplete"
            pb.results_dir = result["results_dir"]
            pb.guidance_delay_s = pullback["timing"]["guidance_delay_s"]
        self._counters["pullbacks_complete" if pullback["status"] == "complete" else "pullbacks_incomplete"] += 1
        envelope = self._envelope(pullback_id, None, None, pullback["status"])
        if pullback["status"] == "complete":
            self._counters["guidance_published"] += 1
            self._send(self._sock["overlay"], TOPIC_GUIDANCE, envelope, [dumps(pullback)])
            if self.dicom_export is not None:  # SR + key images, sent: on the export's own thread
                self.dicom_export.submit(pullback_id, result["results_dir"])
        self._event(f"pullback_{pullback['status']}", pullback_id=pullback_id,
                    results_dir=result["results_dir"], reason=pullback.get("reason"),
                    guidance_delay_s=pullback["timing"]["guidance_delay_s"])
        self._trim_pullbacks()

    # pullback completion -----------------------------------------------------------------------------
    def _check_pullbacks(self, now: float) -> None:
        for pb in self.tracker.silent(now):
            self._event("sender_lost", pullback_id=pb.pullback_id, detail=pb.reason)
        for done in self.tracker.completions(now):
            self._finalize(done.pullback, done.state, list(done.missing))

    def _finalize(self, pb: PullbackState, state: str, missing: list[int]) -> None:
        for index in missing:
            pb.seen.add(index)
            pb.counts["never_received"] += 1
            self._counters["never_received"] += 1
            self._record(pb, {"frame": index, "status": "rejected",
                              "reason": "never received (missing between START and END)"})
        pb.state = "finalizing"
        if not pb.logged:  # opened but no frame ever arrived
            pb.state = "incomplete"
            self._counters["pullbacks_incomplete"] += 1
            self._event("pullback_incomplete", pullback_id=pb.pullback_id, reason=pb.reason or "no frames")
            return
        last = max(pb.seen) if pb.seen else -1
        spacing = [pb.spacing_mm.get(i, pb.spacing_mm.get(0, 0.0)) for i in range(last + 1)]
        counts = {k: v for k, v in pb.counts.items() if k != "acknowledged"}  # still rising: a gauge
        summary = {"counts": counts, "last_frame_unix": pb.last_frame_unix}
        self._writes.put(FinishPullback(pb.pullback_id, state, pb.reason, tuple(spacing), summary))

    def _close_pullbacks(self) -> None:
        """Engine closing: every pullback still open or ending is finished now."""
        self._handle_outbox()
        for pb in list(self._pullbacks.values()):
            if pb.state in ("open", "ending"):
                if pb.reason is None and (pb.state == "open" or pb.outstanding):
                    pb.reason = "the engine stopped before the pullback ended"
                self._finalize(pb, "complete" if pb.reason is None else "incomplete",
                               self.tracker.missing(pb))

    # control ------------------------------------------------------------------------------------------
    def _handle_control(self, sock: zmq.Socket) -> None:
        """Answer every waiting control request. Each is validated (engine/realtime/control.py)
        before anything acts on it; any exception while handling one is an ``ok: false`` reply
        with its reason, counted in ``control_errors`` (the I/O thread lives on)."""
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._counters["control_requests"] += 1
            # [identity, b"", request] from REQ or a DEALER that adds the delimiter (ControlClient);
            # [identity, request] from a bare DEALER: the reply uses the same envelope.
            split = 2 if len(parts) > 2 and parts[1] == b"" else 1
            route, body = parts[:split], parts[split:]
            request_id = None
            try:
                if len(body) != 1:
                    raise ControlRequestError("a request is one message part of JSON")
                request, _ = parse_request(bytes(body[0]), self.cfg.max_frames_per_pullback)
                request_id = request.id
                if request.cmd == "results":
                    self._results_off_thread(route, request)
                    continue
                reply, extra = self._control(request)
                reply = {"ok": True, **reply}
            except Exception as exc:  # noqa: BLE001 (one bad request never ends the I/O thread)
                self._counters["control_errors"] += 1
                if request_id is None:
                    request_id = safe_id(getattr(exc, "decoded", None))
                text = str(exc) if isinstance(exc, (ValueError, TypeError, OSError)) else \
                    f"internal error: {type(exc).__name__}: {exc}"
                if not isinstance(exc, (ValueError, TypeError, OSError)):
                    log.warning("control request failed: %s", text)
                reply, extra = {"ok": False, "error": text[:500]}, []
            reply["id"] = request_id
            sock.send_multipart([*route, dumps(reply), *extra])

    def _results_off_thread(self, route: list, request: ControlRequest) -> None:
        """Check a ``results`` request here, read its files (possibly MBs) on a reader thread; the
        reply goes out through the outbox on the I/O thread."""
        pid = request.pullback_id
        pb = self._pullbacks.get(pid)
        if pb is not None and pb.state not in ("complete", "incomplete"):
            raise ControlRequestError(f"pullback {pid} is {pb.state}: results are written when it finishes")
        folder = results_folder(self.results_dir, pid)

        def read() -> None:
            try:
                parts = [(folder / "pullback.json").read_bytes(), (folder / "frames.jsonl").read_bytes()]
                reply = {"ok": True, "pullback_id": pid, "results_dir": str(folder),
                         "parts": ["pullback.json", "frames.jsonl"], "id": request.id}
            except OSError:
                parts, reply = [], {"ok": False, "error": f"no results for pullback {pid}",
                                    "id": request.id}
            self._post(ControlReply(tuple(route), reply, tuple(parts)))
            wake = self.context.socket(zmq.PUSH)
            wake.linger = 0
            try:
                wake.connect(self._wake_endpoint)
                self._wake(wake)
            finally:
                wake.close()

        self._readers.submit(read)

    def _control(self, request: ControlRequest) -> tuple[dict, list]:
        cmd = request.cmd
        if cmd == "ping":
            return {"pong": time.time()}, []
        if cmd == "status":
            return self._status_message(), []
        if cmd == "config":
            return {"config": self.config.to_dict(), "config_hash": self.config_hash}, []
        pid = request.pullback_id
        if cmd == "start_pullback":
            if pid in self._pullbacks or self._known_pullback(pid):
                raise ValueError(f"pullback {pid} already exists")
            self._new_pullback(pid, request.n_frames or 0)
            return {"pullback": self._pullback_status(self._pullbacks[pid])}, []
        pb = self._pullbacks.get(pid)
        if cmd == "stop_pullback":
            if pb is None or pb.state not in ("open", "ending"):
                raise ValueError(f"pullback {pid} is not open")
            if pb.end_index is None:
                pb.end_index = pb.highest
            pb.state = "ending"
            self._event("pullback_stopped", pullback_id=pid, end_index=pb.end_index)
            return {"pullback": self._pullback_status(pb)}, []
        if cmd == "pullback":
            if pb is None:
                if not self._known_pullback(pid):
                    raise ValueError(f"unknown pullback {pid}")
                state = "interrupted" if pid in self._interrupted_ids else "finished"
                return {"pullback": {"pullback_id": pid, "state": state, "results_dir":
                                     str(self.results_dir / "pullbacks" / pid)}}, []
            return {"pullback": self._pullback_status(pb)}, []
        raise AssertionError(cmd)  # every command in CONTROL_COMMANDS is handled above

    def _pullback_status(self, pb: PullbackState) -> dict:
        analysed = sum(pb.counts[k] for k in ("shown", "backfilled", "late", "failed"))
        return {"pullback_id": pb.pullback_id, "state": pb.state, "reason": pb.reason,
                "n_frames_expected": pb.n_frames_expected or None, "end_index": pb.end_index,
                "highest": pb.highest, "outstanding": pb.outstanding, "analysed": analysed,
                **pb.counts, "results_dir": pb.results_dir, "guidance_delay_s": pb.guidance_delay_s}

    # status ---------------------------------------------------------------------------------------------
    def _handle_subscriptions(self, sock: zmq.Socket) -> None:
        while True:
            try:
                message = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if message[:1] == b"\x01":
                self._subscriptions.add(message[1:])
            elif message[:1] == b"\x00":
                self._subscriptions.discard(message[1:])
        self._image_wanted = any(TOPIC_IMAGE.startswith(s) for s in self._subscriptions)
        self._display_wanted = any(TOPIC_DISPLAY.startswith(s) for s in self._subscriptions)

    def _handle_monitor(self, monitor: zmq.Socket, name: str) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_ACCEPTED:
                key, what = "connections_accepted", "connected"
            elif kind == zmq.EVENT_DISCONNECTED:
                key, what = "connections_closed", "disconnected"
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                key, what = "auth_failures", "authentication failed"
            else:
                key, what = "handshake_failures", "handshake failed"
            self._counters[key] += 1
            self._event("connection", socket=name, detail=what,
                        endpoint=event["endpoint"].decode() if isinstance(event["endpoint"], bytes)
                        else event["endpoint"])

    def _event(self, event: str, **fields: Any) -> None:
        sock = self._sock.get("status")
        if sock is None:
            return
        self._status_seq += 1
        message = {"v": PROTOCOL_VERSION, "seq": self._status_seq, "event": event,
                   "unix_ns": time.time_ns(), **fields}
        try:
            sock.send_multipart([TOPIC_EVENT, dumps(message)], zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB never blocks; a full pipe drops for that subscriber only

    def _heartbeat(self) -> None:
        if self.dicom_export is not None:
            self.dicom_export.poll()
        self._status_seq += 1
        message = {"v": PROTOCOL_VERSION, "seq": self._status_seq, "unix_ns": time.time_ns(),
                   **self._status_message()}
        try:
            self._sock["status"].send_multipart([TOPIC_HEARTBEAT, dumps(message)], zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _admission(self) -> dict:
        """The pullback admission policy in force (docs/results.md, "Admission"): at most
        ``max_open_pullbacks`` open or ending at once (a START beyond it is rejected
        ``too_many_pullbacks``); a pullback whose sender is silent for ``pullback_idle_timeout_s``
        ends incomplete and frees its place; ``end_grace_s`` waits for missing frames after END."""
        cfg = self.cfg
        open_now = self.tracker.open_count()
        return {"max_open_pullbacks": cfg.max_open_pullbacks, "open_pullbacks": open_now,
                "pullback_idle_timeout_s": cfg.pullback_idle_timeout_s,
                "end_grace_s": cfg.end_grace_s,
                "max_frames_per_pullback": cfg.max_frames_per_pullback}

    def _counter_snapshot(self) -> dict:
        c = self._counters
        return {**c, "rejected": dict(c["rejected"]), "skipped": dict(c["skipped"])}

    def _status_message(self) -> dict:
        window = self._latency[np.isfinite(self._latency)]
        latency = None
        if window.size:
            p50, p99 = np.percentile(window, [50, 99])
            latency = {"frames": int(window.size), "p50": round(float(p50), 3),
                       "p99": round(float(p99), 3), "max": round(float(window.max()), 3)}
        return {
            "engine_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "uptime_s": round(time.monotonic() - self._started_monotonic, 3),
            "phase": "failed" if self._errors and self._phase == "running" else self._phase,
            "error": f"{type(self.failure).__name__}: {self.failure}" if self._errors else None,
            "config_hash": self.config_hash,
            "model": self.model,
            "stage": self.stage_status,
            "warmup": self.warmup,
            "backends": self.backends,
            "fallbacks": self.fallbacks,
            "security": self.policy.describe() if self.policy else None,
            "endpoints": self.endpoints,
            "counters": self._counter_snapshot(),
            "scheduler": self.scheduler.snapshot(),
            "admission": self._admission(),
            "dicom": self.dicom_export.status() if self.dicom_export is not None else {"write_sr": False},
            "end_to_end_ms": latency,
            "displays": sorted(s.decode("ascii", "replace") for s in self._subscriptions),
            "pullbacks": {pid: self._pullback_status(pb) for pid, pb in self._pullbacks.items()
                          if pb.state in ("open", "ending", "finalizing")},
        }


__all__ = ["Engine", "EngineError"]
