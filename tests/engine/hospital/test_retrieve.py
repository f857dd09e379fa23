"""``octguide replay pacs://...``: a study's IVOCT instance fetched from a real Orthanc by
C-FIND + C-GET or by QIDO-RS + WADO-RS (its SR and key images left behind), then analysed as a
file replay whose SR joins the PACS's study."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from engine.commands.cli import main
from engine.hospital.config import DicomConfig
from engine.hospital.export import load_results, write_report
from engine.hospital.outbox import Outbox
from engine.hospital.retrieve import RetrieveError, is_pacs_spec, retrieve, retrieve_pullback
from engine.hospital.sr import expected_numbers, frame_references, report_numbers
from engine.synthetic.phantom import generate_pullback
from streams.files.dicom import write_dicom
from streams.files.io import read_pullback
from tests.engine.hospital.conftest import write_results
from tests.engine.hospital.orthanc import free_port


@pytest.fixture
def study(orthanc, tmp_path):
    """An IVOCT instance and an SR of it (a report from an earlier analysis) in Orthanc."""
    pixels = generate_pullback("calcified", seed=3, n_frames=6, n_alines=128, n_samples=256,
                               frame_rate_hz=180.0)
    source = tmp_path / "pullback.dcm"
    write_dicom(pixels, source)
    report = write_report(write_results(tmp_path / "earlier", False), source, tmp_path / "sr.dcm")
    with Outbox(tmp_path / "outbox", DicomConfig(ae_title="OCTSEND")) as outbox:
        for path in (source, report):
            outbox.enqueue(path, orthanc.destination)
        assert outbox.drain(60)
    header = pydicom.dcmread(source, stop_before_pixels=True)
    return source, header


@pytest.mark.parametrize("via", ["dimse", "wado"])
def test_the_study_s_ivoct_instance_is_retrieved_and_nothing_else(orthanc, study, tmp_path, via):
    source, header = study
    spec = (f"pacs://{orthanc.destination}/{header.StudyInstanceUID}" if via == "dimse"
            else f"{orthanc.dicomweb_url}/studies/{header.StudyInstanceUID}")
    assert is_pacs_spec(spec)
    paths = retrieve(spec, tmp_path / "fetched")
    assert [p.stem for p in paths] == [header.SOPInstanceUID]  # the SR stayed in the PACS
    fetched, original = read_pullback(paths[0]), read_pullback(source)
    assert np.array_equal(fetched.frames, original.frames)
    assert fetched.attributes["sop_instance_uid"] == header.SOPInstanceUID


def test_replay_pacs_analyses_the_study_and_its_sr_joins_it(orthanc, study, tmp_path, capsys):
    _, header = study
    out, sr = tmp_path / "out", tmp_path / "report.dcm"
    spec = f"pacs://{orthanc.destination}/{header.StudyInstanceUID}/{header.SeriesInstanceUID}"
    assert main(["replay", spec, "--rate", "max", "--out", str(out), "--sr", str(sr)]) == 0
    capsys.readouterr()
    pullback, records = load_results(out)
    report = pydicom.dcmread(sr)
    assert report_numbers(report) == pytest.approx(expected_numbers(pullback, records), rel=1e-12)
    assert report.StudyInstanceUID == header.StudyInstanceUID
    assert report.PatientID == header.PatientID
    refs = {name: (uid, number) for name, uid, number in frame_references(report)}
    assert refs["frame 0"] == (header.SOPInstanceUID, 1)


def test_unknown_studies_and_unreachable_pacs_fail_in_one_line(orthanc, tmp_path):
    cases = [
        f"pacs://{orthanc.destination}/1.2.3.4",
        f"{orthanc.dicomweb_url}/studies/1.2.3.4",
        f"pacs://ORTHANC@127.0.0.1:{free_port()}/1.2.3.4",
        f"pacs://STRANGER@127.0.0.1:{orthanc.dicom_port}/1.2.3.4",
        "pacs://ORTHANC@127.0.0.1:4242/not-a-uid",
    ]
    for spec in cases:
        with pytest.raises(RetrieveError) as info:
            retrieve_pullback(spec, calling_ae="OCTGUIDE")
        assert "\n" not in str(info.value), spec
