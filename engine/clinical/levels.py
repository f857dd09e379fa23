"""Order statistics of a frame's samples, for levels taken once per frame (noise floor, bright
tissue, display window).

:func:`percentiles` is ``numpy.percentile`` (linear method) from one partial sort: the same order
statistics and interpolation without the general function's per-call overhead, which on the
~10^4-sample subsamples taken per frame is most of its cost.
"""

from __future__ import annotations

import numpy as np

__all__ = ["percentiles"]


def percentiles(values: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(values, q)`` (linear interpolation between order statistics), float64.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape, any real dtype, at least one element; NaN not allowed.
    q : tuple of float
        Percentiles in ``[0, 100]``.

    Examples
    --------
    >>> percentiles(np.arange(11, dtype=np.uint16), (50.0, 95.0)).tolist()
    [5.0, 9.5]
    """
    flat = np.asarray(values).ravel()
    n = flat.size
    if n == 0:
        raise ValueError("percentiles of an empty array")
    virtual = np.asarray(q, dtype=np.float64) / 100.0 * (n - 1)
    below = np.floor(virtual).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    ordered = np.partition(flat, np.unique(np.concatenate([below, above])))
    low = ordered[below].astype(np.float64)
    high = ordered[above].astype(np.float64)
    gamma = virtual - below
    diff = high - low
    return np.where(gamma >= 0.5, high - diff * (1.0 - gamma), low + diff * gamma)
