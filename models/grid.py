"""The model's input contract: its polar grid and how stored intensities map to [0, 1].

These two value types are what a trained model was trained on and what its manifest records;
:mod:`engine.compute.preprocess` implements the mapping and the resampling onto the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.errors import GeometryError


@dataclass(frozen=True)
class IntensityMapping:
    """How stored values become normalised float32 in [0, 1].

    Attributes
    ----------
    full_scale : float or None
        Stored value mapped to 1.0 (LOG) or to 0 dB (LIN). None: the dtype's maximum for
        unsigned integers (65535 for uint16), 1.0 for floats.
    dynamic_range_db : float
        LIN only: dB below full scale that map to 0 (10..120 dB).
    low, high : float
        Window on the normalised value, applied last: ``low`` -> 0, ``high`` -> 1.
    """

    full_scale: float | None = None
    dynamic_range_db: float = 50.0
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.full_scale is not None and not (np.isfinite(self.full_scale) and self.full_scale > 0):
            raise GeometryError(f"full_scale={self.full_scale} must be positive")
        if not (np.isfinite(self.dynamic_range_db) and 10.0 <= self.dynamic_range_db <= 120.0):
            raise GeometryError(f"dynamic_range_db={self.dynamic_range_db} is outside 10..120 dB")
        if not (0.0 <= self.low < self.high <= 1.0):
            raise GeometryError(f"window low={self.low}, high={self.high} must satisfy 0 <= low < high <= 1")

    def scale_for(self, dtype: np.dtype) -> float:
        """The full scale used for frames of ``dtype``."""
        if self.full_scale is not None:
            return float(self.full_scale)
        dtype = np.dtype(dtype)
        return float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0


def normalise_reference(pixels: np.ndarray, intensity: str, mapping: IntensityMapping) -> np.ndarray:
    """Float64 reference of the normalisation (see the module docstring).

    >>> normalise_reference(np.array([0, 32768, 65535], np.uint16), "LOG", IntensityMapping()).round(4)
    array([0. , 0.5, 1. ])
    >>> normalise_reference(np.array([65535, 6553, 1], np.uint16), "LIN",
    ...                     IntensityMapping(dynamic_range_db=40.0)).round(3)
    array([1.  , 0.75, 0.  ])
    """
    if intensity not in ("LOG", "LIN"):
        raise GeometryError(f"intensity={intensity!r} is not LOG or LIN")
    x = np.asarray(pixels, dtype=np.float64)
    full_scale = mapping.scale_for(np.asarray(pixels).dtype)
    if intensity == "LOG":
        y = x / full_scale
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(x > 0, 1.0 + 10.0 * np.log10(np.maximum(x, 1e-300) / full_scale)
                         / mapping.dynamic_range_db, 0.0)
    return np.clip((y - mapping.low) / (mapping.high - mapping.low), 0.0, 1.0)


@dataclass(frozen=True)
class ModelGrid:
    """The model's polar input grid.

    Attributes
    ----------
    n_alines : int
        Model A-lines over 360 degrees (64..4096), K.
    n_depth : int
        Samples along each model A-line (64..4096), J.
    depth_mm : float
        Radius covered from the catheter centre, mm (0.5..20).

    >>> ModelGrid(512, 512, 5.12).depth_step_mm
    0.01
    """

    n_alines: int = 512
    n_depth: int = 512
    depth_mm: float = 5.0

    def __post_init__(self) -> None:
        for name in ("n_alines", "n_depth"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and 64 <= value <= 4096):
                raise GeometryError(f"{name}={value} must be an integer in 64..4096")
        if not (np.isfinite(self.depth_mm) and 0.5 <= self.depth_mm <= 20.0):
            raise GeometryError(f"depth_mm={self.depth_mm} is outside 0.5..20 mm")

    @property
    def depth_step_mm(self) -> float:
        """Radial size of one model sample, mm."""
        return self.depth_mm / self.n_depth

    def radius_mm(self, sample: np.ndarray | float) -> np.ndarray:
        """Radius (mm from the catheter centre) of model depth sample(s)."""
        return np.asarray(sample, dtype=np.float64) * self.depth_step_mm

    def angle_rad(self, aline: np.ndarray | float) -> np.ndarray:
        """Polar angle (stored-order convention) of model A-line(s), radians."""
        return 2.0 * np.pi * np.asarray(aline, dtype=np.float64) / self.n_alines
