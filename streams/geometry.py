"""IVOCT frame geometry: how a stored polar sample maps to physical space.

Geometry used throughout octguide (DICOM PS3.3 C.8.27, PS3.17 Annex EEE): a stored sample column
``c`` on a frame with OCT Z Offset Correction ``z`` lies at radius ``(c + z) * s`` mm from the
catheter centre, where ``s = A-line Pixel Spacing / Effective Refractive Index`` unless Refractive
Index Applied is YES (then ``s`` is the A-line Pixel Spacing). Row ``i`` of the ``A`` valid A-lines
lies at angle ``2*pi*i/A`` in stored order; padded A-lines are stored after the valid ones and
carry no image data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from streams.errors import GeometryError
from streams.intensity import IntensityScale

ROTATIONS = ("CW", "CC")
INTENSITY_RELATIONSHIPS = ("LOG", "LIN")


@dataclass(frozen=True)
class FrameGeometry:
    """Geometry shared by every frame of a pullback.

    Attributes
    ----------
    n_alines : int
        A-lines per frame as stored (DICOM A-lines Per Frame = Rows), padded A-lines included.
    n_samples : int
        Samples per A-line (DICOM Columns).
    aline_spacing_mm : float
        A-line Pixel Spacing (0052,0014), mm per sample along the A-line.
    refractive_index : float
        Effective Refractive Index (0052,0004) of the flush/tissue medium.
    refractive_index_applied : bool
        Refractive Index Applied (0052,003A): True when ``aline_spacing_mm`` already is tissue mm.
    n_padded_alines : int
        Number of Padded A-lines (0052,0038) stored at the end of each frame.
    rotation : str
        Catheter Direction of Rotation (0052,0031): "CW" or "CC".
    intensity : str
        Pixel Intensity Relationship (0028,1040): "LOG" or "LIN".
    intensity_scale : IntensityScale or None
        How stored values map to dB (:mod:`streams.intensity`): from the file's Pixel Intensity
        Relationship LUT or the console's header; None where the source states none.
    """

    n_alines: int
    n_samples: int
    aline_spacing_mm: float
    refractive_index: float = 1.0
    refractive_index_applied: bool = False
    n_padded_alines: int = 0
    rotation: str = "CW"
    intensity: str = "LOG"
    intensity_scale: IntensityScale | None = None

    def __post_init__(self) -> None:
        if not 16 <= self.n_alines <= 8192:
            raise GeometryError(f"n_alines={self.n_alines} is outside 16..8192")
        if not 16 <= self.n_samples <= 16384:
            raise GeometryError(f"n_samples={self.n_samples} is outside 16..16384")
        if not 0 <= self.n_padded_alines < self.n_alines:
            raise GeometryError(
                f"n_padded_alines={self.n_padded_alines} must be in 0..n_alines-1 ({self.n_alines - 1})"
            )
        if not (np.isfinite(self.aline_spacing_mm) and 1e-4 <= self.aline_spacing_mm <= 0.1):
            raise GeometryError(f"aline_spacing_mm={self.aline_spacing_mm} is outside 0.0001..0.1 mm")
        if not (np.isfinite(self.refractive_index) and 1.0 <= self.refractive_index <= 2.0):
            raise GeometryError(f"refractive_index={self.refractive_index} is outside 1.0..2.0")
        if self.rotation not in ROTATIONS:
            raise GeometryError(f"rotation={self.rotation!r} is not one of {ROTATIONS}")
        if self.intensity not in INTENSITY_RELATIONSHIPS:
            raise GeometryError(f"intensity={self.intensity!r} is not one of {INTENSITY_RELATIONSHIPS}")

    @property
    def n_valid_alines(self) -> int:
        """A-lines that carry image data (stored rows minus padded rows)."""
        return self.n_alines - self.n_padded_alines

    @property
    def sample_spacing_mm(self) -> float:
        """Physical (tissue) mm per sample along an A-line: ``s`` in the module docstring."""
        if self.refractive_index_applied:
            return self.aline_spacing_mm
        return self.aline_spacing_mm / self.refractive_index

    @property
    def ranging_depth_mm(self) -> float:
        """Ranging Depth (0052,0009): mm in air covered by one A-line."""
        air_spacing = (
            self.aline_spacing_mm * self.refractive_index
            if self.refractive_index_applied
            else self.aline_spacing_mm
        )
        return self.n_samples * air_spacing

    def radius_mm(self, column: np.ndarray | float, z_offset_px: float = 0.0) -> np.ndarray:
        """Radius (mm from the catheter centre) of stored sample column(s) on a frame.

        >>> g = FrameGeometry(n_alines=500, n_samples=1000, aline_spacing_mm=0.0065, refractive_index=1.3)
        >>> round(float(g.radius_mm(100, z_offset_px=20)), 6)
        0.6
        """
        return (np.asarray(column, dtype=np.float64) + z_offset_px) * self.sample_spacing_mm

    def column(self, radius_mm: np.ndarray | float, z_offset_px: float = 0.0) -> np.ndarray:
        """Fractional stored column at a radius (mm); the inverse of :meth:`radius_mm`."""
        return np.asarray(radius_mm, dtype=np.float64) / self.sample_spacing_mm - z_offset_px

    def aline_angles_rad(self) -> np.ndarray:
        """Angle of each valid stored A-line row, ``2*pi*i/A`` (A = valid A-lines), radians."""
        return 2.0 * np.pi * np.arange(self.n_valid_alines) / self.n_valid_alines

    def with_(self, **changes: object) -> "FrameGeometry":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
