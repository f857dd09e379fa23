"""Numba kernels of the display path: the grey window's order statistics without a sort.

:func:`strided_percentiles` is :func:`engine.clinical.levels.percentiles` of
``image[::step, ::step]`` read as float32 (what :func:`engine.display.overlay.display_grey`
windows with), found by a histogram pass and a sort of only the bins that hold the wanted ranks:
the same order statistics (the binning is monotone, so every value of a bin lies between those
of the bins around it), hence the same window, with no copy of the subsample and no
``np.partition``. Compiled once per machine (``cache=True``); :func:`warm_up` before the first
frame.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from engine.clinical.levels import percentiles

_BINS = 4096  #: histogram bins between the sample's minimum and maximum


@numba.njit(cache=True)
def _order_statistics(image, step, ranks):
    """The ``ranks`` (sorted, 0-based) order statistics of ``image[::step, ::step]`` as float32,
    and whether the sample holds NaN (then the statistics are not computed).

    The strided sample is read once into a small contiguous buffer (64 KiB for a 512 px image
    at step 4); the binning ``int((v - lo) * BINS / (hi - lo))`` in float64 is monotone in ``v``.
    """
    rows = (image.shape[0] + step - 1) // step
    cols = (image.shape[1] + step - 1) // step
    sample = np.empty(rows * cols, dtype=np.float32)
    lo = np.float32(np.inf)
    hi = np.float32(-np.inf)
    k = 0
    for i in range(rows):
        for j in range(cols):
            v = np.float32(image[i * step, j * step])
            if math.isnan(v):
                return np.empty(0, dtype=np.float32), True
            sample[k] = v
            k += 1
            lo = min(lo, v)
            hi = max(hi, v)
    result = np.empty(ranks.size, dtype=np.float32)
    if not hi > lo:
        result[:] = lo
        return result, False
    low = np.float64(lo)
    scale = _BINS / (np.float64(hi) - low)
    hist = np.zeros(_BINS, dtype=np.int64)
    bins = np.empty(k, dtype=np.int16)
    for t in range(k):
        b = min(int((np.float64(sample[t]) - low) * scale), _BINS - 1)
        bins[t] = b
        hist[b] += 1
    before = 0
    q = 0
    for b in range(_BINS):
        count = hist[b]
        if q < ranks.size and ranks[q] < before + count:
            members = np.empty(count, dtype=np.float32)
            m = 0
            for t in range(k):
                if bins[t] == b:
                    members[m] = sample[t]
                    m += 1
            members.sort()
            while q < ranks.size and ranks[q] < before + count:
                result[q] = members[ranks[q] - before]
                q += 1
        before += count
    return result, False


def strided_percentiles(image: np.ndarray, step: int, q: tuple[float, ...]) -> np.ndarray:
    """``percentiles(np.asarray(image[::step, ::step], np.float32), q)`` (linear method), float64.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` real image (float32 or float64); with NaN it falls back to sorting.
    step : int
        Subsampling stride along both axes (>= 1).
    q : tuple of float
        Percentiles in ``[0, 100]``.

    Examples
    --------
    >>> image = np.arange(64, dtype=np.float32).reshape(8, 8)
    >>> strided_percentiles(image, 2, (50.0, 100.0)).tolist()  # of the 16 samples 0, 2, .., 54
    [27.0, 54.0]
    """
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be 2-D and non-empty, got shape {image.shape}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    n = ((image.shape[0] + step - 1) // step) * ((image.shape[1] + step - 1) // step)
    virtual = np.asarray(q, dtype=np.float64) / 100.0 * (n - 1)
    below = np.floor(virtual).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    ranks = np.unique(np.concatenate([below, above]))
    values, has_nan = _order_statistics(image, int(step), ranks)
    if has_nan:  # NaN sorts last, as in np.partition: the general path keeps that behaviour
        return percentiles(np.asarray(image[::step, ::step], dtype=np.float32), q)
    values = values.astype(np.float64)
    low = values[np.searchsorted(ranks, below)]
    high = values[np.searchsorted(ranks, above)]
    gamma = virtual - below
    diff = high - low
    return np.where(gamma >= 0.5, high - diff * (1.0 - gamma), low + diff * gamma)


def warm_up() -> None:
    """Compile (or load from the cache) the kernels for float32 and float64 images."""
    for dtype in (np.float32, np.float64):
        strided_percentiles(np.arange(16, dtype=dtype).reshape(4, 4), 2, (50.0,))
