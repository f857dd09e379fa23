"""The engine's worker threads: each builds, starts and warms one analysis stage
(:class:`~engine.realtime.frame_path.FramePath`), then analyses the frames the scheduler hands
it until the scheduler closes; results go to the engine's outbox with a wake-up of the I/O
thread. A worker that dies anyway (outside the per-frame accounting) records an
:class:`~engine.realtime.errors.EngineError` with the reason: the engine stops on it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import zmq

from engine.analysis.stage import AnalysisStage
from engine.compute.scan_convert import CartesianGrid
from engine.realtime.errors import EngineError
from engine.realtime.frame_path import FailureLog, FramePath
from engine.realtime.messages import Analysed, Outgoing
from engine.realtime.scheduler import FrameScheduler
from engine.realtime.status import WarmupStatus
from engine.realtime.warmup import prepare_geometry
from engine.realtime.writer import wake
from streams.geometry import FrameGeometry

log = logging.getLogger(__name__)


class WorkerPool:
    """``server.workers`` worker threads around one scheduler.

    Parameters
    ----------
    make_stage : callable
        Builds one analysis stage (called in each worker thread).
    scheduler : FrameScheduler
        Where frames are taken from.
    grid : CartesianGrid
        The display grid.
    render : bool
        ``server.render_image``.
    wanted : callable
        ``wanted() -> (image, display)``: what the displays subscribe to now.
    post : callable
        Puts an item in the engine's outbox.
    errors : list
        The engine's failures (a stage that cannot start, a worker that died).
    """

    def __init__(self, make_stage: Callable[[], AnalysisStage], scheduler: FrameScheduler,
                 grid: CartesianGrid, render: bool, wanted: Callable[[], tuple[bool, bool]],
                 post: Callable[[Outgoing], None], errors: list[BaseException]):
        self.make_stage = make_stage
        self.scheduler = scheduler
        self.grid = grid
        self.render = render
        self._wanted = wanted
        self._post = post
        self._errors = errors
        self.failure_log = FailureLog()
        self.stage_status: dict = {}  #: worker 0's stage status (model, backends)
        self.warmup = WarmupStatus(0, 0, 0, (), 0.0)  #: worker 0's warm-up, then STARTs prepared
        self.threads: list[threading.Thread] = []
        self._stages: list[AnalysisStage] = []  # every worker's, started and warmed
        self._lock = threading.Lock()

    def start(self, n: int, context: zmq.Context, wake_endpoint: str) -> list[threading.Event]:
        """Start ``n`` workers; returns the events each sets once its stage is warm."""
        ready = [threading.Event() for _ in range(n)]
        for k, event in enumerate(ready):
            thread = threading.Thread(target=self._main, args=(k, event, context, wake_endpoint),
                                      name=f"octguide-worker-{k}", daemon=True)
            self.threads.append(thread)
            thread.start()
        return ready

    def join(self, timeout_s: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout_s)

    def _main(self, k: int, ready: threading.Event, context: zmq.Context, wake_endpoint: str) -> None:
        try:
            stage = self.make_stage()
            stage.start()
        except BaseException as exc:  # noqa: BLE001 (re-raised by start() in the caller's thread)
            self._errors.append(exc)
            return
        waker = None
        try:
            if k == 0:
                self.stage_status = stage.status()
            waker = context.socket(zmq.PUSH)
            waker.linger = 0
            waker.connect(wake_endpoint)
            path = FramePath(stage, self.grid, self.render, self._wanted, self.failure_log)
            warmup = path.warm_up()
            if k == 0:
                self.warmup = warmup
            with self._lock:
                self._stages.append(stage)
            ready.set()
            self._loop(path, waker)
        except BaseException as exc:  # noqa: BLE001 (a dead worker stops the engine: serve exits on it)
            log.error("engine worker %d died: %s: %s", k, type(exc).__name__, exc)
            self._errors.append(EngineError(f"worker {k} died: {type(exc).__name__}: {exc}"))
        finally:
            if waker is not None:
                waker.close()
            stage.stop()

    def _loop(self, path: FramePath, waker: zmq.Socket) -> None:
        while True:
            job = self.scheduler.take(timeout_s=0.25)
            if job is None:
                if self.scheduler.closed:
                    return
                continue
            try:
                self._post(Analysed(job, path.analyse(job)))
            finally:
                self.scheduler.done(job)
            wake(waker)

    def prepare_geometry(self, geometry: FrameGeometry, dtype: np.dtype) -> None:
        """Build a START's geometry tables in every worker's stage, on the calling (I/O) thread,
        before its first frame is offered to the scheduler (cached tables are looked up, not
        rebuilt; the stages' caches are locked, engine/realtime/warmup.py). A failure is the
        frame's to report when it is analysed, not the engine's."""
        t0 = time.perf_counter()
        with self._lock:
            stages = list(self._stages)
        for k, stage in enumerate(stages):
            try:
                prepare_geometry(stage, geometry, dtype)
            except Exception as exc:  # noqa: BLE001 (the frame itself will fail with the reason)
                log.warning("worker %d: preparing geometry %s failed: %s: %s", k, geometry,
                            type(exc).__name__, exc)
        self.warmup = replace(self.warmup, geometries_prepared=self.warmup.geometries_prepared + 1,
                              last_prepare_ms=round((time.perf_counter() - t0) * 1e3, 3))


__all__ = ["WorkerPool"]
