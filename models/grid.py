"""The model's input contract: its polar grid and how stored intensities map to [0, 1].

These two value types are what a trained model was trained on and what its manifest records;
:mod:`engine.compute.preprocess` implements the mapping and the resampling onto the grid.

Two intensity mappings (:attr:`IntensityMapping.mode`):

* ``"noise-floor-db"`` (octseg 2.x): stored values go to dB through the frame's
  :class:`~streams.intensity.IntensityScale` (:func:`resolve_scale`: the scale the frame states,
  else the assumed one), the frame's noise floor is estimated in dB
  (:func:`estimate_noise_floor_db`), and the model sees ``(dB - floor) / span_db`` clipped to
  [0, 1]. Two files of the same tissue stored with different dynamic ranges, offsets or full
  scales give the same input (up to quantisation and clipping), and so do two systems whose
  noise floors differ by a constant gain.
* ``"window"`` (octseg 1.x): stored value / full scale (LOG) or a fixed dB window (LIN), then a
  display window; kept so that 1.x manifests still load and run as they were trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.errors import GeometryError
from streams.intensity import ASSUMED_LOG_RANGE_DB, IntensityScale

MAPPING_MODES = ("window", "noise-floor-db")
NOISE_FLOOR_DEPTH_FRACTION = 0.2
"""The noise floor is estimated on the deepest 20% of each A-line's stored samples."""
NOISE_FLOOR_MAX_ROWS = 128
"""At most this many A-lines (evenly spaced) enter the noise-floor estimate."""


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
    mode : str
        ``"window"`` (the fields above; octseg 1.x) or ``"noise-floor-db"`` (module docstring;
        ``full_scale``, ``dynamic_range_db``, ``low`` and ``high`` are then unused).
    span_db : float
        ``"noise-floor-db"``: dB above the frame's noise floor that map to 1 (10..120 dB).
    """

    full_scale: float | None = None
    dynamic_range_db: float = 50.0
    low: float = 0.0
    high: float = 1.0
    mode: str = "window"
    span_db: float = 60.0

    def __post_init__(self) -> None:
        if self.mode not in MAPPING_MODES:
            raise GeometryError(f"intensity mapping mode {self.mode!r} is not one of {MAPPING_MODES}")
        if not (np.isfinite(self.span_db) and 10.0 <= self.span_db <= 120.0):
            raise GeometryError(f"span_db={self.span_db} is outside 10..120 dB")
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


#: The octseg 2.x mapping: dB above the frame's noise floor over a fixed 60 dB span.
NOISE_FLOOR_MAPPING = IntensityMapping(mode="noise-floor-db", span_db=60.0)


def resolve_scale(scale: IntensityScale | None, intensity: str, dtype: np.dtype) -> IntensityScale:
    """The scale a frame states, or the assumed one where it states none.

    LOG: the full stored range (65535 for uint16, 255 for uint8, 1.0 for floats) spans
    :data:`~streams.intensity.ASSUMED_LOG_RANGE_DB` dB (source ``"assumed"``). LIN: ``10 log10(v)``
    with offset 0 (source ``"linear"``: known up to the offset, which the noise floor removes).

    >>> resolve_scale(None, "LOG", np.dtype(np.uint16)).source
    'assumed'
    """
    if scale is not None:
        return scale
    if intensity == "LIN":
        return IntensityScale(1.0, 0.0, "linear")
    dtype = np.dtype(dtype)
    full = float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0
    return IntensityScale.log_range(ASSUMED_LOG_RANGE_DB, full, "assumed")


def noise_floor_sample(pixels: np.ndarray, fraction: float = NOISE_FLOOR_DEPTH_FRACTION,
                       max_rows: int = NOISE_FLOOR_MAX_ROWS):
    """The stored value at the noise floor: the median of the deepest samples.

    ``pixels`` is ``(A_valid, n_samples)`` (NumPy or CuPy). Takes the deepest ``fraction`` of the
    samples of at most ``max_rows`` evenly spaced A-lines and returns their median as one stored
    value (the lower middle element, so that it commutes with any increasing stored-to-dB map).
    Beyond the tissue's penetration (about 1.5-2 mm) the deepest samples hold noise only; the
    median ignores the minority that still holds signal (a wall close to the far edge, a bright
    reflector) and clipping at the stored minimum (then the floor is the stored minimum's dB).
    """
    rows, cols = pixels.shape
    step = max(1, rows // max_rows)
    first = min(cols - 1, int(cols * (1.0 - fraction)))
    deep = pixels[::step, first:].ravel()
    xp = np if isinstance(pixels, np.ndarray) else __import__("cupy")
    k = (deep.size - 1) // 2
    return xp.partition(deep, k)[k]


def estimate_noise_floor_db(pixels: np.ndarray, intensity: str, scale: IntensityScale) -> float:
    """The frame's noise floor in dB on ``scale`` (:func:`noise_floor_sample` mapped to dB).

    LIN frames whose floor sample is 0 (no signal recorded) take the floor at the smallest
    positive stored value's dB, or at the scale's offset where no value is positive.
    """
    value = float(noise_floor_sample(np.asarray(pixels)))
    if intensity == "LIN" and value <= 0.0:
        positive = np.asarray(pixels)[np.asarray(pixels) > 0]
        value = float(positive.min()) if positive.size else 1.0
    return float(scale.to_db(np.array([value]), intensity)[0])


def floor_relative_reference(pixels: np.ndarray, intensity: str, scale: IntensityScale,
                             mapping: IntensityMapping, floor_db: float | None = None
                             ) -> tuple[np.ndarray, float]:
    """Float64 reference of the ``"noise-floor-db"`` mapping: ``(values in [0, 1], floor dB)``.

    >>> s = IntensityScale.log_range(60.0, 60000, "header", offset_db=-50.0)
    >>> px = np.full((4, 10), 10000, np.uint16); px[:, 5] = 40000
    >>> y, floor = floor_relative_reference(px, "LOG", s, NOISE_FLOOR_MAPPING)
    >>> round(floor, 3), y[0, 4:6].round(3).tolist()
    (-40.0, [0.0, 0.5])
    """
    if intensity not in ("LOG", "LIN"):
        raise GeometryError(f"intensity={intensity!r} is not LOG or LIN")
    floor = estimate_noise_floor_db(pixels, intensity, scale) if floor_db is None else floor_db
    db = scale.to_db(pixels, intensity)
    y = (db - floor) / mapping.span_db
    return np.nan_to_num(np.clip(y, 0.0, 1.0), nan=0.0), floor


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
