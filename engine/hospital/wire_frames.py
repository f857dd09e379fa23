"""The frames a wire pullback's key images can be made of, kept while it streams in.

A pullback that arrives over ZeroMQ leaves no DICOM instance and no file: once analysed, its
pixels are gone, and the key frames (MLA; post-PCI MSA and worst malapposition,
:func:`engine.hospital.key_images.key_frames`) are known only when it completes. The
:class:`KeyFrameKeeper` is offered every analysed frame with its record and keeps, per criterion,
the ``depth`` best candidates so far (smallest lumen area of a measured frame, smallest stent
area, farthest malapposed strut): at most ``3 * depth`` frames, whatever the pullback's length,
copied so a receive buffer can be reused. At completion, :meth:`KeyFrameKeeper.kept` is what
:func:`engine.hospital.export.write_pullback_dicom` takes as its source; a key frame the keeper
did not keep (the pullback-level rule chose a frame outside the candidates) is left out of the
key images, never replaced by another frame.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from collections.abc import Iterator

import numpy as np

from streams.geometry import FrameGeometry
from streams.pullback import Frame, FrameSource


class KeptFrames(FrameSource):
    """A read-only :class:`FrameSource` over the frames a keeper kept: ``len`` is the pullback's
    frame count, :meth:`frame` answers only for kept indices (``in`` says which)."""

    def __init__(self, pullback_id: str, geometry: FrameGeometry, n_frames: int,
                 frames: dict[int, Frame]):
        self.pullback_id = pullback_id
        self.geometry = geometry
        self._n_frames = n_frames
        self._frames = dict(frames)

    def __len__(self) -> int:
        return self._n_frames

    def __contains__(self, index: object) -> bool:
        return index in self._frames

    def frame(self, index: int) -> Frame:
        try:
            return self._frames[index]
        except KeyError:
            raise KeyError(f"frame {index} of {self.pullback_id} was not kept for key images") from None

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._frames[i] for i in sorted(self._frames))

    def indices(self) -> list[int]:
        return sorted(self._frames)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def _criteria(record: dict) -> dict[str, float]:
    """Each criterion's score for this frame (lower is a better candidate); absent: no candidate."""
    scores: dict[str, float] = {}
    if record.get("status") == "ok":
        area = _number((record.get("lumen") or {}).get("area_mm2"))
        if area is not None:
            scores["lumen_area"] = area
        stent = _number((record.get("stent") or {}).get("area_mm2"))
        if stent is not None:
            scores["stent_area"] = stent
    distances = [_number(s.get("distance_to_lumen_um")) for s in record.get("struts") or ()
                 if isinstance(s, dict) and s.get("malapposed") is True]
    distances = [d for d in distances if d is not None]
    if distances:
        scores["malapposition"] = -max(distances)
    return scores


class KeyFrameKeeper:
    """Keeps the key-frame candidates of one wire pullback (module docstring).

    Parameters
    ----------
    pullback_id : str
        The wire pullback id (the key images' study and series UIDs derive from it).
    depth : int
        Candidates kept per criterion.

    Thread-safe: :meth:`offer` may be called from analysis workers, :meth:`kept` from another.
    """

    CRITERIA = ("lumen_area", "stent_area", "malapposition")

    def __init__(self, pullback_id: str, depth: int = 3):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.pullback_id = pullback_id
        self.depth = depth
        self._geometry: FrameGeometry | None = None
        self._best: dict[str, list[tuple[float, int]]] = {c: [] for c in self.CRITERIA}  # max-heaps
        self._frames: dict[int, Frame] = {}
        self._max_index = -1
        self._lock = threading.Lock()

    def offer(self, frame: Frame, record: dict) -> bool:
        """Consider one analysed frame; True when it is kept (a copy of its pixels)."""
        scores = _criteria(record)
        with self._lock:
            self._geometry = self._geometry or frame.geometry
            self._max_index = max(self._max_index, frame.index)
            taken = False
            for criterion, score in scores.items():
                heap = self._best[criterion]
                if len(heap) < self.depth:
                    heapq.heappush(heap, (-score, frame.index))
                    taken = True
                elif -heap[0][0] > score:
                    heapq.heapreplace(heap, (-score, frame.index))
                    taken = True
            if taken and frame.index not in self._frames:
                self._frames[frame.index] = dataclasses.replace(
                    frame, pixels=np.array(frame.pixels, copy=True))
            self._drop_unused()
            return frame.index in self._frames

    def _drop_unused(self) -> None:
        wanted = {index for heap in self._best.values() for _, index in heap}
        for index in [i for i in self._frames if i not in wanted]:
            del self._frames[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def kept(self, n_frames: int | None = None) -> KeptFrames | None:
        """The kept frames as a source for the key images (None when nothing was offered)."""
        with self._lock:
            if self._geometry is None:
                return None
            return KeptFrames(self.pullback_id, self._geometry,
                              max(n_frames or 0, self._max_index + 1), self._frames)
