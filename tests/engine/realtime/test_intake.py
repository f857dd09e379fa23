"""Intake decisions a display or sender can observe (issue 13 items 7, 8, 14): which rejections
use up a frame's index, a START rejected for its payload opens nothing, display messages are
numbered per topic, and the admission policy is on status."""

from __future__ import annotations

import time

import pytest

from streams.wire.zmq_io import ControlError, Subscriber
from tests.engine.realtime import test_server
from tests.engine.realtime.test_server import _geometry, _payload_short, frame_parts, small_pullback

start_engine = test_server.start_engine  # the fixture

pytestmark = pytest.mark.timeout(60)


def test_a_geometry_change_uses_up_the_index_and_its_record_says_why(start_engine):
    h = start_engine()
    p = small_pullback(5)
    for i in range(5):
        h.sender.send_raw(_geometry(p, i) if i == 2 else frame_parts(p, i))
    h.sender.send_raw(frame_parts(p, 2))  # the right frame 2, resent: a duplicate
    state = h.wait_pullback(p.pullback_id)
    assert state["state"] == "complete" and state["never_received"] == 0 and state["rejected"] == 1
    _, records = h.results(p.pullback_id)
    assert records[2]["status"] == "rejected" and records[2]["reason"].startswith("geometry_changed: ")
    h.collect_events(lambda e: e.get("reason") == "duplicate_frame")
    assert h.status_()["counters"]["rejected"] == {"geometry_changed": 1, "duplicate_frame": 1}


def test_a_start_rejected_for_its_payload_opens_nothing(start_engine):
    h = start_engine()
    p = small_pullback(4)
    pid = p.pullback_id
    h.sender.send_raw(_payload_short(p, 0))  # START with a short payload
    h.collect_events(lambda e: e.get("reason") == "payload_size_mismatch")
    status = h.status_()
    assert status["counters"]["pullbacks_opened"] == 0 and status["admission"]["open_pullbacks"] == 0
    with pytest.raises(ControlError, match="unknown pullback"):
        h.control.request("pullback", pullback_id=pid)
    assert not any(e["event"] == "pullback_opened" for e in h.events)
    for i in range(4):  # the same id, sent correctly, is a new pullback
        h.sender.send_raw(frame_parts(p, i))
    state = h.wait_pullback(pid)
    assert state["state"] == "complete" and state["received"] == 4 and state["rejected"] == 0


def test_display_messages_are_numbered_per_topic_from_one(start_engine):
    h = start_engine(render_image=True)
    display = Subscriber(h.endpoints["overlay"], (b"display",))  # a display of the images alone
    display.start()
    try:
        topics = {"overlay", "backfill", "guidance", "display"}
        deadline = time.monotonic() + 10
        while not topics <= set(h.status_()["displays"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        p = small_pullback(8)
        h.send_pullback(p, fps=40.0)
        h.wait_pullback(p.pullback_id)
        seqs: dict[bytes, list[int]] = {}
        for m in h.display_messages():
            seqs.setdefault(m.topic, []).append(m.envelope["seq"])
        images = []
        while (m := display.recv(0.3)) is not None:
            images.append(m.envelope["seq"])
    finally:
        display.stop()
    assert images == list(range(1, 9))  # its own numbers: no gaps although it sees 1 topic of 4
    for topic, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), topic
    assert sum(len(seqs.get(t, [])) for t in (b"overlay", b"backfill")) == 8 and seqs[b"guidance"] == [1]


def test_the_admission_policy_is_on_status(start_engine):
    h = start_engine(max_open_pullbacks=2, pullback_idle_timeout_s=3.5)
    admission = h.status_()["admission"]
    assert admission == {"max_open_pullbacks": 2, "open_pullbacks": 0, "pullback_idle_timeout_s": 3.5,
                         "end_grace_s": 0.2, "max_frames_per_pullback": admission["max_frames_per_pullback"]}
    p = small_pullback(3)
    h.sender.send_raw(frame_parts(p, 0))
    h.wait_received(p.pullback_id, 1)
    assert h.status_()["admission"]["open_pullbacks"] == 1
