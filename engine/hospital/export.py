"""What a completed pullback leaves for the hospital: the SR and the key images, written
beside its results (``DIR/dicom/``), ready for the outbox (:mod:`engine.hospital.outbox`)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from engine.hospital.key_images import key_images as make_key_images
from engine.hospital.source import SourceInstance
from engine.hospital.sr import ReportError, build_report
from streams.files.io import read_pullback, sniff_format
from streams.pullback import FrameSource, Pullback


def load_results(results_dir: str | os.PathLike) -> tuple[dict, list[dict]]:
    """``pullback.json`` and the ``frames.jsonl`` records of a results folder.

    Raises
    ------
    ReportError
        A file is missing or is not the JSON docs/results.md describes (one line naming it).
    """
    folder = Path(results_dir)
    try:
        pullback = json.loads((folder / "pullback.json").read_text())
        lines = (folder / "frames.jsonl").read_text().splitlines()
    except OSError as exc:
        raise ReportError(f"{folder}: cannot read the results ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ReportError(f"{folder / 'pullback.json'}: not JSON ({exc})") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ReportError(f"{folder / 'frames.jsonl'} line {number}: not JSON ({exc})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("frame"), int):
            raise ReportError(f"{folder / 'frames.jsonl'} line {number}: no integer 'frame'")
        records.append(record)
    if not isinstance(pullback, dict):
        raise ReportError(f"{folder / 'pullback.json'}: not a JSON object")
    return pullback, records


def source_instance(source: Any, pullback: dict) -> SourceInstance:
    """The source instance for a report: a DICOM file's header, or a synthetic stand-in when
    the pullback came without one (``None``, a :class:`Pullback` read from another format or
    rendered, the frames kept from a wire pullback)."""
    if isinstance(source, (str, os.PathLike)):
        return SourceInstance.from_file(source)
    n_frames = int(pullback.get("n_frames") or 0)
    rows = columns = 1
    if isinstance(source, FrameSource):
        n_frames = len(source)
        rows, columns = source.geometry.n_alines, source.geometry.n_samples
    return SourceInstance.synthetic_for(str(pullback.get("pullback_id")), max(n_frames, 1), rows, columns)


def save_dataset(dataset: Dataset, path: Path) -> Path:
    """Write a DICOM file atomically (temporary name beside it, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as stream:
            dataset.save_as(stream, enforce_file_format=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_report(results_dir: str | os.PathLike, source: Any, out: str | os.PathLike,
                 key_images: list[Dataset] | None = None) -> Path:
    """Build the SR of a results folder and write it to ``out``."""
    pullback, records = load_results(results_dir)
    instance = source_instance(source, pullback)
    return save_dataset(build_report(pullback, records, instance, key_images=key_images or ()), Path(out))


def write_pullback_dicom(results_dir: str | os.PathLike, source_dicom_or_None: Any,
                         cfg: Any = None) -> list[Path]:
    """Write the SR and the key images of a completed pullback into ``results_dir/dicom/``.

    Called by the engine at pullback completion when ``[dicom] write_sr`` is set, by
    ``octguide replay --sr`` and by ``octguide listen``.

    Parameters
    ----------
    results_dir : path
        The pullback's results folder (``pullback.json``, ``frames.jsonl``).
    source_dicom_or_None : path, FrameSource or None
        The source IVOCT file (its header gives patient, study and the referenced instance; its
        pixels the key images); or the pixels of a pullback that has no DICOM instance (a wire
        pullback: the :class:`~engine.hospital.wire_frames.KeptFrames` of a
        :class:`~engine.hospital.wire_frames.KeyFrameKeeper`, or an in-memory
        :class:`Pullback`): a new study and series, key images from those frames, the SR's groups
        referencing the key images; or None (no pixels: the SR alone).
    cfg : Config or DicomConfig, optional
        Unused for the files themselves; accepted so every caller passes its configuration.

    Returns
    -------
    list of Path
        ``[sr.dcm, key_1.dcm, ...]``, the SR first.
    """
    del cfg  # the report's content depends only on the results and the source
    folder = Path(results_dir)
    pullback, records = load_results(folder)
    instance = source_instance(source_dicom_or_None, pullback)
    pixels = source_dicom_or_None if isinstance(source_dicom_or_None, FrameSource) else None
    if isinstance(source_dicom_or_None, (str, os.PathLike)):
        pixels = read_pullback(source_dicom_or_None)
    keys = make_key_images(pullback, records, pixels, instance) if pixels is not None else []
    out = folder / "dicom"
    images = [k.dataset for k in keys]
    report = build_report(pullback, records, instance, key_images=images,
                          key_image_frames=[k.frame for k in keys])
    paths = [save_dataset(report, out / "sr.dcm")]
    paths.extend(save_dataset(image, out / f"key_{n}.dcm") for n, image in enumerate(images, 1))
    return paths


def report_source(spec: str, pullback: Pullback) -> Any:
    """What :func:`write_pullback_dicom` should take for a replayed ``PULLBACK`` argument: the
    DICOM file itself (its patient, study and UIDs; for ``pacs://`` and WADO-RS the retrieved
    file, so the SR joins the PACS's study), else the in-memory pullback (phantom, ``.oct.h5``:
    a new study, key images from its frames)."""
    if not spec.startswith("phantom:") and Path(spec).is_file() and sniff_format(spec) == "dicom":
        return Path(spec)
    retrieved = pullback.attributes.get("source_file")
    if pullback.attributes.get("source_format") == "dicom" and retrieved and Path(retrieved).is_file():
        return Path(retrieved)
    return pullback
