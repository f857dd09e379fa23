"""A pullback file read in bounded batches of frames, so that a read task never holds a whole
pullback (a 540-frame For Processing pullback is ~0.5 GB of samples).

Everything but the samples comes from :mod:`streams.files`' own readers (every check they make,
the per-frame geometry, positions and timestamps); only the samples are read batch by batch:

- native ``.oct.h5``: the frames dataset is chunked one frame per chunk, so a slice of it
  decompresses only the chunks of that batch;
- DICOM IVOCT: Pixel Data is native (uncompressed) pixel data at a known offset, memory-mapped
  so a batch pages in only its frames. For Presentation files (display images) are resampled to
  polar by the reader as a whole; they are read whole.

The readers are reached through two private hooks of :mod:`streams.files` (the native reader's
``_read`` on a file whose frames dataset is shape-only, and the DICOM reader's ``_read_pixels``
swapped for a memory map under a lock); ``tests/engine/fleet/test_frames.py`` checks that every
frame equals :func:`streams.files.io.read_pullback`'s, so a change there fails a test. A lazy
``read_pullback`` in ``streams`` would retire both hooks.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from streams.errors import OctguideError, PullbackFileError
from streams.files import dicom as dicom_files
from streams.files.io import SUPPORTED_SAMPLE_DTYPES, read_pullback, sniff_format
from streams.pullback import Frame, Pullback

DEFAULT_BATCH_FRAMES = 8  #: frames a read task decodes at a time (~8 MB at 504 x 976 uint16)
_DICOM_HOOK = threading.Lock()  # the DICOM reader's pixel hook is module state: one reader at a time


class BatchedReadError(OctguideError):
    """The batched reader failed on a file the whole-file reader reads (a reader bug, counted
    as that file's failure with this reason)."""


class _ShapeOnlyFrames:
    """The native frames dataset as the streams reader sees it: its shape and dtype, and for
    ``[()]`` an array of that shape that holds one sample (a zero-stride broadcast)."""

    def __init__(self, dataset: Any):
        self.shape, self.ndim, self.dtype = tuple(dataset.shape), dataset.ndim, dataset.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        if key != ():
            raise TypeError("the shape-only frames dataset is read whole only")
        return np.broadcast_to(np.zeros((), dtype=self.dtype), self.shape)


class _PixelFreeFile:
    """An open HDF5 pullback whose ``frames`` dataset is shape-only; everything else as is."""

    def __init__(self, handle: Any):
        self._handle = handle
        self.attrs = handle.attrs

    def __contains__(self, name: str) -> bool:
        return name in self._handle

    def __getitem__(self, name: str) -> Any:
        item = self._handle[name]
        return _ShapeOnlyFrames(item) if name == "frames" else item


@contextmanager
def _memory_mapped_dicom_pixels() -> Iterator[None]:
    """While held, the DICOM reader maps Pixel Data (read-only) instead of reading it."""
    original = dicom_files._read_pixels

    def mapped(fields: Any, element: Any, n_frames: int, rows: int, columns: int) -> np.ndarray:
        dtype = dicom_files._pixel_format(fields)
        expected = n_frames * rows * columns * dtype.itemsize
        if element.length not in (expected, expected + expected % 2) or dtype.byteorder == ">":
            return original(fields, element, n_frames, rows, columns)  # its own checks and errors
        return np.memmap(fields.path, dtype=dtype, mode="r", offset=element.value_tell,
                         shape=(n_frames, rows, columns))

    with _DICOM_HOOK:
        dicom_files._read_pixels = mapped
        try:
            yield
        finally:
            dicom_files._read_pixels = original


class FrameBatches:
    """One pullback file, its frames in order in batches of at most ``batch_frames``.

    Parameters
    ----------
    path : str or path-like
        A DICOM IVOCT or native ``.oct.h5`` pullback.
    batch_frames : int
        Frames decoded at a time (>= 1).
    pullback_id : str, optional
        The frames' pullback id (default: the file's).

    Raises
    ------
    PullbackFileError
        The file is not a readable pullback (the streams reader's typed error and reason).
    BatchedReadError
        The batched reader failed where the whole-file reader did not.
    """

    def __init__(self, path: str | Path, batch_frames: int = DEFAULT_BATCH_FRAMES,
                 pullback_id: str | None = None):
        if batch_frames < 1:
            raise ValueError(f"batch_frames={batch_frames} must be at least 1")
        self.path, self.batch_frames = Path(path), int(batch_frames)
        self._handle = None
        try:
            self.meta = self._open()
        except Exception as exc:
            self.close()
            read_pullback(self.path)  # raises the typed PullbackFileError of a bad file
            raise BatchedReadError(f"{self.path}: batched read failed ({type(exc).__name__}: {exc})") from exc
        self.pullback_id = pullback_id or self.meta.pullback_id
        if np.dtype(self.meta.frames.dtype).newbyteorder("=") not in SUPPORTED_SAMPLE_DTYPES:
            self.close()
            read_pullback(self.path)  # the same check, the same message
            raise PullbackFileError(self.path, f"frames are {self.meta.frames.dtype}")

    def _open(self) -> Pullback:
        if sniff_format(self.path) == "dicom":
            with _memory_mapped_dicom_pixels():
                return dicom_files.read_dicom(self.path)
        import h5py

        from streams.files import native

        self._handle = h5py.File(self.path, "r")
        return native._read(self.path, _PixelFreeFile(self._handle), load_truth=False)

    def __len__(self) -> int:
        return len(self.meta)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _samples(self, start: int, stop: int) -> np.ndarray:
        if self._handle is not None:
            return self._handle["frames"][start:stop]
        return np.array(self.meta.frames[start:stop])

    def batches(self) -> Iterator[list[Frame]]:
        """The frames, in order, ``batch_frames`` at a time (the last batch may be shorter)."""
        for start in range(0, len(self), self.batch_frames):
            stop = min(start + self.batch_frames, len(self))
            samples = self._samples(start, stop)
            samples.flags.writeable = False
            yield [dataclasses.replace(self.meta.frame(i), pixels=samples[i - start],
                                       pullback_id=self.pullback_id) for i in range(start, stop)]
