"""``octguide info FILE [--json]``: what a pullback file holds and which attributes said so."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streams.files.io import read_pullback, sniff_format
from streams.pullback import Pullback

# Summary fields printed first in the text report, with their units.
_TEXT_FIELDS = (
    ("n_frames", "frames", ""),
    ("n_alines", "A-lines per frame", "(padded included)"),
    ("n_valid_alines", "valid A-lines", ""),
    ("n_samples", "samples per A-line", ""),
    ("dtype", "sample type", ""),
    ("intensity", "intensity", ""),
    ("aline_spacing_mm", "A-line pixel spacing", "mm"),
    ("refractive_index", "refractive index", ""),
    ("refractive_index_applied", "refractive index applied", ""),
    ("sample_spacing_mm", "tissue sample spacing", "mm"),
    ("ranging_depth_mm", "ranging depth", "mm (air)"),
    ("rotation", "rotation", ""),
    ("frame_rate_hz", "frame rate", "frames/s"),
    ("pullback_speed_mm_s", "pullback rate", "mm/s"),
    ("frame_spacing_mm", "mean frame spacing", "mm"),
    ("pullback_length_mm", "pullback length", "mm"),
    ("z_offset_px", "z offset range", "px"),
    ("seam_index", "seam index range", ""),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show a pullback file's geometry, rates and source attributes",
        description="Read a pullback file (DICOM IVOCT or native HDF5) and print its geometry, "
        "frame count, pullback and frame rate, SOP class and the DICOM attributes they came from.",
    )
    parser.add_argument("file", type=Path, help="pullback file (.dcm or .h5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(handler=run)


def describe(pullback: Pullback, path: Path, file_format: str) -> dict:
    """The report ``info`` prints: the pullback summary plus the file's provenance.

    Parameters
    ----------
    pullback : Pullback
        As read from ``path``.
    path : Path
        The file it was read from.
    file_format : str
        ``"dicom"`` or ``"native"``, as :func:`streams.files.io.sniff_format` says.
    """
    attributes = pullback.attributes
    return {
        "file": str(path),
        "format": file_format,
        "sop_class": attributes.get("sop_class"),
        "sop_class_uid": attributes.get("sop_class_uid"),
        "source_sop": attributes.get("source_sop"),
        "summary": pullback.summary(),
        "frame_rate_source": attributes.get("frame_rate_source"),
        "frame_spacing_source": attributes.get("frame_spacing_source"),
        "resampling": attributes.get("resampling"),
        "dicom_attributes": attributes.get("dicom_attributes", []),
        "dicom_warnings": attributes.get("dicom_warnings", []),
    }


def format_text(report: dict) -> str:
    """Human-readable form of :func:`describe`'s report."""
    summary = report["summary"]
    lines = [f"{'file':<26} {report['file']}"]
    if report["sop_class"]:
        lines.append(f"{'SOP class':<26} {report['sop_class']} ({report['sop_class_uid']})")
    elif report["format"]:
        lines.append(f"{'format':<26} {report['format']}")
    lines.append(f"{'pullback id':<26} {summary['pullback_id']}")
    for key, label, unit in _TEXT_FIELDS:
        value = summary[key]
        if isinstance(value, list):
            value = f"{value[0]}..{value[1]}"
        elif isinstance(value, float):
            value = f"{value:.6g}"
        lines.append(f"{label:<26} {value} {unit}".rstrip())
    for key, label in (
        ("frame_rate_source", "frame rate from"),
        ("frame_spacing_source", "frame spacing from"),
        ("resampling", "resampled"),
    ):
        if report[key]:
            lines.append(f"{label:<26} {report[key]}")
    if report["dicom_attributes"]:
        lines.append("DICOM attributes used:")
        for row in report["dicom_attributes"]:
            lines.append(f"  {row['keyword']:<34} {row['tag']}  {row['value']}")
    for warning in report["dicom_warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = describe(read_pullback(args.file), args.file, sniff_format(args.file))
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0
