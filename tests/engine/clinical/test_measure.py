"""Per-frame measurements: lumen, plaque about the lumen centroid, struts and the stent contour."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import engine.clinical.measure
from engine.clinical.measure import PolarGrid, measure_lumen, measure_plaque, measure_struts
from engine.config import GuidanceConfig


def _circle_radii(angles, centre, radius):
    """Exact ray-circle intersection from the catheter (origin) to a circle around ``centre``."""
    c, s = np.cos(angles), np.sin(angles)
    b = c * centre[0] + s * centre[1]
    return b + np.sqrt(b * b - (centre[0] ** 2 + centre[1] ** 2 - radius**2))


def test_doctests():
    result = doctest.testmod(engine.clinical.measure)
    assert result.attempted > 0 and result.failed == 0


def test_lumen_with_shadowed_rows_interpolated():
    angles = 2 * np.pi * np.arange(504) / 504
    r = _circle_radii(angles, (0.4, -0.3), 1.6)
    r[40:70] = np.nan  # guidewire shadow
    m = measure_lumen(r, angles)
    assert m.area_mm2 == pytest.approx(np.pi * 1.6**2, rel=0.005)
    assert m.mean_diameter_mm == pytest.approx(3.2, rel=0.005)
    assert m.centroid_xy == pytest.approx((0.4, -0.3), abs=0.01)


def test_struts_on_a_circle_give_its_area_and_apposition():
    angles = 2 * np.pi * np.arange(500) / 500
    centre = (0.35, 0.2)
    rows = np.array([10, 70, 120, 190, 260, 320, 380, 450])
    strut_r = _circle_radii(angles, centre, 1.5)[rows]
    lumen = _circle_radii(angles, centre, 1.58)
    lumen[rows[2] - 3 : rows[2] + 4] = np.nan  # shadowed behind a strut: interpolated
    lumen[rows[5] - 2 : rows[5] + 3] = _circle_radii(angles, centre, 1.95)[rows[5] - 2 : rows[5] + 3]
    struts, stent = measure_struts(rows, strut_r, lumen, angles, GuidanceConfig())
    assert [s["aline"] for s in struts] == sorted(rows.tolist())
    distances = {s["aline"]: s["distance_to_lumen_um"] for s in struts}
    assert distances[10] == pytest.approx(80, abs=6)
    assert distances[120] == pytest.approx(80, abs=6)
    assert distances[320] > 400
    assert [s["malapposed"] for s in struts] == [s["aline"] == 320 for s in struts]
    assert stent["area_mm2"] == pytest.approx(np.pi * 1.5**2, rel=0.01)
    assert stent["min_diameter_mm"] == pytest.approx(3.0, rel=0.01)


def test_too_few_struts_give_no_stent_contour():
    angles = 2 * np.pi * np.arange(100) / 100
    struts, stent = measure_struts(np.array([3, 50]), np.array([1.2, 1.3]), np.full(100, 1.4), angles, GuidanceConfig())
    assert len(struts) == 2 and stent is None


def test_plaque_arcs_thickness_and_cap_about_the_lumen_centroid():
    angles = 2 * np.pi * np.arange(500) / 500
    radii = 0.005 * np.arange(900)
    lumen_r = np.full(500, 1.2)
    lumen = measure_lumen(lumen_r, angles)
    deg = np.degrees(angles)
    calcium_rows = (deg >= 0) & (deg < 200)
    lipid_rows = (deg >= 220) & (deg < 320)
    calcium = calcium_rows[:, None] & (radii >= 1.3) & (radii < 1.9)
    lipid = lipid_rows[:, None] & (radii >= 1.24) & (radii < 1.7)
    fibrous = (lipid_rows[:, None] & (radii >= 1.2) & (radii < 1.24)) | (calcium_rows[:, None] & (radii >= 1.2) & (radii < 1.3))
    out = measure_plaque(
        {"calcium": calcium, "lipid": lipid, "fibrous": fibrous}, PolarGrid(angles, radii), lumen, 500, GuidanceConfig()
    )
    assert out["calcium"]["arc_deg"] == pytest.approx(200, abs=1.5)
    assert out["calcium"]["max_thickness_mm"] == pytest.approx(0.6, abs=0.011)
    assert out["lipid"]["arc_deg"] == pytest.approx(100, abs=1.5)
    assert out["lipid"]["min_cap_thickness_mm"] == pytest.approx(0.04, abs=0.006)
    assert out["lipid"]["tcfa"] is True
    assert out["plaque_free_arc_deg"] == pytest.approx(60, abs=2)
    kinds = sorted(p["type"] for p in out["plaque"])
    assert kinds == ["calcium", "lipid"]  # the caps are hidden under their cores' types
    calcium_entry = next(p for p in out["plaque"] if p["type"] == "calcium")
    assert calcium_entry["alines"][0] in (0, 499, 1)
    assert calcium_entry["alines"][1] == pytest.approx(200 / 360 * 500, abs=2)
