"""``octguide serve`` as a real process: SIGINT/SIGTERM flush and exit cleanly; SIGKILL mid-pullback
loses nothing that was acknowledged, and the next start marks the pullback interrupted."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.wire.zmq_io import ControlClient, FrameSender, Subscriber
from tests.engine.realtime.test_server import frame_parts, small_pullback, wait_for_pullback

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[3]


class ServeProcess:
    """``python -m engine.commands.cli serve`` on random loopback ports."""

    def __init__(self, tmp: Path, results: Path):
        self.endpoints_file = tmp / f"endpoints-{time.monotonic_ns()}.json"
        command = [sys.executable, "-m", "engine.commands.cli", "serve", "--endpoints-file", str(self.endpoints_file),
                   "--log-level", "WARNING"]
        settings = {f"server.{n}_endpoint": "tcp://127.0.0.1:*" for n in ("frames", "overlay", "status", "control")}
        settings.update({"server.results_dir": str(results), "server.image_size_px": 64,
                         "server.heartbeat_s": 0.1, "server.analysis": "metal"})
        for key, value in settings.items():
            command += ["--set", f"{key}={json.dumps(value)}"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.process = subprocess.Popen(command, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while not self.endpoints_file.exists():
            assert self.process.poll() is None, self.process.stderr.read()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        self.endpoints = json.loads(self.endpoints_file.read_text())

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()


@pytest.fixture
def serve(tmp_path):
    processes: list[ServeProcess] = []

    def start(results: Path) -> ServeProcess:
        process = ServeProcess(tmp_path, results)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_flushes_results_and_exits_cleanly(serve, tmp_path, signum):
    results = tmp_path / "results"
    engine = serve(results)
    p = small_pullback(6)
    with ControlClient(engine.endpoints["control"]) as control, \
            FrameSender(engine.endpoints["frames"], linger_ms=0) as sender:
        for i in range(4):  # no END frame: the pullback is open when the signal comes
            sender.send_raw(frame_parts(p, i))
        wait_for_pullback(control, p.pullback_id, lambda s: s["acknowledged"] == 4)
    engine.process.send_signal(signum)
    assert engine.wait() == 0
    folder = results / "pullbacks" / p.pullback_id
    summary = json.loads((folder / "pullback.json").read_text())
    assert summary["status"] == "incomplete" and "engine stopped" in summary["reason"]
    assert len((folder / "frames.jsonl").read_text().splitlines()) == 4
    db = sqlite3.connect(results / "caselog.sqlite")
    try:
        assert db.execute("SELECT state FROM pullbacks").fetchall() == [("incomplete",)]
    finally:
        db.close()


def test_kill_mid_pullback_loses_nothing_acknowledged(serve, tmp_path):
    results = tmp_path / "results"
    engine = serve(results)
    p = small_pullback(60)
    acked: set[int] = set()
    with Subscriber(engine.endpoints["status"], (b"event", b"heartbeat")) as status, \
            FrameSender(engine.endpoints["frames"], linger_ms=0) as sender:
        deadline = time.monotonic() + 30
        while status.recv(0.2) is None:
            assert time.monotonic() < deadline, "no heartbeat"
        for i in range(60):
            sender.send_raw(frame_parts(p, i, flags=0 if i else None))
            time.sleep(0.005)
            while (m := status.recv(0)) is not None:
                if m.topic == b"event" and m.envelope["event"] == "ack":
                    acked.update(m.envelope["frames"])
            if len(acked) >= 20:
                break
        os.kill(engine.process.pid, signal.SIGKILL)
        engine.wait()
    assert len(acked) >= 20
    db = sqlite3.connect(results / "caselog.sqlite")
    try:
        stored = {row[0] for row in db.execute("SELECT frame FROM frames WHERE pullback_id=?", (p.pullback_id,))}
        state = db.execute("SELECT state FROM pullbacks WHERE pullback_id=?", (p.pullback_id,)).fetchone()
    finally:
        db.close()
    assert acked <= stored and state == ("open",)
    restarted = serve(results)  # the next start closes what the killed one left open
    with ControlClient(restarted.endpoints["control"]) as control:
        reply = control.request("pullback", pullback_id=p.pullback_id)["pullback"]
        assert reply["state"] == "interrupted"
    restarted.process.send_signal(signal.SIGINT)
    assert restarted.wait() == 0
    folder = results / "pullbacks" / p.pullback_id
    summary = json.loads((folder / "pullback.json").read_text())
    assert summary["status"] == "interrupted"
    exported = {json.loads(line)["frame"] for line in (folder / "frames.jsonl").read_text().splitlines()}
    assert exported == stored
