"""Numba CPU kernels, imported only once the registry has chosen the Numba backend.

Semantics are defined, and tested, against the NumPy references in :mod:`engine.compute.scan_convert`
and :mod:`engine.compute.preprocess`.

Scan conversion on the CPU is gather-bound: :func:`gather_direct` reads the four bilinear
neighbours of each output pixel straight from the polar frame in its stored dtype, with the
per-geometry packed table (display row, radius, weights) and the frame's z offset and seam shift
applied per pixel, so no frame-sized buffer is written per frame (the "quad" re-layout it
replaced wrote 4 MiB per uint16 frame and 8 MiB per float frame; it is kept as the reference in
``tests/engine/compute/quad_reference.py``).
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


@numba.njit(**_JIT)
def gather_direct(polar, packed, z, shift, out):
    """Bilinear blend per output pixel straight from the polar frame in its stored dtype.

    ``packed`` is the per-geometry table (display row ``a0``, radius ``r0`` in samples and the
    two 16-bit weights); the frame's z offset and seam shift are applied per pixel, so nothing
    of the size of the frame is written per frame. Stored columns outside ``0 .. n-1`` read 0.
    """
    n_rows, n = polar.shape
    n_out = out.shape[0]
    for i in numba.prange(n_out):
        for j in range(n_out):
            t = packed[i, j]
            c = np.int64((t >> _S16) & _M16) - z
            if c >= n or c < -1:
                out[i, j] = np.float32(0)
                continue
            ra = np.int64(t & _M16) + shift
            if ra >= n_rows:
                ra -= n_rows
            rb = ra + 1
            if rb >= n_rows:
                rb = 0
            wa = np.float32((t >> _S32) & _M16) * _INV_ONE
            wc = np.float32(t >> _S48) * _INV_ONE
            if c >= 0 and c + 1 < n:
                v00 = np.float32(polar[ra, c])
                v01 = np.float32(polar[ra, c + 1])
                v10 = np.float32(polar[rb, c])
                v11 = np.float32(polar[rb, c + 1])
            else:
                inside0 = c >= 0
                inside1 = c + 1 < n
                v00 = np.float32(polar[ra, c]) if inside0 else np.float32(0)
                v10 = np.float32(polar[rb, c]) if inside0 else np.float32(0)
                v01 = np.float32(polar[ra, c + 1]) if inside1 else np.float32(0)
                v11 = np.float32(polar[rb, c + 1]) if inside1 else np.float32(0)
            top = v00 + wc * (v01 - v00)
            bottom = v10 + wc * (v11 - v10)
            out[i, j] = top + wa * (bottom - top)
