"""Contour geometry of one IVOCT frame in the catheter-centred plane.

Pure, vectorised NumPy functions shared by the phantom's ground truth (computed from its
geometric model) and the engine's measurement stage (computed from segmentation output), so both
measure the same way.

Conventions
-----------
* Plane: ``x = r cos(theta)``, ``y = r sin(theta)`` in mm, the catheter centre at the origin.
* A lumen or EEL contour is a radius per valid A-line row, ``radius_mm[i]`` at angle
  ``angles_rad[i]`` (row ``i`` of ``A`` rows lies at ``2*pi*i/A``); NaN marks an undetermined row
  (guidewire shadow, blood), which :func:`fill_undetermined` bridges before any measurement.
* A polar mask is ``(A, S)`` booleans on the stored grid; ``column_radius_mm[c]`` is the radius
  of stored column ``c`` (``(c + z) * s`` in :mod:`streams.geometry`).
* Measurement rays: ray ``k`` of ``n`` leaves a centre point at angle ``2*pi*k/n``. Every function
  here that casts ``n`` rays uses exactly these angles, so their outputs line up ray by ray.

Arcs are measured about the lumen centroid and thicknesses along rays from it (DOMAIN.md
section 4), which is what :func:`ray_profiles` provides. This module imports nothing from
``streams`` or other ``engine`` modules but its own compiled kernels,
:mod:`engine.clinical.kernels` (NumPy and Numba only), so the phantoms can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from engine.clinical import kernels

__all__ = [
    "Diameters",
    "LabelRays",
    "RayProfiles",
    "arc_deg_of_rows",
    "chord_diameters",
    "circular_runs",
    "diameters_through_centroid",
    "fill_undetermined",
    "polar_to_xy",
    "polygon_area_mm2",
    "polygon_centroid",
    "radii_about_point",
    "ray_angles_rad",
    "ray_profiles",
]

_TWO_PI = 2.0 * np.pi
# Slack, in units of one ray spacing, when deciding which rays a polygon edge spans: a ray that
# passes exactly through a vertex must be tested against both edges that meet there.
_RAY_INDEX_SLACK = 1e-9
# Slack on the edge parameter (0..1) when accepting a ray-edge intersection, for the same reason.
_EDGE_PARAM_SLACK = 1e-9


def _vector(name: str, values: object, min_len: int = 1) -> np.ndarray:
    """``values`` as a 1-D float64 array of at least ``min_len`` elements, else ValueError."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < min_len:
        raise ValueError(
            f"{name} must be 1-D with at least {min_len} elements, got shape {array.shape}"
        )
    return array


def _polygon(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    """Validated vertex arrays of a closed polygon (last vertex joins the first)."""
    xs = _vector("x", x, min_len=3)
    ys = _vector("y", y, min_len=3)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same shape, got {xs.shape} and {ys.shape}")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("polygon vertices must be finite (fill undetermined rows first)")
    return xs, ys


def _ray_count(n_rays: int, even: bool = False) -> int:
    if isinstance(n_rays, bool) or not isinstance(n_rays, (int, np.integer)) or n_rays < 4:
        raise ValueError(f"n_rays must be an integer >= 4, got {n_rays!r}")
    if even and n_rays % 2:
        raise ValueError(f"n_rays must be even so every ray has an opposite ray, got {n_rays}")
    return int(n_rays)


def ray_angles_rad(n_rays: int) -> np.ndarray:
    """Angles of the ``n_rays`` measurement rays, ``2*pi*k/n_rays``.

    Parameters
    ----------
    n_rays : int
        Number of rays (>= 4).

    Returns
    -------
    ndarray, shape (n_rays,), float64
        Ray angles in radians, in ``[0, 2*pi)``.
    """
    n = _ray_count(n_rays)
    return _TWO_PI * np.arange(n) / n


def fill_undetermined(radius_mm: object) -> np.ndarray:
    """Bridge undetermined rows of a contour by periodic linear interpolation.

    Rows holding NaN (or another non-finite value), e.g. inside the guidewire shadow, get the value
    linearly interpolated, by row index, between the nearest determined rows on either side; the
    contour is closed, so a gap that spans the last and first rows is bridged across the wrap.
    Rows are equally spaced in angle, so interpolating by index is interpolating by angle.

    Parameters
    ----------
    radius_mm : array_like, shape (A,)
        Contour radius per A-line row, mm; NaN where undetermined.

    Returns
    -------
    ndarray, shape (A,), float64
        A copy with every row determined (mm).

    Raises
    ------
    ValueError
        If the input is not 1-D or has no determined row at all.

    Examples
    --------
    >>> fill_undetermined([2.0, np.nan, np.nan, 3.5]).tolist()
    [2.0, 2.5, 3.0, 3.5]
    >>> np.round(fill_undetermined([np.nan, 2.0, 5.0, np.nan]), 9).tolist()  # gap across the wrap
    [3.0, 2.0, 5.0, 4.0]
    """
    radius = _vector("radius_mm", radius_mm).copy()
    known = np.isfinite(radius)
    if not known.any():
        raise ValueError("radius_mm has no determined row: cannot fill a contour that is all NaN")
    if known.all():
        return radius
    rows = np.arange(radius.size, dtype=np.float64)
    radius[~known] = np.interp(rows[~known], rows[known], radius[known], period=radius.size)
    return radius


def polar_to_xy(radius_mm: object, angles_rad: object) -> tuple[np.ndarray, np.ndarray]:
    """Catheter-centred Cartesian coordinates of polar points.

    Parameters
    ----------
    radius_mm : array_like, shape (N,)
        Radius of each point from the catheter centre, mm.
    angles_rad : array_like, shape (N,)
        Angle of each point, radians.

    Returns
    -------
    x, y : ndarray, shape (N,), float64
        ``r cos(theta)`` and ``r sin(theta)``, mm.

    Examples
    --------
    >>> x, y = polar_to_xy([1.0, 2.0], [0.0, np.pi / 2])
    >>> np.round(x, 12).tolist(), np.round(y, 12).tolist()
    ([1.0, 0.0], [0.0, 2.0])
    """
    radius = _vector("radius_mm", radius_mm)
    angles = _vector("angles_rad", angles_rad)
    if radius.shape != angles.shape:
        raise ValueError(
            "radius_mm and angles_rad must have the same shape, "
            f"got {radius.shape} and {angles.shape}"
        )
    return radius * np.cos(angles), radius * np.sin(angles)


def polygon_area_mm2(x: object, y: object) -> float:
    """Area enclosed by a closed polygon (shoelace formula).

    Parameters
    ----------
    x, y : array_like, shape (N,), N >= 3
        Vertex coordinates in order around the contour, mm; the last vertex joins the first.

    Returns
    -------
    float
        Enclosed area, mm^2 (positive for either orientation).

    Examples
    --------
    >>> polygon_area_mm2([0.0, 2.0, 2.0, 0.0], [0.0, 0.0, 1.0, 1.0])
    2.0
    """
    xs, ys = _polygon(x, y)
    return abs(kernels.shoelace(xs, ys)[0])


def polygon_centroid(x: object, y: object) -> tuple[float, float]:
    """Area centroid of a closed, non-self-intersecting polygon.

    Parameters
    ----------
    x, y : array_like, shape (N,), N >= 3
        Vertex coordinates in order around the contour, mm.

    Returns
    -------
    cx, cy : float
        Centroid of the enclosed area, mm.

    Raises
    ------
    ValueError
        If the polygon encloses no area.

    Examples
    --------
    >>> polygon_centroid([0.0, 2.0, 2.0, 0.0], [0.0, 0.0, 1.0, 1.0])
    (1.0, 0.5)
    """
    xs, ys = _polygon(x, y)
    area, cx, cy = kernels.shoelace(xs, ys)
    if not abs(area) > 0.0:
        raise ValueError("polygon encloses no area: its centroid is undefined")
    return float(cx), float(cy)


def radii_about_point(x: object, y: object, cx: float, cy: float, n_rays: int) -> np.ndarray:
    """Distance from an interior point to a closed polygon along uniformly spaced rays.

    Ray ``k`` leaves ``(cx, cy)`` at angle ``2*pi*k/n_rays``; its radius is the distance to the
    nearest polygon edge it crosses, so non-star-shaped contours are handled. Each edge is tested
    only against the rays inside the angle it subtends at the point, so the cost is about
    ``O(N + n_rays)`` rather than ``O(N * n_rays)`` (one compiled pass:
    :func:`engine.clinical.kernels.radii_about_point`).

    Parameters
    ----------
    x, y : array_like, shape (N,), N >= 3
        Polygon vertices in order, mm; the last vertex joins the first.
    cx, cy : float
        The point the rays leave from, mm; must lie inside the polygon.
    n_rays : int
        Number of rays (>= 4).

    Returns
    -------
    ndarray, shape (n_rays,), float64
        Distance along each ray to the polygon, mm.

    Raises
    ------
    ValueError
        On bad shapes, non-finite vertices, or a point outside the polygon.

    Examples
    --------
    A 2 x 2 mm square seen from its centre: 1 mm to the sides, sqrt(2) mm to the corners.

    >>> r = radii_about_point([-1.0, 1.0, 1.0, -1.0], [-1.0, -1.0, 1.0, 1.0], 0.0, 0.0, 8)
    >>> np.round(r, 4).tolist()
    [1.0, 1.4142, 1.0, 1.4142, 1.0, 1.4142, 1.0, 1.4142]
    """
    xs, ys = _polygon(x, y)
    n = _ray_count(n_rays)
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise ValueError(f"centre ({cx}, {cy}) must be finite")
    radius, sweep = kernels.radii_about_point(
        xs, ys, float(cx), float(cy), n, _RAY_INDEX_SLACK, _EDGE_PARAM_SLACK
    )
    if abs(sweep) < np.pi:  # winding number 0: the point is outside
        raise ValueError(f"centre ({cx:.4f}, {cy:.4f}) mm lies outside the polygon")
    return radius


class Diameters(NamedTuple):
    """Chord diameters through the area centroid of a contour, mm."""

    min_mm: float
    max_mm: float
    mean_mm: float


def _contour_xy(radius_mm: object, angles_rad: object) -> tuple[np.ndarray, np.ndarray]:
    radius = _vector("radius_mm", radius_mm, min_len=3)
    if not np.all(np.isfinite(radius)):
        raise ValueError("radius_mm has undetermined (NaN) rows: call fill_undetermined first")
    return polar_to_xy(radius, angles_rad)


def diameters_through_centroid(
    radius_mm: object, angles_rad: object, n_rays: int = 360
) -> Diameters:
    """Minimum, maximum and mean diameter of a contour through its area centroid.

    Each diameter is the chord through the area centroid, ``r(phi) + r(phi + pi)`` with ``r``
    from :func:`radii_about_point`, over ``n_rays/2`` equally spaced directions; this is what OCT
    systems report as minimum / maximum / mean lumen diameter. The contour is the polygon through
    the row points, so it may be seen from an eccentric catheter.

    Parameters
    ----------
    radius_mm : array_like, shape (A,)
        Contour radius per row from the catheter centre, mm (fill NaN rows first).
    angles_rad : array_like, shape (A,)
        Angle of each row, radians.
    n_rays : int, default 360
        Even number of rays; ``n_rays/2`` chords are measured, 1 degree apart at the default.

    Returns
    -------
    Diameters
        ``(min_mm, max_mm, mean_mm)``, mm.

    Examples
    --------
    A circle of radius 1.5 mm seen from a catheter 0.5 mm off its centre:

    >>> angles = 2 * np.pi * np.arange(500) / 500
    >>> c, s = np.cos(angles), np.sin(angles)
    >>> radius = 0.5 * c + np.sqrt(1.5**2 - (0.5 * s) ** 2)  # ray-circle intersection
    >>> [round(d, 3) for d in diameters_through_centroid(radius, angles)]
    [3.0, 3.0, 3.0]
    """
    x, y = _contour_xy(radius_mm, angles_rad)
    return chord_diameters(x, y, polygon_centroid(x, y), n_rays)


def chord_diameters(x: object, y: object, centre_xy: tuple[float, float], n_rays: int = 360) -> Diameters:
    """Minimum, maximum and mean chord of a closed polygon through a point inside it.

    The chord in direction ``phi`` is ``r(phi) + r(phi + pi)`` with ``r`` from
    :func:`radii_about_point`, over ``n_rays/2`` equally spaced directions. With the area
    centroid as the point this is :func:`diameters_through_centroid`, for a caller that already
    holds the vertices and the centroid.

    Parameters
    ----------
    x, y : array_like, shape (N,), N >= 3
        Polygon vertices in order, mm.
    centre_xy : (float, float)
        The point the chords pass through, mm.
    n_rays : int, default 360
        Even number of rays.

    Returns
    -------
    Diameters
        ``(min_mm, max_mm, mean_mm)``, mm.

    Examples
    --------
    >>> t = 2 * np.pi * np.arange(400) / 400
    >>> [round(d, 3) for d in chord_diameters(2 * np.cos(t), np.sin(t), (0.0, 0.0))]
    [2.0, 4.0, 2.746]
    """
    n = _ray_count(n_rays, even=True)
    radii = radii_about_point(x, y, centre_xy[0], centre_xy[1], n)
    chords = radii[: n // 2] + radii[n // 2 :]
    return Diameters(float(chords.min()), float(chords.max()), float(chords.mean()))


def circular_runs(flags: object) -> list[tuple[int, int]]:
    """Runs of True in a circular boolean array.

    Parameters
    ----------
    flags : array_like of bool, shape (N,)
        Circular sequence (element ``N-1`` is next to element 0), e.g. one flag per A-line row or
        per ray.

    Returns
    -------
    list of (int, int)
        ``(first, last)`` inclusive index pairs in increasing order of ``first``. A run across the
        wrap has ``first > last``; an all-True array is the single run ``(0, N-1)``; an all-False
        one gives ``[]``.

    Examples
    --------
    >>> circular_runs([True, False, True, True, False, True])
    [(2, 3), (5, 0)]
    """
    f = np.asarray(flags, dtype=bool)
    if f.ndim != 1:
        raise ValueError(f"flags must be 1-D, got shape {f.shape}")
    if f.size == 0 or not f.any():
        return []
    if f.all():
        return [(0, f.size - 1)]
    step = np.diff(f.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(step == 1)
    ends = np.flatnonzero(step == -1) - 1
    runs = [(int(a), int(b)) for a, b in zip(starts, ends)]
    if f[0] and f[-1]:
        runs[-1] = (runs[-1][0], runs[0][1])
        runs = runs[1:]
    return runs


def arc_deg_of_rows(flags: object, largest_run: bool = False) -> float:
    """Arc covered by the True elements of a circular, equally spaced flag array.

    Parameters
    ----------
    flags : array_like of bool, shape (N,)
        One flag per equally spaced direction (rows about the catheter, or rays about a centre).
    largest_run : bool, default False
        False: total arc of all True elements. True: arc of the longest contiguous run only (one
        deposit when several are separate).

    Returns
    -------
    float
        Arc in degrees, ``360 * count / N``.

    Examples
    --------
    >>> arc_deg_of_rows([True, True, False, True])
    270.0
    >>> arc_deg_of_rows([True, True, False, True], largest_run=True)  # 3 then 0 wrap: one run
    270.0
    >>> arc_deg_of_rows([True, False, True, False], largest_run=True)
    90.0
    """
    f = np.asarray(flags, dtype=bool)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"flags must be 1-D and non-empty, got shape {f.shape}")
    if not largest_run:
        return 360.0 * float(np.count_nonzero(f)) / f.size
    lengths = [(last - first) % f.size + 1 for first, last in circular_runs(f)]
    return 360.0 * max(lengths, default=0) / f.size


@dataclass(frozen=True, eq=False)
class RayProfiles:
    """What rays from one centre point see in a polar mask (see :func:`ray_profiles`).

    Attributes
    ----------
    angles_rad : ndarray, shape (n,), float64
        Ray angles, ``2*pi*k/n``, radians.
    hit : ndarray, shape (n,), bool
        The ray meets the mask.
    first_distance_mm : ndarray, shape (n,), float64
        Distance from the centre to where the ray enters the mask, mm, taken half-way between the
        last sample outside and the first sample inside (0 when the centre itself is inside); NaN
        where no hit.
    thickness_mm : ndarray, shape (n,), float64
        Length of the first contiguous run of mask samples (samples x step), mm; NaN where no hit.
    truncated : ndarray, shape (n,), bool
        The first run reaches the edge of the imaged radius or ``max_depth_mm``, so its thickness
        is a lower bound.
    lumen_distance_mm : ndarray, shape (n,), float64 or None
        Distance from the centre to the lumen contour along each ray, mm, when a lumen was given.
    """

    angles_rad: np.ndarray
    hit: np.ndarray
    first_distance_mm: np.ndarray
    thickness_mm: np.ndarray
    truncated: np.ndarray
    lumen_distance_mm: np.ndarray | None = None

    @property
    def arc_deg(self) -> float:
        """Total arc of the rays that hit the mask, degrees about the centre."""
        return arc_deg_of_rows(self.hit)

    @property
    def largest_arc_deg(self) -> float:
        """Arc of the longest contiguous run of hitting rays, degrees about the centre."""
        return arc_deg_of_rows(self.hit, largest_run=True)

    def depth_below_lumen_mm(self) -> np.ndarray:
        """First mask distance minus lumen-surface distance per ray, mm (e.g. fibrous-cap
        thickness over a lipid mask); NaN where the ray misses the mask.

        Raises
        ------
        ValueError
            If the profiles were computed without a lumen contour.
        """
        if self.lumen_distance_mm is None:
            raise ValueError("ray_profiles was called without lumen_xy: no lumen distance")
        return self.first_distance_mm - self.lumen_distance_mm


def _uniform_axis(
    name: str, values: np.ndarray, expected_step: float | None
) -> tuple[float, float]:
    """First value and step of an equally spaced, increasing axis, else ValueError."""
    if values.size < 2:
        raise ValueError(f"{name} needs at least 2 elements, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite")
    step = float(values[1] - values[0]) if expected_step is None else expected_step
    expected = values[0] + step * np.arange(values.size)
    if not step > 0.0 or float(np.abs(values - expected).max()) > 1e-6 * step:
        what = f"spaced by {expected_step:.6g}" if expected_step is not None else "equally spaced"
        raise ValueError(f"{name} must be increasing and {what}")
    return float(values[0]), step


def ray_profiles(
    mask: object,
    column_radius_mm: object,
    angles_rad: object,
    centre_xy: tuple[float, float],
    n_rays: int = 720,
    step_mm: float = 0.005,
    max_depth_mm: float | None = None,
    lumen_xy: tuple[object, object] | None = None,
) -> RayProfiles:
    """Cast rays from a centre point through a polar mask and measure what each one meets.

    Ray ``k`` leaves ``centre_xy`` at angle ``2*pi*k/n_rays`` and is sampled at distances
    ``t = j * step_mm`` (j = 0, 1, ...). Each sample reads the mask at its nearest row (circular
    wrap) and nearest column; samples outside the imaged radius (before the first or past the last
    column) or past ``max_depth_mm`` read False. Per ray: whether it hits the mask, the distance
    to where it enters the mask (half-way between the last sample outside and the first inside,
    so the estimate is unbiased: within ``step_mm / 2``) and the length of the first contiguous
    run of mask samples (samples x ``step_mm``). With the lumen centroid as centre this gives arcs
    "measured about the lumen centroid" and thickness "along rays from it" (DOMAIN.md section 4).
    The mask's own pixelation (half a cell: ``s/2`` radially, ``r*pi/A`` across) adds to these
    sampling errors.

    Parameters
    ----------
    mask : array_like of bool, shape (A, S)
        Polar mask over the ``A`` valid rows and ``S`` stored columns of a frame.
    column_radius_mm : array_like, shape (S,)
        Radius of each stored column from the catheter centre, mm, ``(c + z) * s``; equally spaced.
    angles_rad : array_like, shape (A,)
        Angle of each row, radians: equally spaced by ``2*pi/A`` (any starting angle).
    centre_xy : (float, float)
        The point the rays leave from, mm in the catheter-centred plane.
    n_rays : int, default 720
        Number of rays (0.5 degree apart at the default).
    step_mm : float, default 0.005
        Sampling step along each ray, mm.
    max_depth_mm : float, optional
        Stop sampling at this distance from the centre, mm; default: as far as the imaged disc.
    lumen_xy : (array_like, array_like), optional
        Lumen contour vertices ``(x, y)``, mm; when given, the distance from the centre to it along
        each ray is returned as ``lumen_distance_mm`` (:func:`radii_about_point`, same rays).

    Returns
    -------
    RayProfiles

    Examples
    --------
    A 0.5 mm thick band at radius 2.0-2.5 mm over the rows from 0 to 90 degrees, seen from the
    catheter centre:

    >>> angles = 2 * np.pi * np.arange(500) / 500
    >>> radii = 0.005 * np.arange(800)
    >>> rows = np.degrees(angles) <= 90.0
    >>> mask = rows[:, None] & (radii >= 2.0) & (radii < 2.5)
    >>> p = ray_profiles(mask, radii, angles, (0.0, 0.0))
    >>> round(p.arc_deg), float(np.nanmin(p.first_distance_mm)), float(np.nanmedian(p.thickness_mm))
    (90, 1.9975, 0.5)
    """
    polar = np.asarray(mask)
    if polar.ndim != 2:
        raise ValueError(f"mask must be 2-D (rows x columns), got shape {polar.shape}")
    labels = np.ascontiguousarray(polar.astype(bool, copy=False)).view(np.uint8)
    rays = LabelRays(labels, _MASK_LUT, 1, column_radius_mm, angles_rad, centre_xy, n_rays, step_mm,
                     max_depth_mm)
    lumen = None
    if lumen_xy is not None:
        lumen = radii_about_point(lumen_xy[0], lumen_xy[1], rays.centre_xy[0], rays.centre_xy[1], rays.n_rays)
    return rays.profiles(0, lumen_distance_mm=lumen)


_MASK_LUT = np.zeros(256, dtype=np.uint8)
_MASK_LUT[1] = 1  # a bool mask viewed as uint8: True is channel 0


class LabelRays:
    """Rays from one centre point through a polar label map, one channel per bit of a table.

    The rays and sample steps are those of :func:`ray_profiles`; channel ``ch`` is the set of
    labels ``v`` with ``lut[v] & (1 << ch)``, so several masks of one map (each plaque type, the
    wall) are measured from one pass over it that finds, for every channel, the rows and
    columns it occupies, and from that the rays and the stretch of each ray that can meet it
    (:func:`engine.clinical.kernels.ray_windows`: a shortcut that only skips samples reading
    False). :meth:`profiles` then marches one channel's rays. Results equal :func:`ray_profiles`
    on the channel's bool mask.

    Parameters
    ----------
    labels : numpy.ndarray, shape (A, S), uint8
        Polar label map over the ``A`` valid rows and ``S`` stored columns.
    lut : numpy.ndarray, shape (256,), uint8
        Channel bits of each label value.
    n_channels : int
        Channels in use (1..8): bits ``0 .. n_channels - 1`` of ``lut``.
    column_radius_mm, angles_rad, centre_xy, n_rays, step_mm, max_depth_mm
        As in :func:`ray_profiles`.

    Examples
    --------
    The band of :func:`ray_profiles`'s example as label 3 of a map, and everything from 1.0 mm
    as a second channel (labels 2 and 3), of which only the entry is wanted:

    >>> angles = 2 * np.pi * np.arange(500) / 500
    >>> radii = 0.005 * np.arange(800)
    >>> labels = np.where(radii >= 1.0, 2, 0).astype(np.uint8)[None, :].repeat(500, axis=0)
    >>> labels[(np.degrees(angles) <= 90.0)[:, None] & (radii >= 2.0) & (radii < 2.5)] = 3
    >>> lut = np.zeros(256, dtype=np.uint8); lut[3] = 0b01; lut[2] = 0b10; lut[3] |= 0b10
    >>> rays = LabelRays(labels, lut, 2, radii, angles, (0.0, 0.0))
    >>> band, wall = rays.profiles(0), rays.profiles(1, entry_only=True)
    >>> round(band.arc_deg), float(np.nanmedian(band.thickness_mm)), float(wall.first_distance_mm[0])
    (90, 0.5, 0.9975)
    """

    def __init__(
        self,
        labels: np.ndarray,
        lut: np.ndarray,
        n_channels: int,
        column_radius_mm: object,
        angles_rad: object,
        centre_xy: tuple[float, float],
        n_rays: int = 720,
        step_mm: float = 0.005,
        max_depth_mm: float | None = None,
    ):
        if not (isinstance(labels, np.ndarray) and labels.ndim == 2 and labels.dtype == np.uint8):
            raise ValueError(f"labels must be a 2-D uint8 array, got {getattr(labels, 'shape', None)}")
        table = np.asarray(lut)
        if table.shape != (256,) or table.dtype != np.uint8:
            raise ValueError(f"lut must be 256 uint8 channel masks, got {table.shape} {table.dtype}")
        if not 1 <= int(n_channels) <= 8:
            raise ValueError(f"n_channels must be 1..8, got {n_channels}")
        n_rows, n_cols = labels.shape
        radius_axis = _vector("column_radius_mm", column_radius_mm)
        angle_axis = _vector("angles_rad", angles_rad)
        if radius_axis.size != n_cols or angle_axis.size != n_rows:
            raise ValueError(
                f"mask shape {labels.shape} does not match angles_rad ({angle_axis.size},) x "
                f"column_radius_mm ({radius_axis.size},)"
            )
        self._first_radius, self._column_step = _uniform_axis("column_radius_mm", radius_axis, None)
        self._first_angle, self._row_step = _uniform_axis("angles_rad", angle_axis, _TWO_PI / n_rows)
        self.n_rays = _ray_count(n_rays)
        centre = np.asarray(centre_xy, dtype=np.float64)
        if centre.shape != (2,) or not np.all(np.isfinite(centre)):
            raise ValueError(f"centre_xy must be two finite numbers (x, y) in mm, got {centre_xy!r}")
        self.centre_xy = (float(centre[0]), float(centre[1]))
        if not (np.isfinite(step_mm) and step_mm > 0.0):
            raise ValueError(f"step_mm must be positive, got {step_mm}")
        self.step_mm = float(step_mm)
        cx, cy = self.centre_xy
        outer_radius = float(radius_axis[-1]) + 0.5 * self._column_step  # edge of the imaged disc
        reach = outer_radius + float(np.hypot(cx, cy))
        depth = reach if max_depth_mm is None else float(max_depth_mm)
        if not (np.isfinite(depth) and depth > 0.0):
            raise ValueError(f"max_depth_mm must be positive, got {max_depth_mm}")
        last_step = int(np.floor(min(depth, reach) / step_mm + 1e-9))

        self._labels = np.ascontiguousarray(labels)
        self._flat = self._labels.ravel()
        self._lut = table
        self._n_rows, self._n_cols = n_rows, n_cols
        self.n_channels = int(n_channels)
        self.angles_rad = ray_angles_rad(self.n_rays)
        self._ux, self._uy = np.cos(self.angles_rad), np.sin(self.angles_rad)
        first_col, last_col = kernels.channel_row_extents(self._labels, table, self.n_channels)
        self._first_step, self._stop_step = kernels.ray_windows(
            first_col, last_col, radius_axis, np.cos(angle_axis), np.sin(angle_axis),
            self._column_step, self._row_step, cx, cy, self.n_rays, self.step_mm, last_step,
            _RAY_INDEX_SLACK,
        )  # fmt: skip

    def profiles(
        self,
        channel: int,
        *,
        entry_only: bool = False,
        rays: np.ndarray | None = None,
        lumen_distance_mm: np.ndarray | None = None,
    ) -> RayProfiles:
        """What the rays see of one channel.

        Parameters
        ----------
        channel : int
            Bit of the table (0 .. n_channels - 1).
        entry_only : bool, default False
            Stop each ray where it enters the channel: ``first_distance_mm`` and ``hit`` only,
            ``thickness_mm`` NaN and ``truncated`` False (a surface such as the wall, whose run
            is the rest of the image, costs a few samples per ray instead of hundreds).
        rays : numpy.ndarray of bool, shape (n_rays,), optional
            Only these rays are sampled (the others read as missing the channel).
        lumen_distance_mm : numpy.ndarray, optional
            Carried into the result (:meth:`RayProfiles.depth_below_lumen_mm`).
        """
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"channel must be 0..{self.n_channels - 1}, got {channel}")
        n = self.n_rays
        sample = np.ones(n, dtype=bool) if rays is None else np.asarray(rays, dtype=bool)
        if sample.shape != (n,):
            raise ValueError(f"rays must be ({n},) bool, got shape {sample.shape}")
        hit = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        first = np.full(n, np.nan)
        thickness = np.full(n, np.nan)
        cx, cy = self.centre_xy
        kernels.march_channel(
            self._flat, self._lut, 1 << channel, self._n_cols, self._n_rows, self._first_radius,
            self._column_step, self._first_angle, self._row_step, cx, cy, self._ux, self._uy,
            self._first_step[channel], self._stop_step[channel], sample, bool(entry_only),
            self.step_mm, hit, first, thickness, truncated,
        )  # fmt: skip
        return RayProfiles(self.angles_rad, hit, first, thickness, truncated, lumen_distance_mm)
