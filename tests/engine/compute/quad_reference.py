"""The CPU scan conversion before the direct gather (issue 17 item 2), frozen: the "quad"
re-layout of engine/compute/numba_kernels.py and NumbaScanKernel._run as they were. The tests
compare the direct gather with it, and bench/bench_scan.py times it in the same run.

Per frame, the valid rows were first re-laid into a "quad" buffer indexed by (display row,
radius in samples) holding the four bilinear neighbours of each cell (z offset, seam shift,
wrap-around and the zero background applied there), so that each output pixel did one table
load and one gather. uint8/uint16 frames packed the four samples into one uint64; other dtypes
used four float32.
"""

from __future__ import annotations

import numba
import numpy as np

from engine.compute.scan_convert import ScanTable, check_out, check_polar

_M16 = np.uint64(0xFFFF)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_S48 = np.uint64(48)
_INV_ONE = np.float32(1.0 / 65536.0)

_JIT = dict(parallel=True, fastmath=True, cache=True, boundscheck=False, nogil=True)


@numba.njit(**_JIT)
def build_quad_u16(polar, z, shift, quad, width):
    """Quad cells of a uint8/uint16 frame: one uint64 = v00 | v01<<16 | v10<<32 | v11<<48."""
    n_rows, n = polar.shape
    for a in numba.prange(n_rows):
        p0 = polar[(a + shift) % n_rows]
        p1 = polar[(a + 1 + shift) % n_rows]
        cells = quad[a * width:(a + 1) * width]
        for rho in range(width):
            c = rho - z
            v = np.uint64(0)
            if 0 <= c < n:
                v |= np.uint64(p0[c]) | (np.uint64(p1[c]) << _S32)
            if 0 <= c + 1 < n:
                v |= (np.uint64(p0[c + 1]) << _S16) | (np.uint64(p1[c + 1]) << _S48)
            cells[rho] = v


@numba.njit(**_JIT)
def gather_quad_u16(quad, width, packed, out):
    """Bilinear blend per output pixel from the packed table and uint64 quad cells."""
    n_out = out.shape[0]
    last = width - 1
    for i in numba.prange(n_out):
        for j in range(n_out):
            t = packed[i, j]
            a0 = np.int64(t & _M16)
            r0 = np.int64((t >> _S16) & _M16)
            r0 = r0 if r0 < width else last
            wa = np.float32((t >> _S32) & _M16) * _INV_ONE
            wc = np.float32(t >> _S48) * _INV_ONE
            q = quad[a0 * width + r0]
            v00 = np.float32(q & _M16)
            v01 = np.float32((q >> _S16) & _M16)
            v10 = np.float32((q >> _S32) & _M16)
            v11 = np.float32(q >> _S48)
            top = v00 + wc * (v01 - v00)
            bottom = v10 + wc * (v11 - v10)
            out[i, j] = top + wa * (bottom - top)


@numba.njit(**_JIT)
def build_quad_f32(polar, z, shift, quad, width):
    """Quad cells of any numeric frame as four float32 (v00, v01, v10, v11)."""
    n_rows, n = polar.shape
    for a in numba.prange(n_rows):
        p0 = polar[(a + shift) % n_rows]
        p1 = polar[(a + 1 + shift) % n_rows]
        base = a * width
        for rho in range(width):
            c = rho - z
            inside0 = 0 <= c < n
            inside1 = 0 <= c + 1 < n
            quad[base + rho, 0] = np.float32(p0[c]) if inside0 else np.float32(0)
            quad[base + rho, 1] = np.float32(p0[c + 1]) if inside1 else np.float32(0)
            quad[base + rho, 2] = np.float32(p1[c]) if inside0 else np.float32(0)
            quad[base + rho, 3] = np.float32(p1[c + 1]) if inside1 else np.float32(0)


@numba.njit(**_JIT)
def gather_quad_f32(quad, width, packed, out):
    n_out = out.shape[0]
    last = width - 1
    for i in numba.prange(n_out):
        for j in range(n_out):
            t = packed[i, j]
            a0 = np.int64(t & _M16)
            r0 = np.int64((t >> _S16) & _M16)
            r0 = r0 if r0 < width else last
            wa = np.float32((t >> _S32) & _M16) * _INV_ONE
            wc = np.float32(t >> _S48) * _INV_ONE
            k = a0 * width + r0
            v00 = quad[k, 0]
            v01 = quad[k, 1]
            v10 = quad[k, 2]
            v11 = quad[k, 3]
            top = v00 + wc * (v01 - v00)
            bottom = v10 + wc * (v11 - v10)
            out[i, j] = top + wa * (bottom - top)


class QuadScan:
    """The old NumbaScanKernel.convert: quad buffers kept between frames, grown on demand."""

    def __init__(self):
        self._quad = np.zeros(0, np.uint64)
        self._quad_f = np.zeros((0, 4), np.float32)

    def convert(self, polar, table: ScanTable, z_offset_px: int, row_shift: int, out=None):
        check_polar(polar, table)
        key = table.key
        n_pixels = key.grid.size_px
        if out is None:
            out = np.empty((n_pixels, n_pixels), np.float32)
        check_out(out, table)
        polar = np.ascontiguousarray(polar)
        # Radius cells from 0 to n + z: the last one holds only background.
        width = max(key.n_samples + int(z_offset_px) + 1, 1)
        width = min(width, table.max_radius_samples + 1)
        cells = key.n_valid_alines * width
        shift = int(row_shift) % key.n_valid_alines
        z = int(z_offset_px)
        if polar.dtype in (np.uint16, np.uint8):
            if self._quad.shape[0] < cells:
                self._quad = np.zeros(cells, np.uint64)
            build_quad_u16(polar, z, shift, self._quad, width)
            gather_quad_u16(self._quad, width, table.packed, out)
        else:
            if self._quad_f.shape[0] < cells:
                self._quad_f = np.zeros((cells, 4), np.float32)
            build_quad_f32(polar, z, shift, self._quad_f, width)
            gather_quad_f32(self._quad_f, width, table.packed, out)
        return out
