"""Phantom pullbacks through the file formats and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from engine.commands.cli import main
from engine.synthetic.phantom import generate_pullback
from streams.files.io import read_pullback, write_pullback
from streams.intensity import ASSUMED_LOG_RANGE_DB


@pytest.fixture(scope="module")
def phantom():
    return generate_pullback(
        "artefacts", seed=8, n_frames=5, n_alines=320, n_samples=600, n_padded_alines=4, frame_pitch_mm=8.0
    )


@pytest.mark.parametrize("suffix", [".dcm", ".oct.h5"])
def test_phantom_round_trips_bit_exact(phantom, tmp_path, suffix):
    path = tmp_path / f"pb{suffix}"
    write_pullback(phantom, path)
    back = read_pullback(path)
    np.testing.assert_array_equal(back.frames, phantom.frames)
    if suffix == ".dcm":  # the IOD requires a LUT, so the file states the scale it was written on
        scale = back.geometry.intensity_scale
        assert scale is not None and scale.source == "dicom-lut"
        assert scale.db_per_count == pytest.approx(ASSUMED_LOG_RANGE_DB / 65535, rel=1e-3)
        assert dataclasses.replace(back.geometry, intensity_scale=None) == phantom.geometry
    else:
        assert back.geometry == phantom.geometry
    np.testing.assert_array_equal(back.z_offset_px, phantom.z_offset_px)  # drifting per frame
    np.testing.assert_array_equal(back.seam_index, phantom.seam_index)
    np.testing.assert_allclose(back.frame_spacing_mm, phantom.frame_spacing_mm)
    assert back.frame_rate_hz == pytest.approx(phantom.frame_rate_hz)
    assert back.pullback_id == phantom.pullback_id


def test_cli_phantom_writes_files_and_info_reads_them(tmp_path, capsys):
    dcm, h5 = tmp_path / "p.dcm", tmp_path / "p.oct.h5"
    code = main(["phantom", "calcified", "--frames", "3", "--alines", "256", "--samples", "512",
                 "--pitch-mm", "9", "--out", str(dcm), "--out", str(h5), "--png", str(tmp_path / "png"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_frames"] == 3 and summary["truth"]["calcium"]["score"] >= 2
    assert len(list((tmp_path / "png").glob("frame_*.png"))) >= 2
    assert main(["info", str(dcm)]) == 0
    assert "3" in capsys.readouterr().out


def test_cli_usage_error_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["phantom", "calcified", "--frames", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--frames" in err[0]
