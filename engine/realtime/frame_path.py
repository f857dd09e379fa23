"""A worker's whole per-frame path: stage, overlay build, render, L-mode cuts and JSON encoding,
inside the fate accounting (any exception is a ``failed`` frame with its reason), and the
warm-up that runs it before the first live frame (engine/realtime/warmup.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.analysis.stage import AnalysisStage
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation
from engine.display.overlay import build_overlay, burn_overlay, display_grey, lmode_cuts
from engine.realtime.encoding import encode
from engine.realtime.messages import FrameOutcome
from engine.realtime.scheduler import FrameJob
from engine.realtime.status import WarmupStatus
from engine.realtime.warmup import WARM_GEOMETRIES, forget_warm_frames, warm_frames

log = logging.getLogger(__name__)


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


class BufferPool:
    """One worker's reusable uint8 image buffers (burned-in BGR images, grey display images).

    A buffer is lent to one frame's outcome at a time. The I/O thread hands it back
    (:meth:`give_back`) after publishing, with the ZeroMQ ``MessageTracker`` of the zero-copy
    send (None when it was not sent): the buffer is reused only once ZeroMQ has let go of it, so
    a display never receives an image overwritten by a later frame. At most ``max_buffers``
    buffers are pooled; when all are out (a backlog in the outbox or in ZeroMQ's queues) a fresh
    array is allocated and counted in ``unpooled`` (never pooled: memory stays bounded).

    >>> pool = BufferPool(max_buffers=1)
    >>> a = pool.take((4, 4))
    >>> b = pool.take((4, 4))  # a is out: a fresh, unpooled array
    >>> pool.give_back(a, None); pool.give_back(b, None)
    >>> pool.take((4, 4)) is a, pool.unpooled
    (True, 1)
    """

    def __init__(self, max_buffers: int = 8):
        self.max_buffers = max_buffers
        self.pooled = 0  #: buffers allocated for the pool
        self.unpooled = 0  #: arrays allocated because every pooled buffer was out
        self.reused = 0  #: takes served by a pooled buffer again
        self._free: list[np.ndarray] = []
        self._sent: list[tuple[np.ndarray, Any]] = []  # given back, ZeroMQ may still hold them
        self._ids: set[int] = set()  # id() of the pooled buffers
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 buffer of ``shape`` (contents undefined)."""
        with self._lock:
            still_sending = []
            for array, tracker in self._sent:
                if tracker is None or tracker.done:
                    self._free.append(array)
                else:
                    still_sending.append((array, tracker))
            self._sent = still_sending
            for i, array in enumerate(self._free):
                if array.shape == shape:
                    self.reused += 1
                    return self._free.pop(i)
            if self.pooled < self.max_buffers:
                self.pooled += 1
                array = np.empty(shape, np.uint8)
                self._ids.add(id(array))
                return array
            if self._free:  # a pooled buffer of another shape (a grid change): replace it
                self._ids.discard(id(self._free.pop(0)))
                array = np.empty(shape, np.uint8)
                self._ids.add(id(array))
                return array
            self.unpooled += 1
        return np.empty(shape, np.uint8)

    def give_back(self, array: np.ndarray | None, tracker: Any) -> None:
        """Return a buffer lent by :meth:`take` (I/O thread; an unpooled array is dropped)."""
        if array is None:
            return
        with self._lock:
            if id(array) in self._ids:
                self._sent.append((array, tracker))


class FramePath:
    """The per-frame path of one worker's stage (module docstring).

    Parameters
    ----------
    stage : AnalysisStage
        The worker's started stage.
    grid : CartesianGrid
        The display grid (``server.image_size_px``, ``server.image_fov_mm``).
    render : bool
        ``server.render_image``: images are made at all.
    wanted : callable
        ``wanted() -> (image, display)``: whether a display subscribes to burned-in images
        and to grey images with L-mode cuts now.
    failure_log : FailureLog
        Where failed frames are logged (shared by the workers).
    """

    def __init__(self, stage: AnalysisStage, grid: CartesianGrid, render: bool,
                 wanted: Callable[[], tuple[bool, bool]], failure_log: FailureLog):
        self.stage = stage
        self.grid = grid
        self.orientation = getattr(stage, "orientation", DisplayOrientation())
        self.render = render
        self._wanted = wanted
        self._failure_log = failure_log
        self.buffers = BufferPool()  # published images, reused once ZeroMQ has sent them
        self._grey: np.ndarray | None = None  # the grey image when only the burned-in one is published

    def analyse(self, job: FrameJob) -> FrameOutcome:
        """Run the whole per-frame path on one frame; never raises: any exception becomes a
        ``failed`` frame whose record is rejected with the reason (logged, throttled)."""
        frame = job.frame
        queue_ms = (job.started_ns - job.received_ns) / 1e6
        start = time.perf_counter()
        try:
            return self.run(job, queue_ms, start)
        except Exception as exc:  # noqa: BLE001 (the frame's fate: counted, reported, recorded)
            self._failure_log.failed(frame.pullback_id, frame.index, exc)
            reason = f"analysis_error: {type(exc).__name__}: {exc}"[:500]
            record = {"frame": frame.index, "status": "rejected", "reason": reason}
            latency = {"queue": queue_ms, "analysis": (time.perf_counter() - start) * 1e3}
            try:
                overlay = encode(build_overlay(record, frame, self.grid, self.orientation, latency))
            except Exception:  # noqa: BLE001 (the overlay build itself failed: a bare rejected overlay)
                overlay = encode({"frame": frame.index, "status": "rejected", "reason": reason})
            return FrameOutcome(record, latency, overlay, failed=True)

    def run(self, job: FrameJob, queue_ms: float, start: float,
            wanted: tuple[bool, bool] | None = None) -> FrameOutcome:
        """The per-frame path itself (raises what the stage, overlay or render raise);
        ``wanted`` overrides what the displays want (warm-up renders everything)."""
        frame = job.frame
        result = self.stage.process(frame)
        latency = {"queue": queue_ms, **result.latency_ms}
        overlay = build_overlay(result.record, frame, self.grid, self.orientation, latency)
        image = grey = lmode = None
        image_wanted, display_wanted = self._wanted() if wanted is None else wanted
        if self.render and (image_wanted or display_wanted) and result.image is not None:
            t = time.perf_counter()
            shape = result.image.shape[:2]
            grey = display_grey(result.image, out=self.buffers.take(shape) if display_wanted
                                else self._scratch_grey(shape))
            if image_wanted:
                image = burn_overlay(grey, overlay, out=self.buffers.take((*shape, 3)))
            if display_wanted:
                lmode = lmode_cuts(grey)
            latency["render"] = (time.perf_counter() - t) * 1e3
        latency["analysis"] = (time.perf_counter() - start) * 1e3
        overlay["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        return FrameOutcome(dict(result.record), latency, encode(overlay), image,
                            grey if display_wanted else None, lmode, buffers=self.buffers)

    def _scratch_grey(self, shape: tuple[int, ...]) -> np.ndarray:
        """The worker's grey buffer for a frame whose grey image is not published (only
        drawn into the burned-in image): reused every frame."""
        if self._grey is None or self._grey.shape != shape:
            self._grey = np.empty(shape, np.uint8)
        return self._grey

    def warm_up(self) -> WarmupStatus:
        """Run the whole path on live-typed, realistic warm frames (a phantom cross-section in
        every wire dtype, then an all-zero frame; engine/realtime/warmup.py) of every warm
        geometry, so the first live frame compiles and builds nothing; then clear what they
        left in the stage's cross-frame state. A warm frame that fails is counted and logged,
        never fatal (a stage may refuse an all-zero frame). Returns what status shows."""
        t0 = time.perf_counter()
        frames = lumen = 0
        failed: list[str] = []
        for geometry in WARM_GEOMETRIES:
            for frame in warm_frames(geometry):
                now = time.perf_counter_ns()
                job = FrameJob(frame, now, frame.pixels.nbytes, started_ns=now)
                frames += 1
                try:
                    out = self.run(job, 0.0, time.perf_counter(), (self.render, self.render))
                    self.buffers.give_back(out.image, None)
                    self.buffers.give_back(out.grey, None)
                except Exception as exc:  # noqa: BLE001 (warm-up is best effort: counted, reported)
                    failed.append(f"{geometry.n_alines}x{geometry.n_samples} {frame.pixels.dtype}: "
                                  f"{type(exc).__name__}: {exc}"[:200])
                    continue
                lumen += out.record.get("lumen") is not None
        forget_warm_frames(self.stage)
        if failed:
            log.warning("%d warm-up frames failed (first: %s)", len(failed), failed[0])
        return WarmupStatus(frames, lumen, len(failed), tuple(failed[:3]),
                            round((time.perf_counter() - t0) * 1e3, 1))


__all__ = ["BufferPool", "FailureLog", "FramePath"]
