"""The control replies as an independent client sees them: a plain ZeroMQ REQ socket and
``json.loads``, with the expected keys, types and states read from docs/protocol.md section 5.1
itself, so the test fails when the doc and the engine disagree (issue 13 item 8)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import zmq

from engine.realtime.server import Engine
from streams.wire.zmq_io import FrameSender
from tests.engine.realtime.test_server import SlowMetal, engine_config, small_pullback

pytestmark = pytest.mark.timeout(120)

DOC = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
SECTION = DOC[DOC.index("### 5.1 Reply shapes"):DOC.index("## 6.")]
TYPES = {"string": str, "int": int, "float": float}


def documented_pullback_keys() -> dict[str, tuple[type, ...]]:
    """``key -> accepted Python types`` from the table of the pullback object."""
    keys = {}
    for line in SECTION.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or cells[0] == "key":
            continue
        kinds = [k.strip() for k in cells[1].split(" or ")]
        types = tuple(TYPES[k] for k in kinds if k in TYPES) + ((type(None),) if "null" in kinds else ())
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            keys[name] = types
    return keys


def documented_states() -> set[str]:
    row = next(line for line in SECTION.splitlines() if line.startswith("  | `state`"))
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[3]))


def request(sock: zmq.Socket, text: str) -> dict:
    sock.send(text.encode())
    assert sock.poll(10_000), f"no reply to {text}"
    return json.loads(sock.recv())


def test_control_replies_have_the_documented_shapes(tmp_path):
    keys = documented_pullback_keys()
    assert {"state", "end_index", "n_frames_expected", "never_received"} <= keys.keys()
    assert {"open", "ending", "finalizing", "complete", "incomplete"} <= documented_states()
    engine = Engine(engine_config(tmp_path / "engine"), lambda: SlowMetal())
    endpoints = engine.start()
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(endpoints["control"])
    try:
        pong = request(sock, '{"cmd": "ping", "id": 1}')
        assert pong["ok"] is True and pong["id"] == 1 and isinstance(pong["pong"], float)
        status = request(sock, '{"cmd": "status", "id": 2}')
        assert status["ok"] and {"frames", "control"} <= status["endpoints"].keys()
        assert isinstance(status["counters"]["rejected"], dict) and isinstance(status["pullbacks"], dict)

        opened = request(sock, '{"cmd": "start_pullback", "id": 3, "pullback_id": "doc.1", "n_frames": 3}')
        assert opened["ok"] and opened["id"] == 3
        p = opened["pullback"]  # nested, not flat
        for key, types in keys.items():
            assert key in p, f"documented key {key} missing from the pullback reply"
            assert isinstance(p[key], types) and not isinstance(p[key], bool), (key, p[key])
        assert p["state"] in documented_states() and p["state"] == "open"
        assert p["n_frames_expected"] == 3 and p["end_index"] is None and p["highest"] == -1

        with FrameSender(endpoints["frames"]) as sender:
            sender.send_pullback(small_pullback(3), fps=None, pullback_id="doc.1")
        deadline = time.monotonic() + 30
        while True:
            p = request(sock, '{"cmd": "pullback", "id": 4, "pullback_id": "doc.1"}')["pullback"]
            assert p["state"] in documented_states()
            if p["state"] in ("complete", "incomplete"):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert p["state"] == "complete" and p["end_index"] == 2 and p["analysed"] == 3
        assert p["analysed"] == p["shown"] + p["backfilled"] + p["late"] + p["failed"]
        assert isinstance(p["results_dir"], str) and isinstance(p["guidance_delay_s"], float)

        stopped = request(sock, '{"cmd": "stop_pullback", "id": 5, "pullback_id": "doc.1"}')
        assert stopped["ok"] is False and isinstance(stopped["error"], str) and stopped["id"] == 5
        unknown = request(sock, '{"cmd": "pullback", "id": 6, "pullback_id": "never.seen"}')
        assert unknown["ok"] is False and "unknown pullback" in unknown["error"]
        results = request(sock, '{"cmd": "results", "id": 7, "pullback_id": "doc.1"}')
        assert results["parts"] == ["pullback.json", "frames.jsonl"]
    finally:
        sock.close(0)
        engine.stop()

    # after a restart the pullback is known from the case log only: the short documented form
    engine = Engine(engine_config(tmp_path / "engine"), lambda: SlowMetal())
    endpoints = engine.start()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(endpoints["control"])
    try:
        p = request(sock, '{"cmd": "pullback", "id": 8, "pullback_id": "doc.1"}')["pullback"]
        assert p["state"] in ("finished", "interrupted") and set(p) == {"pullback_id", "state", "results_dir"}
        assert p["state"] in SECTION
    finally:
        sock.close(0)
        engine.stop()


def test_64_bit_integers_are_plain_json_integers(tmp_path):
    """Section 5.1: unix_ns is above 2^53 and travels as an exact JSON integer, never a string."""
    engine = Engine(engine_config(tmp_path / "engine"), lambda: SlowMetal())
    endpoints = engine.start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"heartbeat")
    sub.connect(endpoints["status"])
    try:
        assert sub.poll(10_000)
        _topic, body = sub.recv_multipart()
        raw = re.search(rb'"unix_ns":\s*(-?\d+)', body)
        assert raw is not None, body[:200]
        value = json.loads(body)["unix_ns"]
        assert isinstance(value, int) and value > 2**53 and value == int(raw.group(1))
    finally:
        sub.close(0)
        engine.stop()
