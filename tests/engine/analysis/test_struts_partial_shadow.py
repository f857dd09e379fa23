"""Struts whose shadow is partial, and struts floating in the lumen (issue 16 item 6).

Another console's point-spread function, blooming and multiple scattering leave tissue signal
behind a strut: the full-shadow test alone then finds no strut (the foreign renderer's strut F1
was 0). These frames are built here sample by sample, from neither renderer, so the test is
about the class of frame (a specular peak that stands out from its neighbours at its radius and
darkens what lies behind it), not about one generator's numbers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.analysis.struts import MetalDetectorConfig, detect_metal
from streams.geometry import FrameGeometry
from streams.pullback import Frame

A, N = 512, 1000
GEOMETRY = FrameGeometry(n_alines=A, n_samples=N, aline_spacing_mm=0.005)
STEP = GEOMETRY.sample_spacing_mm
WALL_MM = 1.3


def _frame(struts=(), floating=(), grains=(), shadow_drop=0.15, seed=0):
    """A LOG uint16 frame: noise ~0.15, a bright sheath ring at 0.45 mm, tissue ~0.7 from
    ``WALL_MM`` decaying slowly; ``struts`` (row) on the wall with a specular peak bloomed to ~0.07 mm (FWHM) in radius and 0.1 mm along the arc and
    tissue behind darkened by ``shadow_drop`` (not to the noise floor); ``floating`` (row, radius)
    in the lumen with no shadow within 0.5 mm; ``grains`` (row) single full-scale samples on the
    tissue surface (speckle, no shadow)."""
    rng = np.random.default_rng(seed)
    r = np.arange(N) * STEP
    img = 0.15 + 0.03 * rng.standard_normal((A, N))
    img[:, np.abs(r - 0.45) < 0.012] = 0.88
    tissue = (r >= WALL_MM) * 0.55 * np.exp(-np.clip(r - WALL_MM, 0, None) / 1.0)
    img += tissue + 0.05 * rng.standard_normal((A, N)) * (r >= WALL_MM)
    half = max(1, int(round(0.1 / (2 * np.pi * WALL_MM / A)) // 2))
    for row in struts:
        rows = np.arange(row - half, row + half + 1) % A
        img[np.ix_(rows, r > WALL_MM + 0.02)] -= shadow_drop
        img[np.ix_(rows, np.arange(N))] = np.maximum(
            img[np.ix_(rows, np.arange(N))], 0.98 * np.exp(-(((r - WALL_MM) / 0.04) ** 2)))
    for row, radius in floating:
        rows = np.arange(row - half, row + half + 1) % A
        img[np.ix_(rows, np.arange(N))] = np.maximum(
            img[np.ix_(rows, np.arange(N))], 0.98 * np.exp(-(((r - radius) / 0.04) ** 2)))
        img[np.ix_(rows, r > WALL_MM + 0.02)] -= shadow_drop
    for row in grains:
        img[row, int(round(WALL_MM / STEP)) + 1] = 1.0
    pixels = np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16)
    pixels.setflags(write=False)
    return Frame("synthetic", 0, 0.0, pixels, GEOMETRY)


def _found(detection, rows, tolerance=4):
    pred = detection.strut_rows
    return [bool(pred.size) and int(np.min(np.abs((pred - row + A // 2) % A - A // 2))) <= tolerance
            for row in rows]


def test_struts_with_a_partial_shadow_are_found_at_the_wall():
    rows = (40, 150, 300, 420)
    det = detect_metal(_frame(struts=rows))
    assert all(_found(det, rows)), det.strut_rows
    assert det.strut_rows.size == len(rows)
    assert np.allclose(det.strut_radius_mm, WALL_MM, atol=0.01)


def test_the_full_shadow_test_alone_misses_them():
    """The specular test is what finds them: with it disabled (an unreachable peak level) the
    detector falls back to the full-shadow test and finds none, as before this change."""
    off = dataclasses.replace(MetalDetectorConfig(), specular_margin=1.0)
    assert detect_metal(_frame(struts=(40, 150)), off).strut_rows.size == 0


def test_a_strut_floating_in_the_lumen_is_found_without_a_nearby_shadow():
    det = detect_metal(_frame(floating=((200, 0.9), (350, 1.0))))
    assert all(_found(det, (200, 350))), det.strut_rows
    assert det.strut_rows.size == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speckle_grains_and_the_sheath_ring_are_not_struts(seed):
    det = detect_metal(_frame(grains=(60, 61, 250, 400), seed=seed))
    assert det.strut_rows.size == 0, det.strut_rows


def test_a_bright_peak_without_a_shadow_is_not_a_strut():
    """A narrow bright reflection on the wall that darkens nothing behind it (a calcium glint,
    a fibrous cap highlight) is tissue."""
    det = detect_metal(_frame(struts=(100, 300), shadow_drop=0.0))
    assert det.strut_rows.size == 0, det.strut_rows
