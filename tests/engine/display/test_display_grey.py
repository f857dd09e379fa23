"""display_grey / burn_overlay: the partial-sort window and the out= paths equal the original."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.display.overlay import burn_overlay, display_grey

OVERLAY = {"frame": 3, "status": "ok", "metrics": {"lumen_area_mm2": 5.2},
           "lumen": {"points_px": [[200 + 80 * np.cos(t), 200 + 80 * np.sin(t)] for t in np.linspace(0, 6.2, 90)]},
           "plaque": [{"type": "calcium", "start_deg": 10.0, "arc_deg": 80.0}],
           "struts": [{"x_px": 100.0 + i, "y_px": 200.0, "state": "apposed"} for i in range(0, 200, 12)]}


def _reference_grey(image: np.ndarray) -> np.ndarray:
    """display_grey as it was before issue 17 (np.percentile window)."""
    sample = np.asarray(image[::4, ::4], dtype=np.float32)
    lo, hi = np.percentile(sample, [60.0, 99.9])
    scale = 255.0 / max(float(hi - lo), 1e-9)
    return cv2.convertScaleAbs(np.asarray(image, dtype=np.float32), alpha=scale, beta=-lo * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_display_grey_equals_the_percentile_window(dtype):
    rng = np.random.default_rng(1)
    image = (rng.gamma(2.0, 6000.0, (256, 256))).astype(dtype)
    expected = _reference_grey(image)
    np.testing.assert_array_equal(display_grey(image), expected)
    out = np.full((256, 256), 7, np.uint8)
    result = display_grey(image, out=out)
    assert result is out or np.shares_memory(result, out)
    np.testing.assert_array_equal(out, expected)
    assert expected.max() == 255 and expected.min() == 0


def test_burn_overlay_into_out_equals_fresh():
    grey = display_grey(np.random.default_rng(2).gamma(2.0, 6000.0, (400, 400)).astype(np.float32))
    fresh = burn_overlay(grey, OVERLAY)
    out = np.zeros((400, 400, 3), np.uint8)
    result = burn_overlay(grey, OVERLAY, out=out)
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, fresh)
    assert (fresh[..., 1] != fresh[..., 0]).any()  # something coloured was drawn
