"""The native pullback container: HDF5 (``.oct.h5``) with frames, geometry and ground truth.

Why HDF5: frames are chunked one per chunk, so a training loader or a replay reads any frame
without decompressing the rest (npz cannot); ground-truth label maps compress well with gzip;
the format is self-describing and readable from C, MATLAB and Python alike; h5py is a light
wheel. Layout (format version 1)::

    /                 attrs: format="octguide-pullback", format_version, pullback_id,
                             frame_rate_hz, attributes (JSON)
    /geometry         attrs: every FrameGeometry field
    /frames           (N, A, S) stored samples, chunked (1, A, S), gzip
    /z_offset_px      (N,) int32      /seam_index (N,) int32      /frame_spacing_mm (N,) float64
    /truth            (phantom only) attrs: guidance (JSON), scenario (JSON)
    /truth/lumen_radius_mm, /truth/eel_radius_mm, /truth/eel_radius_full_mm   (N, A) float64
    /truth/labels     (N, A, S) uint8 Label map      /truth/shadow (N, A, S) bool
    /truth/records    (N,) JSON strings, one frames.jsonl-shaped object per frame
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

import h5py
import numpy as np

from streams.errors import (
    InconsistentDimensionsError,
    MissingAttributeError,
    NotIVOCTError,
    PullbackFileError,
    TruncatedFileError,
)
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale
from streams.pullback import Pullback
from streams.truth import FrameTruth, PullbackTruth

FORMAT = "octguide-pullback"
FORMAT_VERSION = 1
_PER_FRAME = ("z_offset_px", "seam_index", "frame_spacing_mm")
_TRUTH_ARRAYS = ("lumen_radius_mm", "eel_radius_mm", "eel_radius_full_mm", "labels", "shadow")


def write_native(pullback: Pullback, path: str | os.PathLike) -> None:
    """Write ``pullback`` (and its truth, if any) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["pullback_id"] = pullback.pullback_id
            f.attrs["frame_rate_hz"] = float(pullback.frame_rate_hz)
            f.attrs["attributes"] = json.dumps(pullback.attributes)
            geometry = f.create_group("geometry")
            for key, value in asdict(pullback.geometry).items():
                if key == "intensity_scale":
                    if value is not None:  # stored as JSON: {db_per_count, offset_db, source}
                        geometry.attrs[key] = json.dumps(value)
                    continue
                geometry.attrs[key] = value
            _frames_dataset(f, "frames", pullback.frames)
            for name in _PER_FRAME:
                f.create_dataset(name, data=getattr(pullback, name))
            if pullback.truth is not None:
                _write_truth(f.create_group("truth"), pullback.truth)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _frames_dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    group.create_dataset(
        name, data=data, chunks=(1, *data.shape[1:]), compression="gzip", compression_opts=1, shuffle=True
    )


def _write_truth(group: h5py.Group, truth: PullbackTruth) -> None:
    group.attrs["guidance"] = json.dumps(truth.guidance)
    group.attrs["scenario"] = json.dumps(truth.scenario)
    for name in _TRUTH_ARRAYS:
        stacked = np.stack([getattr(t, name) for t in truth.frames])
        if stacked.ndim == 3:
            _frames_dataset(group, name, stacked)
        else:
            group.create_dataset(name, data=stacked)
    records = [json.dumps(t.record, separators=(",", ":")) for t in truth.frames]
    group.create_dataset("records", data=np.array(records, dtype=h5py.string_dtype()))


def read_native(path: str | os.PathLike, load_truth: bool = True) -> Pullback:
    """Read a native pullback file; raises a typed :class:`PullbackFileError` on bad input."""
    path = Path(path)
    if not path.is_file():
        raise PullbackFileError(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        if h5py.is_hdf5(path):
            raise TruncatedFileError(path, f"HDF5 file is damaged or truncated ({exc})") from exc
        raise NotIVOCTError(path, "not an HDF5 octguide pullback") from exc
    try:
        with f:
            return _read(path, f, load_truth)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, PullbackFileError):
            raise
        raise TruncatedFileError(path, f"could not read pullback data ({exc})") from exc


def _read(path: Path, f: h5py.File, load_truth: bool) -> Pullback:
    if f.attrs.get("format") != FORMAT:
        raise NotIVOCTError(path, f"not an octguide pullback (format={f.attrs.get('format')!r})", "format")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise PullbackFileError(path, f"format version {version} is not supported (expected {FORMAT_VERSION})", "format_version")
    for name in ("geometry", "frames", *_PER_FRAME):
        if name not in f:
            raise MissingAttributeError(path, "required dataset is missing", name)
    g = f["geometry"].attrs
    kwargs = {}
    for fld in fields(FrameGeometry):
        if fld.name == "intensity_scale":
            if fld.name in g:
                try:
                    kwargs[fld.name] = IntensityScale(**json.loads(g[fld.name]))
                except (TypeError, ValueError) as exc:
                    raise PullbackFileError(path, f"unreadable intensity scale: {exc}", "geometry/intensity_scale") from exc
            continue
        if fld.name not in g:
            raise MissingAttributeError(path, "required geometry attribute is missing", f"geometry/{fld.name}")
        value = g[fld.name]
        kwargs[fld.name] = value.item() if isinstance(value, np.generic) else value
    kwargs["refractive_index_applied"] = bool(kwargs["refractive_index_applied"])
    geometry = FrameGeometry(**kwargs)
    frames_ds = f["frames"]
    if frames_ds.ndim != 3 or frames_ds.shape[1:] != (geometry.n_alines, geometry.n_samples):
        raise InconsistentDimensionsError(
            path, f"frames are {frames_ds.shape} but geometry says (N, {geometry.n_alines}, {geometry.n_samples})", "frames"
        )
    per_frame = {name: f[name][()] for name in _PER_FRAME}
    for name, values in per_frame.items():
        if values.shape != (frames_ds.shape[0],):
            raise InconsistentDimensionsError(path, f"{values.shape[0]} entries for {frames_ds.shape[0]} frames", name)
    truth = _read_truth(path, f["truth"]) if load_truth and "truth" in f else None
    return Pullback(
        frames=frames_ds[()],
        geometry=geometry,
        frame_rate_hz=float(f.attrs["frame_rate_hz"]),
        pullback_id=str(f.attrs["pullback_id"]),
        attributes=json.loads(f.attrs.get("attributes", "{}")),
        truth=truth,
        **per_frame,
    )


def _read_truth(path: Path, group: h5py.Group) -> PullbackTruth:
    for name in (*_TRUTH_ARRAYS, "records"):
        if name not in group:
            raise MissingAttributeError(path, "ground-truth dataset is missing", f"truth/{name}")
    arrays = {name: group[name][()] for name in _TRUTH_ARRAYS}
    records = [json.loads(r) for r in group["records"].asstr()[()]]
    frames = [
        FrameTruth(record=records[i], **{name: arrays[name][i] for name in _TRUTH_ARRAYS})
        for i in range(len(records))
    ]
    return PullbackTruth(
        frames=frames, guidance=json.loads(group.attrs["guidance"]), scenario=json.loads(group.attrs["scenario"])
    )
