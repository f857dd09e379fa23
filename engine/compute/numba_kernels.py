"""Numba CPU kernels, imported only once the registry has chosen the Numba backend.

Semantics are defined, and tested, against the NumPy references in :mod:`engine.compute.scan_convert`
and :mod:`engine.compute.preprocess`.

Scan conversion on the CPU is gather-bound (measured: four scattered loads per pixel dominate),
so the frame is first re-laid into a "quad" buffer: cell ``(a, rho)`` holds the four bilinear
neighbours ``P[a, rho-z], P[a, rho-z+1], P[a+1, rho-z], P[a+1, rho-z+1]`` of stored rows
``(a + shift) % A`` and the next one (wrap-around), zero outside the stored columns. Each output
pixel then does one table load and one gather of a uint64 (four uint16) or of four float32.
"""

from __future__ import annotations

import numba
import numpy as np

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


@numba.njit(**_JIT)
def apply_lut(pixels, lut, out):
    """``out = lut[pixels]`` for unsigned integer frames (normalisation by lookup table)."""
    rows, cols = pixels.shape
    for i in numba.prange(rows):
        for j in range(cols):
            out[i, j] = lut[pixels[i, j]]


@numba.njit(**_JIT)
def normalise_float(pixels, is_log, full_scale, dynamic_range_db, low, high, out):
    """LOG: ``x / full_scale``; LIN: ``1 + 10 log10(x / full_scale) / DR``; then the window
    ``(y - low) / (high - low)``, clipped to [0, 1]."""
    rows, cols = pixels.shape
    inv_fs = 1.0 / full_scale
    inv_span = 1.0 / (high - low)
    for i in numba.prange(rows):
        for j in range(cols):
            x = np.float64(pixels[i, j])
            if is_log:
                y = x * inv_fs
            elif x > 0.0:
                y = 1.0 + 10.0 * np.log10(x * inv_fs) / dynamic_range_db
            else:
                y = 0.0
            y = (y - low) * inv_span
            out[i, j] = np.float32(min(max(y, 0.0), 1.0))


@numba.njit(**_JIT)
def resample_radial(values, z, starts, weights, out):
    """``out[a, j] = sum_t weights[j, t] * values[a, starts[j] + t - z]`` (0 outside)."""
    rows, n = values.shape
    n_out, taps = weights.shape
    for a in numba.prange(rows):
        row = values[a]
        for j in range(n_out):
            acc = np.float32(0)
            first = starts[j] - z
            for t in range(taps):
                c = first + t
                if 0 <= c < n:
                    acc += weights[j, t] * row[c]
            out[a, j] = acc


@numba.njit(**_JIT)
def resample_angular(values, starts, weights, out):
    """``out[k, j] = sum_t weights[k, t] * values[(starts[k] + t) % A, j]`` (circular)."""
    rows = values.shape[0]
    n_out, taps = weights.shape
    cols = values.shape[1]
    for k in numba.prange(n_out):
        for j in range(cols):
            out[k, j] = 0
        for t in range(taps):
            w = weights[k, t]
            if w != 0:
                src = values[(starts[k] + t) % rows]
                for j in range(cols):
                    out[k, j] += w * src[j]
