"""A worker's whole per-frame path: stage, overlay build, render, L-mode cuts and JSON encoding,
inside the fate accounting (any exception is a ``failed`` frame with its reason), and the
warm-up that runs it before the first live frame (engine/realtime/warmup.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from engine.analysis.stage import AnalysisStage
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation
from engine.display.overlay import build_overlay, burn_overlay, display_grey, lmode_cuts
from engine.realtime.encoding import encode
from engine.realtime.messages import FrameOutcome
from engine.realtime.scheduler import FrameJob
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

    def warm_up(self) -> dict:
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
                except Exception as exc:  # noqa: BLE001 (warm-up is best effort: counted, reported)
                    failed.append(f"{geometry.n_alines}x{geometry.n_samples} {frame.pixels.dtype}: "
                                  f"{type(exc).__name__}: {exc}"[:200])
                    continue
                lumen += out.record.get("lumen") is not None
        forget_warm_frames(self.stage)
        if failed:
            log.warning("%d warm-up frames failed (first: %s)", len(failed), failed[0])
        return {"frames": frames, "lumen_frames": lumen, "failed": len(failed), "failures": failed[:3],
                "ms": round((time.perf_counter() - t0) * 1e3, 1), "geometries_prepared": 0}


__all__ = ["FailureLog", "FramePath"]
