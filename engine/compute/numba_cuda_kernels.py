"""Numba CUDA kernels, imported only once the registry has found Numba CUDA usable.

``cuda`` is taken from the registry (never imported directly elsewhere) and bound as a module
global, which is what Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, used by the tests on
machines without a GPU) swaps per simulated thread.

The scan kernel has the same arithmetic as ``cuda/scan_convert.cu``: one thread per output pixel,
reading the valid-rows frame directly (any numeric dtype; Numba specialises per dtype).
Launch: ``scan_convert[blocks, threads, stream](polar, packed_flat, z, shift, out_flat)``.
"""

from __future__ import annotations

import numpy as np

from engine.compute.backends import registry

cuda = registry().module("numba_cuda")

_M16 = np.uint64(0xFFFF)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_S48 = np.uint64(48)
_INV_ONE = np.float32(1.0 / 65536.0)


@cuda.jit(fastmath=True)
def scan_convert(polar, packed, z, shift, out):
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    n_rows = polar.shape[0]
    n = polar.shape[1]
    t = packed[i]
    a0 = np.int32(t & _M16)
    r0 = np.int32((t >> _S16) & _M16)
    wa = np.float32((t >> _S32) & _M16) * _INV_ONE
    wc = np.float32(t >> _S48) * _INV_ONE
    row0 = a0 + shift
    if row0 >= n_rows:
        row0 -= n_rows
    row1 = row0 + 1
    if row1 == n_rows:
        row1 = 0
    c0 = r0 - z
    c1 = c0 + 1
    v00 = np.float32(polar[row0, c0]) if 0 <= c0 < n else np.float32(0)
    v01 = np.float32(polar[row0, c1]) if 0 <= c1 < n else np.float32(0)
    v10 = np.float32(polar[row1, c0]) if 0 <= c0 < n else np.float32(0)
    v11 = np.float32(polar[row1, c1]) if 0 <= c1 < n else np.float32(0)
    top = v00 + wc * (v01 - v00)
    bottom = v10 + wc * (v11 - v10)
    out[i] = top + wa * (bottom - top)
