"""Key images of a pullback: the MLA frame and, after PCI, the MSA frame and the frame with the
worst malapposition, scan-converted with the overlay and the not-a-medical-device notice burned
in, as DICOM Secondary Capture instances (RGB, 8 bits) the SR lists in its Image Library.

Secondary Capture rather than Multi-frame True Color SC: each key image is one frame with its
own caption and its own reason to be looked at; one single-frame instance per image is what
PACS viewers show as a thumbnail each and what the SR references one by one.

A pullback with a DICOM source: the key images join its study and name the IVOCT frame in their
Source Image Sequence. A wire pullback (frames over ZeroMQ, or a phantom: no DICOM instance
exists, :mod:`engine.hospital.wire_frames`): they start a new study and series (UIDs derived from
the pullback id), carry no Source Image Sequence (there is nothing to point at), and say which
frame of which pullback they show in Derivation Description and Image Comments; the SR's groups
on those frames reference the key images instead (docs/dicom_sr.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from engine import __version__
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.display.overlay import build_overlay, burn_overlay, display_grey
from engine.hospital.source import SourceInstance
from streams.pullback import FrameSource

KEY_IMAGE_SERIES_NUMBER = 901
NOTICE = "NOT A MEDICAL DEVICE - engineering software, synthetic training data"


def key_frames(pullback: dict, records: Sequence[dict]) -> list[tuple[str, int]]:
    """``[(label, frame index)]``: the MLA frame; post-PCI the MSA frame and the frame whose
    malapposed strut lies farthest from the lumen (each frame once, first label kept)."""
    picks: list[tuple[str, int]] = []
    mla = (pullback.get("mla") or {}).get("frame")
    if isinstance(mla, int):
        picks.append(("MLA", mla))
    stent = pullback.get("stent") or {}
    if isinstance(stent.get("msa_frame"), int):
        picks.append(("MSA", stent["msa_frame"]))
    worst: tuple[float, int] | None = None
    for record in records:
        for strut in record.get("struts") or ():
            distance = strut.get("distance_to_lumen_um")
            if (strut.get("malapposed") is True and isinstance(distance, (int, float))
                    and (worst is None or distance > worst[0])):
                worst = (float(distance), int(record["frame"]))
    if worst is not None and stent:
        picks.append(("worst malapposition", worst[1]))
    seen: set[int] = set()
    return [(label, f) for label, f in picks if not (f in seen or seen.add(f))]


def render_key_image(pullback: FrameSource, record: dict, caption: str, grid: CartesianGrid,
                     converter: ScanConverter) -> np.ndarray:
    """``(N, N, 3)`` uint8 RGB: the frame scan-converted, overlay and captions burned in."""
    frame = pullback.frame(int(record["frame"]))
    grey = display_grey(converter.process(frame))
    overlay = build_overlay(record, frame, grid, DisplayOrientation(), {})
    bgr = burn_overlay(grey, overlay)
    n = bgr.shape[0]
    scale = max(n / 1024.0, 0.35)
    cv2.putText(bgr, caption, (8, int(n - 34 * scale - 8)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(bgr, NOTICE, (8, n - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 200, 255), 1,
                cv2.LINE_AA)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def caption(label: str, frame: int, pullback: dict, record: dict) -> str:
    area = (record.get("lumen") or {}).get("area_mm2")
    text = f"{label}: frame {frame}"
    if label == "MSA" and (pullback.get("stent") or {}).get("msa_mm2") is not None:
        text += f", stent area {pullback['stent']['msa_mm2']:.2f} mm2"
    elif area is not None:
        text += f", lumen area {area:.2f} mm2"
    return text


def key_image_dataset(rgb: np.ndarray, source: SourceInstance, label: str, frame: int,
                      instance_number: int, pixel_mm: float, pullback_id: str) -> Dataset:
    """One Secondary Capture Image instance (PS3.3 A.8.1) in the source's study, its UID derived
    from the source, pullback and label (the same key image written twice is the same instance).

    Written with pydicom rather than highdicom's ``SCImage``: that insists on a Patient
    Orientation, which a catheter cross-section does not have (type 2C: left empty here).
    """
    now = dt.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = source.derived_uid(f"key:{pullback_id}:{label}")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
                    "StudyID", "AccessionNumber"):
        setattr(ds, keyword, source.header.get(keyword))
    ds.Modality = "OT"
    ds.SeriesInstanceUID = source.derived_uid(f"key-series:{pullback_id}")
    ds.SeriesNumber = KEY_IMAGE_SERIES_NUMBER
    ds.Laterality = None  # type 2C; a coronary artery is not a paired structure
    ds.SeriesDescription = "octguide key images"
    ds.ConversionType = "WSD"  # workstation: rendered by software, not digitised film
    ds.Manufacturer = "octguide"
    ds.SecondaryCaptureDeviceManufacturer = "octguide"
    ds.SecondaryCaptureDeviceManufacturerModelName = "octguide"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = None
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = f"octguide key image: {label}, frame {frame} of pullback {pullback_id}"
    if source.synthetic:
        ds.DerivationDescription = (f"{label}: frame {frame + 1} of wire pullback {pullback_id} "
                                    "(no DICOM source instance), scan converted, overlay burned in")
    else:
        ds.DerivationDescription = (f"{label}: frame {frame + 1} of {source.sop_instance_uid}, "
                                    "scan converted, overlay burned in")
    ds.NominalScannedPixelSpacing = [pixel_mm, pixel_mm]
    ds.PixelSpacing = [pixel_mm, pixel_mm]
    ds.PixelSpacingCalibrationType = "FIDUCIAL"
    ds.PixelSpacingCalibrationDescription = "the display grid of the scan conversion"
    if not source.synthetic:  # a wire pullback has no instance to point at
        source_item = Dataset()
        source_item.ReferencedSOPClassUID = source.sop_class_uid
        source_item.ReferencedSOPInstanceUID = source.sop_instance_uid
        source_item.ReferencedFrameNumber = frame + 1
        ds.SourceImageSequence = [source_item]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@dataclass(frozen=True)
class KeyImage:
    """One key image: why (``label``), which 0-based ``frame``, and the instance."""

    label: str
    frame: int
    dataset: Dataset


def _has_frame(pullback: FrameSource, index: int) -> bool:
    """Whether the source holds frame ``index`` (a keeper of wire frames holds only a few)."""
    if not 0 <= index < len(pullback):
        return False
    contains = getattr(pullback, "__contains__", None)
    return contains(index) if contains is not None else True


def build_key_images(pullback_json: dict, records: Sequence[dict], pullback: FrameSource,
                     source: SourceInstance, size_px: int = 512, fov_mm: float = 10.0) -> list[Dataset]:
    """The key image instances of an analysed pullback (empty when no key frame is known)."""
    return [k.dataset for k in key_images(pullback_json, records, pullback, source, size_px, fov_mm)]


def key_images(pullback_json: dict, records: Sequence[dict], pullback: FrameSource,
               source: SourceInstance, size_px: int = 512, fov_mm: float = 10.0) -> list[KeyImage]:
    """:func:`build_key_images` with each image's label and frame. A key frame the pixels do
    not hold (not kept from a wire pullback) is left out."""
    by_frame = {int(r["frame"]): r for r in records}
    picks = [(label, f) for label, f in key_frames(pullback_json, records)
             if f in by_frame and _has_frame(pullback, f)]
    if not picks:
        return []
    grid = CartesianGrid(size_px, fov_mm)
    converter = ScanConverter(grid, DisplayOrientation())
    converter.start(pullback.geometry)
    try:
        images = []
        for number, (label, frame) in enumerate(picks, 1):
            record = by_frame[frame]
            rgb = render_key_image(pullback, record, caption(label, frame, pullback_json, record),
                                   grid, converter)
            images.append(KeyImage(label, frame, key_image_dataset(
                rgb, source, label, frame, number, grid.pixel_mm, str(pullback_json.get("pullback_id")))))
        return images
    finally:
        converter.stop()
