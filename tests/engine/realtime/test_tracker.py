"""The pullback tracker without sockets or threads (engine/realtime/tracker.py, issue 12 item 4):
admission, index bookkeeping, silence and completion, all on a clock the test sets."""

from __future__ import annotations

import numpy as np
import pytest

from engine.realtime.tracker import PullbackTracker
from streams.geometry import FrameGeometry
from streams.pullback import Frame
from streams.wire.protocol import (
    FLAG_END_OF_PULLBACK,
    FLAG_START_OF_PULLBACK,
    FrameHeader,
    ProtocolError,
    encode_frame,
    unpack_header,
)

G = FrameGeometry(n_alines=16, n_samples=16, aline_spacing_mm=0.01)


def header(pid: str, index: int, flags: int = 0, geometry: FrameGeometry = G) -> FrameHeader:
    frame = Frame(pid, index, 0.0, np.zeros((geometry.n_alines, geometry.n_samples), np.uint16), geometry)
    return unpack_header(bytes(encode_frame(frame, frame_spacing_mm=0.1, frame_rate_hz=10.0, flags=flags)[0]))


def tracker(**kw) -> PullbackTracker:
    return PullbackTracker(**{"max_open": 2, "max_frames": 10, "idle_timeout_s": 5.0, "end_grace_s": 1.0, **kw})


def open_pullback(t: PullbackTracker, pid: str, now: float = 0.0):
    h = header(pid, 0, FLAG_START_OF_PULLBACK)
    pb = t.register(t.candidate(h, now, 1000.0 + now))
    pb.geometry = G
    t.note_frame(pb, h, now, 1000.0 + now)
    return pb


def test_only_a_start_opens_and_a_known_id_never_reopens():
    t = tracker()
    with pytest.raises(ProtocolError, match="never opened"):
        t.candidate(header("a", 0), 0.0, 0.0)
    t.candidate(header("a", 0, FLAG_START_OF_PULLBACK), 0.0, 0.0)  # a candidate is not registered
    assert t.get("a") is None and not t.known("a")
    open_pullback(t, "a")
    t.known_ids.add("old")
    for pid in ("a", "old"):
        with pytest.raises(ProtocolError) as exc:
            t.candidate(header(pid, 0, FLAG_START_OF_PULLBACK), 0.0, 0.0)
        assert exc.value.reason == "finished_pullback"


def test_the_open_limit():
    t = tracker(max_open=2)
    open_pullback(t, "a")
    open_pullback(t, "b")
    assert t.open_count() == 2
    with pytest.raises(ProtocolError) as exc:
        t.candidate(header("c", 0, FLAG_START_OF_PULLBACK), 0.0, 0.0)
    assert exc.value.reason == "too_many_pullbacks"


def test_indices_duplicates_geometry_and_length():
    t = tracker(max_frames=4)
    pb = open_pullback(t, "a")
    for index, reason in ((0, "duplicate_frame"), (4, "pullback_too_long")):
        with pytest.raises(ProtocolError) as exc:
            t.admit(pb, header("a", index))
        assert exc.value.reason == reason
    with pytest.raises(ProtocolError) as exc:
        t.admit(pb, header("a", 1, geometry=FrameGeometry(n_alines=32, n_samples=16, aline_spacing_mm=0.01)))
    assert exc.value.reason == "geometry_changed"
    t.note_frame(pb, header("a", 2), 0.1, 0.0)
    t.note_frame(pb, header("a", 1), 0.2, 0.0)
    assert pb.counts["out_of_order"] == 1 and pb.highest == 2 and t.missing(pb) == []


def test_completion_waits_the_grace_for_missing_frames_then_records_them():
    t = tracker(end_grace_s=1.0)
    pb = open_pullback(t, "a")
    t.note_frame(pb, header("a", 3, FLAG_END_OF_PULLBACK), 10.0, 0.0)
    assert pb.state == "ending" and t.completions(10.5) == []
    pb.outstanding = 1
    assert t.completions(11.5) == []  # a frame still being analysed
    pb.outstanding = 0
    (done,) = t.completions(11.5)
    assert done.state == "complete" and done.missing == (1, 2)


def test_a_silent_sender_ends_the_pullback_incomplete():
    t = tracker(idle_timeout_s=5.0)
    pb = open_pullback(t, "a", now=0.0)
    assert t.silent(4.0) == []
    assert t.silent(6.0) == [pb] and pb.state == "ending" and "silent for 6.0 s" in pb.reason
    (done,) = t.completions(6.0)
    assert done.state == "incomplete"


def test_finished_pullbacks_are_forgotten_beyond_the_recent_ones_but_stay_known():
    t = tracker(max_open=10, recent=2)
    for pid in "abcd":
        open_pullback(t, pid).state = "complete"
    t.trim()
    assert list(t.pullbacks) == ["c", "d"] and t.known("a")
