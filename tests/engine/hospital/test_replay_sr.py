"""``octguide replay ... --sr FILE``: the report of the replayed pullback, its numbers those of
the results it wrote."""

from __future__ import annotations

import pydicom
import pytest

from engine.commands.cli import main
from engine.hospital.export import load_results
from engine.hospital.sr import expected_numbers, report_numbers


def test_replay_writes_the_sr_and_key_images(tmp_path, capsys):
    out, sr = tmp_path / "out", tmp_path / "report.dcm"
    assert main(["replay", "phantom:stented-malapposed:2", "--frames", "6", "--alines", "128",
                 "--samples", "256", "--rate", "max", "--out", str(out), "--sr", str(sr)]) == 0
    capsys.readouterr()
    pullback, records = load_results(out)
    report = pydicom.dcmread(sr)
    assert report_numbers(report) == pytest.approx(expected_numbers(pullback, records), rel=1e-12)
    assert report.PatientID == "OCTGUIDE-SYNTHETIC"
    assert sorted(p.name for p in (out / "dicom").iterdir())[:2] == ["key_1.dcm", "sr.dcm"]
