"""DICOM IVOCT files: bit-exact round trips, IOD validity, For Presentation reading, bad input."""

from __future__ import annotations

import shutil
from dataclasses import replace
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)

from streams.errors import (
    InconsistentDimensionsError,
    MissingAttributeError,
    NotIVOCTError,
    PullbackFileError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from streams.files.dicom import PULLBACK_ID_PREFIX, read_dicom, write_dicom
from streams.intensity import IntensityScale
from streams.pullback import Pullback
from tests.streams.conftest import random_pullback, save_dataset

GEOMETRIES = {
    "256x512 u16 LOG CW": dict(n_alines=256, n_samples=512),
    "504x976 u16 LIN CC padded": dict(
        n_alines=504, n_samples=976, intensity="LIN", rotation="CC", n_padded_alines=8
    ),
    "1024x1200 u16 LOG CC padded, index applied": dict(
        n_alines=1024,
        n_samples=1200,
        rotation="CC",
        n_padded_alines=24,
        refractive_index_applied=True,
    ),
    "448x600 u8 LOG CW": dict(n_alines=448, n_samples=600, dtype=np.uint8),
    # 3 x 301 x 513 one-byte samples: an odd Pixel Data length, padded to even in the file.
    "301x513 u8 LIN CC padded": dict(
        n_alines=301,
        n_samples=513,
        dtype=np.uint8,
        intensity="LIN",
        rotation="CC",
        n_padded_alines=5,
    ),
}


def assert_same_pullback(read: Pullback, written: Pullback) -> None:
    assert read.frames.dtype == written.frames.dtype
    np.testing.assert_array_equal(read.frames, written.frames)
    # LOG files carry a LUT, so the read geometry states a (fitted, float-close) scale.
    assert replace(read.geometry, intensity_scale=None) == replace(
        written.geometry, intensity_scale=None
    )
    if written.geometry.intensity_scale is not None:
        assert_close_scale(read.geometry.intensity_scale, written.geometry.intensity_scale)
    np.testing.assert_array_equal(read.z_offset_px, written.z_offset_px)
    np.testing.assert_array_equal(read.seam_index, written.seam_index)
    np.testing.assert_array_equal(read.frame_spacing_mm, written.frame_spacing_mm)
    assert read.frame_rate_hz == written.frame_rate_hz
    assert read.pullback_id == written.pullback_id


@pytest.mark.parametrize("options", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_for_processing_round_trip_is_bit_exact(tmp_path: Path, options: dict) -> None:
    written = random_pullback(**options, seed=7)
    path = tmp_path / "pullback.dcm"
    write_dicom(written, path)
    read = read_dicom(path)
    assert_same_pullback(read, written)
    assert read.attributes["source_sop"] == "for_processing"
    assert read.attributes["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.14.2"
    assert "dicom_warnings" not in read.attributes


def test_written_attributes_follow_the_domain_table(
    dicom_dataset: Dataset, pullback: Pullback
) -> None:
    ds, g = dicom_dataset, pullback.geometry
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.14.2"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (
        ds.Modality,
        ds.PhotometricInterpretation,
        ds.SamplesPerPixel,
        ds.PixelRepresentation,
    ) == (
        "IVOCT",
        "MONOCHROME2",
        1,
        0,
    )
    assert (ds.Rows, ds.Columns, ds.ALinesPerFrame, ds.NumberOfFrames) == (
        g.n_alines,
        g.n_samples,
        g.n_alines,
        len(pullback),
    )
    assert ds.ALineRate == pytest.approx(pullback.frame_rate_hz * g.n_alines, rel=1e-12)
    assert ds.RangingDepth == pytest.approx(g.ranging_depth_mm)
    assert (ds.OCTZOffsetApplied, ds.RefractiveIndexApplied, ds.PixelIntensityRelationship) == (
        "NO",
        "NO",
        "LOG",
    )
    assert ds.CatheterDirectionOfRotation == g.rotation
    assert ds.SeriesDescription == PULLBACK_ID_PREFIX + pullback.pullback_id
    assert str(ds.PatientName) == "PHANTOM^OCTGUIDE"
    frame = ds.PerFrameFunctionalGroupsSequence[2]
    assert (
        frame.IntravascularOCTFrameContentSequence[0].OCTZOffsetCorrection
        == pullback.z_offset_px[2]
    )
    assert (
        frame.IntravascularFrameContentSequence[0].IntravascularLongitudinalDistance
        == pullback.frame_spacing_mm[2]
    )


def _dciodvfy_findings(path: Path) -> list[str]:
    result = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return (result.stdout + result.stderr).splitlines()


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed"
)
@pytest.mark.parametrize("options", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_dciodvfy_finds_no_errors_in_written_file(tmp_path: Path, options: dict) -> None:
    path = tmp_path / "pullback.dcm"
    write_dicom(random_pullback(**options, n_frames=2), path)
    lines = _dciodvfy_findings(path)
    assert "IVOCTImage" in lines  # it recognised the IOD it checked against
    assert [line for line in lines if "Error" in line] == []


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed"
)
def test_dciodvfy_finds_no_errors_in_the_presentation_fixture(write_presentation) -> None:
    """The For Presentation files the reader is tested on are themselves valid instances."""
    path = write_presentation(
        np.zeros((2, 101, 101), dtype=np.uint16), (0.02, 0.02), seam_location_deg=45.0
    )
    lines = _dciodvfy_findings(path)
    assert "IVOCTImage" in lines
    assert [line for line in lines if "Error" in line] == []


def test_write_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "pullback.dcm"
    first, second = random_pullback(seed=1), random_pullback(seed=2)
    write_dicom(first, path)
    write_dicom(second, path)
    assert_same_pullback(read_dicom(path), second)
    bad = random_pullback(seed=3)
    bad.frames = bad.frames.astype(np.float32)
    with pytest.raises(PullbackFileError, match="float32"):
        write_dicom(bad, path)
    assert_same_pullback(read_dicom(path), second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pullback.dcm"]


def test_write_into_missing_folder_is_a_pullback_file_error(
    tmp_path: Path, pullback: Pullback
) -> None:
    with pytest.raises(PullbackFileError, match="cannot be written"):
        write_dicom(pullback, tmp_path / "absent" / "pullback.dcm")


@pytest.mark.parametrize(
    ("change", "attribute"),
    [
        (lambda p: setattr(p, "frames", p.frames.astype(np.int16)), "BitsAllocated (0028,0100)"),
        (lambda p: p.z_offset_px.__setitem__(0, 40000), "OCTZOffsetCorrection (0052,0030)"),
        (lambda p: setattr(p, "pullback_id", "x" * 47), "SeriesDescription (0008,103E)"),
        (lambda p: setattr(p, "pullback_id", "a\\b"), "SeriesDescription (0008,103E)"),
    ],
    ids=["signed samples", "z offset beyond SS", "id too long", "id with backslash"],
)
def test_unrepresentable_pullback_is_refused(tmp_path: Path, change, attribute: str) -> None:
    pullback = random_pullback()
    change(pullback)
    path = tmp_path / "pullback.dcm"
    with pytest.raises(PullbackFileError) as caught:
        write_dicom(pullback, path)
    assert caught.value.attribute == attribute
    assert not path.exists()


def test_file_without_preamble_reads_bit_exact(
    tmp_path: Path, dicom_dataset: Dataset, pullback: Pullback
) -> None:
    del dicom_dataset.file_meta
    dicom_dataset.preamble = None
    path = tmp_path / "bare.dcm"
    dicom_dataset.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    assert_same_pullback(read_dicom(path), pullback)


def test_foreign_series_description_gives_sop_instance_uid_as_id(
    tmp_path: Path, dicom_dataset: Dataset
) -> None:
    dicom_dataset.SeriesDescription = "LAD pre-PCI"
    read = read_dicom(save_dataset(dicom_dataset, tmp_path / "foreign.dcm"))
    assert read.pullback_id == dicom_dataset.SOPInstanceUID


def test_z_offset_already_applied_is_not_applied_again(
    tmp_path: Path, dicom_dataset: Dataset
) -> None:
    dicom_dataset.OCTZOffsetApplied = "YES"
    read = read_dicom(save_dataset(dicom_dataset, tmp_path / "applied.dcm"))
    np.testing.assert_array_equal(read.z_offset_px, 0)
    assert read.attributes["oct_z_offset_applied_in_file"] is True


def test_motorized_pullback_rate_and_aline_rate_give_spacing_and_frame_rate(
    tmp_path: Path, dicom_dataset: Dataset, pullback: Pullback
) -> None:
    """Without per-frame distances or a rotational rate, the DOMAIN fallbacks are used."""
    dicom_dataset.IVUSAcquisition = "MOTORIZED"
    dicom_dataset.IVUSPullbackRate = 18.0
    del dicom_dataset.CatheterRotationalRate
    for item in dicom_dataset.PerFrameFunctionalGroupsSequence:
        del item.IntravascularFrameContentSequence
    read = read_dicom(save_dataset(dicom_dataset, tmp_path / "motorized.dcm"))
    assert read.frame_rate_hz == pytest.approx(pullback.frame_rate_hz, rel=1e-12)
    np.testing.assert_allclose(read.frame_spacing_mm, 18.0 / pullback.frame_rate_hz, rtol=1e-12)
    assert "ALineRate (0052,0011)" in read.attributes["frame_rate_source"]
    assert "IVUSPullbackRate (0018,3101)" in read.attributes["frame_spacing_source"]


def test_functional_group_in_shared_sequence_applies_to_every_frame(
    tmp_path: Path, dicom_dataset: Dataset
) -> None:
    shared_content = dicom_dataset.PerFrameFunctionalGroupsSequence[
        1
    ].IntravascularOCTFrameContentSequence
    dicom_dataset.SharedFunctionalGroupsSequence[
        0
    ].IntravascularOCTFrameContentSequence = shared_content
    for item in dicom_dataset.PerFrameFunctionalGroupsSequence:
        del item.IntravascularOCTFrameContentSequence
    read = read_dicom(save_dataset(dicom_dataset, tmp_path / "shared.dcm"))
    np.testing.assert_array_equal(read.z_offset_px, shared_content[0].OCTZOffsetCorrection)
    np.testing.assert_array_equal(read.seam_index, shared_content[0].SeamLineIndex)


# --- For Presentation -----------------------------------------------------------------------


def _cartesian_scene(
    shape: tuple[int, int], spacing_mm: tuple[float, float], ring_mm: float, wedge_deg: float
) -> np.ndarray:
    """A dim frame with a bright ring of radius ``ring_mm`` and a bright wedge at ``wedge_deg``
    (clockwise from 12 o'clock) between 0.5 and 1.5 mm, drawn in physical coordinates."""
    rows, columns = shape
    y = (np.arange(rows)[:, None] - (rows - 1) / 2) * spacing_mm[0]
    x = (np.arange(columns)[None, :] - (columns - 1) / 2) * spacing_mm[1]
    radius = np.hypot(x, y)
    angle = np.degrees(np.arctan2(x, -y)) % 360.0
    image = np.full(shape, 100, dtype=np.uint16)
    image[np.abs(radius - ring_mm) < 0.03] = 4000
    wedge_offset = np.abs((angle - wedge_deg + 180.0) % 360.0 - 180.0)
    image[(wedge_offset < 3.0) & (radius > 0.5) & (radius < 1.5)] = 3000
    return image


@pytest.mark.parametrize(
    "spacing_mm", [(0.02, 0.02), (0.025, 0.02)], ids=["square pixels", "anisotropic"]
)
def test_for_presentation_ring_and_wedge_land_at_their_polar_column_and_row(
    write_presentation, spacing_mm
) -> None:
    ring_mm, wedge_deg, n_alines = 2.0, 60.0, 360
    image = _cartesian_scene((321, 401), spacing_mm, ring_mm, wedge_deg)
    path = write_presentation(
        np.stack([image, image]), spacing_mm, alines_per_frame=n_alines, seam_location_deg=90.0
    )

    read = read_dicom(path)

    sample_mm = min(spacing_mm)
    g = read.geometry
    assert (g.n_alines, g.aline_spacing_mm, g.refractive_index_applied, g.rotation) == (
        n_alines,
        sample_mm,
        True,
        "CW",
    )
    # Columns reach the largest circle inside the image: 160 rows x 0.025 mm or 160 x 0.02 mm.
    assert (
        g.n_samples
        == int(np.floor(min(160 * spacing_mm[0], 200 * spacing_mm[1]) / sample_mm + 1e-9)) + 1
    )
    assert read.frames.dtype == np.uint16
    assert read.attributes["source_sop"] == "for_presentation"
    np.testing.assert_array_equal(read.z_offset_px, 0)
    np.testing.assert_array_equal(read.seam_index, 90)
    polar = read.frames[1].astype(float)
    ring_column = ring_mm / sample_mm
    away_from_wedge = np.r_[0:40, 80:n_alines]
    np.testing.assert_allclose(np.argmax(polar[away_from_wedge], axis=1), ring_column, atol=1.0)
    wedge_band = polar[:, int(0.6 / sample_mm) : int(1.4 / sample_mm)].mean(axis=1)
    assert abs(int(np.argmax(wedge_band)) - wedge_deg / 360.0 * n_alines) <= 1


def test_for_presentation_without_alines_per_frame_uses_504_rays(write_presentation) -> None:
    image = _cartesian_scene((101, 101), (0.04, 0.04), 1.0, 0.0)
    read = read_dicom(
        write_presentation(image[None], (0.04, 0.04), alines_per_frame=None, ranging_depth_mm=1.5)
    )
    assert read.geometry.n_alines == 504
    # Ranging Depth (1.5 mm) is inside the image (2.0 mm), so it limits the columns.
    assert read.geometry.n_samples == int(1.5 / 0.04) + 1
    assert read.frame_rate_hz == pytest.approx(180.0)  # from the Catheter Rotational Rate


def test_for_presentation_without_pixel_spacing_is_missing_attribute(tmp_path: Path) -> None:
    from tests.streams.conftest import presentation_dataset

    ds = presentation_dataset(np.zeros((1, 64, 64), dtype=np.uint16), (0.02, 0.02))
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
    with pytest.raises(MissingAttributeError, match=r"PixelSpacing \(0028,0030\)"):
        read_dicom(save_dataset(ds, tmp_path / "no_spacing.dcm"))


# --- bad input ------------------------------------------------------------------------------


def assert_names(error: PullbackFileError, path: Path, attribute: str | None = None) -> None:
    assert str(path) in str(error)
    if attribute is not None:
        assert attribute in str(error)


@pytest.mark.parametrize(
    "keep_bytes", [200, 1000, 5000, -100], ids=["in meta", "in header", "in sequences", "in pixels"]
)
def test_truncated_file_is_truncated_file_error(
    tmp_path: Path, dicom_file: Path, keep_bytes: int
) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(dicom_file.read_bytes()[:keep_bytes])
    with pytest.raises(TruncatedFileError) as caught:
        read_dicom(path)
    assert_names(caught.value, path)
    if keep_bytes < 0:
        assert_names(caught.value, path, "PixelData (7FE0,0010)")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a pullback\n" * 50, np.random.default_rng(5).bytes(4096)],
    ids=["empty", "text", "random bytes"],
)
def test_non_dicom_file_is_not_ivoct_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.dcm"
    path.write_bytes(content)
    with pytest.raises(NotIVOCTError, match="not a DICOM file") as caught:
        read_dicom(path)
    assert_names(caught.value, path)


@pytest.mark.parametrize(
    ("sop_class", "modality", "in_meta"),
    [
        (CTImageStorage, "CT", True),
        (SecondaryCaptureImageStorage, "OT", True),
        (CTImageStorage, "CT", False),
    ],
    ids=["CT", "secondary capture", "CT behind an IVOCT file meta"],
)
def test_other_dicom_is_not_ivoct_error(
    tmp_path: Path, dicom_dataset: Dataset, sop_class, modality, in_meta
) -> None:
    dicom_dataset.SOPClassUID = sop_class
    dicom_dataset.Modality = modality
    path = tmp_path / "other.dcm"
    if in_meta:
        dicom_dataset.file_meta.MediaStorageSOPClassUID = sop_class
        save_dataset(dicom_dataset, path)
    else:
        # enforce_file_format would copy the data set's SOP class into the file meta.
        dicom_dataset.save_as(path, enforce_file_format=False)
    with pytest.raises(NotIVOCTError) as caught:
        read_dicom(path)
    assert_names(
        caught.value,
        path,
        "MediaStorageSOPClassUID (0002,0002)" if in_meta else "SOPClassUID (0008,0016)",
    )
    assert str(sop_class) in str(caught.value)


def test_wrong_modality_is_not_ivoct_error(tmp_path: Path, dicom_dataset: Dataset) -> None:
    dicom_dataset.Modality = "OCT"
    path = save_dataset(dicom_dataset, tmp_path / "oct.dcm")
    with pytest.raises(NotIVOCTError) as caught:
        read_dicom(path)
    assert_names(caught.value, path, "Modality (0008,0060)")


def _delete_nested(ds: Dataset, keyword: str) -> None:
    delattr(ds.PerFrameFunctionalGroupsSequence[1].IntravascularOCTFrameContentSequence[0], keyword)


@pytest.mark.parametrize(
    ("remove", "attribute"),
    [
        (lambda ds: delattr(ds, "ALinePixelSpacing"), "ALinePixelSpacing (0052,0014)"),
        (lambda ds: delattr(ds, "ALinesPerFrame"), "ALinesPerFrame (0052,0012)"),
        (
            lambda ds: setattr(ds, "EffectiveRefractiveIndex", None),
            "EffectiveRefractiveIndex (0052,0004)",
        ),
        (
            lambda ds: delattr(ds, "CatheterDirectionOfRotation"),
            "CatheterDirectionOfRotation (0052,0031)",
        ),
        (
            lambda ds: delattr(ds, "PixelIntensityRelationship"),
            "PixelIntensityRelationship (0028,1040)",
        ),
        (lambda ds: delattr(ds, "NumberOfFrames"), "NumberOfFrames (0028,0008)"),
        (
            lambda ds: delattr(
                ds.PerFrameFunctionalGroupsSequence[1], "IntravascularOCTFrameContentSequence"
            ),
            "IntravascularOCTFrameContentSequence (0052,0029)",
        ),
        (
            lambda ds: _delete_nested(ds, "SeamLineIndex"),
            "[1] > IntravascularOCTFrameContentSequence (0052,0029)[0] > SeamLineIndex (0052,0036)",
        ),
        (
            lambda ds: [
                delattr(i, "IntravascularFrameContentSequence")
                for i in ds.PerFrameFunctionalGroupsSequence
            ],
            "IntravascularLongitudinalDistance (0052,0028)",
        ),
    ],
    ids=[
        "A-line pixel spacing",
        "A-lines per frame",
        "empty refractive index",
        "rotation",
        "intensity relationship",
        "number of frames",
        "frame content of frame 1",
        "seam of frame 1",
        "longitudinal distances and no pullback rate",
    ],
)
def test_missing_attribute_is_missing_attribute_error(
    tmp_path: Path, dicom_dataset: Dataset, remove, attribute
) -> None:
    remove(dicom_dataset)
    path = save_dataset(dicom_dataset, tmp_path / "missing.dcm")
    with pytest.raises(MissingAttributeError) as caught:
        read_dicom(path)
    assert_names(caught.value, path, attribute)


def _shorten_pixel_data(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[: -ds.Columns * 2]


def _lengthen_pixel_data(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData + bytes(ds.Columns * 2)


def _vary_padding(ds: Dataset) -> None:
    ds.PerFrameFunctionalGroupsSequence[2].IntravascularOCTFrameContentSequence[
        0
    ].NumberOfPaddedALines = 4


@pytest.mark.parametrize(
    ("change", "attribute"),
    [
        (lambda ds: setattr(ds, "Rows", ds.Rows + 1), "Rows (0028,0010)"),
        (_shorten_pixel_data, "PixelData (7FE0,0010)"),
        (_lengthen_pixel_data, "PixelData (7FE0,0010)"),
        (
            lambda ds: ds.PerFrameFunctionalGroupsSequence.pop(),
            "PerFrameFunctionalGroupsSequence (5200,9230)",
        ),
        (
            lambda ds: setattr(ds, "NumberOfFrames", ds.NumberOfFrames + 1),
            "PerFrameFunctionalGroupsSequence (5200,9230)",
        ),
        (_vary_padding, "NumberOfPaddedALines (0052,0038)"),
    ],
    ids=[
        "rows != A-lines per frame",
        "pixel data one row short",
        "pixel data one row long",
        "per-frame items short",
        "frames > items",
        "padding varies",
    ],
)
def test_inconsistent_dimensions_are_reported(
    tmp_path: Path, dicom_dataset: Dataset, change, attribute
) -> None:
    change(dicom_dataset)
    path = save_dataset(dicom_dataset, tmp_path / "inconsistent.dcm")
    with pytest.raises(InconsistentDimensionsError) as caught:
        read_dicom(path)
    assert_names(caught.value, path, attribute)


@pytest.mark.parametrize(
    "transfer_syntax", [JPEGBaseline8Bit, JPEG2000Lossless], ids=["JPEG baseline", "JPEG 2000"]
)
def test_encapsulated_pixel_data_is_unsupported(
    tmp_path: Path, dicom_dataset: Dataset, transfer_syntax
) -> None:
    frames = dicom_dataset.PixelData
    frame_bytes = len(frames) // dicom_dataset.NumberOfFrames
    dicom_dataset.PixelData = encapsulate(
        [frames[i : i + frame_bytes] for i in range(0, len(frames), frame_bytes)]
    )
    dicom_dataset.file_meta.TransferSyntaxUID = transfer_syntax
    path = save_dataset(dicom_dataset, tmp_path / "compressed.dcm")
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        read_dicom(path)
    assert_names(caught.value, path, "TransferSyntaxUID (0002,0010)")
    assert str(transfer_syntax) in str(caught.value)


def test_deflated_file_is_unsupported(tmp_path: Path, dicom_dataset: Dataset) -> None:
    dicom_dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = save_dataset(dicom_dataset, tmp_path / "deflated.dcm")
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        read_dicom(path)
    assert_names(caught.value, path, "TransferSyntaxUID (0002,0010)")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: setattr(ds, "ALinePixelSpacing", 0.5), "geometry octguide rejects"),
        (
            lambda ds: setattr(ds, "CatheterDirectionOfRotation", "SIDEWAYS"),
            "geometry octguide rejects",
        ),
        (lambda ds: setattr(ds, "OCTZOffsetApplied", "MAYBE"), "expected YES or NO"),
        (lambda ds: setattr(ds, "BitsAllocated", 32), "expected 8 or 16"),
        (lambda ds: setattr(ds, "PixelRepresentation", 1), "unsigned"),
    ],
    ids=[
        "spacing out of range",
        "unknown rotation",
        "bad YES/NO",
        "32-bit samples",
        "signed samples",
    ],
)
def test_other_malformed_content_is_a_pullback_file_error(
    tmp_path: Path, dicom_dataset: Dataset, change, message
) -> None:
    change(dicom_dataset)
    path = save_dataset(dicom_dataset, tmp_path / "malformed.dcm")
    with pytest.raises(PullbackFileError, match=message) as caught:
        read_dicom(path)
    assert_names(caught.value, path)


def test_multi_valued_number_is_a_pullback_file_error(
    tmp_path: Path, dicom_dataset: Dataset
) -> None:
    dicom_dataset["ALinePixelSpacing"].value = [0.005, 0.005]
    path = save_dataset(dicom_dataset, tmp_path / "two_values.dcm")
    with pytest.raises(PullbackFileError, match="expected one finite number") as caught:
        read_dicom(path)
    assert_names(caught.value, path, "ALinePixelSpacing (0052,0014)")


@pytest.fixture(scope="module")
def small_file_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "small.dcm"
    # LIN: no 128 KiB intensity LUT, so the header is mostly structure worth damaging.
    write_dicom(random_pullback(n_alines=16, n_samples=16, n_frames=2, intensity="LIN"), path)
    return path.read_bytes()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=4),
    keep=st.none() | st.integers(0, 2**20),
)
def test_damaged_header_never_escapes_as_a_raw_error(
    edits: list[tuple[int, int]],
    keep: int | None,
    small_file_bytes: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Overwrite a few header bytes (and maybe cut the file): read_dicom returns or raises a
    PullbackFileError. Positions are drawn independently of the file and folded into its header,
    whose length varies with the generated UIDs."""
    content = bytearray(small_file_bytes)
    header_end = len(content) - 2 * 16 * 16 * 2
    for position, value in edits:
        content[position % header_end] = value
    if keep is not None:
        content = content[: keep % (len(content) + 1)]
    path = tmp_path_factory.mktemp("damaged") / "damaged.dcm"
    path.write_bytes(bytes(content))
    try:
        read_dicom(path)
    except PullbackFileError as error:
        assert str(path) in str(error)


def assert_close_scale(read: IntensityScale | None, expected: IntensityScale) -> None:
    assert read is not None
    assert read.source == "dicom-lut"
    assert read.db_per_count == pytest.approx(expected.db_per_count, rel=1e-3)
    assert read.offset_db == pytest.approx(expected.offset_db, abs=0.05)


@pytest.mark.parametrize("dtype, full_scale", [(np.uint16, 65535), (np.uint8, 255)])
def test_lut_carrying_dicom_reads_to_the_canonical_scale(
    tmp_path: Path, dtype: type, full_scale: int
) -> None:
    written = random_pullback(n_alines=64, n_samples=128, dtype=dtype, seed=3)
    path = tmp_path / "lut.dcm"
    write_dicom(written, path)
    read = read_dicom(path)
    assert_close_scale(read.geometry.intensity_scale, IntensityScale.log_range(48.0, full_scale))
    assert "intensity_scale_unread" not in read.attributes


def test_stated_scale_round_trips_through_the_lut(tmp_path: Path) -> None:
    base = random_pullback(n_alines=64, n_samples=128, seed=4)
    scale = IntensityScale.log_range(40.0, 65535, source="header", offset_db=3.0)
    written = replace(base, geometry=replace(base.geometry, intensity_scale=scale))
    path = tmp_path / "scale.dcm"
    write_dicom(written, path)
    read = read_dicom(path)
    assert_close_scale(read.geometry.intensity_scale, scale)


def _rewrite_lut(path: Path, lut: np.ndarray) -> None:
    ds = pydicom.dcmread(path)
    item = ds.SharedFunctionalGroupsSequence[0].PixelIntensityRelationshipLUTSequence[0]
    item.LUTData = lut.astype("<u2").tobytes()
    ds.save_as(path)


@pytest.mark.parametrize(
    "make_lut, reason",
    [
        (lambda n: np.linspace(65535, 0, n), "not monotonic"),
        (lambda n: np.linspace(0, 65535, n), "not log-linear"),
        (lambda n: np.zeros(n), "resolved"),
    ],
    ids=["decreasing", "linear-not-log", "all-zero"],
)
def test_garbage_lut_is_rejected_with_a_reason(tmp_path: Path, make_lut, reason: str) -> None:
    written = random_pullback(n_alines=32, n_samples=64, seed=5)
    path = tmp_path / "bad.dcm"
    write_dicom(written, path)
    _rewrite_lut(path, make_lut(65536))
    read = read_dicom(path)
    assert read.geometry.intensity_scale is None
    assert reason in read.attributes["intensity_scale_unread"]
