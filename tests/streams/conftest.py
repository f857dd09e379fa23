"""Small pullbacks and DICOM IVOCT files for the stream tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from streams.files.dicom import SOP_FOR_PRESENTATION, pullback_to_dataset, write_dicom
from streams.geometry import FrameGeometry
from streams.pullback import Pullback


def random_pullback(
    *,
    n_alines: int = 256,
    n_samples: int = 512,
    dtype: type = np.uint16,
    intensity: str = "LOG",
    rotation: str = "CW",
    n_padded_alines: int = 0,
    refractive_index_applied: bool = False,
    n_frames: int = 3,
    seed: int = 0,
) -> Pullback:
    """A pullback of random samples with random per-frame z offset, seam and spacing."""
    rng = np.random.default_rng(seed)
    geometry = FrameGeometry(
        n_alines=n_alines,
        n_samples=n_samples,
        aline_spacing_mm=float(rng.uniform(0.004, 0.008)),
        refractive_index=float(rng.uniform(1.3, 1.45)),
        refractive_index_applied=refractive_index_applied,
        n_padded_alines=n_padded_alines,
        rotation=rotation,
        intensity=intensity,
    )
    return Pullback(
        frames=rng.integers(
            0, np.iinfo(dtype).max, (n_frames, n_alines, n_samples), dtype=dtype, endpoint=True
        ),
        geometry=geometry,
        z_offset_px=rng.integers(-60, 60, n_frames),
        seam_index=rng.integers(0, n_alines - n_padded_alines, n_frames),
        frame_spacing_mm=rng.uniform(0.05, 0.25, n_frames),
        frame_rate_hz=float(rng.uniform(100.0, 200.0)),
    )


def save_dataset(ds: Dataset, path: Path) -> Path:
    """Save an edited dataset as a DICOM file (preamble, file meta) without octguide's writer."""
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def pullback() -> Pullback:
    return random_pullback()


@pytest.fixture
def dicom_file(tmp_path: Path, pullback: Pullback) -> Path:
    """A valid For Processing file of :func:`pullback`."""
    path = tmp_path / "pullback.dcm"
    write_dicom(pullback, path)
    return path


@pytest.fixture
def dicom_dataset(dicom_file: Path) -> Dataset:
    """The fully read dataset of :func:`dicom_file`, for tests that break it."""
    return pydicom.dcmread(dicom_file)


def presentation_dataset(
    images: np.ndarray,
    pixel_spacing_mm: tuple[float, float],
    *,
    alines_per_frame: int | None = 360,
    seam_location_deg: float = 0.0,
    frame_rate_hz: float = 180.0,
    ranging_depth_mm: float = 10.0,
) -> Dataset:
    """A For Presentation dataset holding Cartesian ``(n_frames, rows, columns)`` uint16 images."""
    n_frames, rows, columns = images.shape
    # A tiny polar pullback supplies the modules both SOP classes share; its frames are replaced.
    carrier = Pullback(
        frames=np.zeros((n_frames, 16, 16), dtype=np.uint16),
        geometry=FrameGeometry(n_alines=16, n_samples=16, aline_spacing_mm=0.01),
        z_offset_px=np.zeros(n_frames),
        seam_index=np.zeros(n_frames),
        frame_spacing_mm=np.full(n_frames, 0.1),
        frame_rate_hz=frame_rate_hz,
    )
    ds = pullback_to_dataset(carrier)
    ds.SOPClassUID = SOP_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPClassUID = SOP_FOR_PRESENTATION
    ds.PresentationIntentType = "FOR PRESENTATION"
    # The Processing Parameters module and the refractive index belong to For Processing only.
    for keyword in (
        "OCTZOffsetApplied",
        "RefractiveIndexApplied",
        "ALinePixelSpacing",
        "PixelIntensityRelationship",
        "FirstALineLocation",
        "EffectiveRefractiveIndex",
    ):
        delattr(ds, keyword)
    ds.PresentationLUTShape = "IDENTITY"
    ds.InterpolationType = "BILINEAR"
    ds.Rows, ds.Columns = rows, columns
    ds.RangingDepth = ranging_depth_mm
    if alines_per_frame is None:
        del ds.ALinesPerFrame
    else:
        ds.ALinesPerFrame = alines_per_frame
        ds.ALineRate = frame_rate_hz * alines_per_frame
    shared = ds.SharedFunctionalGroupsSequence[0]
    if "PixelIntensityRelationshipLUTSequence" in shared:
        del shared.PixelIntensityRelationshipLUTSequence
    measures = Dataset()
    measures.PixelSpacing = list(pixel_spacing_mm)
    shared.PixelMeasuresSequence = Sequence([measures])
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.IntravascularOCTFrameContentSequence
        item.IntravascularFrameContentSequence[0].SeamLineLocation = seam_location_deg
    ds.PixelData = np.ascontiguousarray(images, dtype="<u2").tobytes()
    return ds


@pytest.fixture
def write_presentation(tmp_path: Path) -> Callable[..., Path]:
    """``write(images, pixel_spacing_mm, **options)`` saves a For Presentation file: its path."""

    def write(images: np.ndarray, pixel_spacing_mm: tuple[float, float], **options: object) -> Path:
        return save_dataset(
            presentation_dataset(images, pixel_spacing_mm, **options), tmp_path / "presentation.dcm"
        )

    return write
