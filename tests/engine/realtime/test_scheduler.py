"""The live-slot + backfill scheduler: newest first, nothing lost, bounded, every fate counted."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from engine.realtime.scheduler import FrameJob, FrameScheduler
from streams.geometry import FrameGeometry
from streams.pullback import Frame

pytestmark = pytest.mark.timeout(30)

GEOMETRY = FrameGeometry(16, 16, 0.01)


def job(index: int, pullback: str = "p", nbytes: int = 100) -> FrameJob:
    return FrameJob(Frame(pullback, index, 0.0, np.zeros((16, 16), np.uint16), GEOMETRY), 0, nbytes)


def take_all(s: FrameScheduler) -> list[tuple[int, str]]:
    out = []
    while (j := s.take(0)) is not None:
        out.append((j.frame.index, j.lane))
        s.done(j)
    return out


def test_newest_takes_the_live_slot_and_overtaken_frames_backfill_in_order():
    s = FrameScheduler(max_frames=100, max_bytes=10**6)
    for i in range(5):
        s.offer(job(i))
    assert take_all(s) == [(4, "live"), (0, "backfill"), (1, "backfill"), (2, "backfill"), (3, "backfill")]
    snap = s.snapshot()
    assert snap["overtaken"] == 4 and snap["taken_live"] == 1 and snap["taken_backfill"] == 4
    assert snap["pending"] == 0 and snap["pending_bytes"] == 0 and snap["in_flight"] == 0


def test_live_slot_is_taken_before_backfill_even_when_backfill_waits():
    s = FrameScheduler(max_frames=100, max_bytes=10**6)
    s.offer(job(0))
    s.offer(job(1))  # 0 overtaken
    first = s.take(0)
    s.offer(job(2))  # arrives while 1 is analysed: live again, before backfilled 0
    assert (first.frame.index, first.lane) == (1, "live")
    assert take_all(s) == [(2, "live"), (0, "backfill")]


def test_an_out_of_order_frame_goes_to_backfill_not_live():
    s = FrameScheduler(max_frames=100, max_bytes=10**6)
    s.offer(job(5))
    s.offer(job(3))
    assert s.counters.out_of_order == 1 and s.counters.overtaken == 0
    assert take_all(s) == [(5, "live"), (3, "backfill")]


def test_a_new_pullback_overtakes_the_previous_pullbacks_live_frame():
    s = FrameScheduler(max_frames=100, max_bytes=10**6)
    s.offer(job(9, "a"))
    s.offer(job(0, "b"))
    assert take_all(s) == [(0, "live"), (9, "backfill")]


@pytest.mark.parametrize("limit", ["frames", "bytes"])
def test_skip_policy_evicts_the_oldest_backfill_frames_at_a_limit(limit):
    s = (FrameScheduler(max_frames=3, max_bytes=10**6) if limit == "frames"
         else FrameScheduler(max_frames=100, max_bytes=300))
    evicted = []
    for i in range(6):
        evicted += s.offer(job(i))
    assert [j.frame.index for j in evicted] == [0, 1, 2]
    assert s.counters.evicted == 3
    assert take_all(s) == [(5, "live"), (3, "backfill"), (4, "backfill")]


def test_block_policy_reports_no_room_and_never_evicts():
    s = FrameScheduler(max_frames=2, max_bytes=10**6, policy="block")
    assert s.has_room()
    assert s.offer(job(0)) == [] and s.has_room()
    assert s.offer(job(1)) == [] and not s.has_room()
    assert s.offer(job(2)) == []  # the one over the limit is kept, not lost
    assert s.counters.evicted == 0 and s.snapshot()["pending"] == 3
    take_all(s)
    assert s.has_room()


def test_take_times_out_and_close_wakes_waiters():
    s = FrameScheduler(max_frames=4, max_bytes=10**6)
    t0 = time.monotonic()
    assert s.take(0.05) is None and time.monotonic() - t0 >= 0.04
    results = []
    waiter = threading.Thread(target=lambda: results.append(s.take(None)))
    waiter.start()
    time.sleep(0.05)
    s.close()
    waiter.join(5)
    assert results == [None] and s.closed


def test_drain_returns_everything_pending_and_wait_idle_sees_in_flight_work():
    s = FrameScheduler(max_frames=10, max_bytes=10**6)
    for i in range(4):
        s.offer(job(i))
    running = s.take(0)
    assert not s.wait_idle(0.01)
    drained = s.drain()
    assert sorted(j.frame.index for j in drained) == [0, 1, 2] and s.counters.drained == 3
    assert not s.wait_idle(0.01)  # one still in flight
    s.done(running)
    assert s.wait_idle(0.01)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="policy"):
        FrameScheduler(1, 1, policy="drop")
    with pytest.raises(ValueError, match="positive"):
        FrameScheduler(0, 1)


def test_concurrent_producer_and_workers_account_for_every_frame():
    s = FrameScheduler(max_frames=8, max_bytes=10**6)
    n = 2000
    taken: list[int] = []
    evicted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        rng = random.Random(threading.get_ident())
        while (j := s.take(0.5)) is not None:
            if rng.random() < 0.1:
                time.sleep(0.0005)
            with lock:
                taken.append(j.frame.index)
            s.done(j)

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for w in workers:
        w.start()
    for i in range(n):
        evicted += [j.frame.index for j in s.offer(job(i))]
    s.close()
    for w in workers:
        w.join(10)
    assert sorted(taken + evicted) == list(range(n))  # each frame exactly one fate
    c = s.counters
    assert c.offered == n == c.taken_live + c.taken_backfill + c.evicted
