"""One pullback and the frame-source interface that replay, training and the engine share.

A :class:`FrameSource` yields :class:`Frame` messages in acquisition order (frame 0 = first
acquired = most distal). :class:`Pullback` is the in-memory source; file readers and the live
ZeroMQ receiver implement the same interface, so every consumer is written once.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.errors import GeometryError
from streams.geometry import FrameGeometry


@dataclass(frozen=True)
class Frame:
    """One polar frame as it travels between stages.

    Attributes
    ----------
    pullback_id : str
        Identifier of the pullback this frame belongs to.
    index : int
        0-based acquisition index (0 = most distal).
    timestamp_s : float
        Acquisition time relative to the pullback start, seconds.
    pixels : numpy.ndarray
        ``(n_alines, n_samples)`` stored polar samples, padded rows included, read-only.
    geometry : FrameGeometry
        Geometry shared by the pullback.
    z_offset_px : int
        OCT Z Offset Correction (0052,0030) of this frame, samples.
    seam_index : int
        Seam Line Index (0052,0036) of this frame.
    position_mm : float
        Longitudinal position from frame 0, mm (increasing proximally).
    """

    pullback_id: str
    index: int
    timestamp_s: float
    pixels: np.ndarray
    geometry: FrameGeometry
    z_offset_px: int = 0
    seam_index: int = 0
    position_mm: float = 0.0

    def radius_mm(self, column: np.ndarray | float) -> np.ndarray:
        """Radius (mm) of stored sample column(s) on this frame, z offset applied."""
        return self.geometry.radius_mm(column, self.z_offset_px)


class FrameSource(abc.ABC):
    """Anything that yields the frames of one pullback in acquisition order."""

    pullback_id: str
    geometry: FrameGeometry

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of frames."""

    @abc.abstractmethod
    def frame(self, index: int) -> Frame:
        """Frame ``index`` (0-based); ``IndexError`` outside ``0..len-1``."""

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self.frame(i)


@dataclass
class Pullback(FrameSource):
    """An in-memory pullback: stored polar frames plus per-frame geometry.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(n_frames, n_alines, n_samples)`` stored samples, uint16 (LOG) or any numeric dtype.
    geometry : FrameGeometry
        Geometry shared by every frame.
    z_offset_px : numpy.ndarray
        ``(n_frames,)`` int, OCT Z Offset Correction per frame.
    seam_index : numpy.ndarray
        ``(n_frames,)`` int, Seam Line Index per frame.
    frame_spacing_mm : numpy.ndarray
        ``(n_frames,)`` float, Intravascular Longitudinal Distance: mm from the previous frame
        (entry 0 is the distance the first frame would have from a previous one).
    frame_rate_hz : float
        Frames per second.
    pullback_id : str
        Identifier used in messages and results.
    truth : object, optional
        :class:`streams.truth.PullbackTruth` for phantom pullbacks, else None.
    attributes : dict
        Free-form provenance (source file, scenario, seed, DICOM UIDs); JSON-serialisable.
    """

    frames: np.ndarray
    geometry: FrameGeometry
    z_offset_px: np.ndarray
    seam_index: np.ndarray
    frame_spacing_mm: np.ndarray
    frame_rate_hz: float
    pullback_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    truth: Any = None
    attributes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        if self.frames.ndim != 3:
            raise GeometryError(f"frames must be (n_frames, n_alines, n_samples), got {self.frames.shape}")
        n, a, s = self.frames.shape
        if (a, s) != (self.geometry.n_alines, self.geometry.n_samples):
            raise GeometryError(
                f"frames are {a} x {s} but the geometry says "
                f"{self.geometry.n_alines} x {self.geometry.n_samples}"
            )
        self.z_offset_px = np.asarray(self.z_offset_px, dtype=np.int32).reshape(-1)
        self.seam_index = np.asarray(self.seam_index, dtype=np.int32).reshape(-1)
        self.frame_spacing_mm = np.asarray(self.frame_spacing_mm, dtype=np.float64).reshape(-1)
        for name in ("z_offset_px", "seam_index", "frame_spacing_mm"):
            if getattr(self, name).shape != (n,):
                raise GeometryError(f"{name} has {getattr(self, name).shape[0]} entries for {n} frames")
        if np.any((self.seam_index < 0) | (self.seam_index >= self.geometry.n_valid_alines)):
            raise GeometryError("seam_index must lie in 0..n_valid_alines-1")
        if not (np.isfinite(self.frame_rate_hz) and self.frame_rate_hz > 0):
            raise GeometryError(f"frame_rate_hz={self.frame_rate_hz} must be positive")

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def positions_mm(self) -> np.ndarray:
        """Longitudinal position of each frame from frame 0, mm (increasing proximally)."""
        steps = self.frame_spacing_mm.copy()
        steps[0] = 0.0
        return np.cumsum(steps)

    @property
    def pullback_speed_mm_s(self) -> float:
        """Mean pullback speed, mm/s (frame spacing times frame rate)."""
        return float(np.mean(self.frame_spacing_mm) * self.frame_rate_hz)

    def frame(self, index: int) -> Frame:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"frame {index} is outside 0..{n - 1}")
        pixels = self.frames[index]
        pixels = pixels.view()
        pixels.flags.writeable = False
        return Frame(
            pullback_id=self.pullback_id,
            index=int(index),
            timestamp_s=float(index / self.frame_rate_hz),
            pixels=pixels,
            geometry=self.geometry,
            z_offset_px=int(self.z_offset_px[index]),
            seam_index=int(self.seam_index[index]),
            position_mm=float(self.positions_mm[index]),
        )

    def summary(self) -> dict:
        """Geometry and acquisition facts as a JSON-serialisable dict."""
        g = self.geometry
        return {
            "pullback_id": self.pullback_id,
            "n_frames": len(self),
            "n_alines": g.n_alines,
            "n_valid_alines": g.n_valid_alines,
            "n_samples": g.n_samples,
            "dtype": str(self.frames.dtype),
            "aline_spacing_mm": g.aline_spacing_mm,
            "refractive_index": g.refractive_index,
            "refractive_index_applied": g.refractive_index_applied,
            "sample_spacing_mm": g.sample_spacing_mm,
            "ranging_depth_mm": g.ranging_depth_mm,
            "rotation": g.rotation,
            "intensity": g.intensity,
            "frame_rate_hz": self.frame_rate_hz,
            "pullback_speed_mm_s": self.pullback_speed_mm_s,
            "frame_spacing_mm": float(np.mean(self.frame_spacing_mm)),
            "pullback_length_mm": float(self.positions_mm[-1]) if len(self) else 0.0,
            "z_offset_px": [int(self.z_offset_px.min()), int(self.z_offset_px.max())],
            "seam_index": [int(self.seam_index.min()), int(self.seam_index.max())],
        }
