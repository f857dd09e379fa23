"""The IVOCT instance a report refers to: its patient, study and SOP Instance UID, read from
the source DICOM file's header, or made up (deterministically) for a phantom or wire source
that never had one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, generate_uid

from streams.errors import OctguideError
from streams.files.dicom import SOP_FOR_PROCESSING, SOP_NAMES

#: attributes a report or key image copies from its source (patient, study, frame of reference)
_HEADER_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "Modality", "NumberOfFrames", "Rows", "Columns",
                    "SpecificCharacterSet")


class SourceError(OctguideError):
    """The source DICOM file is not a readable IVOCT instance."""


@dataclass(frozen=True)
class SourceInstance:
    """Header of the source IVOCT instance (no pixels) and what the report needs of it."""

    header: Dataset
    n_frames: int
    synthetic: bool

    @property
    def sop_class_uid(self) -> UID:
        return UID(self.header.SOPClassUID)

    @property
    def sop_instance_uid(self) -> UID:
        return UID(self.header.SOPInstanceUID)

    def derived_uid(self, name: str) -> UID:
        """A UID derived from this instance and ``name``: the same inputs give the same UID."""
        return generate_uid(entropy_srcs=[str(self.sop_instance_uid), name])

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> SourceInstance:
        """The header of an IVOCT DICOM file (pixel data are not read)."""
        try:
            ds = pydicom.dcmread(Path(path), stop_before_pixels=True)
        except (OSError, InvalidDicomError, ValueError) as exc:
            raise SourceError(f"{path}: not a readable DICOM file ({exc})") from exc
        return cls.from_dataset(ds, str(path))

    @classmethod
    def from_dataset(cls, ds: Dataset, where: str = "<dataset>") -> SourceInstance:
        if str(ds.get("SOPClassUID", "")) not in SOP_NAMES:
            raise SourceError(f"{where}: SOP class {ds.get('SOPClassUID')} is not IVOCT")
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not ds.get(keyword):
                raise SourceError(f"{where}: {keyword} is missing")
        header = Dataset()
        for keyword in _HEADER_KEYWORDS:
            if keyword in ds:
                setattr(header, keyword, ds.data_element(keyword).value)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                        "AccessionNumber", "StudyID", "StudyDate", "StudyTime"):
            if keyword not in header:
                setattr(header, keyword, None)
        return cls(header, int(ds.get("NumberOfFrames") or 1), synthetic=False)

    @classmethod
    def synthetic_for(cls, pullback_id: str, n_frames: int, rows: int = 1,
                      columns: int = 1) -> SourceInstance:
        """A stand-in for a pullback that arrived without a DICOM file (phantom, wire): UIDs
        derived from the pullback id, the synthetic patient of :mod:`streams.files.dicom`."""
        header = Dataset()
        header.SOPClassUID = SOP_FOR_PROCESSING
        header.SOPInstanceUID = generate_uid(entropy_srcs=["octguide source", pullback_id])
        header.StudyInstanceUID = generate_uid(entropy_srcs=["octguide study", pullback_id])
        header.SeriesInstanceUID = generate_uid(entropy_srcs=["octguide series", pullback_id])
        header.PatientName = "PHANTOM^OCTGUIDE"
        header.PatientID = "OCTGUIDE-SYNTHETIC"
        header.PatientBirthDate = None
        header.PatientSex = None
        header.AccessionNumber = None
        header.StudyID = "OCTGUIDE"
        header.StudyDate = None
        header.StudyTime = None
        header.Modality = "IVOCT"
        header.NumberOfFrames = n_frames
        header.Rows = rows
        header.Columns = columns
        return cls(header, n_frames, synthetic=True)
