"""The engine in-process over real loopback sockets: results and audit, live vs backfill, overload,
every fault of the issue (rejected or handled with a reason, counted, the engine keeps serving),
control and status channels, clean stop."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from engine.analysis.stages import MetalAnalysis
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation
from engine.config import Config
from engine.display.overlay import build_overlay, render_overlay
from engine.realtime.messages import Analysed
from engine.realtime.server import Engine
from streams.geometry import FrameGeometry
from streams.pullback import Frame, Pullback
from streams.wire.protocol import (
    FLAG_END_OF_PULLBACK,
    FLAG_START_OF_PULLBACK,
    REJECT_REASONS,
    dumps,
    encode_frame,
    loads,
)
from streams.wire.zmq_io import ControlClient, ControlError, FrameSender, Subscriber
from tests.streams.conftest import random_pullback

pytestmark = pytest.mark.timeout(60)

LOOPBACK = {f"{name}_endpoint": "tcp://127.0.0.1:*" for name in ("frames", "overlay", "status", "control")}
FATES = ("shown", "backfilled", "late", "failed")


def engine_config(results: Path, **server: object) -> Config:
    """A test engine: random loopback ports, small display, fast heartbeats and timeouts."""
    return Config.from_dict({"server": {**LOOPBACK, "results_dir": str(results), "image_size_px": 64,
                                        "image_fov_mm": 4.0, "heartbeat_s": 0.1, "end_grace_s": 0.2,
                                        "stop_drain_s": 5.0, **server}})


class SlowMetal(MetalAnalysis):
    """The real metal stage on a slower machine (a fixed extra time per frame), optionally
    raising on one frame index."""

    def __init__(self, delay_s: float = 0.0, fail_on: int | None = None):
        super().__init__(CartesianGrid(64, 4.0))
        self.delay_s = delay_s
        self.fail_on = fail_on

    def process(self, frame: Frame):
        if frame.index == self.fail_on:
            raise RuntimeError(f"stage failure on frame {frame.index}")
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().process(frame)


def small_pullback(n_frames: int = 8, dtype: type = np.uint16, seed: int = 0) -> Pullback:
    return random_pullback(n_alines=64, n_samples=64, n_frames=n_frames, dtype=dtype, seed=seed)


def flags_for(i: int, n: int) -> int:
    return (FLAG_START_OF_PULLBACK if i == 0 else 0) | (FLAG_END_OF_PULLBACK if i == n - 1 else 0)


def frame_parts(pullback: Pullback, i: int, flags: int | None = None, pullback_id: str | None = None) -> list:
    frame = pullback.frame(i)
    if pullback_id is not None:
        frame = Frame(pullback_id, frame.index, frame.timestamp_s, frame.pixels, frame.geometry,
                      frame.z_offset_px, frame.seam_index)
    return encode_frame(frame, frame_spacing_mm=float(pullback.frame_spacing_mm[i]),
                        frame_rate_hz=pullback.frame_rate_hz, n_frames=len(pullback),
                        flags=flags_for(i, len(pullback)) if flags is None else flags)


def wait_for_pullback(control: ControlClient, pid: str, done: Callable[[dict], bool],
                      timeout_s: float = 30.0) -> dict:
    """Poll the control ``pullback`` command until ``done(state)``; the pullback may not be open
    yet when polling starts (its START frame still on the way)."""
    deadline = time.monotonic() + timeout_s
    state = None
    while True:
        try:
            state = control.request("pullback", pullback_id=pid)["pullback"]
        except ControlError:
            state = None
        if state is not None and done(state):
            return state
        assert time.monotonic() < deadline, f"pullback {pid}: {state}"
        time.sleep(0.02)


_VALIDATORS: dict = {}


def validate(name: str, obj: object) -> None:
    """Assert ``obj`` is valid against docs/schemas/NAME.schema.json (engine/realtime/schemas.py)."""
    from jsonschema import Draft202012Validator

    if not _VALIDATORS:
        from engine.realtime.schemas import schemas

        _VALIDATORS.update({k: Draft202012Validator(v) for k, v in schemas().items()})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _VALIDATORS[name].iter_errors(obj)]
    assert not errors, f"{name} breaks its schema: {errors[:3]}"


class Harness:
    """A started in-process engine with a control client, an event listener and a display."""

    def __init__(self, engine: Engine, display_topics: tuple[bytes, ...] = (b"overlay", b"backfill", b"guidance")):
        self.engine = engine
        self.endpoints = engine.start()
        self.control = ControlClient(self.endpoints["control"], timeout_s=10.0)
        self.status = Subscriber(self.endpoints["status"], (b"event", b"heartbeat"))
        self.display = Subscriber(self.endpoints["overlay"], display_topics) if display_topics else None
        self.sender = FrameSender(self.endpoints["frames"], linger_ms=0)
        self.events: list[dict] = []
        for part in (self.control, self.status, self.display, self.sender):
            if part is not None:
                part.start()
        deadline = time.monotonic() + 10
        while self.status.recv(0.2) is None:  # the status subscription is live once a heartbeat arrives
            assert time.monotonic() < deadline, "no heartbeat"
        while display_topics and not {t.decode() for t in display_topics} <= set(self.status_()["displays"]):
            assert time.monotonic() < deadline, "display subscription not seen"
            time.sleep(0.02)

    def status_(self) -> dict:
        reply = self.control.request("status")
        validate("status", reply)
        return reply

    def send_pullback(self, pullback: Pullback, pullback_id: str | None = None, fps: float | None = None) -> str:
        pid = pullback_id or pullback.pullback_id
        self.sender.send_pullback(pullback, fps=fps, pullback_id=pid)
        return pid

    def wait_pullback(self, pid: str, timeout_s: float = 30.0) -> dict:
        return wait_for_pullback(self.control, pid, lambda s: s["state"] in ("complete", "incomplete"),
                                 timeout_s)

    def wait_received(self, pid: str, n: int, key: str = "received", timeout_s: float = 10.0) -> None:
        """Wait until the engine counts ``n`` frames of ``pid`` under ``key``."""
        wait_for_pullback(self.control, pid, lambda s: s[key] >= n, timeout_s)

    def collect_events(self, until: Callable[[dict], bool] | None = None, timeout_s: float = 5.0) -> list[dict]:
        """Read status events (keeping them) until one satisfies ``until`` or the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if until is not None and any(until(e) for e in self.events):
                break
            message = self.status.recv(0.05)
            if message is not None and message.topic == b"event":
                self.events.append(message.envelope)
        return self.events

    def display_messages(self, timeout_s: float = 0.3) -> list:
        out = []
        while (m := self.display.recv(timeout_s)) is not None:
            validate("display_envelope", m.envelope)
            if m.topic in (b"overlay", b"backfill"):
                validate("overlay", m.body)
            elif m.topic == b"guidance":
                validate("pullback", m.body)
            out.append(m)
        return out

    def results(self, pid: str) -> tuple[dict, list[dict]]:
        _, parts = self.control.request_parts("results", pullback_id=pid)
        records = [json.loads(line) for line in bytes(parts[1].buffer).splitlines()]
        summary = json.loads(bytes(parts[0].buffer))
        validate("pullback", summary)
        for record in records:
            validate("frame_record", record)
        return summary, records

    def close(self) -> None:
        for part in (self.control, self.status, self.display, self.sender):
            if part is not None:
                part.stop()
        self.engine.stop()


@pytest.fixture
def start_engine(tmp_path):
    """``start_engine(stage=None, display_topics=..., **server)`` -> a started :class:`Harness`."""
    harnesses: list[Harness] = []

    def start(stage: Callable[[], object] | None = None, display_topics=(b"overlay", b"backfill", b"guidance"),
              **server: object) -> Harness:
        engine = Engine(engine_config(tmp_path / "results", **server), stage or (lambda: SlowMetal()))
        harness = Harness(engine, display_topics)
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        harness.close()


def assert_fates_add_up(counters: dict, scheduler: dict) -> None:
    """Every received frame has exactly one fate (call once nothing is in flight)."""
    rejected_at_intake = sum(counters["rejected"].values()) - counters["rejected"].get("analysis_error", 0)
    assert counters["received"] == counters["accepted"] + rejected_at_intake
    fated = sum(counters[k] for k in FATES) + sum(counters["skipped"].values())
    assert counters["accepted"] == fated + scheduler["pending"] + scheduler["in_flight"], (counters, scheduler)


def test_a_pullback_end_to_end_results_audit_and_latency(start_engine):
    h = start_engine()
    pullback = small_pullback(10)
    pid = h.send_pullback(pullback, fps=60.0)
    state = h.wait_pullback(pid)
    assert state["state"] == "complete" and state["shown"] + state["backfilled"] == 10
    messages = h.display_messages()
    overlays = [m for m in messages if m.topic in (b"overlay", b"backfill")]
    guidance = [m for m in messages if m.topic == b"guidance"]
    assert len(overlays) == 10 and len(guidance) == 1
    audit_keys = {"pullback_id", "model", "engine_version", "config_hash"}
    config_hash = h.engine.config.config_hash()
    for m in overlays:
        assert audit_keys <= m.envelope.keys() and m.envelope["config_hash"] == config_hash
        assert m.envelope["frame"] == m.body["frame"] and m.body["pullback_id"] == pid
        assert m.envelope["end_to_end_ms"] > 0
        assert {"queue", "scan_convert", "metal", "analysis"} <= m.body["latency_ms"].keys()
        assert m.body["grid"]["size_px"] == 64
    summary, records = h.results(pid)
    assert [r["frame"] for r in records] == list(range(10))
    for r in records:
        assert r["pullback_id"] == pid and r["status"] == "ok"
        assert r["audit"]["config_hash"] == config_hash and "sha256" in r["audit"]["model"]
        assert r["latency_ms"]["end_to_end"] >= r["latency_ms"]["analysis"] > 0
        assert r["lane"] in ("live", "backfill")
    assert summary["status"] == "complete" and summary["n_frames"] == 10
    assert summary == guidance[0].body
    assert summary["config_hash"] == config_hash and summary["pullback_id"] == pid
    assert summary["timing"]["guidance_delay_s"] >= 0
    status = h.status_()
    assert status["end_to_end_ms"]["frames"] == state["shown"]
    assert status["stage"]["backends"]["scan_convert"]["backend"]
    assert_fates_add_up(status["counters"], status["scheduler"])
    db = sqlite3.connect(Path(h.engine.cfg.results_dir) / "caselog.sqlite")
    try:
        row = db.execute("SELECT state, counts, geometry FROM pullbacks WHERE pullback_id=?", (pid,)).fetchone()
        assert row[0] == "complete" and json.loads(row[1])["received"] == 10
        assert json.loads(row[2])["n_alines"] == 64
        assert db.execute("SELECT count(*) FROM frames WHERE pullback_id=?", (pid,)).fetchone()[0] == 10
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_live_display_gets_the_newest_frame_and_the_rest_is_backfilled(start_engine):
    h = start_engine(stage=lambda: SlowMetal(delay_s=0.02))
    pullback = small_pullback(30)
    pid = h.send_pullback(pullback, fps=None)  # far faster than 50 frames/s analysis
    state = h.wait_pullback(pid)
    assert state["state"] == "complete"
    assert state["shown"] + state["backfilled"] + state["late"] == 30
    assert state["backfilled"] > 0 and state["skipped"] == 0
    live = [m.body["frame"] for m in h.display_messages() if m.topic == b"overlay"]
    assert live == sorted(live) and len(set(live)) == len(live)  # never shown late
    assert len(live) == state["shown"]
    status = h.status_()
    assert status["scheduler"]["overtaken"] > 0
    _, records = h.results(pid)
    assert [r["frame"] for r in records] == list(range(30)) and {r["status"] for r in records} == {"ok"}
    assert_fates_add_up(status["counters"], status["scheduler"])


def test_two_workers_analyse_every_frame(start_engine):
    h = start_engine(stage=lambda: SlowMetal(delay_s=0.005), workers=2)
    pid = h.send_pullback(small_pullback(24), fps=None)
    state = h.wait_pullback(pid)
    assert state["state"] == "complete" and state["shown"] + state["backfilled"] + state["late"] == 24
    live = [m.body["frame"] for m in h.display_messages() if m.topic == b"overlay"]
    assert live == sorted(live)  # a live result overtaken by a newer one's overlay is "late", not shown
    status = h.status_()
    assert_fates_add_up(status["counters"], status["scheduler"])


def test_overload_skip_policy_counts_and_records_skipped_frames(start_engine):
    h = start_engine(stage=lambda: SlowMetal(delay_s=0.02), max_pending_frames=3)
    pid = h.send_pullback(small_pullback(20), fps=None)
    state = h.wait_pullback(pid)
    assert state["state"] == "complete" and state["skipped"] > 0
    assert state["skipped"] + state["shown"] + state["backfilled"] + state["late"] == 20
    summary, records = h.results(pid)
    skipped = [r for r in records if r["status"] == "skipped"]
    assert len(skipped) == state["skipped"] and all(r["reason"].startswith("overload") for r in skipped)
    assert any("have no measurement" in w for w in summary["warnings"])
    status = h.status_()
    assert status["counters"]["skipped"]["overload"] == state["skipped"]
    assert status["scheduler"]["pending"] == 0
    assert_fates_add_up(status["counters"], status["scheduler"])


def test_overload_block_policy_loses_nothing(start_engine):
    h = start_engine(stage=lambda: SlowMetal(delay_s=0.01), max_pending_frames=2, overload_policy="block")
    pid = h.send_pullback(small_pullback(20), fps=None)
    state = h.wait_pullback(pid)
    assert state["skipped"] == 0 and state["shown"] + state["backfilled"] + state["late"] == 20
    assert h.status_()["scheduler"]["evicted"] == 0


def test_the_vector_overlay_places_contours_arcs_and_struts_on_the_display_grid():
    g = FrameGeometry(n_alines=400, n_samples=500, aline_spacing_mm=0.01)
    frame = Frame("p", 0, 0.0, np.zeros((400, 500), np.uint16), g, z_offset_px=7, seam_index=3)
    grid = CartesianGrid(101, 10.1)  # 0.1 mm pixels, catheter centre at (50, 50)
    record = {"frame": 0, "status": "ok", "lumen": {"radius_mm": [1.5] * 400, "area_mm2": 7.07},
              "eel": None, "plaque": [{"type": "calcium", "alines": [100, 199]}],
              "guidewire": {"alines": [390, 9]},
              "struts": [{"aline": 100, "radius_mm": 2.0, "distance_to_lumen_um": 300.0, "malapposed": True},
                         {"aline": 300, "radius_mm": 1.0, "distance_to_lumen_um": None, "malapposed": None}]}
    overlay = build_overlay(record, frame, grid, DisplayOrientation(), {"metal": 1.0})
    points = np.asarray(overlay["lumen"]["points_px"])
    assert len(points) == 360  # at most 360 points
    np.testing.assert_allclose(np.hypot(points[:, 0] - 50, points[:, 1] - 50), 15.0, atol=0.01)
    assert overlay["plaque"] == [{"type": "calcium", "alines": [100, 199], "start_deg": 89.55,
                                  "end_deg": 179.55, "arc_deg": 90.0}]
    assert overlay["guidewire"]["arc_deg"] == pytest.approx(18.0) and overlay["guidewire"]["start_deg"] == 350.55
    assert overlay["struts"][0] == {"x_px": 70.0, "y_px": 50.0, "state": "malapposed", "distance_um": 300.0}
    assert overlay["struts"][1]["state"] == "unknown" and overlay["struts"][1]["x_px"] == 40.0
    assert overlay["metrics"]["lumen_area_mm2"] == 7.07 and overlay["metrics"]["struts_malapposed"] == 1
    image = render_overlay(np.random.default_rng(0).random((101, 101)), overlay)
    assert image.shape == (101, 101, 3) and image.dtype == np.uint8


# -- faults -------------------------------------------------------------------------------------

def _bad_header(p, i):
    return [b"OCTF\x01\x00" + b"\0" * 10, frame_parts(p, i)[1]]


def _version(p, i):
    parts = frame_parts(p, i)
    return [parts[0][:4] + b"\x07\x00" + parts[0][6:], parts[1]]


def _payload_short(p, i):
    parts = frame_parts(p, i)
    return [parts[0], parts[1].tobytes()[:-10]]


def _dtype(p, i):
    parts = frame_parts(p, i)
    return [parts[0][:44] + b"\x09" + parts[0][45:], parts[1]]


def _absurd(p, i):
    parts = frame_parts(p, i)
    return [parts[0][:32] + (10**7).to_bytes(4, "little") + parts[0][36:], parts[1]]


def _nan(p, i):
    pixels = p.frames[i].astype(np.float32)
    pixels[1, 2] = np.nan
    frame = p.frame(i)
    return encode_frame(Frame(frame.pullback_id, i, frame.timestamp_s, pixels, frame.geometry),
                        frame_spacing_mm=0.1, frame_rate_hz=p.frame_rate_hz, flags=flags_for(i, len(p)))


def _geometry(p, i):
    frame = p.frame(i)
    g = FrameGeometry(n_alines=32, n_samples=64, aline_spacing_mm=0.005)
    return encode_frame(Frame(frame.pullback_id, i, 0.0, np.zeros((32, 64), np.uint16), g),
                        frame_spacing_mm=0.1, frame_rate_hz=p.frame_rate_hz)


def _bad_id(p, i):
    return frame_parts(p, i, pullback_id="../../etc")


# (name, message for frame 3, reject reason, frame 3's record status, extra frames sent after)
FAULTS = [
    ("malformed header", _bad_header, "malformed_header", None),
    ("unknown version", _version, "unknown_version", None),
    ("payload size mismatch", _payload_short, "payload_size_mismatch", "rejected"),
    ("unsupported dtype", _dtype, "unsupported_dtype", None),
    ("absurd dimensions", _absurd, "absurd_dimensions", None),
    ("geometry change", _geometry, "geometry_changed", "rejected"),
    ("bad pullback id", _bad_id, "bad_pullback_id", None),
    ("unknown pullback", lambda p, i: frame_parts(p, i, pullback_id="never-started"), "unknown_pullback", None),
]


@pytest.mark.parametrize("name, message, reason, status", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_bad_frame_is_rejected_with_its_reason_and_the_engine_keeps_serving(start_engine, name, message,
                                                                               reason, status):
    h = start_engine()
    pullback = small_pullback(6)
    pid = pullback.pullback_id
    for i in range(6):
        h.sender.send_raw(message(pullback, i) if i == 3 else frame_parts(pullback, i))
    state = h.wait_pullback(pid)
    events = h.collect_events(lambda e: e["event"] == "rejected")
    rejected = [e for e in events if e["event"] == "rejected"]
    assert rejected and rejected[0]["reason"] == reason and rejected[0]["detail"]
    assert h.status_()["counters"]["rejected"] == {reason: 1}
    _, records = h.results(pid)
    assert len(records) == 6 and [r["status"] for r in records if r["frame"] != 3] == ["ok"] * 5
    frame3 = next(r for r in records if r["frame"] == 3)
    if status == "rejected":  # the header named the frame: its record says why
        assert frame3["status"] == "rejected" and frame3["reason"].startswith(reason)
    else:  # nothing trustworthy named it: it is missing, recorded as never received
        assert frame3["status"] == "rejected" and frame3["reason"].startswith("never received")
    assert state["state"] == "complete"


def test_nan_in_a_float_pullback_rejects_that_frame(start_engine):
    h = start_engine()
    pullback = small_pullback(5)
    pullback = Pullback(pullback.frames.astype(np.float32), pullback.geometry, pullback.z_offset_px,
                        pullback.seam_index, pullback.frame_spacing_mm, pullback.frame_rate_hz, "float-pb")
    for i in range(5):
        h.sender.send_raw(_nan(pullback, i) if i == 2 else frame_parts(pullback, i))
    h.wait_pullback("float-pb")
    _, records = h.results("float-pb")
    assert records[2]["status"] == "rejected" and records[2]["reason"].startswith("non_finite_payload")
    assert [r["status"] for r in records].count("ok") == 4
    assert h.status_()["counters"]["rejected"] == {"non_finite_payload": 1}


def test_duplicate_out_of_order_after_end_and_finished_frames(start_engine):
    h = start_engine()
    p = small_pullback(6)
    for i in (0, 1, 1, 3, 2, 4, 4, 5):  # duplicates of 1 and 4; 2 after 3 (out of order: analysed)
        h.sender.send_raw(frame_parts(p, i))
    state = h.wait_pullback(p.pullback_id)
    assert state["state"] == "complete" and state["out_of_order"] == 1
    h.sender.send_raw(frame_parts(p, 1, flags=0))  # the pullback is finished
    h.sender.send_raw(frame_parts(p, 0))  # a START for a finished pullback
    h.collect_events(lambda e: e.get("reason") == "finished_pullback"
                     and sum(x.get("reason") == "finished_pullback" for x in h.events) >= 2)
    counters = h.status_()["counters"]
    assert counters["rejected"] == {"duplicate_frame": 2, "finished_pullback": 2}
    _, records = h.results(p.pullback_id)
    assert [r["status"] for r in records] == ["ok"] * 6


def test_frame_after_end_and_too_long_pullbacks(start_engine):
    h = start_engine(max_frames_per_pullback=4)
    p = small_pullback(6)
    h.sender.send_raw(frame_parts(p, 0))
    h.sender.send_raw(frame_parts(p, 5, flags=0))  # beyond max_frames_per_pullback
    h.sender.send_raw(frame_parts(p, 2, flags=FLAG_END_OF_PULLBACK))
    h.sender.send_raw(frame_parts(p, 3, flags=0))  # after the END frame
    h.sender.send_raw(frame_parts(p, 1, flags=0))  # a missing frame still accepted before the end
    state = h.wait_pullback(p.pullback_id)
    assert state["state"] == "complete" and state["received"] == 3
    assert h.status_()["counters"]["rejected"] == {"pullback_too_long": 1, "frame_after_end": 1}


def test_missing_frames_are_recorded_as_never_received(start_engine):
    h = start_engine()
    p = small_pullback(6)
    for i in (0, 1, 4, 5):
        h.sender.send_raw(frame_parts(p, i))
    state = h.wait_pullback(p.pullback_id)
    assert state["state"] == "complete" and state["never_received"] == 2
    summary, records = h.results(p.pullback_id)
    assert [r["status"] for r in records] == ["ok", "ok", "rejected", "rejected", "ok", "ok"]
    assert any("never received 2" in w for w in summary["warnings"])


def test_oversized_messages(start_engine):
    # 64 x 64 uint16 frames are 8 KiB: under the 10 KiB limit. A 16 KiB frame is rejected as
    # oversized; a part over twice the limit makes libzmq drop that sender's connection.
    h = start_engine(max_frame_mib=0.01)
    p = small_pullback(4)
    big = FrameGeometry(n_alines=128, n_samples=64, aline_spacing_mm=0.005)
    h.sender.send_raw(frame_parts(p, 0))
    h.sender.send_raw(encode_frame(Frame("big", 0, 0.0, np.zeros((128, 64), np.uint16), big),
                                   frame_spacing_mm=0.1, frame_rate_hz=180.0, flags=FLAG_START_OF_PULLBACK))
    h.collect_events(lambda e: e.get("reason") == "oversized")
    with FrameSender(h.endpoints["frames"], linger_ms=0) as rogue:
        rogue.send_raw([frame_parts(p, 1)[0], np.zeros(1 << 17, np.uint8)])
        h.collect_events(lambda e: e["event"] == "connection" and e["detail"] == "disconnected")
    for i in (1, 2, 3):
        h.sender.send_raw(frame_parts(p, i))
    state = h.wait_pullback(p.pullback_id)
    assert state["state"] == "complete" and state["rejected"] == 0
    with pytest.raises(ControlError, match="unknown pullback big"):  # a rejected START opens nothing
        h.control.request("pullback", pullback_id="big")
    counters = h.status_()["counters"]
    assert counters["rejected"] == {"oversized": 1} and counters["connections_closed"] >= 1


def test_a_sender_that_vanishes_mid_pullback(start_engine):
    h = start_engine(pullback_idle_timeout_s=0.5)
    p = small_pullback(8)
    for i in range(4):
        h.sender.send_raw(frame_parts(p, i))
    h.wait_received(p.pullback_id, 4)
    h.sender.stop()  # gone, no END frame
    state = h.wait_pullback(p.pullback_id, timeout_s=10)
    assert state["state"] == "incomplete" and "silent" in state["reason"]
    events = h.collect_events(lambda e: e["event"] == "pullback_incomplete")
    assert any(e["event"] == "sender_lost" for e in events)
    summary, records = h.results(p.pullback_id)
    assert summary["status"] == "incomplete" and summary.get("mla") is None
    assert [r["status"] for r in records] == ["ok"] * 4
    assert h.status_()["counters"]["pullbacks_incomplete"] == 1


def test_slow_and_absent_displays_do_not_stall_the_engine(start_engine):
    h = start_engine(display_topics=(), render_image=True, overlay_hwm=2)
    pid = h.send_pullback(small_pullback(6), pullback_id="no-display")
    h.wait_pullback(pid)
    assert h.status_()["counters"]["overlays_without_display"] == 6
    with Subscriber(h.endpoints["overlay"], (b"",), hwm=1):  # a display that never reads
        while "" not in h.status_()["displays"]:
            time.sleep(0.02)
        pid = h.send_pullback(small_pullback(30, seed=1), pullback_id="slow-display")
        state = h.wait_pullback(pid)
        assert state["state"] == "complete" and state["shown"] + state["backfilled"] + state["late"] == 30
    counters = h.status_()["counters"]
    assert counters["overlays_without_display"] == 6 and counters["overlays_published"] == 30


def test_a_stage_that_raises_on_one_frame_rejects_only_that_frame(start_engine):
    h = start_engine(stage=lambda: SlowMetal(fail_on=2))
    pid = h.send_pullback(small_pullback(5), fps=60.0)
    state = h.wait_pullback(pid)
    assert state["state"] == "complete" and state["failed"] == 1
    _, records = h.results(pid)
    assert records[2]["status"] == "rejected" and "analysis_error: RuntimeError" in records[2]["reason"]
    assert [r["status"] for r in records].count("ok") == 4
    overlay = [m for m in h.display_messages() if m.body and m.body.get("frame") == 2]
    assert overlay and overlay[0].body["status"] == "rejected"
    status = h.status_()
    assert status["counters"]["rejected"] == {"analysis_error": 1} and status["counters"]["failed"] == 1
    assert_fates_add_up(status["counters"], status["scheduler"])


def test_rendered_image_with_the_overlay_burned_in(start_engine):
    h = start_engine(render_image=True, display_topics=(b"image",))
    pid = h.send_pullback(small_pullback(3), fps=30.0)
    h.wait_pullback(pid)
    images = h.display_messages()
    assert len(images) == 3
    m = images[0]
    assert m.envelope["image"] == {"shape": [64, 64, 3], "dtype": "uint8", "colour": "BGR", "fov_mm": 4.0}
    pixels = np.frombuffer(m.raw[0].buffer, np.uint8).reshape(64, 64, 3)
    assert pixels.max() > 0 and m.envelope["pullback_id"] == pid


def test_control_channel_commands_and_errors(start_engine):
    h = start_engine()
    assert "pong" in h.control.request("ping")
    config = h.control.request("config")
    assert config["config"]["server"]["image_size_px"] == 64
    assert config["config_hash"] == h.engine.config.config_hash()
    status = h.status_()
    for key in ("engine_version", "protocol_version", "model", "stage", "security", "counters",
                "scheduler", "endpoints", "config_hash", "backends", "fallbacks"):
        assert key in status
    assert status["backends"]["selected"]["scan_convert"]["selected"] == status["stage"]["backends"][
        "scan_convert"]["backend"]
    assert status["backends"]["backends"]["numpy"]["available"]
    assert status["security"]["mode"] == "loopback"
    for cmd, args, match in [("fly", {}, "unknown command"), ("pullback", {}, "needs a 'pullback_id'"),
                             ("results", {"pullback_id": "nope"}, "no results"),
                             ("start_pullback", {"pullback_id": "../x"}, "must match")]:
        with pytest.raises(ControlError, match=match):
            h.control.request(cmd, **args)
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)  # what a C client would use
    req.linger = 0
    try:
        req.connect(h.endpoints["control"])
        req.send(b"{not json")
        assert req.poll(5000) and loads(req.recv())["ok"] is False
        req.send(dumps({"cmd": "ping", "id": 9}))
        assert req.poll(5000) and loads(req.recv()) == {"ok": True, "pong": pytest.approx(time.time(), abs=60), "id": 9}
    finally:
        req.close()
    assert h.status_()["counters"]["control_errors"] == 5


def test_start_and_stop_pullback_by_control(start_engine):
    h = start_engine()
    h.control.request("start_pullback", pullback_id="ctl-1", n_frames=4)
    p = small_pullback(4)
    for i in range(3):
        h.sender.send_raw(frame_parts(p, i, flags=0, pullback_id="ctl-1"))
    h.wait_received("ctl-1", 3)
    stopped = h.control.request("stop_pullback", pullback_id="ctl-1")["pullback"]
    assert stopped["end_index"] == 2
    assert h.wait_pullback("ctl-1")["state"] == "complete"
    with pytest.raises(ControlError, match="already exists"):
        h.control.request("start_pullback", pullback_id="ctl-1")


def test_stop_flushes_open_pullbacks_as_incomplete(tmp_path):
    engine = Engine(engine_config(tmp_path / "r"), lambda: SlowMetal())
    h = Harness(engine, display_topics=())
    p = small_pullback(6)
    for i in range(4):
        h.sender.send_raw(frame_parts(p, i))
    h.wait_received(p.pullback_id, 4, "acknowledged")
    h.close()
    folder = tmp_path / "r" / "pullbacks" / p.pullback_id
    summary = json.loads((folder / "pullback.json").read_text())
    assert summary["status"] == "incomplete" and "engine stopped" in summary["reason"]
    assert len((folder / "frames.jsonl").read_text().splitlines()) == 4
    db = sqlite3.connect(tmp_path / "r" / "caselog.sqlite")
    try:
        assert db.execute("SELECT state FROM pullbacks").fetchall() == [("incomplete",)]
    finally:
        db.close()


def _shipped_model() -> Path:
    from engine.analysis.segment import DEFAULT_MODEL

    return Path(DEFAULT_MODEL)


@pytest.mark.skipif(not _shipped_model().exists(), reason="the segmentation model has not shipped")
def test_the_full_analysis_stage_through_the_engine(tmp_path):
    from engine.synthetic.phantom import generate_pullback

    config = engine_config(tmp_path / "r", analysis="full", render_image=True)
    h = Harness(Engine(config), display_topics=(b"overlay", b"backfill", b"guidance", b"image"))
    try:
        pullback = generate_pullback("calcified", seed=2, n_frames=6, n_alines=256, n_samples=512)
        pid = h.send_pullback(pullback, fps=10.0)
        state = h.wait_pullback(pid, timeout_s=60)
        assert state["state"] == "complete" and state["failed"] == 0
        summary, records = h.results(pid)
        status = h.status_()
        model = status["model"]
        assert model["sha256"] and summary["model"] == model
        # warm-up measured a lumen (the lumen, plaque and strut read-out ran before frame 0)
        assert status["warmup"]["lumen_frames"] >= 1 and status["warmup"]["failed"] == 0
        assert all(r["audit"]["model"]["sha256"] == model["sha256"] for r in records)
        assert any(r["lumen"] is not None for r in records)
        assert {"segment", "detect_metal", "measure"} <= records[0]["latency_ms"].keys()
        assert summary["mla"] is not None
    finally:
        h.close()


def test_reject_reasons_reported_are_the_documented_ones():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    for reason in REJECT_REASONS:
        assert f"`{reason}`" in doc


def test_an_overlay_build_that_raises_is_a_failed_frame_and_the_engine_keeps_serving(start_engine, monkeypatch):
    from engine.realtime import frame_path

    real = frame_path.build_overlay

    def flaky(record, frame, *args, **kwargs):
        if frame.index == 1 and frame.pullback_id != "after-failure" and record.get("status") != "rejected":
            raise ValueError("overlay build exploded")
        return real(record, frame, *args, **kwargs)

    monkeypatch.setattr(frame_path, "build_overlay", flaky)
    h = start_engine()
    pid = h.send_pullback(small_pullback(4), fps=60.0)
    state = h.wait_pullback(pid)
    assert state["state"] == "complete" and state["failed"] == 1
    _, records = h.results(pid)
    assert records[1]["status"] == "rejected" and "ValueError: overlay build exploded" in records[1]["reason"]
    pid2 = h.send_pullback(small_pullback(3, seed=1), pullback_id="after-failure", fps=60.0)
    assert h.wait_pullback(pid2)["state"] == "complete"
    status = h.status_()
    assert status["counters"]["failed"] == 1 and status["error"] is None
    assert_fates_add_up(status["counters"], status["scheduler"])


def test_a_worker_that_dies_stops_the_engine_with_its_reason(start_engine):
    h = start_engine()
    engine = h.engine

    def die(item):
        raise MemoryError("worker killed")

    engine._post = die  # outside the per-frame try: the worker thread itself dies
    h.send_pullback(small_pullback(2), fps=60.0)
    deadline = time.monotonic() + 10
    while engine.failure is None:
        assert time.monotonic() < deadline, "a dead worker went unnoticed"
        time.sleep(0.02)
    del engine._post  # the stop path posts the leftovers
    assert "worker 0 died: MemoryError: worker killed" in str(engine.failure)
    status = h.status_()
    assert status["phase"] == "failed" and "worker killed" in status["error"]


def test_serve_exits_non_zero_when_a_worker_dies(tmp_path, monkeypatch):
    import argparse

    from engine.commands import serve
    from engine.realtime.server import Engine as RealEngine

    class DyingEngine(RealEngine):
        def __init__(self, config):
            cfg = engine_config(tmp_path / "results")
            super().__init__(cfg, lambda: SlowMetal())

        def start(self):
            endpoints = super().start()
            sender = FrameSender(endpoints["frames"], linger_ms=0)
            sender.start()
            sender.send_pullback(small_pullback(2), fps=60.0)
            sender.stop()
            return endpoints

        def _post(self, item):
            if isinstance(item, Analysed):  # outside the per-frame try: the worker thread dies
                raise MemoryError("worker killed")  # noqa: TRY004 (the death it simulates)
            super()._post(item)

    monkeypatch.setattr(serve, "Engine", DyingEngine)
    args = argparse.Namespace(log_level="WARNING", config=None, overrides=[], insecure=False,
                              endpoints_file=None)
    started = time.monotonic()
    assert serve.run(args) == 1
    assert time.monotonic() - started < 20


def test_a_finished_id_whose_results_folder_was_removed_is_rejected_not_a_crash(tmp_path):
    import shutil

    results = tmp_path / "results"
    pullback = small_pullback(3)
    h = Harness(Engine(engine_config(results), lambda: SlowMetal()), ())
    try:
        pid = h.send_pullback(pullback, fps=60.0)
        assert h.wait_pullback(pid)["state"] == "complete"
    finally:
        h.close()
    shutil.rmtree(results / "pullbacks" / pid)
    h = Harness(Engine(engine_config(results), lambda: SlowMetal()), ())
    try:
        with pytest.raises(ControlError, match="already exists"):
            h.control.request("start_pullback", pullback_id=pid)
        h.send_pullback(pullback, pullback_id=pid, fps=60.0)
        deadline = time.monotonic() + 10
        while h.status_()["counters"]["rejected"].get("finished_pullback", 0) < 3:
            assert time.monotonic() < deadline, h.status_()["counters"]
            time.sleep(0.02)
        status = h.status_()
        assert status["phase"] == "running" and status["error"] is None
        assert status["counters"]["pullbacks_opened"] == 0
    finally:
        h.close()
