"""Which received frame is analysed next: the newest for live display, every frame for guidance.

Two lanes share one bounded store of received, not-yet-analysed frames:

* the **live slot** holds at most one frame: the newest received. A frame arriving while an
  older one still waits there *overtakes* it: the older one moves to the backfill lane (it will
  not be shown late, but it will be analysed);
* the **backfill lane** is a FIFO of overtaken and out-of-order frames.

Workers take the live slot first and the backfill lane only when the live slot is empty, so
backfill uses exactly the time the live lane leaves idle (Holoscan's POP queue policy for the
display, with nothing lost for the analysis).

The store is bounded in frames and bytes. At a limit the ``skip`` policy evicts the oldest
backfill frame (returned to the caller, who records it as skipped and counts it); the ``block``
policy refuses new frames until space frees (:meth:`FrameScheduler.has_room`), so the engine
stops reading its socket and the sender's PUSH blocks. Every frame's fate is counted.

This module holds no sockets; it is the data structure the engine's threads share.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from streams.pullback import Frame

LANES = ("live", "backfill")
POLICIES = ("skip", "block")


@dataclass(frozen=True, eq=False)
class FrameJob:
    """A received frame waiting for analysis (frozen: the scheduler hands a worker a copy that
    says which lane it was taken from and when, :meth:`FrameScheduler.take`).

    Attributes
    ----------
    frame : Frame
        The decoded frame (its pixels may be a zero-copy view of the ZeroMQ message).
    received_ns : int
        ``time.perf_counter_ns()`` when the engine received it: the start of the end-to-end time.
    nbytes : int
        Bytes it holds (payload).
    started_ns : int
        ``time.perf_counter_ns()`` when a worker took it (0 while it waits).
    lane : str
        "live" or "backfill": the lane it was taken from ("" while it waits).
    """

    frame: Frame
    received_ns: int
    nbytes: int
    started_ns: int = 0
    lane: str = ""


@dataclass
class SchedulerCounters:
    """Fates and events counted by :class:`FrameScheduler` (monotonic, except the gauges).

    Attributes
    ----------
    offered : int
        Frames accepted into the store.
    taken_live, taken_backfill : int
        Frames handed to a worker from each lane.
    overtaken : int
        Frames moved from the live slot to backfill by a newer frame ("skipped for live").
    out_of_order : int
        Frames that arrived older than the live slot's and went straight to backfill.
    evicted : int
        Frames evicted at a limit under the ``skip`` policy.
    drained : int
        Frames removed unanalysed by :meth:`FrameScheduler.drain` (engine stopping).
    """

    offered: int = 0
    taken_live: int = 0
    taken_backfill: int = 0
    overtaken: int = 0
    out_of_order: int = 0
    evicted: int = 0
    drained: int = 0


class FrameScheduler:
    """The bounded two-lane store (module docstring). Thread-safe.

    Parameters
    ----------
    max_frames : int
        Frames held at most (live slot plus backfill).
    max_bytes : int
        Bytes held at most.
    policy : str
        "skip" or "block" at a limit.

    Examples
    --------
    >>> import numpy as np
    >>> from streams.geometry import FrameGeometry
    >>> g = FrameGeometry(16, 16, 0.01)
    >>> job = lambda i: FrameJob(Frame("p", i, 0.0, np.zeros((16, 16), "u2"), g), 0, 512)
    >>> s = FrameScheduler(max_frames=8, max_bytes=1 << 20)
    >>> for i in range(3):
    ...     _ = s.offer(job(i))
    >>> [(j.frame.index, j.lane) for j in (s.take(0), s.take(0), s.take(0))]
    [(2, 'live'), (0, 'backfill'), (1, 'backfill')]
    """

    def __init__(self, max_frames: int, max_bytes: int, policy: str = "skip"):
        if policy not in POLICIES:
            raise ValueError(f"policy={policy!r} is not one of {POLICIES}")
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("max_frames and max_bytes must be positive")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.policy = policy
        self.counters = SchedulerCounters()
        self._live: FrameJob | None = None
        self._backfill: deque[FrameJob] = deque()
        self._bytes = 0
        self._in_flight = 0
        self._closed = False
        self._cond = threading.Condition()

    # -- producer side (the engine's I/O thread) -------------------------------------------------
    def has_room(self) -> bool:
        """Whether another frame fits without evicting (``block`` policy: read the socket only
        then)."""
        with self._cond:
            return self._room()

    def _room(self) -> bool:
        return self._count() < self.max_frames and self._bytes < self.max_bytes

    def _count(self) -> int:
        return len(self._backfill) + (self._live is not None)

    def offer(self, job: FrameJob) -> list[FrameJob]:
        """Add a received frame; returns the frames evicted to make room (``skip`` policy).

        The newest frame by index takes the live slot; an older one waiting there is overtaken
        and moves to backfill. A frame older than the one in the live slot goes to backfill.
        Under ``block`` the frame is always stored (the caller checked :meth:`has_room`; one
        frame over the limit is tolerated rather than lost).
        """
        evicted: list[FrameJob] = []
        with self._cond:
            self.counters.offered += 1
            live = self._live
            if live is not None and _older(job, live):
                self.counters.out_of_order += 1
                self._backfill.append(job)
            else:
                if live is not None:  # overtaken: analysed on the backfill lane
                    self.counters.overtaken += 1
                    self._backfill.append(live)
                self._live = job
            self._bytes += job.nbytes
            if self.policy == "skip":
                while (self._count() > self.max_frames or self._bytes > self.max_bytes) and self._backfill:
                    victim = self._backfill.popleft()
                    self._bytes -= victim.nbytes
                    self.counters.evicted += 1
                    evicted.append(victim)
            self._cond.notify()
        return evicted

    # -- consumer side (worker threads) ----------------------------------------------------------
    def take(self, timeout_s: float | None) -> FrameJob | None:
        """The next frame to analyse (live slot first, then the oldest backfill frame), waiting
        up to ``timeout_s`` (None: forever); None on timeout or once closed and empty.

        The caller must call :meth:`done` after analysing it.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._live is None and not self._backfill:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._live is not None:
                job, lane, self._live = self._live, "live", None
                self.counters.taken_live += 1
            else:
                job, lane = self._backfill.popleft(), "backfill"
                self.counters.taken_backfill += 1
            self._bytes -= job.nbytes
            self._in_flight += 1
            return replace(job, started_ns=time.perf_counter_ns(), lane=lane)

    def done(self, job: FrameJob) -> None:
        """A worker finished ``job`` (whatever the outcome)."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    # -- shutdown --------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def close(self) -> None:
        """Wake every waiting worker; :meth:`take` returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[FrameJob]:
        """Remove and return every frame not yet taken (to be recorded as skipped)."""
        with self._cond:
            jobs = ([self._live] if self._live is not None else []) + list(self._backfill)
            self._live = None
            self._backfill.clear()
            self._bytes = 0
            self.counters.drained += len(jobs)
            self._cond.notify_all()
            return jobs

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is pending or in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._count() or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def snapshot(self) -> dict[str, Any]:
        """Gauges and counters for the status channel."""
        with self._cond:
            return {
                "pending": self._count(),
                "pending_bytes": self._bytes,
                "backfill_queued": len(self._backfill),
                "in_flight": self._in_flight,
                "max_frames": self.max_frames,
                "max_bytes": self.max_bytes,
                "policy": self.policy,
                **vars(self.counters),
            }


def _older(job: FrameJob, than: FrameJob) -> bool:
    """Whether ``job`` was acquired before ``than`` (same pullback, lower index)."""
    return job.frame.pullback_id == than.frame.pullback_id and job.frame.index < than.frame.index
