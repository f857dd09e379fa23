"""Numba kernels behind :mod:`engine.clinical.contours` and :mod:`engine.clinical.measure`.

Each kernel does, in one compiled pass with no temporary arrays, what the NumPy expression it
replaces did in several (issue 17 item 3: no Python loop per ray, no per-frame allocation of
image-sized arrays). They follow the same arithmetic in the same order, so results agree with
the NumPy formulation to float round-off; ``tests/engine/clinical/test_kernels.py`` holds the
NumPy references and compares them on random contours and masks. Compiled once per machine
(``cache=True``); :func:`warm_up` compiles them before the first frame.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True)
def shoelace(x, y):
    """(signed area, centroid x, centroid y) of a closed polygon, mm^2 and mm; taken about the
    vertex mean for precision (centroid NaN when the area is 0)."""
    n = x.size
    x0 = 0.0
    y0 = 0.0
    for i in range(n):
        x0 += x[i]
        y0 += y[i]
    x0 /= n
    y0 /= n
    area2 = 0.0
    sx = 0.0
    sy = 0.0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        xs, ys = x[i] - x0, y[i] - y0
        xn, yn = x[j] - x0, y[j] - y0
        cross = xs * yn - xn * ys
        area2 += cross
        sx += (xs + xn) * cross
        sy += (ys + yn) * cross
    area = 0.5 * area2
    if area == 0.0:
        return area, np.nan, np.nan
    return area, sx / (6.0 * area) + x0, sy / (6.0 * area) + y0


@numba.njit(cache=True)
def radii_about_point(x, y, cx, cy, n_rays, ray_slack, edge_slack):
    """Distance from ``(cx, cy)`` to the polygon along ray ``k`` at ``2*pi*k/n_rays`` (NaN where
    no edge is crossed), and the total angle the polygon sweeps about the point (rad; about
    +-2 pi when the point is inside, about 0 outside)."""
    m = x.size
    step = _TWO_PI / n_rays
    radius = np.full(n_rays, np.inf)
    total = 0.0
    for i in range(m):
        j = i + 1 if i + 1 < m else 0
        px, py = x[i] - cx, y[i] - cy
        qx, qy = x[j] - cx, y[j] - cy
        start = math.atan2(py, px)
        sweep = (math.atan2(qy, qx) - start + math.pi) % _TWO_PI - math.pi  # Python/NumPy %
        total += sweep
        low = start if sweep >= 0.0 else start + sweep
        low_k = low / step
        first = math.ceil(low_k - ray_slack)
        last = math.floor(low_k + abs(sweep) / step + ray_slack)
        ex, ey = qx - px, qy - py
        for k in range(first, last + 1):
            phi = k * step
            ux, uy = math.cos(phi), math.sin(phi)
            den = ux * ey - uy * ex
            if den == 0.0:
                continue
            t = (px * ey - py * ex) / den
            s = (px * uy - py * ux) / den
            if t > 0.0 and s >= -edge_slack and s <= 1.0 + edge_slack:
                r = k % n_rays
                radius[r] = min(radius[r], t)
    for r in range(n_rays):
        if not math.isfinite(radius[r]):
            radius[r] = np.nan
    return radius, total


@numba.njit(cache=True)
def march_rays(flat_mask, n_cols, n_rows, first_radius, column_step, first_angle, row_step,
               cx, cy, ux, uy, first_step, stop_step, step_mm, rays, hit, first, thickness, cut):
    """Sample each ray of ``rays`` from ``first_step`` to ``stop_step`` (exclusive) until its
    first run of mask samples ends; write (hit, first distance mm, thickness mm, truncated).

    Float32 positions and nearest-cell look-ups as in the NumPy sampler
    (``contours._profile_block``): ``t = first_step * step + j * step``, the nearest column of
    the radius and the nearest row (circular) of the angle; samples before the first column, past
    the last, or at ``stop_step`` read False and are "not imaged" (a run cut there is truncated).
    """
    f32 = np.float32
    step32 = f32(step_mm)
    inv_col = f32(1.0 / column_step)
    inv_row = f32(1.0 / row_step)
    radius0 = f32(first_radius)
    offset = f32((first_angle + math.pi) % _TWO_PI - math.pi)
    rows32 = f32(n_rows)
    cx32, cy32 = f32(cx), f32(cy)
    for q in range(rays.size):
        k = rays[q]
        span = stop_step[k] - first_step[k]
        t0 = f32(first_step[k] * step_mm)
        ux32, uy32 = f32(ux[k]), f32(uy[k])
        start = -1
        end = span
        imaged_end = False
        for j in range(span):
            t = t0 + f32(j) * step32
            px = cx32 + t * ux32
            py = cy32 + t * uy32
            column = np.rint((np.sqrt(px * px + py * py) - radius0) * inv_col)
            imaged = column >= 0 and column < n_cols
            inside = False
            if imaged:
                row = np.rint((np.arctan2(py, px) - offset) * inv_row)
                if row < 0:
                    row += rows32
                if row >= rows32:
                    row -= rows32
                inside = flat_mask[int(row) * n_cols + int(column)]
            if start < 0:
                if inside:
                    start = j
            elif not inside:
                end = j
                imaged_end = imaged
                break
        if start < 0:
            continue
        hit[k] = True
        first[k] = max(first_step[k] + start - 0.5, 0.0) * step_mm
        thickness[k] = (end - start) * step_mm
        cut[k] = not imaged_end


@numba.njit(cache=True)
def circular_running_median(values, width):
    """Median of the finite values among each element's ``width`` circular neighbours (NaN where
    the element itself or all its neighbours are NaN)."""
    n = values.size
    half = width // 2
    out = np.full(n, np.nan)
    window = np.empty(2 * half + 1)
    for i in range(n):
        if not math.isfinite(values[i]):
            continue
        count = 0
        for shift in range(-half, half + 1):
            v = values[(i - shift) % n]
            if math.isfinite(v):
                window[count] = v
                count += 1
        w = np.sort(window[:count])
        if count % 2:
            out[i] = w[count // 2]
        else:
            out[i] = (w[count // 2 - 1] + w[count // 2]) / 2.0
    return out


@numba.njit(cache=True)
def row_extents(mask):
    """Rows of a 2-D mask holding any True, and each one's first and last True column: one
    pass from each end of every row, stopping at the first True."""
    n_rows, n_cols = mask.shape
    rows = np.empty(n_rows, dtype=np.int64)
    first = np.empty(n_rows, dtype=np.int64)
    last = np.empty(n_rows, dtype=np.int64)
    count = 0
    for r in range(n_rows):
        c0 = -1
        for c in range(n_cols):
            if mask[r, c]:
                c0 = c
                break
        if c0 < 0:
            continue
        c1 = c0
        for c in range(n_cols - 1, c0, -1):
            if mask[r, c]:
                c1 = c
                break
        rows[count] = r
        first[count] = c0
        last[count] = c1
        count += 1
    return rows[:count], first[:count], last[:count]


@numba.njit(cache=True)
def scatter_min_max(index, low, high, segment, n):
    """``t_low[index] = min(low[segment])`` and ``t_high[index] = max(high[segment])`` per
    target (``np.minimum.at`` / ``np.maximum.at``); untouched targets stay +inf / -inf."""
    t_low = np.full(n, np.inf)
    t_high = np.full(n, -np.inf)
    for q in range(index.size):
        k = index[q]
        s = segment[q]
        t_low[k] = min(t_low[k], low[s])
        t_high[k] = max(t_high[k], high[s])
    return t_low, t_high


def warm_up() -> None:
    """Compile (or load from the cache) every kernel on tiny inputs, before the first frame."""
    t = np.linspace(0.0, _TWO_PI, 8, endpoint=False)
    x, y = np.cos(t), np.sin(t)
    shoelace(x, y)
    radii_about_point(x, y, 0.0, 0.0, 8, 1e-9, 1e-9)
    circular_running_median(np.ones(8), 3)
    row_extents(np.ones((2, 3), dtype=np.bool_))
    scatter_min_max(np.zeros(2, dtype=np.int64), np.ones(2), np.ones(2), np.zeros(2, dtype=np.int64), 3)
    mask = np.ones(16, dtype=np.bool_)
    rays = np.arange(2, dtype=np.int64)
    steps = np.zeros(2, dtype=np.int64)
    march_rays(mask, 4, 4, 0.5, 0.1, 0.0, _TWO_PI / 4, 0.0, 0.0, np.ones(2), np.zeros(2),
               steps, steps + 4, 0.05, rays, np.zeros(2, dtype=np.bool_), np.zeros(2),
               np.zeros(2), np.zeros(2, dtype=np.bool_))
