"""Format dispatch for pullback files, and ``octguide info`` on good and bad files."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from engine.commands.cli import main
from streams.errors import NotIVOCTError, PullbackFileError
from streams.files.io import HDF5_SIGNATURE, read_pullback, sniff_format, write_pullback
from streams.pullback import Pullback


#: What the stand-in native reader returns (uint16 frames, so the dtype check passes).
NATIVE_PULLBACK = types.SimpleNamespace(frames=np.zeros((1, 16, 16), np.uint16))


@pytest.fixture
def fake_native(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Stand in for ``streams.files.native`` (another module's codec) and record what it is asked."""
    calls: list[tuple] = []
    module = types.ModuleType("streams.files.native")
    module.read_native = lambda path: calls.append(("read", Path(path))) or NATIVE_PULLBACK
    module.write_native = lambda pullback, path: calls.append(("write", pullback, Path(path)))
    monkeypatch.setitem(sys.modules, "streams.files.native", module)
    return calls


def test_dicom_content_is_read_as_dicom(dicom_file: Path, pullback: Pullback) -> None:
    read = read_pullback(dicom_file)
    np.testing.assert_array_equal(read.frames, pullback.frames)
    assert read.attributes["source_format"] == "dicom"


def test_dicom_without_preamble_is_recognised_by_content(
    tmp_path: Path, dicom_dataset: Dataset
) -> None:
    del dicom_dataset.file_meta
    dicom_dataset.preamble = None
    path = tmp_path / "bare.bin"
    dicom_dataset.save_as(path, implicit_vr=False, little_endian=True)
    assert sniff_format(path) == "dicom"
    assert read_pullback(path).geometry.n_alines == dicom_dataset.Rows


@pytest.mark.parametrize(
    "user_block", [0, 512, 2048], ids=["at 0", "after 512-byte user block", "after 2048"]
)
def test_hdf5_content_goes_to_the_native_reader(
    tmp_path: Path, fake_native: list, user_block: int
) -> None:
    path = tmp_path / "pullback.dcm"  # the name says DICOM; the content decides
    path.write_bytes(b"\0" * user_block + HDF5_SIGNATURE + b"\0" * 64)
    assert read_pullback(path) is NATIVE_PULLBACK
    assert fake_native == [("read", path)]


@pytest.mark.parametrize("name", ["pullback.h5", "pullback.oct.h5", "PULLBACK.H5"])
def test_h5_suffix_goes_to_the_native_writer(
    tmp_path: Path, fake_native: list, pullback: Pullback, name: str
) -> None:
    write_pullback(pullback, tmp_path / name)
    assert fake_native == [("write", pullback, tmp_path / name)]


def test_dcm_suffix_writes_dicom(tmp_path: Path, fake_native: list, pullback: Pullback) -> None:
    path = tmp_path / "pullback.dcm"
    write_pullback(pullback, path)
    assert path.read_bytes()[128:132] == b"DICM"
    assert fake_native == []


def test_unknown_suffix_is_refused(tmp_path: Path, pullback: Pullback) -> None:
    with pytest.raises(PullbackFileError, match=r"'\.tiff'.*\.dcm"):
        write_pullback(pullback, tmp_path / "pullback.tiff")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "cannot be read"),
        (lambda p: p.write_bytes(b"%PDF-1.7\n" + b"x" * 500), "neither DICOM"),
        (lambda p: p.write_bytes(b""), "neither DICOM"),
    ],
    ids=["missing", "directory", "other format", "empty"],
)
def test_unreadable_or_unknown_content_is_a_pullback_file_error(
    tmp_path: Path, make, message: str
) -> None:
    path = tmp_path / "pullback.dcm"
    make(path)
    with pytest.raises(PullbackFileError, match=message) as caught:
        read_pullback(path)
    assert caught.value.path == str(path)


def test_dicom_errors_pass_through_typed(tmp_path: Path, dicom_dataset: Dataset) -> None:
    dicom_dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dicom_dataset.file_meta.MediaStorageSOPClassUID = dicom_dataset.SOPClassUID
    path = tmp_path / "capture.dcm"
    dicom_dataset.save_as(path, enforce_file_format=True)
    with pytest.raises(NotIVOCTError):
        read_pullback(path)


# --- octguide info --------------------------------------------------------------------------


def test_info_prints_geometry_rates_and_attributes(
    dicom_file: Path, pullback: Pullback, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(dicom_file)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert f"frames                     {len(pullback)}" in lines
    assert any(
        line.startswith("SOP class") and "1.2.840.10008.5.1.4.1.1.14.2" in line for line in lines
    )
    assert any(
        line.startswith("frame rate ") and f"{pullback.frame_rate_hz:.6g}" in line for line in lines
    )
    assert any(line.startswith("pullback rate") for line in lines)
    assert any("ALinePixelSpacing" in line and "(0052,0014)" in line for line in lines)
    assert any("OCTZOffsetCorrection" in line and "(0052,0030)" in line for line in lines)


def test_info_json_is_one_object_with_the_summary(
    dicom_file: Path, pullback: Pullback, capsys
) -> None:
    assert main(["info", str(dicom_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["n_frames"] == len(pullback)
    assert report["summary"]["n_alines"] == pullback.geometry.n_alines
    assert report["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.14.2"
    tags = {row["keyword"]: row["tag"] for row in report["dicom_attributes"]}
    assert tags["EffectiveRefractiveIndex"] == "(0052,0004)"
    assert tags["SeamLineIndex"] == "(0052,0036)"


def test_info_on_a_presentation_file_says_it_was_resampled(write_presentation, capsys) -> None:
    path = write_presentation(np.zeros((2, 81, 81), dtype=np.uint16), (0.05, 0.05))
    assert main(["info", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source_sop"] == "for_presentation"
    assert "bilinear" in report["resampling"]


def test_info_on_a_native_file_names_file_and_format(
    tmp_path: Path, fake_native: list, pullback: Pullback, capsys
) -> None:
    """Native pullbacks carry no DICOM provenance; the report still says what was read."""
    path = tmp_path / "pullback.oct.h5"
    path.write_bytes(HDF5_SIGNATURE + b"\0" * 64)
    sys.modules["streams.files.native"].read_native = lambda _: pullback
    assert main(["info", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["file"], report["format"], report["sop_class"]) == (str(path), "native", None)
    assert report["summary"]["n_frames"] == len(pullback)
    assert report["dicom_attributes"] == []


def test_info_on_a_bad_file_exits_non_zero_with_one_line_naming_it(
    tmp_path: Path, dicom_file: Path, capsys
) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(dicom_file.read_bytes()[:-1000])
    assert main(["info", str(path)]) != 0
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert str(path) in err and "PixelData (7FE0,0010)" in err


def test_float64_frames_are_rejected_at_open_with_one_line(tmp_path):
    import h5py

    from tests.streams.conftest import random_pullback

    path = tmp_path / "f64.oct.h5"
    write_pullback(random_pullback(n_alines=32, n_samples=48, n_frames=2, dtype=np.uint16), path)
    with h5py.File(path, "r+") as f:
        frames = f["frames"][...].astype(np.float64)
        attrs = dict(f["frames"].attrs)
        del f["frames"]
        f.create_dataset("frames", data=frames)
        f["frames"].attrs.update(attrs)
    with pytest.raises(PullbackFileError, match="float64") as info:
        read_pullback(path)
    assert "\n" not in str(info.value)
