"""The burned-in overlay image draws every element where and in the colour the vector overlay
says (issue 12 item 9: a ``burn_overlay`` that drew nothing passed all server and viewer tests)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.display.overlay import COLOURS, burn_overlay

N = 128
CENTRE = (N - 1) / 2.0


def _overlay(**parts) -> dict:
    return {"frame": 7, "status": "ok", "metrics": {"lumen_area_mm2": None}, **parts}


def _circle(radius_px: float, n: int = 180) -> list[list[float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([CENTRE + radius_px * np.sin(t), CENTRE - radius_px * np.cos(t)], 1).tolist()


def _drawn(overlay: dict) -> np.ndarray:
    """Pixels (and their BGR) that ``overlay``'s elements add to the text-only image."""
    grey = np.zeros((N, N), np.uint8)
    return burn_overlay(grey, overlay).astype(int) - burn_overlay(grey, _overlay()).astype(int)


def _polar(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radius (px) and screen angle (deg clockwise from 12 o'clock) of each True pixel."""
    y, x = np.nonzero(mask)
    return np.hypot(x - CENTRE, y - CENTRE), np.degrees(np.arctan2(x - CENTRE, CENTRE - y)) % 360


def _colour_of(diff: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The drawn colour, normalised (anti-aliasing scales it)."""
    strongest = diff[mask][np.argmax(diff[mask].sum(1))]
    return strongest / max(strongest.max(), 1)


@pytest.mark.parametrize("key", ["lumen", "eel"])
def test_contours_are_drawn_on_their_radius_in_their_colour(key):
    diff = _drawn(_overlay(**{key: {"points_px": _circle(30.0)}}))
    mask = np.abs(diff).sum(2) > 0
    assert mask.sum() > 150  # a closed ring of radius 30 px, not a dot
    radius, angle = _polar(mask)
    assert np.all(np.abs(radius - 30.0) < 2.0)
    assert np.histogram(angle, bins=12, range=(0, 360))[0].min() > 0  # all the way round
    expected = np.array(COLOURS[key]) / max(COLOURS[key])
    assert np.allclose(_colour_of(diff, mask), expected, atol=0.08)


@pytest.mark.parametrize(("kind", "radius_frac"), [("calcium", 0.46), ("lipid", 0.46),
                                                   ("guidewire", 0.48)])
def test_arcs_are_drawn_over_their_angles_only(kind, radius_frac):
    arc = {"type": kind, "start_deg": 30.0, "arc_deg": 60.0}
    parts = {"guidewire": arc} if kind == "guidewire" else {"plaque": [arc]}
    diff = _drawn(_overlay(**parts))
    mask = np.abs(diff).sum(2) > 0
    assert mask.sum() > 50
    radius, angle = _polar(mask)
    assert np.all(np.abs(radius - int(N * radius_frac)) < 4.5)  # 3 px thick, anti-aliased
    assert angle.min() > 30.0 - 4 and angle.max() < 90.0 + 4  # 30..90 deg clockwise from 12
    assert angle.max() - angle.min() > 50
    expected = np.array(COLOURS[kind]) / max(COLOURS[kind])
    assert np.allclose(_colour_of(diff, mask), expected, atol=0.08)


@pytest.mark.parametrize("state", ["apposed", "malapposed", "unknown"])
def test_struts_are_circles_at_their_position_in_their_state_colour(state):
    diff = _drawn(_overlay(struts=[{"x_px": 40.0, "y_px": 90.0, "state": state}]))
    mask = np.abs(diff).sum(2) > 0
    y, x = np.nonzero(mask)
    assert mask.sum() > 10 and np.all(np.hypot(x - 40, y - 90) < 6.0)
    expected = np.array(COLOURS[state]) / max(COLOURS[state])
    assert np.allclose(_colour_of(diff, mask), expected, atol=0.08)


def test_the_frame_label_is_written_and_the_grey_image_kept():
    grey = np.tile(np.arange(N, dtype=np.uint8), (N, 1))
    plain = burn_overlay(grey, _overlay())
    assert plain.shape == (N, N, 3) and plain.dtype == np.uint8
    label = np.abs(plain[:28, :].astype(int) - grey[:28, :, None]).sum(2) > 0
    assert label.sum() > 30  # "#7 ok" in the top-left corner
    assert np.array_equal(plain[40:], np.repeat(grey[40:, :, None], 3, 2))  # untouched below
    with_area = burn_overlay(grey, _overlay(metrics={"lumen_area_mm2": 5.25}))
    assert not np.array_equal(with_area[:28], plain[:28])  # the area is written too
