"""The SR of a results folder: valid DICOM (dciodvfy), read back by highdicom to the numbers
of pullback.json and frames.jsonl, every group naming its algorithm, frames referenced."""

from __future__ import annotations

import json

import pydicom
import pytest

from engine.hospital import codes as c
from engine.hospital.export import load_results, source_instance, write_report
from engine.hospital.sr import (
    ReportError,
    expected_numbers,
    frame_references,
    report_numbers,
    report_texts,
)
from engine.synthetic.phantom import generate_pullback
from streams.files.dicom import write_dicom
from tests.engine.hospital.conftest import CONFIG_HASH, MODEL, dciodvfy_errors


@pytest.fixture
def report(results_dir, tmp_path):
    path = write_report(results_dir, None, tmp_path / "sr.dcm")
    return pydicom.dcmread(path)


def test_the_report_reads_back_to_the_numbers_of_the_results(results_dir, report):
    pullback, records = load_results(results_dir)
    got = report_numbers(report)
    assert got == pytest.approx(expected_numbers(pullback, records), rel=1e-12)
    assert got[("MLA", c.LUMEN_AREA.value, c.MINIMUM.value)] == 4.0
    assert got[("calcium", c.CALCIUM_SCORE.value, None)] == 4
    if pullback["stent"]:
        assert got[("stent expansion", c.STENT_EXPANSION.value, None)] == pytest.approx(67.18319293856815)
        assert got[("malapposition", c.MALAPPOSITION_DISTANCE.value, c.MAXIMUM.value)] == 462.3
    else:
        assert got[("stent sizing", c.STENT_DIAMETER.value, None)] == 3.5
    # frame 1's fibrous arc is the sum of its two fibrous runs; its strut counts are counted
    assert got[("frame 1", c.FIBROUS_ARC.value, None)] == 67.5


def test_nulls_are_left_out_never_zero(report):
    got = report_numbers(report)
    assert ("distal reference", c.EEM_DIAMETER.value, c.MEAN.value) in got
    assert ("proximal reference", c.EEM_DIAMETER.value, c.MEAN.value) not in got
    assert ("frame 1", c.EEM_DIAMETER.value, c.MEAN.value) not in got  # EEL not over 180 deg
    assert ("frame 1", c.FIBROUS_CAP_THICKNESS.value, c.MINIMUM.value) not in got


def test_frames_not_measured_say_why_and_carry_no_numbers(report):
    got = report_numbers(report)
    assert not [k for k in got if k[0] in ("frame 2", "frame 5")]
    texts = report_texts(report)
    assert (c.COMMENT.value, "residual blood") in texts["frame 2"]
    assert (c.COMMENT.value, "bad geometry") in texts["frame 5"]
    assert (c.WARNING.value, "calcium score 4: vessel preparation advised") in texts["pullback"]
    assert any(code == c.NOT_A_MEDICAL_DEVICE.value for code, _ in texts["pullback"])


def test_every_frame_group_references_its_source_frame(results_dir, tmp_path):
    pullback, _ = load_results(results_dir)
    source_path = tmp_path / "source.dcm"
    write_dicom(generate_pullback("calcified", seed=1, n_frames=6, n_alines=16, n_samples=128,
                                  frame_rate_hz=180.0), source_path)
    report = pydicom.dcmread(write_report(results_dir, source_path, tmp_path / "sr.dcm"))
    source = source_instance(source_path, pullback)
    refs = {name: (uid, number) for name, uid, number in frame_references(report)}
    for index in range(6):
        assert refs[f"frame {index}"] == (source.sop_instance_uid, index + 1)
    assert refs["MLA"] == (source.sop_instance_uid, pullback["mla"]["frame"] + 1)
    assert report.StudyInstanceUID == source.header.StudyInstanceUID


def test_without_a_dicom_source_nothing_references_the_stand_in(results_dir, report):
    pullback, _ = load_results(results_dir)
    stand_in = str(source_instance(None, pullback).sop_instance_uid)
    assert list(frame_references(report)) == []
    assert stand_in not in str(report)
    assert "CurrentRequestedProcedureEvidenceSequence" not in report
    assert report.PatientID == "OCTGUIDE-SYNTHETIC"
    assert any(code == c.COMMENT.value and "wire protocol" in text
               for code, text in report_texts(report)["pullback"])


def test_every_group_names_the_algorithm_model_and_config(report):
    groups = report.ContentSequence
    measurement_groups = [item for container in groups
                          if container.ConceptNameCodeSequence[0].CodeValue == "126010"
                          for item in container.ContentSequence]
    assert len(measurement_groups) > 6
    for group in measurement_groups:
        texts = {i.TextValue for i in group.ContentSequence if i.ValueType == "TEXT"}
        assert MODEL["name"] in texts and MODEL["version"] in texts
        assert f"model_sha256={MODEL['sha256']}" in texts
        assert f"config_hash={CONFIG_HASH}" in texts
        assert "engine_version=0.1.0" in texts


def test_the_device_is_the_observer(report):
    observer = [i for i in report.ContentSequence
                if i.ConceptNameCodeSequence[0].CodeValue == "121013"]  # Device Observer Name
    assert observer and observer[0].TextValue.startswith("octguide ")


def test_dciodvfy_reports_no_errors(results_dir, tmp_path):
    path = write_report(results_dir, None, tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == []


def test_the_same_results_give_the_same_sop_instance_uid(results_dir, tmp_path):
    a = pydicom.dcmread(write_report(results_dir, None, tmp_path / "a.dcm"))
    b = pydicom.dcmread(write_report(results_dir, None, tmp_path / "b.dcm"))
    assert a.SOPInstanceUID == b.SOPInstanceUID


@pytest.mark.parametrize("damage", ["missing", "not-json", "no-frame"])
def test_bad_results_are_refused_in_one_line(results_dir, tmp_path, damage):
    if damage == "missing":
        (results_dir / "frames.jsonl").unlink()
    elif damage == "not-json":
        (results_dir / "pullback.json").write_text("{")
    else:
        (results_dir / "frames.jsonl").write_text(json.dumps({"status": "ok"}) + "\n")
    with pytest.raises(ReportError) as info:
        write_report(results_dir, None, tmp_path / "sr.dcm")
    assert "\n" not in str(info.value)
