"""Scan conversion: polar IVOCT frames to Cartesian images (DICOM PS3.17 Annex EEE.2).

Conventions (also in ``docs/scan_conversion.md``)
-------------------------------------------------
* The output is an ``N x N`` float32 image covering ``fov_mm`` x ``fov_mm``; its centre (between
  the four middle pixels when N is even) is the catheter centre. Image column index ``j`` grows
  to the right (+x), image row index ``i`` grows downwards (+y on screen). Pixel ``(i, j)`` has
  its centre at ``dx = (j - (N-1)/2) * p``, ``dy = (i - (N-1)/2) * p`` mm, ``p = fov_mm / N``.
* Screen angles ``psi`` are measured **clockwise from 12 o'clock** (DICOM's First A-line Location
  (0052,0034) and Seam Line Location (0052,0033) use the same convention): ``psi = atan2(dx, -dy)``.
* Radius: stored sample column ``c`` of a frame with OCT Z Offset Correction ``z`` lies at
  ``(c + z) * s`` mm (``s`` = :attr:`FrameGeometry.sample_spacing_mm`, refractive index applied).
  The z offset is a per-frame radial term: it never forces a table rebuild.
* Angle: of the ``A`` valid rows (padded A-lines are dropped), stored row ``i`` is at polar angle
  ``theta_i = 2*pi*i/A`` in stored order, as everywhere in octguide. The display puts it at
  ``psi = psi_0 + d * theta_i`` where ``d = +1`` for Catheter Direction of Rotation CW (rows
  advance clockwise on screen) and ``-1`` for CC.

  - ``seam_mode="stored"`` (default): ``psi_0`` = ``first_aline_deg``; the Seam Line Index is
    ignored for placement, so measurement code that works on stored rows agrees with the display
    and the image does not turn from frame to frame.
  - ``seam_mode="annex_eee"``: Annex EEE.2.3 — rows are shifted by the per-frame Seam Line Index
    (0052,0036) so that the seam A-line is displayed at ``seam_line_deg`` (Seam Line Location):
    ``psi_i = psi_seam + d * 2*pi*(i - seam_index)/A``. The shift is a per-frame term too.
* Interpolation is bilinear in (row, column) = (theta, r) with wrap-around between the last and
  the first valid A-line. Samples outside the stored columns count as background (0): pixels
  beyond the ranging depth ``r >= (n_samples + z) * s`` are 0, the last sample fades to 0 over
  one sample spacing, and so does the first towards the catheter centre.

Lookup tables (a packed uint64 per pixel: display row, radius in samples, and 16-bit fixed-point
weights) are built once per (geometry, output grid, orientation) and cached; every backend uses
the same table, except the float64 reference, which recomputes everything from the definition.
"""

from __future__ import annotations

import abc
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.compute.backends import BackendRegistry, Implementation, to_numpy
from engine.compute.backends import registry as default_registry
from streams.errors import GeometryError
from streams.geometry import FrameGeometry
from streams.pullback import Frame

SEAM_MODES = ("stored", "annex_eee")
WEIGHT_ONE = 65536
"""Fixed-point scale of table weights: weight = stored / 65536 (error <= 7.7e-6)."""
MAX_TABLE_RADIUS = 65535


@dataclass(frozen=True)
class CartesianGrid:
    """The Cartesian output: ``size_px`` x ``size_px`` pixels covering ``fov_mm`` x ``fov_mm``.

    Attributes
    ----------
    size_px : int
        Image width and height N, pixels (16..8192).
    fov_mm : float
        Field of view (full width), mm (0.1..50).

    >>> CartesianGrid(1024, 10.24).pixel_mm
    0.01
    """

    size_px: int
    fov_mm: float

    def __post_init__(self) -> None:
        if not (isinstance(self.size_px, (int, np.integer)) and 16 <= self.size_px <= 8192):
            raise GeometryError(f"size_px={self.size_px} must be an integer in 16..8192")
        if not (np.isfinite(self.fov_mm) and 0.1 <= self.fov_mm <= 50.0):
            raise GeometryError(f"fov_mm={self.fov_mm} is outside 0.1..50 mm")

    @classmethod
    def from_pixel_size(cls, fov_mm: float, pixel_mm: float) -> "CartesianGrid":
        """The grid with pixels of exactly ``pixel_mm`` covering at least ``fov_mm``."""
        if not (np.isfinite(pixel_mm) and pixel_mm > 0):
            raise GeometryError(f"pixel_mm={pixel_mm} must be positive")
        size = int(math.ceil(fov_mm / pixel_mm - 1e-9))
        return cls(size, size * pixel_mm)

    @property
    def pixel_mm(self) -> float:
        """Pixel size, mm."""
        return self.fov_mm / self.size_px

    def offsets_mm(self) -> np.ndarray:
        """``(N,)`` float64 offsets of pixel centres from the image centre along one axis, mm."""
        return (np.arange(self.size_px, dtype=np.float64) - (self.size_px - 1) / 2.0) * self.pixel_mm


@dataclass(frozen=True)
class DisplayOrientation:
    """Where the A-lines go on screen (see the module docstring).

    Attributes
    ----------
    first_aline_deg : float
        ``seam_mode="stored"``: screen angle (degrees clockwise from 12 o'clock) of stored row 0,
        DICOM First A-line Location (0052,0034).
    seam_mode : str
        "stored" (row i always at the same angle) or "annex_eee" (rotate by the frame's seam).
    seam_line_deg : float
        ``seam_mode="annex_eee"``: screen angle of the seam A-line, DICOM Seam Line Location
        (0052,0033), degrees clockwise from 12 o'clock.
    """

    first_aline_deg: float = 0.0
    seam_mode: str = "stored"
    seam_line_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.seam_mode not in SEAM_MODES:
            raise GeometryError(f"seam_mode={self.seam_mode!r} is not one of {SEAM_MODES}")
        for name in ("first_aline_deg", "seam_line_deg"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 <= value < 360.0):
                raise GeometryError(f"{name}={value} must be in [0, 360) degrees")

    @property
    def anchor_deg(self) -> float:
        """Screen angle of the row the per-frame shift puts at display row 0."""
        return self.first_aline_deg if self.seam_mode == "stored" else self.seam_line_deg

    def row_shift(self, seam_index: int, n_valid_alines: int) -> int:
        """Stored row shown at display row 0 for a frame with this Seam Line Index."""
        if self.seam_mode == "stored":
            return 0
        if not 0 <= seam_index < n_valid_alines:
            raise GeometryError(f"seam_index={seam_index} is outside 0..{n_valid_alines - 1}")
        return int(seam_index)


@dataclass(frozen=True)
class TableKey:
    """Everything a scan-conversion table depends on (and nothing per-frame)."""

    n_valid_alines: int
    n_samples: int
    sample_spacing_mm: float
    rotation: str
    grid: CartesianGrid
    anchor_deg: float

    @classmethod
    def of(cls, geometry: FrameGeometry, grid: CartesianGrid, orientation: DisplayOrientation) -> "TableKey":
        return cls(geometry.n_valid_alines, geometry.n_samples, float(geometry.sample_spacing_mm),
                   geometry.rotation, grid, float(orientation.anchor_deg))

    @property
    def direction(self) -> int:
        """+1 when stored rows advance clockwise on screen (CW), -1 for CC."""
        return 1 if self.rotation == "CW" else -1


def display_coordinates(key: TableKey) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel display row coordinate and radius, float64, from the definition.

    Returns
    -------
    row : numpy.ndarray
        ``(N, N)`` fractional display row in [0, A): stored row = (row + shift) mod A.
    rho : numpy.ndarray
        ``(N, N)`` radius in samples, ``r_mm / s``: stored column = rho - z.
    """
    offsets = key.grid.offsets_mm()
    dx = offsets[None, :]
    dy = offsets[:, None]
    psi = np.arctan2(dx, -dy)
    a = key.n_valid_alines
    row = np.mod(key.direction * (psi - math.radians(key.anchor_deg)) * (a / (2.0 * np.pi)), a)
    row[row >= a] = 0.0  # mod of a tiny negative number rounds to exactly a
    rho = np.hypot(dx, dy) / key.sample_spacing_mm
    return row, rho


@dataclass(frozen=True, eq=False)
class ScanTable:
    """The per-geometry lookup table shared by every table-driven backend.

    Attributes
    ----------
    key : TableKey
        What it was built for.
    packed : numpy.ndarray
        ``(N, N)`` uint64 per pixel: bits 0-15 display row ``a0``, 16-31 radius sample ``r0``
        (clamped to 65535), 32-47 row weight, 48-63 radius weight, weights in units of 1/65536.
        The pixel value is the bilinear blend of stored rows ``(a0 + shift) % A`` and the next one,
        and stored columns ``r0 - z`` and ``r0 - z + 1``.
    max_radius_samples : int
        Largest ``r0 + 1`` in the table (how far out the image reaches, samples).
    build_ms : float
        Time the build took.
    """

    key: TableKey
    packed: np.ndarray
    max_radius_samples: int
    build_ms: float = 0.0
    device_copies: dict = field(default_factory=dict, repr=False)


def _fixed_point(coordinate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = np.floor(coordinate)
    weight = np.rint((coordinate - base) * WEIGHT_ONE).astype(np.int64)
    carry = weight >= WEIGHT_ONE
    return base.astype(np.int64) + carry, np.where(carry, 0, weight)


def build_table(geometry: FrameGeometry, grid: CartesianGrid,
                orientation: DisplayOrientation = DisplayOrientation()) -> ScanTable:
    """Build the packed lookup table for one geometry, output grid and orientation.

    >>> g = FrameGeometry(n_alines=500, n_samples=1000, aline_spacing_mm=0.005)
    >>> t = build_table(g, CartesianGrid(64, 10.0))
    >>> t.packed.shape, t.packed.dtype.name
    ((64, 64), 'uint64')
    """
    start = time.perf_counter()
    key = TableKey.of(geometry, grid, orientation)
    if key.n_valid_alines > 65535:
        raise GeometryError(f"{key.n_valid_alines} A-lines do not fit the 16-bit table")
    row, rho = display_coordinates(key)
    a0, wa = _fixed_point(row)
    a0 %= key.n_valid_alines
    r0, wr = _fixed_point(rho)
    r0 = np.minimum(r0, MAX_TABLE_RADIUS)
    packed = (a0.astype(np.uint64) | (r0.astype(np.uint64) << np.uint64(16))
              | (wa.astype(np.uint64) << np.uint64(32)) | (wr.astype(np.uint64) << np.uint64(48)))
    return ScanTable(key, packed, int(r0.max()) + 1, (time.perf_counter() - start) * 1e3)


def check_polar(polar: Any, table: ScanTable) -> None:
    """Raise ValueError naming the shape when ``polar`` is not ``(A_valid, n_samples)`` 2-D."""
    expected = (table.key.n_valid_alines, table.key.n_samples)
    if len(polar.shape) != 2 or tuple(polar.shape) != expected:
        raise ValueError(f"polar frame has shape {tuple(polar.shape)}, expected {expected} "
                         f"(valid A-lines x samples)")
    if polar.dtype.kind not in "uif":
        raise ValueError(f"polar frame dtype {polar.dtype} is not numeric")


def check_out(out: Any, table: ScanTable) -> None:
    """Raise ValueError naming the shape when ``out`` is not a C-contiguous float32 N x N."""
    n = table.key.grid.size_px
    flags = out.flags
    contiguous = flags["C_CONTIGUOUS"] if isinstance(flags, dict) else flags.c_contiguous
    if tuple(out.shape) != (n, n) or out.dtype != np.float32 or not contiguous:
        raise ValueError(f"out has shape {tuple(out.shape)} dtype {out.dtype}, expected "
                         f"C-contiguous float32 {(n, n)}")


class ScanKernel(abc.ABC):
    """One backend's scan conversion of a valid-rows polar frame with a cached table."""

    name: str = ""
    device: str = "cpu"

    def __init__(self, backends: BackendRegistry | None = None):
        self.backends = backends or default_registry()

    def prepare(self, table: ScanTable) -> None:
        """Per-table set-up (uploads, buffers); called once per table, outside the frame loop."""

    @abc.abstractmethod
    def convert(self, polar: Any, table: ScanTable, z_offset_px: int, row_shift: int,
                out: Any = None) -> Any:
        """Convert ``(A_valid, n_samples)`` polar samples; returns an ``(N, N)`` array.

        ``z_offset_px`` is the frame's OCT Z Offset Correction; ``row_shift`` the stored row at
        display row 0 (:meth:`DisplayOrientation.row_shift`). CPU kernels return NumPy arrays,
        GPU kernels device arrays of their library.
        """

    def to_host(self, image: Any) -> np.ndarray:
        return to_numpy(image)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU)."""


class ReferenceScanKernel(ScanKernel):
    """NumPy float64 reference: recomputes every coordinate from the definition, no table."""

    name = "numpy"

    def convert(self, polar, table, z_offset_px, row_shift, out=None):
        check_polar(polar, table)
        key = table.key
        a, n = key.n_valid_alines, key.n_samples
        row, rho = display_coordinates(key)
        stored = np.mod(row + row_shift, a)
        base = np.floor(stored)
        wa = stored - base
        r0 = base.astype(np.int64) % a
        r1 = (r0 + 1) % a
        column = rho - z_offset_px
        c0f = np.floor(column)
        wc = column - c0f
        c0 = c0f.astype(np.int64)
        samples = np.asarray(polar, dtype=np.float64)

        def sample(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            inside = (cols >= 0) & (cols < n)
            return np.where(inside, samples[rows, np.clip(cols, 0, n - 1)], 0.0)

        top = (1 - wc) * sample(r0, c0) + wc * sample(r0, c0 + 1)
        bottom = (1 - wc) * sample(r1, c0) + wc * sample(r1, c0 + 1)
        result = (1 - wa) * top + wa * bottom
        if out is not None:
            out[...] = result
            return out
        return result


class NumbaScanKernel(ScanKernel):
    """CPU default: Numba ``prange`` over output rows with the packed table, gathering the four
    bilinear neighbours of each pixel straight from the polar frame in its stored dtype
    (:func:`engine.compute.numba_kernels.gather_direct`): no per-frame buffer but ``out``.
    """

    name = "numba"
    CHUNK_ROWS = 8

    def __init__(self, backends=None):
        super().__init__(backends)
        self._numba = self.backends.module("numba")
        from engine.compute import numba_kernels

        self._k = numba_kernels

    def convert(self, polar, table, z_offset_px, row_shift, out=None):
        check_polar(polar, table)
        key = table.key
        n_pixels = key.grid.size_px
        if out is None:
            out = np.empty((n_pixels, n_pixels), np.float32)
        check_out(out, table)
        polar = np.ascontiguousarray(polar)
        shift = int(row_shift) % key.n_valid_alines
        # Small dynamic chunks: a core shared with another process then slows the frame by its
        # share, instead of making the other thread wait for a whole static half.
        with self._numba.parallel_chunksize(self.CHUNK_ROWS):
            self._k.gather_direct(polar, table.packed, int(z_offset_px), shift, out)
        return out


def _launch_size(n_pixels: int, block: int = 256) -> tuple[tuple[int], tuple[int]]:
    return ((n_pixels + block - 1) // block,), (block,)


class CupyScanKernel(ScanKernel):
    """GPU: CuPy ``RawModule`` kernel from ``cuda/scan_convert.cu`` (one thread per pixel)."""

    name = "cupy"
    device = "gpu"
    FUNCTIONS = {np.dtype(np.uint8): "scan_convert_u8", np.dtype(np.uint16): "scan_convert_u16",
                 np.dtype(np.float32): "scan_convert_f32"}

    def __init__(self, backends=None):
        super().__init__(backends)
        self.cp = self.backends.module("cupy")
        self.stream = self.cp.cuda.Stream(non_blocking=True)

    def _kernel(self, dtype: np.dtype) -> Any:
        from engine.compute.cuda_sources import cupy_kernel

        return cupy_kernel("scan_convert.cu", self.FUNCTIONS[np.dtype(dtype)])

    def prepare(self, table):
        device = self.cp.cuda.Device().id
        if ("cupy", device) not in table.device_copies:
            with self.stream:
                table.device_copies[("cupy", device)] = self.cp.asarray(table.packed)
        for dtype in self.FUNCTIONS:
            self._kernel(dtype)

    def convert(self, polar, table, z_offset_px, row_shift, out=None):
        cp = self.cp
        check_polar(polar, table)
        key = table.key
        n_pixels = key.grid.size_px
        self.prepare(table)
        packed = table.device_copies[("cupy", cp.cuda.Device().id)]
        with self.stream:
            polar = cp.asarray(polar)
            if polar.dtype not in self.FUNCTIONS:
                polar = polar.astype(cp.float32)
            polar = cp.ascontiguousarray(polar)
            if out is None:
                out = cp.empty((n_pixels, n_pixels), cp.float32)
            check_out(out, table)
            grid, block = _launch_size(n_pixels * n_pixels)
            self._kernel(polar.dtype)(grid, block, (
                polar, np.int32(key.n_valid_alines), np.int32(key.n_samples),
                packed, np.int32(n_pixels * n_pixels), np.int32(z_offset_px),
                np.int32(int(row_shift) % key.n_valid_alines), out))
        return out

    def synchronize(self):
        self.stream.synchronize()

    def to_host(self, image):
        self.stream.synchronize()
        return self.cp.asnumpy(image)


class NumbaCudaScanKernel(ScanKernel):
    """GPU without CuPy: the same per-pixel kernel written with Numba CUDA (numba device arrays)."""

    name = "numba_cuda"
    device = "gpu"

    def __init__(self, backends=None):
        super().__init__(backends)
        self.cuda = self.backends.module("numba_cuda")
        from engine.compute import numba_cuda_kernels

        self._kernel = numba_cuda_kernels.scan_convert
        self.stream = self.cuda.stream()

    def prepare(self, table):
        if "numba_cuda" not in table.device_copies:
            table.device_copies["numba_cuda"] = self.cuda.to_device(table.packed.reshape(-1),
                                                                    stream=self.stream)

    def convert(self, polar, table, z_offset_px, row_shift, out=None):
        check_polar(polar, table)
        key = table.key
        n_pixels = key.grid.size_px
        self.prepare(table)
        if isinstance(polar, np.ndarray):
            host = np.ascontiguousarray(polar)
            if host.dtype not in (np.uint8, np.uint16, np.float32):
                host = host.astype(np.float32)
            polar = self.cuda.to_device(host, stream=self.stream)
        if out is None:
            out = self.cuda.device_array((n_pixels, n_pixels), np.float32, stream=self.stream)
        check_out(out, table)
        grid, block = _launch_size(n_pixels * n_pixels)
        self._kernel[grid, block, self.stream](
            polar, table.device_copies["numba_cuda"], np.int32(z_offset_px),
            np.int32(int(row_shift) % key.n_valid_alines), out.reshape(-1))
        return out

    def synchronize(self):
        self.stream.synchronize()

    def to_host(self, image):
        return image.copy_to_host(stream=self.stream)


class ScanConverter:
    """Pipeline stage: polar :class:`~streams.pullback.Frame` -> Cartesian float32 image.

    Parameters
    ----------
    grid : CartesianGrid
        Output size and field of view.
    orientation : DisplayOrientation
        Angular placement and seam handling.
    backend : str, optional
        Preferred backend ("numba", "cupy", "numba_cuda", "numpy"); None = first usable in the
        registry's order. A preferred backend that is not usable falls back (logged, reported)
        unless ``strict``.
    strict : bool
        Raise instead of falling back.
    cache_size : int
        Tables kept (least recently used dropped first).
    backends : BackendRegistry, optional
        Registry to ask (the process-wide one by default).

    Examples
    --------
    >>> g = FrameGeometry(n_alines=64, n_samples=100, aline_spacing_mm=0.01)
    >>> frame = Frame("p", 0, 0.0, np.full((64, 100), 1000, np.uint16), g)
    >>> stage = ScanConverter(CartesianGrid(32, 2.0), backend="numpy")
    >>> stage.start(g)
    >>> image = stage.process(frame)
    >>> image.shape, float(image[16, 16])
    ((32, 32), 1000.0)
    >>> stage.stop()
    """

    def __init__(self, grid: CartesianGrid, orientation: DisplayOrientation = DisplayOrientation(),
                 backend: str | None = None, *, strict: bool = False, cache_size: int = 4,
                 backends: BackendRegistry | None = None):
        if cache_size < 1:
            raise ValueError(f"cache_size={cache_size} must be at least 1")
        self.grid = grid
        self.orientation = orientation
        self.preferred = backend
        self.strict = strict
        self.cache_size = cache_size
        self.backends = backends or default_registry()
        self.implementation: Implementation | None = None
        self.kernel: ScanKernel | None = None
        self._tables: OrderedDict[TableKey, ScanTable] = OrderedDict()
        self._lock = threading.Lock()
        self.table_builds = 0
        self.last_build_ms = 0.0

    def start(self, geometry: FrameGeometry | None = None) -> None:
        """Choose the backend, compile its kernels and, given a geometry, build its table."""
        self.implementation = self.backends.select("scan_convert", self.preferred, strict=self.strict)
        self.kernel = self.implementation.load()(self.backends)
        warm_geometry = geometry or FrameGeometry(n_alines=64, n_samples=64, aline_spacing_mm=0.01)
        table = self.table(warm_geometry)
        for dtype in (np.uint8, np.uint16, np.float32):
            polar = np.zeros((table.key.n_valid_alines, table.key.n_samples), dtype)
            self.kernel.to_host(self.kernel.convert(polar, table, 0, 0))

    def table(self, geometry: FrameGeometry) -> ScanTable:
        """The cached table for ``geometry`` (built, prepared and cached on first use)."""
        key = TableKey.of(geometry, self.grid, self.orientation)
        with self._lock:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
                return table
        table = build_table(geometry, self.grid, self.orientation)
        self._require_started().prepare(table)
        with self._lock:
            self._tables[key] = table
            while len(self._tables) > self.cache_size:
                self._tables.popitem(last=False)
            self.table_builds += 1
            self.last_build_ms = table.build_ms
        return table

    def _require_started(self) -> ScanKernel:
        if self.kernel is None:
            raise RuntimeError("ScanConverter.start() has not been called")
        return self.kernel

    def process_device(self, frame: Frame, out: Any = None) -> Any:
        """Convert one frame; the result stays on the backend's device (NumPy on CPU)."""
        kernel = self._require_started()
        geometry = frame.geometry
        if tuple(frame.pixels.shape) != (geometry.n_alines, geometry.n_samples):
            raise ValueError(f"frame {frame.index} pixels have shape {tuple(frame.pixels.shape)}, "
                             f"geometry says {(geometry.n_alines, geometry.n_samples)}")
        table = self.table(geometry)
        shift = self.orientation.row_shift(frame.seam_index, geometry.n_valid_alines)
        return kernel.convert(frame.pixels[: geometry.n_valid_alines], table,
                              int(frame.z_offset_px), shift, out)

    def process(self, frame: Frame, out: np.ndarray | None = None) -> np.ndarray:
        """Convert one frame to a host ``(N, N)`` image (``out`` reused when given).

        float32 on every backend except the float64 "numpy" reference.

        Passing ``out`` avoids a fresh 4 MiB allocation (and its page faults) per frame.
        """
        kernel = self._require_started()
        if kernel.device == "cpu":
            return self.process_device(frame, out)
        image = kernel.to_host(self.process_device(frame))
        if out is not None:
            out[...] = image
            return out
        return image

    def stop(self) -> None:
        """Drop tables and device buffers."""
        with self._lock:
            self._tables.clear()
        if self.kernel is not None:
            self.kernel.synchronize()
        self.kernel = None

    def status(self) -> dict:
        """Backend, fallback and table-cache facts for the status channel."""
        return {
            "backend": self.implementation.name if self.implementation else None,
            "device": self.implementation.device if self.implementation else None,
            "tables_cached": len(self._tables),
            "table_builds": self.table_builds,
            "last_table_build_ms": round(self.last_build_ms, 3),
        }

    def image_coordinates(self, frame: Frame, row: np.ndarray | float,
                          column: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Image (x = column, y = row) pixel coordinates of stored polar (row, column) points.

        Use it to draw anything measured on stored rows onto the displayed image.
        """
        return polar_to_image(frame.geometry, self.grid, self.orientation, row, column,
                              frame.z_offset_px, frame.seam_index)


def polar_to_image(geometry: FrameGeometry, grid: CartesianGrid, orientation: DisplayOrientation,
                   row: np.ndarray | float, column: np.ndarray | float, z_offset_px: float = 0.0,
                   seam_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image pixel coordinates ``(x, y)`` (x along columns, y along rows, pixel centres at
    integers) of stored polar points (fractional row, fractional column).

    >>> g = FrameGeometry(n_alines=400, n_samples=500, aline_spacing_mm=0.01)
    >>> x, y = polar_to_image(g, CartesianGrid(101, 10.1), DisplayOrientation(), 100, 200)
    >>> round(float(x), 6), round(float(y), 6)  # row 100 of 400: 3 o'clock, 2 mm from the centre
    (70.0, 50.0)
    """
    a = geometry.n_valid_alines
    key = TableKey.of(geometry, grid, orientation)
    shift = orientation.row_shift(seam_index, a)
    display_row = np.asarray(row, dtype=np.float64) - shift
    psi = math.radians(key.anchor_deg) + key.direction * 2.0 * np.pi * display_row / a
    radius_px = (np.asarray(column, dtype=np.float64) + z_offset_px) * key.sample_spacing_mm / grid.pixel_mm
    centre = (grid.size_px - 1) / 2.0
    return centre + radius_px * np.sin(psi), centre - radius_px * np.cos(psi)


def image_to_polar(geometry: FrameGeometry, grid: CartesianGrid, orientation: DisplayOrientation,
                   x: np.ndarray | float, y: np.ndarray | float, z_offset_px: float = 0.0,
                   seam_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stored polar ``(row, column)`` (fractional, row in [0, A)) of image points ``(x, y)``;
    the inverse of :func:`polar_to_image`."""
    a = geometry.n_valid_alines
    key = TableKey.of(geometry, grid, orientation)
    centre = (grid.size_px - 1) / 2.0
    dx = (np.asarray(x, dtype=np.float64) - centre) * grid.pixel_mm
    dy = (np.asarray(y, dtype=np.float64) - centre) * grid.pixel_mm
    psi = np.arctan2(dx, -dy)
    display_row = key.direction * (psi - math.radians(key.anchor_deg)) * a / (2.0 * np.pi)
    row = np.mod(display_row + orientation.row_shift(seam_index, a), a)
    column = np.hypot(dx, dy) / key.sample_spacing_mm - z_offset_px
    return row, column


def inverse_scan_convert(image: np.ndarray, geometry: FrameGeometry, grid: CartesianGrid,
                         orientation: DisplayOrientation = DisplayOrientation(),
                         z_offset_px: float = 0.0, seam_index: int = 0) -> np.ndarray:
    """Cartesian image -> ``(A_valid, n_samples)`` float64 polar frame (bilinear in x, y).

    Samples whose point falls outside the image are 0. Not for the frame loop: it is the
    reference inverse used to draw image-space annotations back onto stored rows.
    """
    n = grid.size_px
    if tuple(image.shape) != (n, n):
        raise ValueError(f"image has shape {tuple(image.shape)}, expected {(n, n)}")
    rows = np.arange(geometry.n_valid_alines, dtype=np.float64)[:, None]
    cols = np.arange(geometry.n_samples, dtype=np.float64)[None, :]
    x, y = polar_to_image(geometry, grid, orientation, rows, cols, z_offset_px, seam_index)
    x, y = np.broadcast_arrays(x, y)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    wx = x - x0
    wy = y - y0
    values = np.asarray(image, dtype=np.float64)

    def pick(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (xx >= 0) & (xx < n) & (yy >= 0) & (yy < n)
        return np.where(inside, values[np.clip(yy, 0, n - 1), np.clip(xx, 0, n - 1)], 0.0)

    top = (1 - wx) * pick(y0, x0) + wx * pick(y0, x0 + 1)
    bottom = (1 - wx) * pick(y0 + 1, x0) + wx * pick(y0 + 1, x0 + 1)
    return (1 - wy) * top + wy * bottom
