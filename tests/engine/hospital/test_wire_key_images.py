"""Key images of a wire pullback (frames over ZeroMQ, no DICOM instance): the keeper holds a
bounded set of candidate frames while the pullback streams in; the key images start a new study
and series, reference nothing that does not exist, pass dciodvfy, and the SR's groups on key
frames reference them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest

from engine.hospital import codes as c
from engine.hospital.export import load_results, source_instance, write_pullback_dicom
from engine.hospital.sr import expected_numbers, report_numbers, report_texts
from engine.hospital.wire_frames import KeyFrameKeeper
from engine.synthetic.phantom import generate_pullback
from tests.engine.hospital.conftest import dciodvfy_errors, frame_record, write_results

ALINES, SAMPLES = 64, 200


def _group_references(sr: pydicom.Dataset) -> dict[str, list[str]]:
    """``{tracking id: [referenced SOP Instance UIDs]}`` of every measurement group."""
    out = {}
    for container in sr.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeValue != "126010":  # Imaging Measurements
            continue
        for group in container.ContentSequence:
            name = next(str(i.TextValue) for i in group.ContentSequence
                        if i.ConceptNameCodeSequence[0].CodeValue == "112039")
            out[name] = [str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                         for i in group.ContentSequence if i.ValueType == "IMAGE"]
    return out


@pytest.fixture(params=[False, True], ids=["pre-pci", "post-pci"])
def wire_case(request, tmp_path):
    stented = request.param
    pixels = generate_pullback("stented-malapposed" if stented else "calcified", seed=1, n_frames=6,
                               n_alines=ALINES, n_samples=SAMPLES, frame_rate_hz=180.0)
    results = write_results(tmp_path / "results", stented, n_alines=ALINES)
    pullback, records = load_results(results)
    keeper = KeyFrameKeeper(pullback["pullback_id"], depth=1)
    for record in records:  # in acquisition order, as the engine's analysis hands them out
        keeper.offer(pixels.frame(record["frame"]), record)
    return results, keeper, stented


def test_the_keeper_holds_a_bounded_set_that_includes_the_key_frames(wire_case):
    _, keeper, stented = wire_case
    kept = keeper.kept()
    # depth 1: the smallest lumen (frame 4), the smallest stent (4), the first farthest strut (0)
    assert kept.indices() == ([0, 4] if stented else [4])
    assert len(kept) == 6 and 3 not in kept
    with pytest.raises(KeyError):
        kept.frame(3)


def test_the_keeper_copies_the_pixels_it_keeps():
    pixels = generate_pullback("calcified", seed=1, n_frames=2, n_alines=ALINES, n_samples=SAMPLES,
                               frame_rate_hz=180.0)
    frame = pixels.frame(0)
    buffer = np.array(frame.pixels, copy=True)
    keeper = KeyFrameKeeper("buffers", depth=2)
    assert keeper.offer(dataclasses.replace(frame, pixels=buffer), frame_record(0, n_alines=ALINES))
    buffer[:] = 0  # the receiver reuses its buffer for the next frame
    assert np.array_equal(keeper.kept().frame(0).pixels, frame.pixels)
    assert not keeper.offer(pixels.frame(1), frame_record(1, status="rejected", n_alines=ALINES))


def test_wire_key_images_start_a_new_study_and_pass_dciodvfy(wire_case):
    results, keeper, stented = wire_case
    pullback, records = load_results(results)
    paths = write_pullback_dicom(results, keeper.kept(), None)
    assert [p.name for p in paths] == ["sr.dcm", "key_1.dcm"] + (["key_2.dcm"] if stented else [])
    for path in paths:
        assert dciodvfy_errors(path) == [], path.name
    sr = pydicom.dcmread(paths[0])
    keys = [pydicom.dcmread(p) for p in paths[1:]]
    stand_in = str(source_instance(None, pullback).sop_instance_uid)
    for image in keys:
        assert image.StudyInstanceUID == sr.StudyInstanceUID  # the new study the SR opens too
        assert image.SeriesInstanceUID != sr.SeriesInstanceUID
        assert "SourceImageSequence" not in image  # nothing exists to point at
        assert "wire pullback" in image.DerivationDescription
        assert image.pixel_array.shape == (512, 512, 3)
    assert stand_in not in str(sr) and all(stand_in not in str(k) for k in keys)
    evidence = {str(i.ReferencedSOPInstanceUID)
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == {str(k.SOPInstanceUID) for k in keys}
    refs = _group_references(sr)
    mla_key = str(keys[0].SOPInstanceUID)
    assert refs["MLA"] == [mla_key] and refs["frame 4"] == [mla_key]
    assert refs["frame 1"] == [] and refs["frame 2"] == []  # no key image: named by tracking id
    if stented:
        assert refs["stent expansion"] == [mla_key]  # MSA frame 4 is the MLA frame
        assert refs["frame 0"] == [str(keys[1].SOPInstanceUID)]  # worst malapposition
    assert report_numbers(sr) == pytest.approx(expected_numbers(pullback, records), rel=1e-12)
    assert any(code == c.COMMENT.value and "frame N" in text
               for code, text in report_texts(sr)["pullback"])


def test_a_key_frame_the_keeper_did_not_keep_is_left_out(tmp_path):
    pixels = generate_pullback("calcified", seed=1, n_frames=6, n_alines=ALINES,
                               n_samples=SAMPLES, frame_rate_hz=180.0)
    results = write_results(tmp_path / "results", False, n_alines=ALINES)
    pullback, records = load_results(results)
    keeper = KeyFrameKeeper(pullback["pullback_id"], depth=1)
    for record in records[:4]:  # the MLA frame (4) never reached the keeper
        keeper.offer(pixels.frame(record["frame"]), record)
    paths = write_pullback_dicom(results, keeper.kept(6), None)
    assert [p.name for p in paths] == ["sr.dcm"]
    assert dciodvfy_errors(paths[0]) == []
