"""The end-to-end hospital path, shared by the test and the benchmark: a phantom pullback is
C-STOREd to ``octguide listen``, analysed by the engine, its SR and key images C-STOREd to a real
Orthanc, fetched back over Orthanc's REST API and DICOMweb, parsed, compared with pullback.json."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from engine.hospital.export import load_results
from engine.hospital.sr import expected_numbers, report_numbers
from engine.synthetic.phantom import generate_pullback
from streams.files.dicom import SOP_FOR_PROCESSING, write_dicom
from tests.engine.hospital.orthanc import Orthanc, free_port

ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass
class Outcome:
    source_uid: str
    results: Path
    sr_rest: pydicom.Dataset
    sr_dicomweb: pydicom.Dataset
    key_images: list[pydicom.Dataset]
    store_to_sr_s: float
    audit: list[dict]
    listen_log: str


def _echo(port: int) -> bool:
    try:  # pynetdicom leaves its socket open when the connection is refused: check first
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    ae = AE(ae_title="CONSOLE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="OCTGUIDE")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return status.Status == 0x0000


def _c_store(port: int, path: Path) -> int:
    ae = AE(ae_title="CONSOLE")
    ae.add_requested_context(SOP_FOR_PROCESSING, ExplicitVRLittleEndian)
    ae.maximum_pdu_size = 0
    ae.dimse_timeout = 600
    assoc = ae.associate("127.0.0.1", port, ae_title="OCTGUIDE")
    assert assoc.is_established, "octguide listen refused the association"
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        assoc.release()


def _dicomweb_instance(orthanc: Orthanc, study: str, series: str, sop: str) -> pydicom.Dataset:
    """WADO-RS retrieve of one instance (multipart/related; type=application/dicom)."""
    url = f"{orthanc.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    request = urllib.request.Request(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    with urllib.request.urlopen(request, timeout=60) as response:
        content_type = response.headers["Content-Type"]
        body = response.read()
    boundary = next(p.split("=", 1)[1].strip('"') for p in content_type.split(";")
                    if p.strip().startswith("boundary="))
    parts = [p for p in body.split(b"--" + boundary.encode()) if b"\r\n\r\n" in p]
    payload = parts[0].split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    return pydicom.dcmread(io.BytesIO(payload))


def run_end_to_end(folder: Path, orthanc: Orthanc, frames: int, alines: int, samples: int,
                   scenario: str = "stented-malapposed", timeout_s: float = 600.0,
                   via: str = "dimse") -> Outcome:
    """``via``: the reports go to Orthanc by C-STORE (``dimse``) or STOW-RS (``dicomweb``)."""
    to = orthanc.dicomweb_url if via == "dicomweb" else orthanc.destination
    pullback = generate_pullback(scenario, seed=2, n_frames=frames, n_alines=alines,
                                 n_samples=samples, frame_rate_hz=180.0)
    source = folder / "pullback.dcm"
    write_dicom(pullback, source)
    source_uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
    port = free_port()
    work = folder / "work"
    log_path = folder / "listen.log"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with open(log_path, "wb") as log:
        listen = subprocess.Popen(
            [sys.executable, "-m", "engine.commands.cli", "listen", "--port", str(port),
             "--allow", "CONSOLE", "--to", to, "--work", str(work)],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (listen.poll() is None and _echo(port)):
            assert listen.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "octguide listen did not start"
            time.sleep(0.2)
        assert _c_store(port, source) == 0x0000
        stored = time.monotonic()
        deadline = stored + timeout_s
        sr_id = None
        while sr_id is None:
            assert listen.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "no SR reached Orthanc: " + log_path.read_text()[-3000:]
            for instance_id in orthanc.json("/instances"):
                tags = orthanc.json(f"/instances/{instance_id}/simplified-tags")
                if tags.get("SOPClassUID") == ENHANCED_SR:
                    sr_id = instance_id
            time.sleep(0.1)
        store_to_sr_s = time.monotonic() - stored
        # the key images are queued with the SR: give them until they are in too
        results = work / "results" / source_uid
        expected_keys = len(list((results / "dicom").glob("key_*.dcm")))
        while sum(1 for i in orthanc.json("/instances") if orthanc.json(
                f"/instances/{i}/simplified-tags").get("SOPClassUID") == SECONDARY_CAPTURE) < expected_keys:
            assert time.monotonic() < deadline, "key images missing in Orthanc"
            time.sleep(0.2)
    finally:
        listen.send_signal(signal.SIGTERM)
        try:
            listen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            listen.kill()
            listen.wait()
    sr_rest = pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{sr_id}/file")))
    sr_dicomweb = _dicomweb_instance(orthanc, sr_rest.StudyInstanceUID, sr_rest.SeriesInstanceUID,
                                     sr_rest.SOPInstanceUID)
    keys = [pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{i}/file")))
            for i in orthanc.json("/instances")
            if orthanc.json(f"/instances/{i}/simplified-tags").get("SOPClassUID") == SECONDARY_CAPTURE]
    audit = subprocess.run([sys.executable, "-m", "engine.commands.cli", "audit", "--db",
                            str(work / "hospital.sqlite"), "--json"], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert audit.returncode == 0, audit.stderr
    return Outcome(source_uid, results, sr_rest, sr_dicomweb, keys, store_to_sr_s,
                   json.loads(audit.stdout), log_path.read_text())


def numbers_match(outcome: Outcome) -> tuple[dict, dict]:
    pullback, records = load_results(outcome.results)
    return report_numbers(outcome.sr_rest), expected_numbers(pullback, records)
