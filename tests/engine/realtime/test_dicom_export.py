"""The engine writes the DICOM SR (and queues it for the PACS) of every completed pullback when
``[dicom] write_sr`` is set (issue 14); failures are counted on status and never stop it."""

from __future__ import annotations

import socket
import time

import pytest

from engine.config import Config
from engine.realtime.server import Engine
from tests.engine.realtime.test_server import LOOPBACK, Harness, SlowMetal, small_pullback

pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")
pytestmark = pytest.mark.timeout(90)


def dicom_engine(results, **dicom) -> Engine:
    config = Config.from_dict({
        "server": {**LOOPBACK, "results_dir": str(results), "image_size_px": 64, "image_fov_mm": 4.0,
                   "heartbeat_s": 0.1, "end_grace_s": 0.2, "stop_drain_s": 5.0},
        "dicom": {"write_sr": True, **dicom}})
    return Engine(config, lambda: SlowMetal())


def wait_status(h: Harness, done, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while not done(status := h.status_()["dicom"]):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_a_completed_pullback_gets_an_sr_that_pydicom_reads(tmp_path):
    h = Harness(dicom_engine(tmp_path / "r"))
    try:
        p = small_pullback(4)
        h.send_pullback(p, fps=40.0)
        state = h.wait_pullback(p.pullback_id)
        status = wait_status(h, lambda s: s["reports_written"] + s["report_failures"] >= 1)
        assert status["reports_written"] == 1 and status["report_failures"] == 0, status
        sr = pydicom.dcmread(next((tmp_path / "r" / "pullbacks" / p.pullback_id / "dicom").glob("sr*.dcm")))
        assert sr.Modality == "SR" and sr.SOPInstanceUID
        assert state["state"] == "complete"
        assert not h.engine.dicom_export._keepers  # the wire frames kept for it are handed over
    finally:
        h.close()


def test_a_wire_pullback_gets_key_images_from_the_frames_the_engine_kept(tmp_path):
    """A wire pullback has no IVOCT instance: the engine keeps the key-frame candidates as
    they pass (engine.hospital.wire_frames) and the SR's key images come from them."""
    from engine.realtime.dicom_export import DicomExport

    export = DicomExport(Config.from_dict({"dicom": {"write_sr": True}}), tmp_path)
    try:
        p = small_pullback(6)
        for frame in p:
            export.offer(frame, {"frame": frame.index, "status": "ok",
                                 "lumen": {"area_mm2": 5.0 - 0.5 * frame.index}})
        assert export._keepers[p.pullback_id].kept() is not None
        export.discard("no-such-pullback")
        export.discard(p.pullback_id)
        assert not export._keepers
        export.offer(next(iter(p)), {"frame": 0, "status": "ok"})  # a record without numbers
        assert export.counts["report_failures"] == 0
    finally:
        export.close()


def test_an_unreachable_pacs_is_counted_and_the_engine_keeps_serving(tmp_path):
    h = Harness(dicom_engine(tmp_path / "r", destinations=[f"PACS@127.0.0.1:{free_port()}"]))
    try:
        first = small_pullback(3, seed=1)
        h.send_pullback(first, fps=40.0)
        h.wait_pullback(first.pullback_id)
        status = wait_status(h, lambda s: s["send_failures"] >= 1)
        assert status["reports_written"] == 1 and status["queued_for_send"] >= 1 and status["sent"] == 0
        assert "failed" in status["last_error"] or "unreachable" in status["last_error"]
        second = small_pullback(3, seed=2)  # and the engine still analyses the next pullback
        h.send_pullback(second, pullback_id="after-pacs-down", fps=40.0)
        assert h.wait_pullback("after-pacs-down")["state"] == "complete"
        assert h.status_()["phase"] == "running"
        assert (tmp_path / "r" / "outbox" / "outbox.sqlite").exists()
    finally:
        h.close()


def test_no_dicom_unless_configured(tmp_path):
    h = Harness(Engine(Config.from_dict({"server": {**LOOPBACK, "results_dir": str(tmp_path / "r"),
                                                    "heartbeat_s": 0.1}}), lambda: SlowMetal()))
    try:
        assert h.status_()["dicom"] == {"write_sr": False}
    finally:
        h.close()
