"""``octguide replay`` and ``octguide console-sim`` through real engines over real sockets: a
started child engine, a running one, DICOM (both SOP classes), native and phantom pullbacks."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from engine.commands.cli import main
from engine.realtime.server import Engine
from engine.synthetic.phantom import generate_pullback
from streams.files.io import write_pullback
from streams.wire.zmq_io import ControlClient
from tests.engine.realtime.test_server import SlowMetal, engine_config, small_pullback
from tests.streams.conftest import presentation_dataset, save_dataset

pytestmark = pytest.mark.timeout(120)

RESULT_KEYS = {"n_frames", "mla", "references", "calcium", "sizing", "stent", "warnings", "pullback_id",
               "status", "model", "engine_version", "config_hash", "counts", "timing"}


@pytest.fixture
def running_engine(tmp_path):
    engine = Engine(engine_config(tmp_path / "engine"), lambda: SlowMetal())
    endpoints = engine.start()
    yield engine, endpoints
    engine.stop()


def read_results(out) -> tuple[dict, list[dict]]:
    summary = json.loads((out / "pullback.json").read_text())
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    return summary, records


def test_replay_of_a_bundled_phantom_starts_an_engine_and_writes_the_results_contract(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["replay", "phantom:stented-malapposed:2", "--frames", "6", "--alines", "128",
                 "--samples", "256", "--out", str(out), "--rate", "max",
                 "--set", "server.image_size_px=64"]) == 0
    summary, records = read_results(out)
    assert RESULT_KEYS <= summary.keys() and summary["status"] == "complete"
    assert summary["pullback_id"].startswith("phantom-stented-malapposed-2.")
    assert [r["frame"] for r in records] == list(range(6))
    assert {r["status"] for r in records} <= {"ok", "low_confidence"}  # the full stage, by default
    assert summary["model"]["sha256"] and all(r["audit"]["model"] == summary["model"] for r in records)
    assert all(r["pullback_id"] == summary["pullback_id"] and r["audit"]["config_hash"] for r in records)
    text = capsys.readouterr().out
    assert "guidance ready" in text and "not a medical device" in text
    assert (out / "engine" / "caselog.sqlite").exists()  # the child engine's case log


def test_replay_of_dicom_for_processing_against_a_running_engine(running_engine, tmp_path, capsys):
    _, endpoints = running_engine
    pullback = generate_pullback("calcified", seed=3, n_frames=5, n_alines=128, n_samples=256)
    path = tmp_path / "calcified.dcm"
    write_pullback(pullback, path)
    out = tmp_path / "out"
    assert main(["replay", str(path), "--out", str(out), "--engine", endpoints["control"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 5 and report["statuses"] == {"ok": 5}
    assert report["send"]["rate_fps"] == pytest.approx(180.0)  # real time by default
    lanes = report["end_to_end_ms"]
    assert lanes["live"].get("n", 0) + lanes["backfill"].get("n", 0) == 5 and report["guidance_delay_s"] >= 0
    summary, records = read_results(out)
    assert summary["n_frames"] == 5 and len(records) == 5


def test_replay_of_dicom_for_presentation_and_native_files(running_engine, tmp_path):
    _, endpoints = running_engine
    y, x = np.mgrid[-64:64, -64:64]
    images = np.stack([(1000 + 30 * np.hypot(x, y) + k).astype(np.uint16) for k in range(3)])
    presentation = save_dataset(presentation_dataset(images, (0.05, 0.05), alines_per_frame=64),
                                tmp_path / "presentation.dcm")
    native = tmp_path / "small.oct.h5"
    write_pullback(small_pullback(4), native)
    for path, n in ((presentation, 3), (native, 4)):
        out = tmp_path / path.stem
        assert main(["replay", str(path), "--out", str(out), "--engine", endpoints["control"],
                     "--rate", "max"]) == 0
        summary, records = read_results(out)
        assert summary["status"] == "complete" and len(records) == n


def test_replay_reports_an_unknown_scenario(tmp_path, capsys):
    assert main(["replay", "phantom:nope", "--out", str(tmp_path)]) == 1
    assert "unknown phantom scenario" in capsys.readouterr().err


def test_console_sim_sends_a_phantom_pullback_in_real_time(running_engine, capsys):
    _, endpoints = running_engine
    assert main(["console-sim", "--scenario", "normal", "--frames", "4", "--alines", "64", "--samples",
                 "128", "--fps", "30", "--engine", endpoints["frames"], "--control", endpoints["control"]]) == 0
    line = capsys.readouterr().out
    assert "sent 4 frames" in line and "target 30.0" in line
    with ControlClient(endpoints["control"]) as control:
        deadline = time.monotonic() + 30
        while control.request("status")["counters"]["pullbacks_complete"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        counters = control.request("status")["counters"]
        assert counters["received"] == 4 and counters["shown"] + counters["backfilled"] + counters["late"] == 4


def _nan_pullback(path, n: int = 4):
    import dataclasses
    pullback = small_pullback(n)
    pullback = dataclasses.replace(pullback, frames=np.full(pullback.frames.shape, np.nan, np.float32))
    write_pullback(pullback, path)
    return path


def test_replay_of_a_pullback_with_no_analysable_frame_exits_non_zero(running_engine, tmp_path, capsys):
    """Every frame NaN: the engine analyses none, so replay fails with the reason (issue 13 item 11).
    The START frame is rejected for its payload, so the engine opens nothing (a rejected START
    opens no pullback, docs/protocol.md 5.1) and replay names the engine's rejections."""
    _, endpoints = running_engine
    path = _nan_pullback(tmp_path / "nan.oct.h5")
    out = tmp_path / "out"
    assert main(["replay", str(path), "--out", str(out), "--engine", endpoints["control"],
                 "--rate", "max"]) == 1
    err = capsys.readouterr().err
    assert "never opened" in err and "non_finite_payload" in err and "4 frames" in err
    assert "Traceback" not in err


def test_replay_against_a_dead_engine_fails_within_seconds(tmp_path, capsys):
    """No engine behind --engine: a few seconds, not --timeout (issue 13 item 12)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    native = tmp_path / "small.oct.h5"
    write_pullback(small_pullback(4), native)
    start = time.monotonic()
    assert main(["replay", str(native), "--out", str(tmp_path / "out"), "--engine",
                 f"tcp://127.0.0.1:{port}", "--timeout", "600"]) == 1
    assert time.monotonic() - start < 8.0
    assert "not answering" in capsys.readouterr().err


def test_replay_notices_an_engine_that_dies_mid_pullback(tmp_path, capsys):
    engine = Engine(engine_config(tmp_path / "engine"), lambda: SlowMetal(delay_s=0.5))
    endpoints = engine.start()
    native = tmp_path / "small.oct.h5"
    write_pullback(small_pullback(20), native)
    import threading
    threading.Timer(1.5, engine.stop).start()
    start = time.monotonic()
    assert main(["replay", str(native), "--out", str(tmp_path / "out"), "--engine", endpoints["control"],
                 "--rate", "max", "--timeout", "600"]) == 1
    assert time.monotonic() - start < 20.0
    assert "not answering" in capsys.readouterr().err


def test_console_sim_exits_non_zero_when_the_engine_rejects_pullbacks(tmp_path, capsys):
    """--repeat beyond server.max_open_pullbacks: the engine rejects whole pullbacks
    (too_many_pullbacks), and console-sim says so and fails (issue 13 item 12)."""
    engine = Engine(engine_config(tmp_path / "engine", max_open_pullbacks=1),
                    lambda: SlowMetal(delay_s=0.2))
    endpoints = engine.start()
    try:
        code = main(["console-sim", "--scenario", "normal", "--frames", "3", "--alines", "64",
                     "--samples", "128", "--fps", "0", "--repeat", "3", "--engine", endpoints["frames"],
                     "--control", endpoints["control"]])
    finally:
        engine.stop()
    assert code == 1
    err = capsys.readouterr().err
    assert "too_many_pullbacks" in err and "rejected" in err


def test_console_sim_checks_verdicts_of_accepted_pullbacks(running_engine, capsys):
    _, endpoints = running_engine
    assert main(["console-sim", "--scenario", "normal", "--frames", "3", "--alines", "64", "--samples",
                 "128", "--fps", "0", "--repeat", "2", "--engine", endpoints["frames"],
                 "--control", endpoints["control"]]) == 0
    assert "complete" in capsys.readouterr().out


def test_console_sim_against_a_dead_control_endpoint_fails_within_seconds(tmp_path, capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert main(["console-sim", "--scenario", "normal", "--frames", "2", "--alines", "64", "--samples",
                 "128", "--fps", "0", "--engine", f"tcp://127.0.0.1:{port}",
                 "--control", f"tcp://127.0.0.1:{port}"]) == 1
    assert time.monotonic() - start < 8.0
    assert "not answering" in capsys.readouterr().err
