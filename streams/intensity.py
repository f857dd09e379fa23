"""What a stored sample value means in decibels: the pullback's intensity scale.

Consoles store log-compressed (LOG) or linear (LIN) A-line intensity on scales of their own
(DOMAIN.md section 8). An :class:`IntensityScale` says how a stored value ``v`` maps to signal
level in dB (an arbitrary but fixed reference), so that every later stage can work relative to
each frame's own noise floor instead of to absolute grey levels:

* LOG: ``dB = offset_db + db_per_count * v`` (log compression is affine in dB);
* LIN: ``dB = offset_db + 10 * log10(v)`` (``db_per_count`` unused).

Where it comes from (``source``): ``"dicom-lut"`` (fitted to the file's Pixel Intensity
Relationship LUT, TO_LINEAR), ``"header"`` (a console's frame header states its dynamic range),
``"linear"`` (LIN data: the scale is known up to the offset), or ``"assumed"`` (LOG data that
states nothing: the full uint16 range is taken as :data:`ASSUMED_LOG_RANGE_DB`; the analysis
reports frames on an assumed scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.errors import GeometryError

SOURCES = ("dicom-lut", "header", "linear", "assumed")
#: dB spanned by the full stored range of LOG data that states no scale (octguide's own phantom
#: writes its files with a LUT of this range).
ASSUMED_LOG_RANGE_DB = 48.0


@dataclass(frozen=True)
class IntensityScale:
    """Stored value to dB (see the module docstring).

    Attributes
    ----------
    db_per_count : float
        LOG only: dB per stored count (> 0). ``range_db / full_scale`` for a LUT spanning
        ``range_db`` over ``0..full_scale``.
    offset_db : float
        dB of stored value 0 (LOG) or of stored value 1 (LIN); arbitrary reference.
    source : str
        One of :data:`SOURCES`.

    >>> s = IntensityScale.log_range(48.0, 65535)
    >>> round(float(s.to_db(np.array([0, 65535]))[1]), 3)
    48.0
    """

    db_per_count: float
    offset_db: float = 0.0
    source: str = "assumed"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.db_per_count) and self.db_per_count > 0):
            raise GeometryError(f"db_per_count={self.db_per_count} must be positive and finite")
        if not np.isfinite(self.offset_db):
            raise GeometryError(f"offset_db={self.offset_db} must be finite")
        if self.source not in SOURCES:
            raise GeometryError(f"intensity scale source {self.source!r} is not one of {SOURCES}")

    @classmethod
    def log_range(cls, range_db: float, full_scale: float, source: str = "assumed",
                  offset_db: float = 0.0) -> "IntensityScale":
        """LOG data whose stored ``0..full_scale`` spans ``range_db`` dB."""
        if not (np.isfinite(range_db) and 1.0 <= range_db <= 200.0):
            raise GeometryError(f"dynamic range {range_db} dB is outside 1..200 dB")
        return cls(float(range_db) / float(full_scale), offset_db, source)

    def to_db(self, stored: np.ndarray, intensity: str = "LOG") -> np.ndarray:
        """dB of stored values (float64); LIN values <= 0 map to -inf."""
        v = np.asarray(stored, dtype=np.float64)
        if intensity == "LOG":
            return self.offset_db + self.db_per_count * v
        with np.errstate(divide="ignore"):
            return self.offset_db + 10.0 * np.log10(v)


__all__ = ["ASSUMED_LOG_RANGE_DB", "IntensityScale", "SOURCES"]
