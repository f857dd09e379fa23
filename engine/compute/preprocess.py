"""Intensity preprocessing: stored polar frames to the model's fixed polar grid.

Two steps, each with a NumPy float64 reference, a Numba CPU kernel and a CuPy GPU kernel:

1. **Normalisation** to float32 in [0, 1] (:class:`IntensityMapping`).

   * ``mode="noise-floor-db"`` (octseg 2.x models): stored value -> dB through the frame's
     intensity scale (``FrameGeometry.intensity_scale``; None: the assumed scale of
     :func:`models.grid.resolve_scale`, ``ASSUMED_LOG_RANGE_DB`` over the full stored range),
     then ``(dB - noise_floor_db) / span_db`` clipped to [0, 1]. ``noise_floor_db`` is
     estimated per frame (:func:`models.grid.estimate_noise_floor_db`: the median of the deepest
     20% of the stored samples of up to 128 evenly spaced A-lines, in dB) and returned beside the
     model input (:class:`Preprocessed`, :meth:`Preprocessor.process_frame`).

   ``mode="window"`` (octseg 1.x models):

   * LOG (Pixel Intensity Relationship (0028,1040) = LOG, already log-compressed):
     ``y = x / full_scale``.
   * LIN (approximately proportional to A-line intensity): log-compressed first,
     ``y = 1 + 10 * log10(x / full_scale) / dynamic_range_db``: ``full_scale`` maps to 1 (0 dB),
     ``dynamic_range_db`` below it maps to 0, ``x <= 0`` maps to 0.
   * then a display-style window ``(y - low) / (high - low)``, everything clipped to [0, 1].

2. **Radial resampling** to a :class:`ModelGrid`: ``n_alines`` model A-lines over 360 degrees
   and ``n_depth`` samples covering ``depth_mm`` from the catheter centre, so one model pixel has
   the same physical size for every input geometry. Model A-line ``k`` lies at polar angle
   ``2*pi*k/K`` in the stored-order convention (stored row ``i`` of ``A`` valid rows at
   ``2*pi*i/A``); model sample ``j`` lies at radius ``j * depth_mm / n_depth``. The frame's z
   offset and sample spacing place stored column ``c`` at radius ``(c + z) * s``. Padded A-lines
   are dropped. Each axis is resampled with a triangle (linear-interpolation) kernel widened by
   the downsampling factor when the model grid is coarser than the input (anti-aliasing), with
   circular wrap-around across A-lines; samples outside the stored columns count as 0.

:func:`model_alines_to_stored` maps a per-model-A-line quantity (a boundary radius, a flag) back
to the stored rows, for measurement code that reports on stored A-lines.
"""

from __future__ import annotations

import abc
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.compute.backends import BackendRegistry, Implementation, to_numpy
from engine.compute.backends import registry as default_registry
from models.grid import (
    IntensityMapping,
    ModelGrid,
    floor_relative_reference,
    noise_floor_sample,
    normalise_reference,
    resolve_scale,
)
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale
from streams.pullback import Frame


@dataclass(frozen=True)
class PlanKey:
    n_valid_alines: int
    n_samples: int
    sample_spacing_mm: float
    intensity: str
    dtype: str
    grid: ModelGrid
    mapping: IntensityMapping
    scale: IntensityScale

    @classmethod
    def of(cls, geometry: FrameGeometry, dtype: np.dtype, grid: ModelGrid,
           mapping: IntensityMapping) -> "PlanKey":
        scale = resolve_scale(geometry.intensity_scale, geometry.intensity, np.dtype(dtype))
        return cls(geometry.n_valid_alines, geometry.n_samples, float(geometry.sample_spacing_mm),
                   geometry.intensity, np.dtype(dtype).str, grid, mapping, scale)

    @property
    def floor_relative(self) -> bool:
        """True for the ``"noise-floor-db"`` mapping."""
        return self.mapping.mode == "noise-floor-db"


def triangle_taps(centres: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer start and normalised weights of a triangle kernel of half-width ``scale``.

    Returns ``starts`` (M,) int64 and ``weights`` (M, T) float64 with
    ``sum_t weights[m, t] * f(starts[m] + t)`` the filtered value of ``f`` at ``centres[m]``.
    """
    taps = int(math.floor(2.0 * scale)) + 2
    starts = np.floor(centres - scale).astype(np.int64) + 1
    positions = starts[:, None] + np.arange(taps)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(positions - centres[:, None]) / scale)
    weights /= weights.sum(axis=1, keepdims=True)
    return starts, weights


@dataclass(frozen=True, eq=False)
class PreprocessPlan:
    """Per-(geometry, dtype, grid, mapping) tables: LUT and resampling taps.

    Attributes
    ----------
    key : PlanKey
    lut : numpy.ndarray or None
        float32 lookup table for unsigned integer frames of at most 16 bits: the normalised value
        (``"window"``) or the dB (``"noise-floor-db"``, -inf for LIN 0) of every stored value.
    radial_starts, radial_weights : numpy.ndarray
        Taps in radius-sample units (stored column = start + t - z).
    angular_starts, angular_weights : numpy.ndarray
        Taps over stored rows (taken modulo A).
    """

    key: PlanKey
    lut: np.ndarray | None
    radial_starts: np.ndarray
    radial_weights: np.ndarray
    angular_starts: np.ndarray
    angular_weights: np.ndarray
    device_copies: dict


def radial_centres(key: PlanKey) -> tuple[np.ndarray, float]:
    """Model sample positions in radius-sample units and the radial kernel half-width."""
    step = key.grid.depth_step_mm / key.sample_spacing_mm
    return np.arange(key.grid.n_depth, dtype=np.float64) * step, max(1.0, step)


def angular_centres(key: PlanKey) -> tuple[np.ndarray, float]:
    """Model A-line positions in stored-row units and the angular kernel half-width."""
    step = key.n_valid_alines / key.grid.n_alines
    return np.arange(key.grid.n_alines, dtype=np.float64) * step, max(1.0, step)


def build_plan(geometry: FrameGeometry, dtype: np.dtype, grid: ModelGrid,
               mapping: IntensityMapping) -> PreprocessPlan:
    """Build the lookup table and the resampling taps for one input geometry and dtype."""
    key = PlanKey.of(geometry, dtype, grid, mapping)
    dtype = np.dtype(dtype)
    lut = None
    if dtype.kind == "u" and dtype.itemsize <= 2:
        values = np.arange(np.iinfo(dtype).max + 1).astype(dtype)
        if key.floor_relative:
            lut = key.scale.to_db(values, key.intensity).astype(np.float32)
        else:
            lut = normalise_reference(values, key.intensity, mapping).astype(np.float32)
    r_starts, r_weights = triangle_taps(*radial_centres(key))
    a_starts, a_weights = triangle_taps(*angular_centres(key))
    return PreprocessPlan(key, lut, r_starts, r_weights.astype(np.float32),
                          np.mod(a_starts, key.n_valid_alines), a_weights.astype(np.float32), {})


def check_frame(pixels: Any, plan: PreprocessPlan) -> None:
    """Raise ValueError naming the shape when ``pixels`` is not ``(A_valid, n_samples)``."""
    expected = (plan.key.n_valid_alines, plan.key.n_samples)
    if len(pixels.shape) != 2 or tuple(pixels.shape) != expected:
        raise ValueError(f"frame has shape {tuple(pixels.shape)}, expected {expected} "
                         f"(valid A-lines x samples)")
    if np.dtype(pixels.dtype).str != plan.key.dtype:
        raise ValueError(f"frame dtype {pixels.dtype} does not match the plan's {plan.key.dtype}")


def _dense_triangle(centres: np.ndarray, scale: float, positions: np.ndarray) -> np.ndarray:
    weights = np.maximum(0.0, 1.0 - np.abs(positions[None, :] - centres[:, None]) / scale)
    return weights / weights.sum(axis=1, keepdims=True)


class PreprocessKernel(abc.ABC):
    """One backend's normalise + resample of a valid-rows polar frame."""

    name = ""
    device = "cpu"

    def __init__(self, backends: BackendRegistry | None = None):
        self.backends = backends or default_registry()

    def prepare(self, plan: PreprocessPlan) -> None:
        """Per-plan set-up (uploads, buffers), outside the frame loop."""

    @abc.abstractmethod
    def run(self, pixels: Any, plan: PreprocessPlan, z_offset_px: int,
            noise_floor_db: float = 0.0) -> Any:
        """``(A_valid, n_samples)`` stored samples -> ``(K, J)`` normalised model input.

        ``noise_floor_db`` is the frame's floor (:meth:`Preprocessor.noise_floor_db`), used by the
        ``"noise-floor-db"`` mapping only."""

    def to_host(self, array: Any) -> np.ndarray:
        return to_numpy(array)


class ReferencePreprocessKernel(PreprocessKernel):
    """NumPy float64 reference: dense resampling matrices built from the definition."""

    name = "numpy"

    def run(self, pixels, plan, z_offset_px, noise_floor_db=0.0):
        check_frame(pixels, plan)
        key = plan.key
        if key.floor_relative:
            normalised, _ = floor_relative_reference(pixels, key.intensity, key.scale, key.mapping,
                                                     noise_floor_db)
        else:
            normalised = normalise_reference(pixels, key.intensity, key.mapping)
        r_centres, r_scale = radial_centres(key)
        # Radius-sample positions of the stored columns of this frame.
        columns = np.arange(key.n_samples, dtype=np.float64) + z_offset_px
        # Row sums must include taps beyond the stored columns (they hold background 0).
        lo = math.floor(r_centres[0] - r_scale)
        hi = math.ceil(r_centres[-1] + r_scale)
        support = np.arange(lo, hi + 1, dtype=np.float64)
        dense = _dense_triangle(r_centres, r_scale, support)
        index = columns - lo
        inside = (index >= 0) & (index <= hi - lo)
        radial = np.zeros((key.grid.n_depth, key.n_samples))
        radial[:, inside] = dense[:, index[inside].astype(np.int64)]
        a_centres, a_scale = angular_centres(key)
        rows = np.arange(key.n_valid_alines, dtype=np.float64)
        # Circular distance between each model A-line and each stored row.
        delta = (rows[None, :] - a_centres[:, None] + key.n_valid_alines / 2) % key.n_valid_alines
        angular = np.maximum(0.0, 1.0 - np.abs(delta - key.n_valid_alines / 2) / a_scale)
        angular /= angular.sum(axis=1, keepdims=True)
        return angular @ normalised @ radial.T


class NumbaPreprocessKernel(PreprocessKernel):
    """CPU: LUT (or float formula) normalisation, then two separable tap passes, Numba parallel."""

    name = "numba"

    def __init__(self, backends=None):
        super().__init__(backends)
        self.backends.module("numba")
        from engine.compute import numba_kernels

        self._k = numba_kernels

    def run(self, pixels, plan, z_offset_px, noise_floor_db=0.0):
        check_frame(pixels, plan)
        key = plan.key
        pixels = np.ascontiguousarray(pixels)
        normalised = np.empty(pixels.shape, np.float32)
        if key.floor_relative and plan.lut is not None:
            # 64 Ki entries: the per-frame table is cheaper than a per-sample formula.
            lut = frame_lut(plan.lut, noise_floor_db, key.mapping.span_db, np)
            self._k.apply_lut(pixels, lut, normalised)
        elif key.floor_relative:
            normalised[...], _ = floor_relative_reference(pixels, key.intensity, key.scale,
                                                          key.mapping, noise_floor_db)
        elif plan.lut is not None:
            self._k.apply_lut(pixels, plan.lut, normalised)
        else:
            m = key.mapping
            self._k.normalise_float(pixels, key.intensity == "LOG", m.scale_for(pixels.dtype),
                                    m.dynamic_range_db, m.low, m.high, normalised)
        radial = np.empty((key.n_valid_alines, key.grid.n_depth), np.float32)
        self._k.resample_radial(normalised, int(z_offset_px), plan.radial_starts,
                                plan.radial_weights, radial)
        out = np.empty((key.grid.n_alines, key.grid.n_depth), np.float32)
        self._k.resample_angular(radial, plan.angular_starts, plan.angular_weights, out)
        return out


class CupyPreprocessKernel(PreprocessKernel):
    """GPU: CuPy ``RawModule`` kernels from ``cuda/preprocess.cu``."""

    name = "cupy"
    device = "gpu"
    BLOCK = 256

    def __init__(self, backends=None):
        super().__init__(backends)
        self.cp = self.backends.module("cupy")
        self.stream = self.cp.cuda.Stream(non_blocking=True)

    def _kernel(self, function: str) -> Any:
        from engine.compute.cuda_sources import cupy_kernel

        return cupy_kernel("preprocess.cu", function)

    def prepare(self, plan):
        cp = self.cp
        device = cp.cuda.Device().id
        if device not in plan.device_copies:
            with self.stream:
                plan.device_copies[device] = {
                    "lut": None if plan.lut is None else cp.asarray(plan.lut),
                    "radial_starts": cp.asarray(plan.radial_starts.astype(np.int32)),
                    "radial_weights": cp.asarray(plan.radial_weights),
                    "angular_starts": cp.asarray(plan.angular_starts.astype(np.int32)),
                    "angular_weights": cp.asarray(plan.angular_weights),
                }
        for function in ("normalise_lut_u8", "normalise_lut_u16", "normalise_f32",
                         "resample_radial", "resample_angular"):
            self._kernel(function)

    def _grid(self, n: int) -> tuple[tuple[int], tuple[int]]:
        return ((n + self.BLOCK - 1) // self.BLOCK,), (self.BLOCK,)

    def run(self, pixels, plan, z_offset_px, noise_floor_db=0.0):
        cp = self.cp
        check_frame(pixels, plan)
        key = plan.key
        self.prepare(plan)
        d = plan.device_copies[cp.cuda.Device().id]
        a, n = key.n_valid_alines, key.n_samples
        k_out, j_out = key.grid.n_alines, key.grid.n_depth
        with self.stream:
            pixels = cp.ascontiguousarray(cp.asarray(pixels))
            normalised = cp.empty((a, n), cp.float32)
            if key.floor_relative and d["lut"] is not None:
                lut = frame_lut(d["lut"], noise_floor_db, key.mapping.span_db, cp)
                name = "normalise_lut_u8" if pixels.dtype == cp.uint8 else "normalise_lut_u16"
                self._kernel(name)(*self._grid(a * n), (pixels, lut, np.int32(a * n), normalised))
            elif key.floor_relative:
                x = pixels.astype(cp.float64)
                s = key.scale
                if key.intensity == "LOG":
                    db = s.offset_db + s.db_per_count * x
                else:
                    db = s.offset_db + 10.0 * cp.log10(cp.maximum(x, 1e-300))
                    db = cp.where(x > 0, db, -cp.inf)
                y = cp.clip((db - noise_floor_db) / key.mapping.span_db, 0.0, 1.0)
                normalised[...] = cp.nan_to_num(y, nan=0.0).astype(cp.float32)
            elif d["lut"] is not None:
                name = "normalise_lut_u8" if pixels.dtype == cp.uint8 else "normalise_lut_u16"
                self._kernel(name)(*self._grid(a * n), (pixels, d["lut"], np.int32(a * n), normalised))
            else:
                m = key.mapping
                self._kernel("normalise_f32")(*self._grid(a * n), (
                    pixels.astype(cp.float32, copy=False), np.int32(a * n),
                    np.int32(key.intensity == "LOG"), np.float32(m.scale_for(pixels.dtype)),
                    np.float32(m.dynamic_range_db), np.float32(m.low), np.float32(m.high),
                    normalised))
            radial = cp.empty((a, j_out), cp.float32)
            self._kernel("resample_radial")(*self._grid(a * j_out), (
                normalised, np.int32(a), np.int32(n), np.int32(j_out), np.int32(z_offset_px),
                d["radial_starts"], d["radial_weights"], np.int32(plan.radial_weights.shape[1]),
                radial))
            out = cp.empty((k_out, j_out), cp.float32)
            self._kernel("resample_angular")(*self._grid(k_out * j_out), (
                radial, np.int32(a), np.int32(j_out), np.int32(k_out),
                d["angular_starts"], d["angular_weights"], np.int32(plan.angular_weights.shape[1]),
                out))
        return out

    def to_host(self, array):
        self.stream.synchronize()
        return self.cp.asnumpy(array)


def frame_lut(db_lut: Any, noise_floor_db: float, span_db: float, xp: Any) -> Any:
    """Per-frame table: ``clip((dB - floor) / span, 0, 1)`` of a plan's dB table (NumPy or CuPy)."""
    lut = (db_lut - xp.float32(noise_floor_db)) * xp.float32(1.0 / span_db)
    return xp.clip(lut, xp.float32(0.0), xp.float32(1.0)).astype(xp.float32)


@dataclass(frozen=True)
class Preprocessed:
    """One preprocessed frame (:meth:`Preprocessor.process_frame`).

    Attributes
    ----------
    input : numpy.ndarray or device array
        ``(K, J)`` float32 model input in [0, 1].
    noise_floor_db : float
        The frame's noise floor, dB on ``scale`` (:func:`models.grid.estimate_noise_floor_db`);
        computed for both mappings.
    scale : IntensityScale
        The stored-to-dB scale used: the frame's own, or the assumed one (``scale.source ==
        "assumed"``) where the frame states none.
    """

    input: Any
    noise_floor_db: float
    scale: IntensityScale


class Preprocessor:
    """Pipeline stage: polar :class:`~streams.pullback.Frame` -> ``(K, J)`` float32 model input.

    Parameters
    ----------
    grid : ModelGrid
        Model input grid.
    mapping : IntensityMapping
        Normalisation.
    backend : str, optional
        Preferred backend ("numba", "cupy", "numpy"); None = first usable; fallbacks are logged
        and reported by the registry unless ``strict``.
    cache_size : int
        Plans kept (one per input geometry and dtype).

    >>> g = FrameGeometry(n_alines=128, n_samples=200, aline_spacing_mm=0.01, intensity="LOG")
    >>> frame = Frame("p", 0, 0.0, np.full((128, 200), 65535, np.uint16), g)
    >>> stage = Preprocessor(ModelGrid(64, 64, 1.0), backend="numpy")
    >>> stage.start()
    >>> x = stage.process(frame)
    >>> x.shape, round(float(x[0, 10]), 6)
    ((64, 64), 1.0)
    """

    def __init__(self, grid: ModelGrid = ModelGrid(), mapping: IntensityMapping = IntensityMapping(),
                 backend: str | None = None, *, strict: bool = False, cache_size: int = 4,
                 backends: BackendRegistry | None = None):
        self.grid = grid
        self.mapping = mapping
        self.preferred = backend
        self.strict = strict
        self.cache_size = cache_size
        self.backends = backends or default_registry()
        self.implementation: Implementation | None = None
        self.kernel: PreprocessKernel | None = None
        self._plans: OrderedDict[PlanKey, PreprocessPlan] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, geometry: FrameGeometry | None = None, dtype: np.dtype = np.uint16) -> None:
        """Choose the backend, compile its kernels, and prepare the plan for ``geometry``."""
        self.implementation = self.backends.select("preprocess", self.preferred, strict=self.strict)
        self.kernel = self.implementation.load()(self.backends)
        warm = geometry or FrameGeometry(n_alines=64, n_samples=64, aline_spacing_mm=0.01)
        for warm_dtype in {np.dtype(dtype), np.dtype(np.float32)}:
            plan = self.plan(warm, warm_dtype)
            zeros = np.zeros((warm.n_valid_alines, warm.n_samples), warm_dtype)
            self.kernel.to_host(self.kernel.run(zeros, plan, 0, 0.0))

    def plan(self, geometry: FrameGeometry, dtype: np.dtype) -> PreprocessPlan:
        """The cached plan for a geometry and frame dtype (built on first use)."""
        if self.kernel is None:
            raise RuntimeError("Preprocessor.start() has not been called")
        key = PlanKey.of(geometry, dtype, self.grid, self.mapping)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = build_plan(geometry, dtype, self.grid, self.mapping)
        self.kernel.prepare(plan)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self.cache_size:
                self._plans.popitem(last=False)
        return plan

    @staticmethod
    def noise_floor_db(pixels: Any, plan: PreprocessPlan) -> float:
        """The frame's noise floor in dB on the plan's scale (valid rows ``pixels``, any device).

        :func:`models.grid.noise_floor_sample` (median of the deepest 20% of the samples of up
        to 128 A-lines) mapped through the scale; a LIN floor at 0 counts as the smallest
        positive stored value (or 1).
        """
        key = plan.key
        value = float(noise_floor_sample(pixels))
        if key.intensity == "LIN" and value <= 0.0:
            positive = pixels[pixels > 0]
            value = float(positive.min()) if positive.size else 1.0
        return float(key.scale.to_db(np.array([value]), key.intensity)[0])

    def process_device_frame(self, frame: Frame) -> Preprocessed:
        """Preprocess one frame; the input stays on the backend's device."""
        geometry = frame.geometry
        plan = self.plan(geometry, frame.pixels.dtype)
        pixels = frame.pixels[: geometry.n_valid_alines]
        if self.kernel.device == "gpu":
            pixels = self.kernel.cp.asarray(pixels)
        floor = self.noise_floor_db(pixels, plan)
        out = self.kernel.run(pixels, plan, int(frame.z_offset_px), floor)
        return Preprocessed(out, floor, plan.key.scale)

    def process_frame(self, frame: Frame) -> Preprocessed:
        """Preprocess one frame to a host input plus its noise floor and scale."""
        result = self.process_device_frame(frame)
        host = np.asarray(self.kernel.to_host(result.input), dtype=np.float32)
        return Preprocessed(host, result.noise_floor_db, result.scale)

    def process_device(self, frame: Frame) -> Any:
        """Preprocess one frame; the result stays on the backend's device."""
        return self.process_device_frame(frame).input

    def process(self, frame: Frame) -> np.ndarray:
        """Preprocess one frame to a host ``(K, J)`` float32 array."""
        return self.process_frame(frame).input

    def stop(self) -> None:
        with self._lock:
            self._plans.clear()
        self.kernel = None


def model_alines_to_stored(values: np.ndarray, n_valid_alines: int) -> np.ndarray:
    """Map a per-model-A-line quantity onto the stored A-line rows (circular linear interpolation).

    Stored row ``i`` (of ``A`` valid rows, angle ``2*pi*i/A``) takes the value at model position
    ``i * K / A``, interpolated between the two nearest model A-lines with wrap-around. Units are
    unchanged (a radius in mm stays in mm; convert to a stored column with
    :meth:`FrameGeometry.column`). NaN (e.g. "no boundary found") propagates to the stored rows
    next to it.

    Parameters
    ----------
    values : numpy.ndarray
        ``(K,)`` or ``(K, ...)`` values on the model A-lines.
    n_valid_alines : int
        A, the stored rows that carry image data (padded rows are not returned).

    Returns
    -------
    numpy.ndarray
        ``(A,)`` or ``(A, ...)`` float64.

    >>> model_alines_to_stored(np.array([1.0, 2.0, 3.0, 4.0]), 8)
    array([1. , 1.5, 2. , 2.5, 3. , 3.5, 4. , 2.5])
    """
    values = np.asarray(values, dtype=np.float64)
    k = values.shape[0]
    if k < 2 or n_valid_alines < 1:
        raise ValueError(f"need at least 2 model A-lines and 1 stored row, got {k} and {n_valid_alines}")
    position = np.arange(n_valid_alines, dtype=np.float64) * k / n_valid_alines
    k0 = np.floor(position).astype(np.int64) % k
    k1 = (k0 + 1) % k
    w = (position - np.floor(position)).reshape((-1,) + (1,) * (values.ndim - 1))
    # On a model A-line exactly, take its value alone (a NaN neighbour must not leak in).
    return np.where(w == 0, values[k0], (1 - w) * values[k0] + w * values[k1])
