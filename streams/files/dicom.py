"""DICOM IVOCT pullback files (PS3.3 A.66 and C.8.27, PS3.17 Annex EEE).

:func:`write_dicom` stores a :class:`~streams.pullback.Pullback` as one multi-frame
*Intravascular OCT Image Storage - For Processing* instance (SOP Class
1.2.840.10008.5.1.4.1.1.14.2): polar frames, one A-line per row (Rows = A-lines Per Frame,
padded rows included), catheter optics at column 0, unsigned 8- or 16-bit MONOCHROME2, Explicit
VR Little Endian. :func:`read_dicom` reads such files back bit-exact (pixels, dtype, geometry,
per-frame z offset, seam and spacing, frame rate) and also reads *For Presentation* files
(1.2.840.10008.5.1.4.1.1.14.1), resampling their Cartesian frames to polar.

Where each pullback field is stored
-----------------------------------
========================== =====================================================================
Pullback field             DICOM attribute
========================== =====================================================================
geometry.n_alines          Rows = A-lines Per Frame (0052,0012)
geometry.n_samples         Columns
geometry.aline_spacing_mm  A-line Pixel Spacing (0052,0014)
geometry.refractive_index  Effective Refractive Index (0052,0004)
refractive_index_applied   Refractive Index Applied (0052,003A)
geometry.n_padded_alines   per frame: IVOCT Frame Content > Number of Padded A-lines (0052,0038)
geometry.rotation          Catheter Direction of Rotation (0052,0031)
geometry.intensity         Pixel Intensity Relationship (0028,1040)
z_offset_px                per frame: IVOCT Frame Content > OCT Z Offset Correction (0052,0030)
seam_index                 per frame: IVOCT Frame Content > Seam Line Index (0052,0036)
frame_spacing_mm           per frame: Intravascular Frame Content > Intravascular Longitudinal
                           Distance (0052,0028), with IVUS Acquisition (0018,3100) = MEASURED
frame_rate_hz              Catheter Rotational Rate (0052,0013); A-line Rate (0052,0011) =
                           frame rate x A-lines Per Frame
pullback_id                Series Description (0008,103E) = "octguide pullback <id>"
========================== =====================================================================

Written files carry IVUS Acquisition MEASURED because a pullback holds a measured distance per
frame: the IOD only allows Intravascular Longitudinal Distance when the acquisition is MEASURED,
and forbids IVUS Pullback Rate (0018,3101) then (it is required only for MOTORIZED). The reader
honours both: per-frame distances when present, otherwise IVUS Pullback Rate / frame rate.

Reading For Presentation files
------------------------------
The Cartesian frame is resampled with bilinear interpolation onto ``A`` rays (A = A-lines Per Frame,
or 504 when absent) from the image centre, ``((Columns - 1) / 2, (Rows - 1) / 2)`` in pixel
indices, taken as the catheter centre. Row ``i`` is the ray at the displayed angle ``360 * i / A``
degrees clockwise from vertical (12 o'clock), the DICOM display convention of First A-line
Location (0052,0034) and Seam Line Location (0052,0033); the result therefore has rotation "CW".
Column ``c`` lies at radius ``c * s`` mm, ``s`` = the smaller of the two Pixel Spacing values
(Pixel Measures Sequence, or top-level Pixel Spacing (0028,0030)); presentation pixels are already
refraction- and z-corrected, so the geometry has Refractive Index Applied and zero z offsets. The
columns reach the radius of the largest circle inside the image, or Ranging Depth (0052,0009) if
that is smaller. ``pullback.attributes["source_sop"]`` is ``"for_presentation"``.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import warnings
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_file_meta_info
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from streams.errors import (
    GeometryError,
    InconsistentDimensionsError,
    MissingAttributeError,
    NotIVOCTError,
    PullbackFileError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale
from streams.pullback import Pullback

SOP_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.14.1")
SOP_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.14.2")
SOP_NAMES = {
    SOP_FOR_PRESENTATION: "IVOCT Image For Presentation",
    SOP_FOR_PROCESSING: "IVOCT Image For Processing",
}
# Uncompressed little-endian pixel data can be read straight from the file at its offset; anything
# encapsulated or deflated would need a decoder octguide does not ship.
SUPPORTED_TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

PULLBACK_ID_PREFIX = "octguide pullback "
# Series Description is LO: at most 64 characters, no backslash or control characters.
MAX_PULLBACK_ID_CHARS = 64 - len(PULLBACK_ID_PREFIX)
# Used when a For Presentation file does not say how many A-lines it was acquired with.
DEFAULT_PRESENTATION_ALINES = 504
# Dynamic range assumed by the Pixel Intensity Relationship LUT written for LOG frames: the full
# stored range spans this many dB of A-line intensity (the console's exact compression is unknown).
DEFAULT_LOG_RANGE_DB = 48.0

# Value ranges of the SS and US value representations.
_SS_RANGE = (-32768, 32767)
_US_RANGE = (0, 65535)
_POSITIVE_US_RANGE = (1, 65535)

# Attributes of DOMAIN.md section 2 recorded in ``pullback.attributes["dicom_attributes"]``.
_REPORTED_ATTRIBUTES = (
    "EffectiveRefractiveIndex",
    "RangingDepth",
    "ALineRate",
    "ALinesPerFrame",
    "ALinePixelSpacing",
    "OCTZOffsetApplied",
    "CatheterDirectionOfRotation",
    "CatheterRotationalRate",
    "RefractiveIndexApplied",
    "PixelIntensityRelationship",
    "IVUSAcquisition",
    "IVUSPullbackRate",
    "FirstALineLocation",
)


def attribute_name(keyword: str) -> str:
    """``"Keyword (gggg,eeee)"`` for a DICOM keyword, as used in error messages and reports.

    >>> attribute_name("ALinePixelSpacing")
    'ALinePixelSpacing (0052,0014)'
    """
    tag = Tag(tag_for_keyword(keyword))
    return f"{keyword} ({tag.group:04X},{tag.element:04X})"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_dicom(
    pullback: Pullback, path: str | os.PathLike, *, log_range_db: float = DEFAULT_LOG_RANGE_DB
) -> None:
    """Write a pullback as one IVOCT Image For Processing instance, atomically.

    The file is written to a temporary file in the destination folder and renamed over ``path``,
    so a reader never sees a partial file.

    Parameters
    ----------
    pullback : Pullback
        Frames must be uint8 or uint16; they are stored unchanged.
    path : path-like
        Destination, conventionally ``*.dcm``.
    log_range_db : float, optional
        For LOG frames: dB of A-line intensity spanned by the full stored range, used to build the
        Pixel Intensity Relationship LUT the IOD requires. Ignored for LIN frames.

    Raises
    ------
    PullbackFileError
        The pullback cannot be represented (dtype, z offsets outside SS, pullback id too long) or
        the file cannot be written.
    """
    path = Path(path)
    dataset = pullback_to_dataset(pullback, path=path, log_range_db=log_range_db)
    # A unique name beside the target, created with os.open so the process umask sets its mode.
    temp_path = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        handle = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(handle, "wb") as stream:
            dataset.save_as(stream, enforce_file_format=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
    except OSError as exc:
        raise PullbackFileError(path, f"cannot be written: {exc.strerror or exc}") from exc
    finally:
        temp_path.unlink(missing_ok=True)


def pullback_to_dataset(
    pullback: Pullback,
    *,
    path: str | os.PathLike = "<dataset>",
    log_range_db: float = DEFAULT_LOG_RANGE_DB,
    acquired_at: dt.datetime | None = None,
) -> Dataset:
    """The IVOCT Image For Processing dataset (with file meta) that :func:`write_dicom` saves.

    Patient and study data are synthetic ("PHANTOM^OCTGUIDE"); nothing identifying is copied
    from ``pullback.attributes``. UIDs are new for every call.

    Parameters
    ----------
    pullback : Pullback
        The pullback to encode.
    path : path-like, optional
        Only used to name the destination in error messages.
    log_range_db : float, optional
        See :func:`write_dicom`.
    acquired_at : datetime, optional
        Acquisition start (Acquisition DateTime, frame times); defaults to now.
    """
    g = pullback.geometry
    n_frames = len(pullback)
    dtype = pullback.frames.dtype
    if dtype.kind != "u" or dtype.itemsize not in (1, 2):
        raise PullbackFileError(
            path,
            f"frames are {dtype}; IVOCT stores unsigned 8- or 16-bit samples",
            attribute=attribute_name("BitsAllocated"),
        )
    if n_frames == 0:
        raise PullbackFileError(
            path, "the pullback has no frames", attribute=attribute_name("NumberOfFrames")
        )
    if np.any((pullback.z_offset_px < _SS_RANGE[0]) | (pullback.z_offset_px > _SS_RANGE[1])):
        raise PullbackFileError(
            path,
            "z offsets must fit a signed 16-bit value",
            attribute=attribute_name("OCTZOffsetCorrection"),
        )
    pullback_id = str(pullback.pullback_id)
    if (
        len(pullback_id) > MAX_PULLBACK_ID_CHARS
        or "\\" in pullback_id
        or not pullback_id.isprintable()
    ):
        raise PullbackFileError(
            path,
            f"pullback_id {pullback_id!r} must be at most {MAX_PULLBACK_ID_CHARS} printable "
            "characters without a backslash to be stored",
            attribute=attribute_name("SeriesDescription"),
        )
    bits = 8 * dtype.itemsize
    start = acquired_at or dt.datetime.now()
    frame_duration_s = 1.0 / pullback.frame_rate_hz

    ds = Dataset()
    # SOP Common, Patient, General Study (synthetic, non-identifying).
    ds.SOPClassUID = SOP_FOR_PROCESSING
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "PHANTOM^OCTGUIDE"
    ds.PatientID = "OCTGUIDE-SYNTHETIC"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate = start.strftime("%Y%m%d")
    ds.StudyTime = start.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "OCTGUIDE"
    ds.AccessionNumber = ""
    # General Series, Intravascular OCT Series.
    ds.Modality = "IVOCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = PULLBACK_ID_PREFIX + pullback_id
    ds.PresentationIntentType = "FOR PROCESSING"
    # Frame of Reference.
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    # General and Enhanced General Equipment: the writer, not the acquiring console.
    ds.Manufacturer = "octguide"
    ds.ManufacturerModelName = "octguide"
    ds.DeviceSerialNumber = "octguide-synthetic"
    ds.SoftwareVersions = ["octguide", f"pydicom {pydicom.__version__}"]
    # Image Pixel.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = g.n_alines
    ds.Columns = g.n_samples
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    # Enhanced Contrast/Bolus: the flush medium that clears blood for the pullback.
    agent = _code_item(codes.SCT.ContrastAgent)
    agent.ContrastBolusAgentNumber = 1
    agent.ContrastBolusAdministrationRouteSequence = Sequence(
        [_code_item(codes.SCT.IntracoronaryRoute)]
    )
    agent.ContrastBolusIngredientCodeSequence = Sequence()
    agent.ContrastBolusVolume = None
    agent.ContrastBolusIngredientConcentration = None
    ds.ContrastBolusAgentSequence = Sequence([agent])
    # Multi-frame Functional Groups, Multi-frame Dimension, Acquisition Context.
    ds.InstanceNumber = 1
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.NumberOfFrames = n_frames
    ds.SharedFunctionalGroupsSequence = Sequence([_shared_groups(g, bits, log_range_db)])
    ds.PerFrameFunctionalGroupsSequence = Sequence(
        _frame_groups(pullback, i, start + dt.timedelta(seconds=i * frame_duration_s), start)
        for i in range(n_frames)
    )
    organization = generate_uid()
    ds.DimensionOrganizationSequence = Sequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = organization
    index = Dataset()
    index.DimensionOrganizationUID = organization
    index.DimensionIndexPointer = Tag("FrameAcquisitionNumber")
    index.FunctionalGroupPointer = Tag("FrameContentSequence")
    index.DimensionDescriptionLabel = "Frame"
    ds.DimensionIndexSequence = Sequence([index])
    ds.AcquisitionContextSequence = Sequence()
    # Intravascular OCT Image.
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.VolumetricProperties = "DISTORTED"  # polar samples: geometry only after scan conversion
    ds.PixelPresentation = "MONOCHROME"
    ds.AcquisitionDateTime = _datetime(start)
    ds.AcquisitionDuration = n_frames * frame_duration_s
    ds.AcquisitionNumber = 1
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    # Intravascular OCT Acquisition Parameters: optics octguide does not know stay empty (type 2);
    # the acquisition domain (type 1) is that of every commercial IVOCT console (swept source).
    ds.OCTFocalDistance = None
    ds.BeamSpotSize = None
    ds.EffectiveRefractiveIndex = g.refractive_index
    ds.OCTAcquisitionDomain = "FREQUENCY"
    ds.OCTOpticalCenterWavelength = None
    ds.AxialResolution = None
    ds.RangingDepth = g.ranging_depth_mm
    ds.ALineRate = pullback.frame_rate_hz * g.n_alines
    ds.ALinesPerFrame = g.n_alines
    # Intravascular Image Acquisition Parameters (one catheter rotation per frame).
    ds.IVUSAcquisition = "MEASURED"
    ds.CatheterDirectionOfRotation = g.rotation
    ds.CatheterRotationalRate = pullback.frame_rate_hz
    ds.ModeOfPercutaneousAccessSequence = Sequence()
    # Intravascular OCT Processing Parameters: stored frames are not z-shifted; row 0 at 12 o'clock.
    ds.OCTZOffsetApplied = "NO"
    ds.RefractiveIndexApplied = "YES" if g.refractive_index_applied else "NO"
    ds.ALinePixelSpacing = g.aline_spacing_mm
    ds.PixelIntensityRelationship = g.intensity
    ds.FirstALineLocation = 0.0
    ds.PixelData = (
        np.ascontiguousarray(pullback.frames).astype(f"<u{dtype.itemsize}", copy=False).tobytes()
    )

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _code_item(code: Any) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _datetime(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S.%f")


def _shared_groups(g: FrameGeometry, bits: int, log_range_db: float) -> Dataset:
    shared = Dataset()
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = Sequence([_code_item(codes.SCT.CoronaryArtery)])
    anatomy.FrameLaterality = "U"
    shared.FrameAnatomySequence = Sequence([anatomy])
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared.IntravascularOCTFrameTypeSequence = Sequence([frame_type])
    if g.intensity == "LOG":
        scale = g.intensity_scale or IntensityScale.log_range(log_range_db, 2**bits - 1)
        shared.PixelIntensityRelationshipLUTSequence = Sequence([_log_to_linear_lut(bits, scale)])
    return shared


def _log_to_linear_lut(bits: int, scale: IntensityScale) -> Dataset:
    """LUT from LOG stored values to linear A-line intensity (PS3.3 C.8.27.4.2).

    Stored value ``v`` maps to ``10 ** (scale.to_db(v) / 10)``, so a reader that fits
    ``10 * log10(LUT)`` recovers ``scale`` (:func:`_lut_intensity_scale`). Where that exceeds the
    16-bit output, the whole LUT is shifted down; where its top lies so low that fewer than a
    quarter of the entries would reach a resolvable output (>= 64), it is shifted up to the full
    16-bit output. The offset is an arbitrary reference and does not survive a shift; the dB per
    count does.
    """
    n_entries = 2**bits
    stored = np.arange(n_entries, dtype=np.float64)
    level_db = scale.to_db(stored)
    top_db = 10.0 * np.log10(65535.0)
    resolvable_db = 10.0 * np.log10(_LUT_FIT_MIN_OUTPUT)
    if level_db[-1] > top_db or np.mean(level_db >= resolvable_db) < 0.25:
        level_db = level_db - (level_db[-1] - top_db)
    linear = np.clip(10.0 ** (level_db / 10.0), 0.0, 65535.0)
    lut = Dataset()
    # The first descriptor value is 0 for 65536 entries (PS3.3 C.11.1.1).
    lut.add_new("LUTDescriptor", "US", [n_entries % 65536, 0, 16])
    lut.add_new("LUTData", "OW", np.rint(linear).astype("<u2").tobytes())
    lut.LUTFunction = "TO_LINEAR"
    return lut


def _frame_groups(
    pullback: Pullback, index: int, acquired: dt.datetime, start: dt.datetime
) -> Dataset:
    item = Dataset()
    content = Dataset()
    content.FrameAcquisitionNumber = index + 1
    content.FrameReferenceDateTime = _datetime(start)
    content.FrameAcquisitionDateTime = _datetime(acquired)
    content.FrameAcquisitionDuration = 1000.0 / pullback.frame_rate_hz
    content.DimensionIndexValues = [index + 1]
    item.FrameContentSequence = Sequence([content])
    distance = Dataset()
    distance.IntravascularLongitudinalDistance = float(pullback.frame_spacing_mm[index])
    item.IntravascularFrameContentSequence = Sequence([distance])
    oct_content = Dataset()
    oct_content.OCTZOffsetCorrection = int(pullback.z_offset_px[index])
    oct_content.SeamLineIndex = int(pullback.seam_index[index])
    oct_content.NumberOfPaddedALines = pullback.geometry.n_padded_alines
    item.IntravascularOCTFrameContentSequence = Sequence([oct_content])
    return item


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one dataset or sequence item of a file.

    Every failure becomes a typed :class:`PullbackFileError` naming the file and the attribute
    (with the path through the sequences that hold it), never a raw pydicom error.
    """

    def __init__(self, ds: Dataset, path: Path, where: str = ""):
        self.ds = ds
        self.path = path
        self.where = where

    def name(self, keyword: str) -> str:
        full = attribute_name(keyword)
        return f"{self.where} > {full}" if self.where else full

    def has(self, keyword: str) -> bool:
        return keyword in self.ds and not _is_empty(self._value(keyword))

    def _value(self, keyword: str) -> Any:
        try:
            return self.ds[keyword].value
        except Exception as exc:  # pydicom raises many types for malformed values
            raise PullbackFileError(
                self.path, f"cannot be decoded ({exc})", attribute=self.name(keyword)
            ) from exc

    def value(self, keyword: str) -> Any:
        """The value of a required attribute (MissingAttributeError if absent or empty)."""
        if keyword not in self.ds:
            raise MissingAttributeError(self.path, "is missing", attribute=self.name(keyword))
        value = self._value(keyword)
        if _is_empty(value):
            raise MissingAttributeError(self.path, "is empty", attribute=self.name(keyword))
        return value

    def _convert(self, keyword: str, convert: Callable[[Any], Any], expected: str) -> Any:
        value = self.value(keyword)
        try:
            return convert(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise PullbackFileError(
                self.path, f"has value {value!r}, expected {expected}", attribute=self.name(keyword)
            ) from exc

    def number(self, keyword: str) -> float:
        return self._convert(keyword, _finite_float, "one finite number")

    def integer(self, keyword: str, low: int = -(2**31), high: int = 2**31 - 1) -> int:
        """A required integer in ``low..high`` (default: what an int32 holds)."""
        value = self._convert(keyword, int, "one integer")
        if not low <= value <= high:
            raise PullbackFileError(
                self.path, f"is {value}, outside {low}..{high}", attribute=self.name(keyword)
            )
        return value

    def text(self, keyword: str) -> str:
        return self._convert(keyword, lambda v: str(v).strip().upper(), "text")

    def optional_number(self, keyword: str) -> float | None:
        return self.number(keyword) if self.has(keyword) else None

    def optional_text(self, keyword: str) -> str:
        """The value as text, case kept; "" when absent or empty."""
        return str(self.value(keyword)).strip() if self.has(keyword) else ""

    def sequence(self, keyword: str) -> list[Dataset]:
        """The items of a required sequence, checked to be data sets."""
        items = self.value(keyword)
        if not isinstance(items, Sequence) or not all(isinstance(item, Dataset) for item in items):
            raise PullbackFileError(
                self.path, "is not a sequence of items", attribute=self.name(keyword)
            )
        return list(items)

    def item(self, keyword: str) -> _Fields:
        """The single item of sequence ``keyword``."""
        items = self.sequence(keyword)
        if len(items) != 1:
            raise PullbackFileError(
                self.path, f"has {len(items)} items, expected 1", attribute=self.name(keyword)
            )
        return _Fields(items[0], self.path, f"{self.name(keyword)}[0]")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, Sized) and len(value) == 0)


def _finite_float(value: Any) -> float:
    number = float(value)
    if not np.isfinite(number):
        raise ValueError("not finite")
    return number


def read_dicom(path: str | os.PathLike) -> Pullback:
    """Read an IVOCT pullback file (For Processing bit-exact; For Presentation resampled to polar).

    Parameters
    ----------
    path : path-like
        A DICOM file, with or without the 128-byte preamble and "DICM" prefix.

    Returns
    -------
    Pullback
        ``attributes`` records the source file, SOP class (``"source_sop"``: ``"for_processing"``
        or ``"for_presentation"``), UIDs, where frame rate and spacing came from, the DOMAIN
        attributes as ``"dicom_attributes"`` (keyword, tag, value) and any warnings pydicom raised
        while parsing (``"dicom_warnings"``).

    Raises
    ------
    TruncatedFileError
        The file ends before its declared content does.
    NotIVOCTError
        Not DICOM, or DICOM of another SOP class.
    UnsupportedTransferSyntaxError
        Pixel data is compressed, deflated or big endian.
    MissingAttributeError
        A required attribute is absent or empty.
    InconsistentDimensionsError
        Rows, A-lines Per Frame, Number of Frames, the per-frame sequence and the pixel data
        length disagree.
    PullbackFileError
        Any other malformed content (the base class of all of the above).
    """
    path = Path(path)
    size = _file_size(path)
    # Values are converted lazily, so warnings can arise anywhere while the header is read: they
    # are recorded with the pullback instead of being printed or (under -W error) raised.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds, transfer_syntax = _parse(path, size)
        # Truncation first: a file cut inside its header can leave a half-read SOP Class UID.
        pixel_element = _pixel_data_element(ds, path, size)
        sop_class = _sop_class(ds, path)
        if sop_class == SOP_FOR_PROCESSING:
            pullback = _read_for_processing(ds, path, pixel_element)
        else:
            pullback = _read_for_presentation(ds, path, pixel_element)
        fields = _Fields(ds, path)
        pullback.attributes.update(
            {
                "source_file": str(path),
                "source_format": "dicom",
                "sop_class_uid": str(sop_class),
                "sop_class": SOP_NAMES[sop_class],
                "transfer_syntax_uid": str(transfer_syntax),
                "study_instance_uid": fields.optional_text("StudyInstanceUID"),
                "series_instance_uid": fields.optional_text("SeriesInstanceUID"),
                "sop_instance_uid": fields.optional_text("SOPInstanceUID"),
                "dicom_attributes": _reported_attributes(fields) + _per_frame_report(pullback),
            }
        )
    if caught:
        pullback.attributes["dicom_warnings"] = sorted({str(w.message) for w in caught})
    return pullback


def _file_size(path: Path) -> int:
    try:
        if not path.is_file():
            raise PullbackFileError(
                path, "no such file" if not path.exists() else "is not a regular file"
            )
        return path.stat().st_size
    except OSError as exc:
        raise PullbackFileError(path, f"cannot be opened: {exc.strerror or exc}") from exc


def _has_dicm_prefix(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(128)
        return stream.read(4) == b"DICM"


def _parse(path: Path, size: int) -> tuple[Dataset, UID]:
    """Parse the header; the pixel data is left in the file (deferred) and read by offset."""
    with_prefix = _has_dicm_prefix(path)
    if with_prefix:
        # Check the SOP class and transfer syntax from the file meta before parsing the body: a
        # deflated body cannot even be parsed without inflating it.
        try:
            meta = read_file_meta_info(path)
        except Exception as exc:  # pydicom raises many types on damaged input
            raise _damaged(path, "the File Meta Information", exc) from exc
        meta_fields = _Fields(meta, path)
        group_length = (
            meta_fields.integer("FileMetaInformationGroupLength")
            if meta_fields.has("FileMetaInformationGroupLength")
            else None
        )
        # 128-byte preamble, "DICM", then the 12-byte group length element and the group.
        if len(meta) == 0 or (group_length is not None and 144 + group_length > size):
            raise TruncatedFileError(
                path, f"the file ends after {size} bytes, inside the File Meta Information"
            )
        if meta_fields.has("MediaStorageSOPClassUID"):
            media_sop = UID(str(meta_fields.value("MediaStorageSOPClassUID")).strip())
            if media_sop not in SOP_NAMES:
                raise _not_ivoct(path, media_sop, attribute_name("MediaStorageSOPClassUID"))
        transfer_syntax = UID(str(meta_fields.value("TransferSyntaxUID")).strip())
        _check_transfer_syntax(transfer_syntax, path)
    try:
        # defer_size keeps Pixel Data (and other large values) in the file: it is read once,
        # straight into the frame array, by offset.
        ds = pydicom.dcmread(path, force=not with_prefix, defer_size=4096)
    except Exception as exc:  # pydicom raises many types on damaged input
        if with_prefix:
            raise _damaged(path, "the data set", exc) from exc
        raise NotIVOCTError(path, "is not a DICOM file") from exc
    if not with_prefix:
        if len(ds) == 0 or "SOPClassUID" not in ds:
            raise NotIVOCTError(
                path, f"is not a DICOM file (no DICM prefix, no SOP Class UID in its {size} bytes)"
            )
        implicit, little = ds.original_encoding
        if not little:
            raise UnsupportedTransferSyntaxError(
                path,
                "big-endian encoding is not supported",
                attribute=attribute_name("TransferSyntaxUID"),
            )
        transfer_syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return ds, transfer_syntax


def _damaged(path: Path, part: str, exc: Exception) -> PullbackFileError:
    if isinstance(exc, EOFError):
        return TruncatedFileError(path, f"the file ends inside {part} ({exc})")
    return PullbackFileError(
        path, f"is damaged: {part} cannot be parsed ({type(exc).__name__}: {exc})"
    )


def _check_transfer_syntax(transfer_syntax: UID, path: Path) -> None:
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        name = transfer_syntax.name if transfer_syntax.is_valid else "unknown"
        raise UnsupportedTransferSyntaxError(
            path,
            f"{transfer_syntax} ({name}) is not supported; octguide reads uncompressed "
            "little-endian pixel data (Explicit or Implicit VR Little Endian)",
            attribute=attribute_name("TransferSyntaxUID"),
        )


def _not_ivoct(path: Path, sop_class: UID, attribute: str) -> NotIVOCTError:
    name = sop_class.name if sop_class.is_valid else "unknown"
    return NotIVOCTError(
        path,
        f"is {sop_class} ({name}), not an IVOCT image "
        f"({SOP_FOR_PROCESSING} or {SOP_FOR_PRESENTATION})",
        attribute=attribute,
    )


def _sop_class(ds: Dataset, path: Path) -> UID:
    fields = _Fields(ds, path)
    sop_class = UID(str(fields.value("SOPClassUID")).strip())
    if sop_class not in SOP_NAMES:
        raise _not_ivoct(path, sop_class, attribute_name("SOPClassUID"))
    if fields.has("Modality") and fields.text("Modality") != "IVOCT":
        raise NotIVOCTError(
            path,
            f"Modality is {fields.text('Modality')!r}, expected 'IVOCT'",
            attribute=attribute_name("Modality"),
        )
    return sop_class


def _pixel_data_element(ds: Dataset, path: Path, size: int) -> Any:
    """The still-deferred Pixel Data element, checked to lie entirely inside the file."""
    if "PixelData" not in ds:
        raise TruncatedFileError(
            path,
            f"the file ends after {size} bytes without Pixel Data",
            attribute=attribute_name("PixelData"),
        )
    element = ds.get_item("PixelData", keep_deferred=True)
    value_tell = getattr(element, "value_tell", None)
    if value_tell is None or element.length == 0xFFFFFFFF:
        raise UnsupportedTransferSyntaxError(
            path,
            "Pixel Data is encapsulated; octguide reads native pixel data only",
            attribute=attribute_name("PixelData"),
        )
    if value_tell + element.length > size:
        raise TruncatedFileError(
            path,
            f"declares {element.length} bytes of pixel data from byte {value_tell}, "
            f"but the file ends at byte {size}",
            attribute=attribute_name("PixelData"),
        )
    return element


def _pixel_format(fields: _Fields) -> np.dtype:
    if fields.integer("SamplesPerPixel") != 1:
        raise PullbackFileError(
            fields.path, "must be 1 for IVOCT", attribute=fields.name("SamplesPerPixel")
        )
    if fields.integer("PixelRepresentation") != 0:
        raise PullbackFileError(
            fields.path,
            "must be 0 (unsigned) for IVOCT",
            attribute=fields.name("PixelRepresentation"),
        )
    if fields.text("PhotometricInterpretation") != "MONOCHROME2":
        raise PullbackFileError(
            fields.path,
            "must be MONOCHROME2 for IVOCT",
            attribute=fields.name("PhotometricInterpretation"),
        )
    bits = fields.integer("BitsAllocated")
    if bits not in (8, 16):
        raise PullbackFileError(
            fields.path, f"is {bits}; expected 8 or 16", attribute=fields.name("BitsAllocated")
        )
    return np.dtype(f"<u{bits // 8}")


def _read_pixels(
    fields: _Fields, element: Any, n_frames: int, rows: int, columns: int
) -> np.ndarray:
    """Frames ``(n_frames, rows, columns)`` read straight from the file at the Pixel Data offset."""
    dtype = _pixel_format(fields)
    expected = n_frames * rows * columns * dtype.itemsize
    # Odd-length values are padded with one byte to an even length (PS3.5 7.1.1).
    if element.length not in (expected, expected + expected % 2):
        raise InconsistentDimensionsError(
            fields.path,
            f"holds {element.length} bytes; {n_frames} frames x {rows} rows x {columns} columns x "
            f"{dtype.itemsize} bytes need {expected}",
            attribute=fields.name("PixelData"),
        )
    frames = np.fromfile(
        fields.path, dtype=dtype, count=n_frames * rows * columns, offset=element.value_tell
    )
    return frames.reshape(n_frames, rows, columns).astype(dtype.newbyteorder("="), copy=False)


def _frame_count(fields: _Fields) -> tuple[int, list[Dataset]]:
    n_frames = fields.integer("NumberOfFrames")
    if n_frames < 1:
        raise InconsistentDimensionsError(
            fields.path, f"is {n_frames}", attribute=fields.name("NumberOfFrames")
        )
    per_frame = fields.sequence("PerFrameFunctionalGroupsSequence")
    if len(per_frame) != n_frames:
        raise InconsistentDimensionsError(
            fields.path,
            f"has {len(per_frame)} items but Number of Frames (0028,0008) is {n_frames}",
            attribute=fields.name("PerFrameFunctionalGroupsSequence"),
        )
    return n_frames, per_frame


def _functional_group(
    fields: _Fields, per_frame: list[Dataset], index: int, keyword: str
) -> _Fields | None:
    """Frame ``index``'s item of functional group ``keyword``: per-frame first, else shared."""
    frame = _Fields(
        per_frame[index], fields.path, f"{fields.name('PerFrameFunctionalGroupsSequence')}[{index}]"
    )
    if keyword in frame.ds:
        return frame.item(keyword)
    if "SharedFunctionalGroupsSequence" in fields.ds:
        shared = fields.item("SharedFunctionalGroupsSequence")
        if keyword in shared.ds:
            return shared.item(keyword)
    return None


def _required_group(fields: _Fields, per_frame: list[Dataset], index: int, keyword: str) -> _Fields:
    group = _functional_group(fields, per_frame, index, keyword)
    if group is None:
        raise MissingAttributeError(
            fields.path,
            f"is in neither the per-frame item {index} nor the shared functional groups",
            attribute=attribute_name(keyword),
        )
    return group


def _frame_rate(fields: _Fields, n_alines: int) -> tuple[float, str]:
    """Frames per second and the attribute it came from (one catheter rotation per frame)."""
    if fields.has("CatheterRotationalRate"):
        return fields.number("CatheterRotationalRate"), attribute_name("CatheterRotationalRate")
    return fields.number("ALineRate") / n_alines, (
        f"{attribute_name('ALineRate')} / {attribute_name('ALinesPerFrame')}"
    )


def _frame_spacing(
    fields: _Fields, per_frame: list[Dataset], n_frames: int, frame_rate_hz: float
) -> tuple[np.ndarray, str]:
    """Per-frame Intravascular Longitudinal Distance, else IVUS Pullback Rate / frame rate (mm)."""
    groups = [
        _functional_group(fields, per_frame, i, "IntravascularFrameContentSequence")
        for i in range(n_frames)
    ]
    if all(g is not None and g.has("IntravascularLongitudinalDistance") for g in groups):
        spacing = np.array([g.number("IntravascularLongitudinalDistance") for g in groups])
        return spacing, attribute_name("IntravascularLongitudinalDistance") + " per frame"
    if fields.has("IVUSPullbackRate"):
        spacing = np.full(n_frames, fields.number("IVUSPullbackRate") / frame_rate_hz)
        return spacing, f"{attribute_name('IVUSPullbackRate')} / frame rate"
    raise MissingAttributeError(
        fields.path,
        "is missing on some frames and no IVUS Pullback Rate (0018,3101) gives it instead",
        attribute=attribute_name("IntravascularLongitudinalDistance"),
    )


def _yes_no(fields: _Fields, keyword: str) -> bool:
    value = fields.text(keyword)
    if value not in ("YES", "NO"):
        raise PullbackFileError(
            fields.path, f"is {value!r}, expected YES or NO", attribute=fields.name(keyword)
        )
    return value == "YES"


def _build(path: Path, make: Callable[[], Pullback]) -> Pullback:
    """Run ``make``, reporting a geometry octguide rejects as an error about this file."""
    try:
        return make()
    except GeometryError as exc:
        raise PullbackFileError(path, f"describes a geometry octguide rejects: {exc}") from exc


def _pullback_id(fields: _Fields) -> str:
    if fields.has("SeriesDescription"):
        description = str(fields.value("SeriesDescription"))
        if description.startswith(PULLBACK_ID_PREFIX):
            return description[len(PULLBACK_ID_PREFIX) :]
    return str(fields.value("SOPInstanceUID"))


def _read_for_processing(ds: Dataset, path: Path, pixel_element: Any) -> Pullback:
    fields = _Fields(ds, path)
    rows = fields.integer("Rows", *_POSITIVE_US_RANGE)
    columns = fields.integer("Columns", *_POSITIVE_US_RANGE)
    n_alines = fields.integer("ALinesPerFrame", *_POSITIVE_US_RANGE)
    if rows != n_alines:
        raise InconsistentDimensionsError(
            path,
            f"is {rows} but A-lines Per Frame (0052,0012) is {n_alines}; For Processing frames "
            "hold one A-line per row",
            attribute=fields.name("Rows"),
        )
    n_frames, per_frame = _frame_count(fields)
    z_offset = np.empty(n_frames, dtype=np.int32)
    seam = np.empty(n_frames, dtype=np.int32)
    padded = np.empty(n_frames, dtype=np.int32)
    for i in range(n_frames):
        oct_content = _required_group(fields, per_frame, i, "IntravascularOCTFrameContentSequence")
        z_offset[i] = oct_content.integer("OCTZOffsetCorrection", *_SS_RANGE)
        seam[i] = oct_content.integer("SeamLineIndex", *_US_RANGE)
        padded[i] = (
            oct_content.integer("NumberOfPaddedALines", *_US_RANGE)
            if oct_content.has("NumberOfPaddedALines")
            else 0
        )
    if np.any(padded != padded[0]):
        raise InconsistentDimensionsError(
            path,
            f"varies between frames ({padded.min()}..{padded.max()}); "
            "octguide needs one value per pullback",
            attribute=attribute_name("NumberOfPaddedALines"),
        )
    z_offset_applied = _yes_no(fields, "OCTZOffsetApplied")
    if z_offset_applied:
        # The shift is already in the stored samples: applying it again would move every radius.
        z_offset[:] = 0
    frame_rate_hz, frame_rate_source = _frame_rate(fields, n_alines)
    spacing, spacing_source = _frame_spacing(fields, per_frame, n_frames, frame_rate_hz)
    frames = _read_pixels(fields, pixel_element, n_frames, rows, columns)
    intensity = fields.text("PixelIntensityRelationship")
    scale, scale_reason = _lut_intensity_scale(fields, per_frame, intensity)

    def make() -> Pullback:
        geometry = FrameGeometry(
            n_alines=n_alines,
            n_samples=columns,
            intensity_scale=scale,
            aline_spacing_mm=fields.number("ALinePixelSpacing"),
            refractive_index=fields.number("EffectiveRefractiveIndex"),
            refractive_index_applied=_yes_no(fields, "RefractiveIndexApplied"),
            n_padded_alines=int(padded[0]),
            rotation=fields.text("CatheterDirectionOfRotation"),
            # Pixel Intensity Relationship is a Processing Parameter; presentation frames are
            # display images, which consoles log-compress.
            intensity=fields.text("PixelIntensityRelationship"),
        )
        return Pullback(
            frames=frames,
            geometry=geometry,
            z_offset_px=z_offset,
            seam_index=seam,
            frame_spacing_mm=spacing,
            frame_rate_hz=frame_rate_hz,
            pullback_id=_pullback_id(fields),
        )

    pullback = _build(path, make)
    pullback.attributes.update(
        {
            "source_sop": "for_processing",
            "frame_rate_source": frame_rate_source,
            "frame_spacing_source": spacing_source,
            "oct_z_offset_applied_in_file": z_offset_applied,
        }
    )
    if scale_reason:
        pullback.attributes["intensity_scale_unread"] = scale_reason
    return pullback


# A LUT entry must map to at least this linear output to enter the fit: below it the 16-bit
# rounding alone moves 10*log10 by more than 0.07 dB.
_LUT_FIT_MIN_OUTPUT = 64.0
# Largest residual (dB) of the affine fit that still counts as log compression.
_LUT_FIT_MAX_RESIDUAL_DB = 0.5


def _lut_intensity_scale(
    fields: _Fields, per_frame: list[Dataset], intensity: str
) -> tuple[IntensityScale | None, str]:
    """The pullback's intensity scale from its Pixel Intensity Relationship LUT, or a reason.

    For LOG data with a TO_LINEAR LUT: fits ``dB = offset + k * stored`` to ``10 * log10(LUT)``
    over the entries whose output is resolved (>= 64). Returns ``(None, reason)`` when there is no
    LUT, the data are not LOG, or the LUT is not a monotonic log-linear curve.
    """
    if intensity != "LOG":
        return None, ""
    group = _functional_group(fields, per_frame, 0, "PixelIntensityRelationshipLUTSequence")
    if group is None and fields.has("PixelIntensityRelationshipLUTSequence"):
        group = fields.item("PixelIntensityRelationshipLUTSequence")
    if group is None:
        return None, "no Pixel Intensity Relationship LUT"
    function = str(group.ds.get("LUTFunction", "")).strip().upper()
    if function not in ("TO_LINEAR", ""):
        return None, f"LUT Function {function!r} is not TO_LINEAR"
    try:
        descriptor = [int(v) for v in group.ds.LUTDescriptor]
        raw = group.ds.LUTData
    except (AttributeError, TypeError, ValueError) as exc:
        return None, f"LUT Descriptor/Data unreadable ({exc})"
    if len(descriptor) != 3:
        return None, f"LUT Descriptor has {len(descriptor)} values, not 3"
    n_entries = descriptor[0] or 65536
    first = descriptor[1]
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) >= 2 * n_entries:
            data = np.frombuffer(bytes(raw[: 2 * n_entries]), dtype="<u2")
        elif len(raw) == n_entries:
            data = np.frombuffer(bytes(raw), dtype=np.uint8)
        else:
            return None, f"LUT Data has {len(raw)} bytes for {n_entries} entries"
    else:
        data = np.asarray(raw if isinstance(raw, Sized) else [raw], dtype=np.float64)
        if data.size != n_entries:
            return None, f"LUT Data has {data.size} values for {n_entries} entries"
    out = data.astype(np.float64)
    if np.any(np.diff(out) < 0):
        return None, "LUT is not monotonic non-decreasing"
    stored = first + np.arange(n_entries, dtype=np.float64)
    use = out >= _LUT_FIT_MIN_OUTPUT
    if np.count_nonzero(use) < max(16, n_entries // 10):
        return None, f"only {np.count_nonzero(use)} LUT entries are resolved (>= 64)"
    level_db = 10.0 * np.log10(out[use])
    k, offset = np.polyfit(stored[use], level_db, 1)
    residual = float(np.max(np.abs(offset + k * stored[use] - level_db)))
    if residual > _LUT_FIT_MAX_RESIDUAL_DB:
        return None, f"LUT is not log-linear (fit residual {residual:.2f} dB)"
    if not k > 0:
        return None, f"LUT slope {k:.3g} dB/count is not positive"
    try:
        return IntensityScale(float(k), float(offset), "dicom-lut"), ""
    except GeometryError as exc:
        return None, f"LUT gives an invalid scale ({exc})"


def _pixel_spacing(fields: _Fields, per_frame: list[Dataset], n_frames: int) -> tuple[float, float]:
    """(row spacing, column spacing) in mm, the same for every frame."""
    spacings = set()
    for i in range(n_frames):
        measures = _functional_group(fields, per_frame, i, "PixelMeasuresSequence")
        source = measures if measures is not None and measures.has("PixelSpacing") else fields
        spacings.add(
            tuple(
                source._convert("PixelSpacing", _two_positive_floats, "two positive numbers (mm)")
            )
        )
    if len(spacings) != 1:
        raise InconsistentDimensionsError(
            fields.path,
            "differs between frames; octguide needs one value",
            attribute=attribute_name("PixelSpacing"),
        )
    return spacings.pop()


def _two_positive_floats(value: Any) -> tuple[float, float]:
    row, column = (_finite_float(v) for v in value)
    if row <= 0 or column <= 0:
        raise ValueError("not positive")
    return row, column


def _read_for_presentation(ds: Dataset, path: Path, pixel_element: Any) -> Pullback:
    fields = _Fields(ds, path)
    rows = fields.integer("Rows", *_POSITIVE_US_RANGE)
    columns = fields.integer("Columns", *_POSITIVE_US_RANGE)
    n_frames, per_frame = _frame_count(fields)
    row_mm, column_mm = _pixel_spacing(fields, per_frame, n_frames)
    n_alines = (
        fields.integer("ALinesPerFrame", *_POSITIVE_US_RANGE)
        if fields.has("ALinesPerFrame")
        else DEFAULT_PRESENTATION_ALINES
    )
    sample_mm = min(row_mm, column_mm)
    centre_row, centre_column = (rows - 1) / 2.0, (columns - 1) / 2.0
    radius_mm = min(centre_row * row_mm, centre_column * column_mm)
    ranging_depth_mm = fields.optional_number("RangingDepth")
    if ranging_depth_mm is not None and 0 < ranging_depth_mm < radius_mm:
        radius_mm = ranging_depth_mm
    n_samples = int(np.floor(radius_mm / sample_mm + 1e-9)) + 1
    # The index is only required For Processing; presentation samples are already in tissue mm,
    # so without it the geometry records 1.0 and is unaffected.
    refractive_index = fields.optional_number("EffectiveRefractiveIndex") or 1.0
    frame_rate_hz, frame_rate_source = _frame_rate(fields, n_alines)
    spacing, spacing_source = _frame_spacing(fields, per_frame, n_frames, frame_rate_hz)
    seam_deg = np.zeros(n_frames)
    for i in range(n_frames):
        content = _functional_group(fields, per_frame, i, "IntravascularFrameContentSequence")
        if content is not None and content.has("SeamLineLocation"):
            seam_deg[i] = content.number("SeamLineLocation")
    seam = np.rint(np.mod(seam_deg, 360.0) / 360.0 * n_alines).astype(np.int64) % n_alines
    cartesian = _read_pixels(fields, pixel_element, n_frames, rows, columns)

    def make() -> Pullback:
        geometry = FrameGeometry(
            n_alines=n_alines,
            n_samples=n_samples,
            aline_spacing_mm=sample_mm,
            refractive_index=refractive_index,
            refractive_index_applied=True,
            rotation="CW",
            # Pixel Intensity Relationship is a Processing Parameter; presentation frames are
            # display images, which consoles log-compress.
            intensity=fields.text("PixelIntensityRelationship")
            if fields.has("PixelIntensityRelationship")
            else "LOG",
        )
        frames = cartesian_to_polar(cartesian, geometry, (row_mm, column_mm))
        return Pullback(
            frames=frames,
            geometry=geometry,
            z_offset_px=np.zeros(n_frames, dtype=np.int32),
            seam_index=seam,
            frame_spacing_mm=spacing,
            frame_rate_hz=frame_rate_hz,
            pullback_id=_pullback_id(fields),
        )

    pullback = _build(path, make)
    pullback.attributes.update(
        {
            "source_sop": "for_presentation",
            "frame_rate_source": frame_rate_source,
            "frame_spacing_source": spacing_source,
            "presentation_rows_columns": [rows, columns],
            "presentation_pixel_spacing_mm": [row_mm, column_mm],
            "resampling": (
                f"bilinear, {n_alines} rays clockwise from 12 o'clock about the image centre, "
                f"{n_samples} samples of {sample_mm} mm"
            ),
        }
    )
    if fields.has("CatheterDirectionOfRotation"):
        pullback.attributes["catheter_direction_of_rotation_in_file"] = fields.text(
            "CatheterDirectionOfRotation"
        )
    return pullback


def cartesian_to_polar(
    images: np.ndarray, geometry: FrameGeometry, pixel_spacing_mm: tuple[float, float]
) -> np.ndarray:
    """Resample Cartesian frames about their centre to polar frames (bilinear).

    Parameters
    ----------
    images : numpy.ndarray
        ``(n_frames, rows, columns)`` Cartesian frames; the catheter centre is the image centre
        ``((rows - 1) / 2, (columns - 1) / 2)`` in pixel indices.
    geometry : FrameGeometry
        Target polar geometry: row ``i`` is the ray ``360 * i / n_alines`` degrees clockwise from
        12 o'clock; column ``c`` lies at ``c * geometry.aline_spacing_mm`` mm.
    pixel_spacing_mm : (float, float)
        Cartesian (row, column) spacing, mm.

    Returns
    -------
    numpy.ndarray
        ``(n_frames, n_alines, n_samples)`` in the dtype of ``images`` (integers rounded to
        nearest); samples outside the image are 0.
    """
    n_frames, rows, columns = images.shape
    row_mm, column_mm = pixel_spacing_mm
    angle = 2.0 * np.pi * np.arange(geometry.n_alines)[:, None] / geometry.n_alines
    radius = np.arange(geometry.n_samples)[None, :] * geometry.aline_spacing_mm
    # Clockwise from 12 o'clock on screen, where image rows grow downwards.
    y = (rows - 1) / 2.0 - radius * np.cos(angle) / row_mm
    x = (columns - 1) / 2.0 + radius * np.sin(angle) / column_mm
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    fy = y - y0
    fx = x - x0
    # One gather table for every frame: the four neighbours' flat indices and their weights, with
    # weight 0 for neighbours outside the image.
    indices, weights = [], []
    for dy, dx, weight in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        cy, cx = y0 + dy, x0 + dx
        inside = (cy >= 0) & (cy < rows) & (cx >= 0) & (cx < columns)
        indices.append(np.where(inside, cy * columns + cx, 0))
        weights.append(np.where(inside, weight, 0.0))
    out = np.empty((n_frames, geometry.n_alines, geometry.n_samples), dtype=images.dtype)
    for f in range(n_frames):
        flat = images[f].ravel()
        blended = sum(w * flat[i] for i, w in zip(indices, weights, strict=True))
        out[f] = np.rint(blended) if np.issubdtype(images.dtype, np.integer) else blended
    return out


def _per_frame_report(pullback: Pullback) -> list[dict]:
    def span(values: np.ndarray) -> str:
        return f"{values.min()}..{values.max()} over {len(values)} frames"

    return [
        {
            "keyword": "IntravascularLongitudinalDistance",
            "tag": "(0052,0028)",
            "value": span(pullback.frame_spacing_mm),
        },
        {
            "keyword": "OCTZOffsetCorrection",
            "tag": "(0052,0030)",
            "value": span(pullback.z_offset_px),
        },
        {"keyword": "SeamLineIndex", "tag": "(0052,0036)", "value": span(pullback.seam_index)},
        {
            "keyword": "NumberOfPaddedALines",
            "tag": "(0052,0038)",
            "value": pullback.geometry.n_padded_alines,
        },
    ]


def _reported_attributes(fields: _Fields) -> list[dict]:
    """The DOMAIN section 2 attributes present at the top level, as keyword/tag/value rows."""
    rows = []
    for keyword in _REPORTED_ATTRIBUTES:
        if fields.has(keyword):
            rows.append(
                {
                    "keyword": keyword,
                    "tag": attribute_name(keyword)[len(keyword) + 1 :],
                    "value": _report_value(fields.value(keyword)),
                }
            )
    return rows


def _report_value(value: Any) -> int | float | str:
    """A JSON-friendly form of a value: int and text as they are, numbers as float, else text."""
    if isinstance(value, (int, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
