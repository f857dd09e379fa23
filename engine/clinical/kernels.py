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
    end = math.atan2(y[0] - cy, x[0] - cx)
    for i in range(m):
        j = i + 1 if i + 1 < m else 0
        px, py = x[i] - cx, y[i] - cy
        qx, qy = x[j] - cx, y[j] - cy
        start = end  # the previous edge's end vertex: the same atan2 of the same operands
        end = math.atan2(qy, qx)
        sweep = (end - start + math.pi) % _TWO_PI - math.pi  # Python/NumPy %
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
def march_channel(flat_labels, lut, bit, n_cols, n_rows, first_radius, column_step, first_angle,
                  row_step, cx, cy, ux, uy, first_step, stop_step, sample_ray, entry_only, step_mm,
                  hit, first, thickness, cut):
    """Sample ray ``k`` (where ``sample_ray[k]``) from ``first_step[k]`` to ``stop_step[k]``
    (exclusive) until its first run of channel samples ends; write (hit, first distance mm,
    thickness mm, truncated). A sample is in the channel where ``lut[label] & bit``.

    Float32 positions and nearest-cell look-ups as in the NumPy sampler
    (``contours._profile_block`` of the frozen reference): ``t = first_step * step + j * step``,
    the nearest column of the radius and the nearest row (circular) of the angle; samples before
    the first column, past the last, or at ``stop_step`` read False and are "not imaged" (a run
    cut there is truncated). With ``entry_only`` a ray stops where it enters the channel: only
    ``hit`` and ``first`` are written (the cheap way to find a surface whose run is the whole
    wall).
    """
    f32 = np.float32
    step32 = f32(step_mm)
    inv_col = f32(1.0 / column_step)
    inv_row = f32(1.0 / row_step)
    radius0 = f32(first_radius)
    offset = f32((first_angle + math.pi) % _TWO_PI - math.pi)
    rows32 = f32(n_rows)
    cx32, cy32 = f32(cx), f32(cy)
    for k in range(first_step.size):
        span = stop_step[k] - first_step[k]
        if span <= 0 or not sample_ray[k]:
            continue
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
                inside = (lut[flat_labels[int(row) * n_cols + int(column)]] & bit) != 0
            if start < 0:
                if inside:
                    start = j
                    if entry_only:
                        break
            elif not inside:
                end = j
                imaged_end = imaged
                break
        if start < 0:
            continue
        hit[k] = True
        first[k] = max(first_step[k] + start - 0.5, 0.0) * step_mm
        if not entry_only:
            thickness[k] = (end - start) * step_mm
            cut[k] = not imaged_end


@numba.njit(cache=True)
def channel_row_extents(labels, lut, n_channels):
    """First and last column of every channel in every row of a label map (-1 where the row
    holds none), channel ``ch`` being the labels ``v`` with ``lut[v] & (1 << ch)``.

    One pass from the left over each row (stopping early only when every channel has been seen),
    then one from the right that stops as soon as the last sample of every channel present in the
    row is found: about one look-up per sample for all channels together.
    """
    n_rows, n_cols = labels.shape
    first = np.full((n_channels, n_rows), -1, dtype=np.int64)
    last = np.full((n_channels, n_rows), -1, dtype=np.int64)
    every = (1 << n_channels) - 1
    for r in range(n_rows):
        seen = 0
        for c in range(n_cols):
            new = lut[labels[r, c]] & every & ~seen
            if new:
                for ch in range(n_channels):
                    if (new >> ch) & 1:
                        first[ch, r] = c
                seen |= new
                if seen == every:
                    break
        if seen == 0:
            continue
        found = 0
        for c in range(n_cols - 1, -1, -1):
            new = lut[labels[r, c]] & seen & ~found
            if new:
                for ch in range(n_channels):
                    if (new >> ch) & 1:
                        last[ch, r] = c
                found |= new
                if found == seen:
                    break
    return first, last


@numba.njit(cache=True)
def ray_windows(first_col, last_col, radius_axis, row_ux, row_uy, column_step, row_step, cx, cy,
                n_rays, step_mm, last_step, ray_slack):
    """Per channel and ray, the sample steps ``[first_step, stop_step)`` where the channel can be
    met (empty where it cannot): ``contours._ray_windows`` of the frozen reference in one pass
    (same arithmetic, so the same windows; see there for why they are conservative).

    ``first_col`` / ``last_col``: ``(n_channels, n_rows)`` from :func:`channel_row_extents`;
    ``row_ux`` / ``row_uy``: cos / sin of each row's angle.
    """
    n_channels, n_rows = first_col.shape
    ray_step = _TWO_PI / n_rays
    first_step = np.zeros((n_channels, n_rays), dtype=np.int64)
    stop_step = np.zeros((n_channels, n_rays), dtype=np.int64)
    t_low = np.empty(n_rays)
    t_high = np.empty(n_rays)
    for ch in range(n_channels):
        t_low[:] = np.inf
        t_high[:] = -np.inf
        for r in range(n_rows):
            if first_col[ch, r] < 0:
                continue
            near = max(radius_axis[first_col[ch, r]], 0.0)
            far = max(radius_axis[last_col[ch, r]], 0.0)
            ux, uy = row_ux[r], row_uy[r]
            # 1e-6 mm / rad of slack covers the float32 rounding of the sampler.
            reach = 0.5 * column_step + (far + 0.5 * column_step) * 0.5 * row_step + 1e-6
            along = min(max(cx * ux + cy * uy, near), far)
            closest = math.hypot(along * ux - cx, along * uy - cy)
            near_angle = math.atan2(near * uy - cy, near * ux - cx)
            far_angle = math.atan2(far * uy - cy, far * ux - cx)
            farthest = max(math.hypot(near * ux - cx, near * uy - cy),
                           math.hypot(far * ux - cx, far * uy - cy))
            sweep = (far_angle - near_angle + math.pi) % _TWO_PI - math.pi
            if closest <= reach:  # the segment passes the centre: every ray may see it
                low, width = 0.0, _TWO_PI
            else:
                widen = math.asin(min(reach / max(closest, 1e-300), 1.0)) + 1e-6
                low = (near_angle if sweep >= 0.0 else near_angle + sweep) - widen
                width = abs(sweep) + 2.0 * widen
            low_k = low / ray_step
            nearest_t = max(closest - reach, 0.0)
            farthest_t = farthest + reach
            for k in range(math.ceil(low_k - ray_slack), math.floor(low_k + width / ray_step + ray_slack) + 1):
                q = k % n_rays
                t_low[q] = min(t_low[q], nearest_t)
                t_high[q] = max(t_high[q], farthest_t)
        for q in range(n_rays):
            if math.isfinite(t_low[q]):
                first_step[ch, q] = max(math.floor(t_low[q] / step_mm) - 1, 0)
                # Two steps of slack past the last possible sample so a run ending there is seen to end.
                stop_step[ch, q] = min(math.ceil(t_high[q] / step_mm) + 2, last_step + 1)
    return first_step, stop_step


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
def pack_masks(masks, out):
    """``out = sum(masks[i] << i)``: bit ``i`` of each uint8 of ``out`` is mask ``i`` (up to 8
    bool masks of ``out``'s shape), in one pass."""
    n_rows, n_cols = out.shape
    for r in range(n_rows):
        for c in range(n_cols):
            v = 0
            for i in range(len(masks)):
                if masks[i][r, c]:
                    v |= 1 << i
            out[r, c] = v


def warm_up() -> None:
    """Compile (or load from the cache) every kernel on tiny inputs, before the first frame."""
    t = np.linspace(0.0, _TWO_PI, 8, endpoint=False)
    x, y = np.cos(t), np.sin(t)
    shoelace(x, y)
    radii_about_point(x, y, 0.0, 0.0, 8, 1e-9, 1e-9)
    circular_running_median(np.ones(8), 3)
    labels = np.ones((4, 4), dtype=np.uint8)
    flags = labels.astype(np.bool_)
    pack_masks((flags, flags, flags), labels)
    pack_masks((flags, flags, flags, flags), labels)
    lut = np.zeros(256, dtype=np.uint8)
    lut[1] = 1
    first_col, last_col = channel_row_extents(labels, lut, 1)
    radii = 0.1 * np.arange(4.0)
    first_step, stop_step = ray_windows(first_col, last_col, radii, np.cos(t[:4]), np.sin(t[:4]), 0.1,
                                        _TWO_PI / 4, 0.0, 0.0, 4, 0.05, 8, 1e-9)
    march_channel(labels.ravel(), lut, 1, 4, 4, 0.0, 0.1, 0.0, _TWO_PI / 4, 0.0, 0.0, np.ones(4),
                  np.zeros(4), first_step[0], stop_step[0], np.ones(4, dtype=np.bool_), False, 0.05,
                  np.zeros(4, dtype=np.bool_), np.zeros(4), np.zeros(4), np.zeros(4, dtype=np.bool_))
