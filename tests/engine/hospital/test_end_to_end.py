"""Phantom pullback -> C-STORE to ``octguide listen`` -> engine -> SR + key images -> C-STORE to a
real Orthanc -> fetched back over REST and DICOMweb, parsed, numbers equal to pullback.json."""

from __future__ import annotations

import json

import pytest

from engine.hospital import codes as c
from engine.hospital.sr import frame_references, report_numbers
from tests.engine.hospital.e2e import numbers_match, run_end_to_end


def check(outcome, n_frames):
    got, expected = numbers_match(outcome)
    assert got == pytest.approx(expected, rel=1e-12)
    assert report_numbers(outcome.sr_dicomweb) == got
    pullback = json.loads((outcome.results / "pullback.json").read_text())
    assert got[("MLA", c.LUMEN_AREA.value, c.MINIMUM.value)] == pullback["mla"]["area_mm2"]
    refs = {name: (uid, n) for name, uid, n in frame_references(outcome.sr_rest)}
    assert all(refs[f"frame {i}"] == (outcome.source_uid, i + 1) for i in range(n_frames))
    assert outcome.key_images and all(k.StudyInstanceUID == outcome.sr_rest.StudyInstanceUID
                                      for k in outcome.key_images)
    events = {(r["event"], r["result"]) for r in outcome.audit}
    assert ("receive", "ok") in events and ("send", "ok") in events
    assert any(r["event"] == "analysis" and outcome.source_uid in r["what"] for r in outcome.audit)
    sent = {r["what"][0] for r in outcome.audit if r["event"] == "send"}
    assert outcome.sr_rest.SOPInstanceUID in sent


def test_a_pullback_pushed_to_listen_reaches_orthanc_as_an_sr_with_its_numbers(orthanc, tmp_path):
    outcome = run_end_to_end(tmp_path, orthanc, frames=8, alines=128, samples=256)
    check(outcome, 8)


@pytest.mark.slow  # ~80 s on a loaded 2-core VM; the STOW-RS outbox itself: test_stow.py (seconds)
def test_the_reports_reach_orthanc_by_stow_rs_when_the_destination_is_a_dicomweb_url(orthanc, tmp_path):
    outcome = run_end_to_end(tmp_path, orthanc, frames=8, alines=128, samples=256, via="dicomweb")
    check(outcome, 8)
    sends = [r for r in outcome.audit if r["event"] == "send"]
    assert sends and all(r["who"] == orthanc.dicomweb_url and "STOW-RS" in r["detail"] for r in sends)


@pytest.mark.slow
def test_the_bundled_200_frame_phantom_end_to_end(orthanc, tmp_path):
    outcome = run_end_to_end(tmp_path, orthanc, frames=200, alines=500, samples=1000,
                             scenario="calcified")
    check(outcome, 200)
