"""MLD MAX and post-PCI rules against hand-computed answers, thresholds exactly at the boundary."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from engine.clinical import rules
from engine.clinical.rules import (
    CalciumScore,
    References,
    apposition_summary,
    calcium_length_mm,
    calcium_score,
    expansion,
    find_lesion,
    find_mla,
    find_references,
    frames_extent_mm,
    is_tcfa,
    round_down_to_step,
    round_up_to_step,
    stent_sizing,
)
from engine.config import GuidanceConfig

NAN = np.nan


def test_doctests_pass():
    result = doctest.testmod(rules, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_imports_only_engine_config():
    tree = ast.parse(Path(rules.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert {m for m in modules if m and m.split(".")[0] in {"engine", "streams", "models"}} == {
        "engine.config"
    }


# ---------------------------------------------------------------------------------- rounding ---


@pytest.mark.parametrize(
    ("x", "up", "down"),
    [
        (3.0, 3.0, 3.0),
        (3.0000001, 3.0, 3.0),
        (2.9999999, 3.0, 3.0),
        (3.01, 3.25, 3.0),
        (3.24, 3.25, 3.0),
        (3.25, 3.25, 3.25),
        (2.76, 3.0, 2.75),
        (0.0, 0.0, 0.0),
    ],
)
def test_rounding_to_quarter_millimetres(x, up, down):
    assert round_up_to_step(x, 0.25) == up
    assert round_down_to_step(x, 0.25) == down


def test_rounding_with_a_step_that_is_not_a_binary_fraction():
    assert round_up_to_step(3.0, 0.1) == 3.0  # 3.0 / 0.1 is 29.999999999999996 in floats
    assert round_down_to_step(3.0, 0.1) == 3.0
    assert round_up_to_step(3.01, 0.1) == 3.1


def test_rounding_arrays_and_nan():
    result = round_up_to_step([2.9, NAN, 3.0], 0.25)
    assert result[0] == 3.0 and np.isnan(result[1]) and result[2] == 3.0
    with pytest.raises(ValueError, match="step"):
        round_up_to_step(3.0, 0.0)
    with pytest.raises(ValueError, match="step"):
        round_down_to_step(3.0, -0.25)


# ----------------------------------------------------------------------------------- calcium ---


@pytest.mark.parametrize(
    ("arc", "thickness", "length", "points"),
    [
        (0.0, 0.0, 0.0, (0, 0, 0)),
        (180.0, 0.5, 5.0, (0, 0, 0)),  # exactly at every threshold: "greater than" is strict
        (180.01, 0.5, 5.0, (2, 0, 0)),
        (180.0, 0.501, 5.0, (0, 1, 0)),
        (180.0, 0.5, 5.01, (0, 0, 1)),
        (181.0, 0.6, 5.0, (2, 1, 0)),
        (270.0, 1.2, 12.0, (2, 1, 1)),
    ],
)
def test_calcium_score_points(arc, thickness, length, points):
    score = calcium_score(arc, thickness, length)
    assert (score.arc_points, score.thickness_points, score.length_points) == points
    assert score.score == sum(points)
    assert (score.max_arc_deg, score.max_thickness_mm, score.length_mm) == (arc, thickness, length)


def test_calcium_score_uses_configured_thresholds():
    cfg = GuidanceConfig(calcium_arc_deg=90.0, calcium_thickness_mm=1.0, calcium_length_mm=2.0)
    assert calcium_score(100.0, 0.8, 3.0, cfg).score == 3


def test_calcium_score_rejects_unknown_or_negative_inputs():
    with pytest.raises(ValueError, match="max_arc_deg"):
        calcium_score(NAN, 0.5, 5.0)
    with pytest.raises(ValueError, match="length_mm"):
        calcium_score(10.0, 0.5, -1.0)


def test_calcium_length_is_the_longest_run_plus_one_pitch():
    positions = np.arange(6) * 0.2
    assert calcium_length_mm([0, 1, 1, 1, 0, 1], positions) == pytest.approx(0.6)
    assert calcium_length_mm([1, 0, 0, 0, 1, 1], positions) == pytest.approx(0.4)
    assert calcium_length_mm(np.zeros(6, bool), positions) == 0.0
    assert calcium_length_mm(np.ones(6, bool), positions) == pytest.approx(1.2)


def test_calcium_length_with_uneven_frame_spacing():
    # frames 1..2 stand for [0.1, 0.7]: half-way to frames 0 and 3 on either side
    assert calcium_length_mm([0, 1, 1, 0], [0.0, 0.2, 0.5, 0.9]) == pytest.approx(0.6)


def test_calcium_length_exactly_at_the_score_threshold_scores_no_point():
    positions = np.arange(40) * 0.2
    present = np.zeros(40, bool)
    present[5:30] = True  # 25 frames x 0.2 mm = 5.0 mm (24 pitches summed in floats + one)
    length = calcium_length_mm(present, positions)
    assert length == pytest.approx(5.0)
    assert calcium_score(0.0, 0.0, length).length_points == 0
    present[30] = True
    assert calcium_score(0.0, 0.0, calcium_length_mm(present, positions)).length_points == 1


def test_frames_extent_mm():
    assert frames_extent_mm([0.0, 0.2, 0.4], 1, 1) == pytest.approx(0.2)
    assert frames_extent_mm([3.0], 0, 0) == 0.0
    with pytest.raises(ValueError, match="run"):
        frames_extent_mm([0.0, 0.2, 0.4], 2, 1)
    with pytest.raises(ValueError, match="increasing"):
        frames_extent_mm([0.0, 0.2, 0.2], 0, 1)


# -------------------------------------------------------------------------- lesion / MLA ---


def test_find_mla_ignores_nan_and_prefers_the_distal_tie():
    assert find_mla([NAN, 4.0, 2.0, 2.0, NAN]) == 2
    with pytest.raises(ValueError, match="no known frame"):
        find_mla([NAN, NAN])
    with pytest.raises(ValueError, match="1-D"):
        find_mla(np.ones((2, 2)))


def test_lesion_is_the_abnormal_run_around_the_mla():
    area = [6.0, 5.5, 5.0, 3.0, 2.0, 2.5, 4.0, 6.0, 1.5, 6.0]
    free_arc = [300, 250, 200, 100, 50, 90, 219.99, 220.0, 100, 260]
    lipid = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    # MLA is frame 8 (1.5 mm2), abnormal on its own: the lesion is just frame 8
    lesion = find_lesion(area, free_arc, lipid)
    assert (lesion.distal_edge_frame, lesion.proximal_edge_frame, lesion.mla_frame) == (8, 8, 8)
    area[8] = 6.0  # now the MLA is frame 4; frame 7 at exactly 220 deg is normal
    lesion = find_lesion(area, free_arc, lipid)
    assert (lesion.distal_edge_frame, lesion.proximal_edge_frame, lesion.mla_frame) == (2, 6, 4)


def test_lipid_or_unknown_makes_a_frame_abnormal():
    area = [5.0, 4.0, 2.0, 4.0, 5.0]
    free_arc = [300.0, 300.0, 100.0, NAN, 300.0]
    lipid = np.array([0.0, 1.0, 0.0, 0.0, NAN])  # float flags: NaN is unknown
    lesion = find_lesion(area, free_arc, lipid)
    assert (lesion.distal_edge_frame, lesion.proximal_edge_frame) == (1, 4)


def test_no_lesion_when_the_mla_frame_is_normal():
    assert find_lesion([5.0, 3.0, 5.0], [300.0, 250.0, 100.0], [0, 0, 1]) is None


def test_lesion_touching_the_pullback_ends():
    lesion = find_lesion([2.0, 3.0, 4.0, 6.0], [100.0, 100.0, 150.0, 300.0], [0, 0, 0, 0])
    assert (lesion.distal_edge_frame, lesion.proximal_edge_frame) == (0, 2)
    lesion = find_lesion([6.0, 3.0, 2.0], [300.0, 100.0, 100.0], [0, 0, 0])
    assert (lesion.distal_edge_frame, lesion.proximal_edge_frame) == (1, 2)


def test_find_lesion_shape_checks():
    with pytest.raises(ValueError, match="plaque_free_arc_deg"):
        find_lesion([1.0, 2.0], [300.0], [0, 0])
    with pytest.raises(ValueError, match="lipid_present"):
        find_lesion([1.0, 2.0], [300.0, 300.0], [0])


# -------------------------------------------------------------------------------- references ---


def test_references_take_the_largest_lumen_within_the_window_inclusive():
    positions = np.arange(30) * 0.5
    area = np.full(30, 5.0)
    area[14:17] = 2.0  # lesion frames 14..16 (7.0..8.0 mm)
    area[4] = 9.0  # 5.0 mm distal of frame 14: exactly at a 5 mm window
    area[3] = 9.5  # 5.5 mm: outside it
    area[26] = 8.0  # 5.0 mm proximal of frame 16
    area[27] = 9.9  # 5.5 mm: outside
    refs = find_references(area, positions, (14, 16), 5.0)
    assert (refs.distal_frame, refs.proximal_frame) == (4, 26)
    assert (refs.distal_area_mm2, refs.proximal_area_mm2) == (9.0, 8.0)


def test_references_skip_unknown_areas_and_prefer_the_nearer_tie():
    positions = np.arange(8) * 1.0
    area = [6.0, 6.0, NAN, 2.0, 3.0, 7.0, 7.0, NAN]
    refs = find_references(area, positions, (3, 4), 10.0)
    assert (refs.distal_frame, refs.proximal_frame) == (1, 5)


def test_reference_side_without_frames_is_none():
    positions = np.arange(5) * 1.0
    refs = find_references([2.0, 3.0, 5.0, 6.0, NAN], positions, (0, 2), 10.0)
    assert refs.distal_frame is None and refs.distal_area_mm2 is None
    assert refs.proximal_frame == 3
    lesion = find_lesion([2.0, 3.0, 5.0, 6.0, 7.0], [0, 0, 0, 300, 300], [0, 0, 0, 0, 0])
    assert find_references([2.0, 3.0, 5.0, 6.0, 7.0], positions, lesion, 10.0).proximal_frame == 4
    assert json.loads(json.dumps(refs.to_dict())) == {
        "distal_frame": None,
        "proximal_frame": 3,
        "distal_area_mm2": None,
        "proximal_area_mm2": 6.0,
    }


def test_references_reject_bad_spans():
    with pytest.raises(ValueError, match="edges"):
        find_references([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], (2, 1), 5.0)
    with pytest.raises(ValueError, match="window_mm"):
        find_references([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], (1, 1), 0.0)
    with pytest.raises(ValueError, match="increasing"):
        find_references([1.0, 2.0, 3.0], [0.0, 2.0, 1.0], (1, 1), 5.0)


# ----------------------------------------------------------------------------------- sizing ---


def sizing_case(n=40, pitch=0.5):
    """A pullback where frames 15..24 are the lesion and everything else is normal."""
    return {
        "mean_lumen_diameter_mm": np.full(n, 2.9),
        "mean_eel_diameter_mm": np.full(n, NAN),
        "eel_visible_arc_deg": np.zeros(n),
        "plaque_free_arc_deg": np.where((np.arange(n) >= 15) & (np.arange(n) <= 24), 100.0, 300.0),
        "lipid_present": np.zeros(n, bool),
        "positions_mm": np.arange(n) * pitch,
    }


def test_eel_basis_takes_the_smaller_mean_eel_rounded_down():
    case = sizing_case()
    case["eel_visible_arc_deg"][[10, 30]] = [200.0, 181.0]
    case["mean_eel_diameter_mm"][[10, 30]] = [3.62, 3.49]
    s = stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **case)
    assert (s.basis, s.diameter_mm) == ("eel", 3.25)
    # landing frames 14 and 25: 5.5 mm apart, next available length 8 mm
    assert (s.distal_landing_frame, s.proximal_landing_frame) == (14, 25)
    assert (s.required_length_mm, s.length_mm, s.warnings) == (5.5, 8.0, ())


def test_eel_exactly_at_the_arc_threshold_falls_back_to_the_lumen():
    case = sizing_case()
    case["eel_visible_arc_deg"][[10, 30]] = [180.0, 250.0]  # > 180 is strict
    case["mean_eel_diameter_mm"][[10, 30]] = [3.6, 3.6]
    s = stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **case)
    assert (s.basis, s.diameter_mm) == ("lumen", 3.0)


def test_eel_seen_at_one_reference_only_uses_the_distal_lumen_rounded_up():
    case = sizing_case()
    case["eel_visible_arc_deg"][10] = 300.0
    case["mean_eel_diameter_mm"][10] = 3.6
    case["mean_lumen_diameter_mm"][10] = 2.76
    case["mean_lumen_diameter_mm"][30] = 3.4  # the proximal lumen is not used
    s = stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **case)
    assert (s.basis, s.diameter_mm) == ("lumen", 3.0)
    case["mean_lumen_diameter_mm"][10] = 3.0  # an exact multiple stays
    assert stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **case).diameter_mm == 3.0


def test_landing_zones_skip_lipid_and_plaque():
    case = sizing_case()
    case["lipid_present"][14] = True  # first frame distal of the lesion has lipid
    case["plaque_free_arc_deg"][13] = 219.0  # the next has too much plaque
    case["plaque_free_arc_deg"][25] = 220.0  # exactly at the threshold: a landing zone
    s = stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **case)
    assert (s.distal_landing_frame, s.proximal_landing_frame) == (12, 25)
    assert s.required_length_mm == 6.5 and s.length_mm == 8.0
    assert s.warnings == ()


def test_lesion_at_the_distal_end_of_the_pullback():
    case = sizing_case()
    case["plaque_free_arc_deg"][:15] = 100.0
    case["lipid_present"][0] = True
    s = stent_sizing((0, 24), References(None, 30, None, 8.0), **case)
    assert s.basis == "undetermined" and s.diameter_mm is None
    assert s.distal_landing_frame == 0 and s.proximal_landing_frame == 25
    assert s.required_length_mm == 12.5 and s.length_mm == 15.0
    assert any("diameter undetermined" in w for w in s.warnings)
    assert any("no normal distal landing zone" in w for w in s.warnings)
    assert "lipid at distal landing zone" in s.warnings


def test_lipid_at_the_proximal_landing_zone_is_warned():
    case = sizing_case()
    case["plaque_free_arc_deg"][25:] = 100.0
    case["lipid_present"][39] = True
    s = stent_sizing((15, 24), References(10, None, 7.0, None), **case)
    assert s.proximal_landing_frame == 39
    assert "lipid at proximal landing zone" in s.warnings
    assert "lipid at distal landing zone" not in s.warnings


@pytest.mark.parametrize(
    ("edges", "required", "length"),
    [((15, 43), 15.0, 15.0), ((15, 44), 15.5, 18.0), ((15, 87), 37.0, 38.0)],
)
def test_length_rounds_up_to_an_available_stent(edges, required, length):
    case = sizing_case(n=100)
    case["plaque_free_arc_deg"][:] = 300.0
    case["plaque_free_arc_deg"][edges[0] : edges[1] + 1] = 100.0
    s = stent_sizing(edges, References(10, 95, 7.0, 8.0), **case)
    assert (s.required_length_mm, s.length_mm) == (required, length)
    assert s.warnings == ()


def test_length_beyond_the_longest_stent_is_the_longest_with_a_warning():
    case = sizing_case(n=120)
    case["plaque_free_arc_deg"][:] = 300.0
    case["plaque_free_arc_deg"][15:95] = 100.0
    s = stent_sizing((15, 94), References(10, 100, 7.0, 8.0), **case)
    assert s.required_length_mm == 40.5 and s.length_mm == 38.0
    assert any("exceeds the longest available stent" in w for w in s.warnings)


def test_calcium_score_four_asks_for_vessel_preparation():
    case = sizing_case()
    s = stent_sizing(
        (15, 24), References(10, 30, 7.0, 8.0), **case, calcium=calcium_score(200, 0.7, 6)
    )
    assert s.warnings == ("calcium score 4: vessel preparation advised",)
    s = stent_sizing(
        (15, 24), References(10, 30, 7.0, 8.0), **case, calcium=calcium_score(200, 0.7, 5)
    )
    assert s.warnings == ()


def test_sizing_to_dict_is_json():
    s = stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **sizing_case())
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert set(d) == {
        "basis",
        "diameter_mm",
        "length_mm",
        "proximal_landing_frame",
        "distal_landing_frame",
        "required_length_mm",
        "warnings",
    }
    assert d["warnings"] == []


def test_sizing_rejects_mismatched_arrays():
    case = sizing_case()
    case["mean_eel_diameter_mm"] = case["mean_eel_diameter_mm"][:-1]
    with pytest.raises(ValueError, match="mean_eel_diameter_mm"):
        stent_sizing((15, 24), References(10, 30, 7.0, 8.0), **case)
    with pytest.raises(ValueError, match="reference frame"):
        stent_sizing((15, 24), References(10, 99, 7.0, 8.0), **sizing_case())


# -------------------------------------------------------------------------------- expansion ---


def expansion_case():
    """30 frames at 0.5 mm; stent on frames 10..19 (5.0..9.5 mm, halves split at 7.25 mm)."""
    positions = np.arange(30) * 0.5
    lumen = np.full(30, 6.0)
    lumen[8] = 8.0  # distal reference (largest within 5 mm distal of frame 10)
    lumen[22] = 7.0  # proximal reference
    lumen[29] = 6.9  # 5.0 mm proximal of frame 19: inside the window, but smaller
    stent = np.full(30, NAN)
    stent[10:20] = 8.0
    stent[12] = 7.6  # distal-half MSA: 95% of 8.0
    stent[17] = 6.3  # proximal-half MSA and overall MSA: 90% of 7.0
    stented = np.isfinite(stent)
    return stent, lumen, positions, stented


def test_expansion_per_half_against_the_nearer_reference():
    stent, lumen, positions, stented = expansion_case()
    e = expansion(stent, lumen, positions, stented)
    assert (e.msa_mm2, e.msa_frame) == (6.3, 17)
    assert (e.distal_reference_frame, e.proximal_reference_frame) == (8, 22)
    assert e.expansion_pct == pytest.approx(100 * 6.3 / 7.5)
    assert e.distal_expansion_pct == pytest.approx(95.0)
    assert e.proximal_expansion_pct == pytest.approx(90.0)
    assert e.classification == "acceptable"  # the worse half decides; 90% is "at least"
    assert not e.msa_below_threshold and e.warnings == ()


def test_expansion_exactly_at_95_percent_in_both_halves_is_optimal():
    stent, lumen, positions, stented = expansion_case()
    stent[17] = 6.65  # 95% of 7.0
    assert expansion(stent, lumen, positions, stented).classification == "optimal"
    stent[17] = 6.2  # below 90%
    assert expansion(stent, lumen, positions, stented).classification == "suboptimal"


def test_small_msa_is_suboptimal_whatever_the_expansion():
    stent, lumen, positions, stented = expansion_case()
    stent[stented] *= 0.5
    lumen *= 0.5
    e = expansion(stent, lumen, positions, stented)
    assert e.distal_expansion_pct == pytest.approx(95.0)
    assert e.msa_mm2 == pytest.approx(3.15) and e.msa_below_threshold
    assert e.classification == "suboptimal"
    stent[stented] = 4.5  # exactly at 4.5 mm2: not below
    lumen[:] = 4.5
    e = expansion(stent, lumen, positions, stented)
    assert not e.msa_below_threshold and e.classification == "optimal"


def test_stent_reaching_the_pullback_end_has_no_proximal_reference():
    stent, lumen, positions, stented = expansion_case()
    stent[20:] = 8.0
    stent[17] = 8.0  # the MSA is now frame 12, 7.6 mm2
    stented = np.isfinite(stent)
    e = expansion(stent, lumen, positions, stented)
    assert e.proximal_reference_frame is None and e.proximal_expansion_pct is None
    assert e.expansion_pct == pytest.approx(95.0)  # against the one reference
    assert e.distal_expansion_pct == pytest.approx(95.0)
    assert e.classification == "optimal"  # judged on the half that has a reference
    assert any("no proximal reference" in w for w in e.warnings)
    assert json.loads(json.dumps(e.to_dict(), allow_nan=False))["proximal_reference_frame"] is None


def test_expansion_without_any_stent():
    stent, lumen, positions, _ = expansion_case()
    with pytest.raises(ValueError, match="no stented frame"):
        expansion(stent, lumen, positions, np.zeros(30, bool))
    e = expansion(np.full(30, NAN), lumen, positions, np.arange(30) == 12)
    assert e.msa_mm2 is None and e.classification == "undetermined"


# ------------------------------------------------------------------------------- apposition ---


def test_apposition_counts_and_lengths():
    positions = np.arange(20) * 0.2
    frames = np.array([0, 1, 3, 3, 4, 5, 6, 7, 8, 12, 12, 15])
    distance = np.array([50, 110, 111, 90, 250, 210, 300, 201, 205, NAN, 150, 120.0])
    a = apposition_summary(frames, distance, positions)
    assert a.struts_total == 12 and a.struts_measured == 11
    # > 110 um (110 itself is not): frames 3..8, 12, 15 -> runs of 6, 1, 1 frames
    assert a.struts_malapposed == 8
    assert a.max_malapposition_um == 300.0
    assert a.malapposed_length_mm == pytest.approx(1.2 + 0.2 + 0.2)
    # > 200 um: frames 4..8 -> 5 frames = 1.0 mm, not longer than 1 mm
    assert a.struts_relevant == 5 and a.relevant_length_mm == pytest.approx(1.0)
    assert not a.clinically_relevant
    distance[2] = 400.0  # frame 3 joins: 1.2 mm
    assert apposition_summary(frames, distance, positions).clinically_relevant


def test_apposition_threshold_is_configurable():
    cfg = GuidanceConfig(malapposition_threshold_um=160.0)
    a = apposition_summary([0, 1], [150.0, 161.0], [0.0, 0.2], cfg)
    assert a.struts_malapposed == 1 and a.max_malapposition_um == 161.0


def test_apposition_without_struts_or_malapposition():
    a = apposition_summary([], [], [0.0, 0.2])
    assert (a.struts_total, a.struts_malapposed, a.max_malapposition_um) == (0, 0, None)
    assert a.malapposed_length_mm == 0.0 and not a.clinically_relevant
    assert apposition_summary([0], [20.0], [0.0, 0.2]).max_malapposition_um is None


def test_apposition_rejects_bad_struts():
    with pytest.raises(ValueError, match="equal length"):
        apposition_summary([0, 1], [100.0], [0.0, 0.2])
    with pytest.raises(ValueError, match="frame indices"):
        apposition_summary([0, 2], [100.0, 100.0], [0.0, 0.2])
    with pytest.raises(ValueError, match="frame indices"):
        apposition_summary([0.0, 1.0], [100.0, 100.0], [0.0, 0.2])


# ------------------------------------------------------------------------------------- TCFA ---


def test_tcfa_boundaries():
    assert is_tcfa(0.064, 90.0) is True  # arc "at least" 90
    assert is_tcfa(0.065, 180.0) is False  # cap "below" 65 um
    assert is_tcfa(0.030, 89.9) is False
    assert is_tcfa(NAN, 180.0) is False
    assert is_tcfa(0.030, 10.0, GuidanceConfig(tcfa_lipid_arc_deg=0.0)) is True


def test_tcfa_per_frame_arrays():
    result = is_tcfa([0.05, 0.08, NAN, 0.05], [120.0, 120.0, 120.0, NAN])
    assert result.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="same shape"):
        is_tcfa([0.05, 0.05], [120.0])


def test_results_are_frozen_and_json_ready():
    score = calcium_score(200.0, 0.7, 6.0)
    with pytest.raises(AttributeError):
        score.score = 0  # type: ignore[misc]
    assert score.to_dict() == {
        "score": 4,
        "arc_points": 2,
        "thickness_points": 1,
        "length_points": 1,
        "max_arc_deg": 200.0,
        "max_thickness_mm": 0.7,
        "length_mm": 6.0,
    }
    assert isinstance(score, CalciumScore)


def test_rules_reject_a_foreign_config():
    with pytest.raises(TypeError, match="GuidanceConfig"):
        calcium_score(0.0, 0.0, 0.0, cfg={"calcium_arc_deg": 90})  # type: ignore[arg-type]
