"""The phantom: determinism, ground-truth consistency, scenario content."""

from __future__ import annotations

import numpy as np
import pytest

from engine.synthetic.phantom import SCENARIOS, generate_pullback
from engine.synthetic.phantom.model import GUIDEWIRE_RADIUS_MM
from streams.truth import Label

# Small geometry, coarse frame pitch: each scenario's 40 mm in a dozen frames.
SMALL = dict(n_frames=12, n_alines=256, n_samples=512, frame_pitch_mm=3.6)


@pytest.fixture(scope="module")
def pullbacks():
    return {name: generate_pullback(name, seed=3, **SMALL) for name in SCENARIOS}


def test_every_scenario_renders_uint16_frames_with_truth(pullbacks):
    for name, pb in pullbacks.items():
        assert pb.frames.shape == (12, 256, 512), name
        assert pb.frames.dtype == np.uint16
        assert len(pb.truth.frames) == 12
        # Flushed lumen is dark, the wall bright: the image is not blank or saturated.
        assert 0.01 < np.mean(pb.frames > 40000) < 0.5, name


def test_same_seed_same_pullback_other_seed_differs():
    a = generate_pullback("calcified", seed=11, n_frames=3, n_alines=256, n_samples=512)
    b = generate_pullback("calcified", seed=11, n_frames=3, n_alines=256, n_samples=512)
    c = generate_pullback("calcified", seed=12, n_frames=3, n_alines=256, n_samples=512)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.truth.guidance == b.truth.guidance
    assert [t.record for t in a.truth.frames] == [t.record for t in b.truth.frames]
    assert not np.array_equal(a.frames, c.frames)


def _label_map_lumen_area_mm2(pb, i):
    """Area of the lumen counted from label-map pixels (polar pixel area r * dr * dtheta)."""
    g = pb.geometry
    labels = pb.truth.frames[i].labels[: g.n_valid_alines]
    inside = np.isin(labels, [Label.CATHETER, Label.LUMEN, Label.GUIDEWIRE, Label.STRUT])
    # Metal and the catheter only count while in front of the lumen surface on that row.
    radii = g.radius_mm(np.arange(g.n_samples), pb.z_offset_px[i])
    lumen_r = pb.truth.frames[i].lumen_radius_mm[: g.n_valid_alines]
    inside &= radii[None, :] < lumen_r[:, None]
    dr = g.sample_spacing_mm
    dtheta = 2 * np.pi / g.n_valid_alines
    first = radii[0] - 0.5 * dr
    return float(np.sum(inside * radii[None, :]) * dr * dtheta + np.pi * first**2)


def test_lumen_area_from_radii_matches_label_map_and_model(pullbacks):
    for name in ("normal", "fibrous-stenosis", "calcified", "lipid-tcfa", "stented-good"):
        pb = pullbacks[name]
        for i in range(0, 12, 3):
            t = pb.truth.frames[i]
            r = t.lumen_radius_mm[: pb.geometry.n_valid_alines]
            from_radii = 0.5 * np.sum(r**2) * 2 * np.pi / r.size
            from_labels = _label_map_lumen_area_mm2(pb, i)
            model = t.record["lumen"]["area_mm2"]
            assert from_labels == pytest.approx(from_radii, rel=0.01), (name, i)
            assert model == pytest.approx(from_radii, rel=0.01), (name, i)


def test_lumen_radius_is_where_the_label_map_leaves_the_lumen(pullbacks):
    pb = pullbacks["fibrous-stenosis"]
    g = pb.geometry
    t = pb.truth.frames[5]
    col = g.column(t.lumen_radius_mm[: g.n_valid_alines], pb.z_offset_px[5])
    rows = np.arange(g.n_valid_alines)
    before = t.labels[rows, np.floor(col).astype(int) - 1]
    after = t.labels[rows, np.ceil(col).astype(int) + 1]
    clear = (before == Label.LUMEN)  # rows whose lumen edge is not behind metal
    assert clear.mean() > 0.8
    assert np.all(np.isin(after[clear], [Label.WALL, Label.FIBROUS, Label.LIPID, Label.CALCIUM]))


def test_guidewire_shadow_sector_matches_its_geometry(pullbacks):
    pb = pullbacks["normal"]
    g = pb.geometry
    for t in pb.truth.frames[:4]:
        first, last = t.record["guidewire"]["alines"]
        rows = (last - first) % g.n_valid_alines + 1
        width_deg = rows * 360.0 / g.n_valid_alines
        shadow_rows = t.shadow[: g.n_valid_alines].any(axis=1)
        assert shadow_rows.sum() == pytest.approx(rows, abs=1)
        # The wire is 0.36 mm wide and sits 0.6-1.1 mm from the catheter centre: 19-34 degrees.
        assert 2 * np.degrees(np.arcsin(GUIDEWIRE_RADIUS_MM / 1.2)) < width_deg < 2 * np.degrees(np.arcsin(GUIDEWIRE_RADIUS_MM / 0.6)) + 2


def test_eel_hidden_behind_thick_plaque_and_visible_in_normal_wall(pullbacks):
    normal = pullbacks["normal"].truth.frames[6].record["eel"]
    assert normal["visible_arc_deg"] > 300
    assert normal["mean_diameter_mm"] is not None
    lesion = pullbacks["fibrous-stenosis"].truth.frames[6].record["eel"]
    assert lesion["visible_arc_deg"] < 250


def test_calcified_scenario_scores_four(pullbacks):
    calcium = pullbacks["calcified"].truth.guidance["calcium"]
    assert calcium["score"] == 4
    assert calcium["max_arc_deg"] > 180 and calcium["max_thickness_mm"] > 0.5 and calcium["length_mm"] > 5


def test_lipid_tcfa_has_thin_cap(pullbacks):
    records = [t.record for t in pullbacks["lipid-tcfa"].truth.frames]
    assert any(r["lipid"]["tcfa"] for r in records)
    caps = [r["lipid"]["min_cap_thickness_mm"] for r in records if r["lipid"]["min_cap_thickness_mm"] is not None]
    # The model's radial cap is 50 um; along rays from the lumen centroid across the sloping
    # lumen wall it measures thinner, still a thin cap.
    assert 0.02 < min(caps) < 0.05


def test_stent_struts_apposed_or_malapposed_as_specified(pullbacks):
    good = [s for t in pullbacks["stented-good"].truth.frames for s in t.record["struts"]]
    bad = [s for t in pullbacks["stented-malapposed"].truth.frames for s in t.record["struts"]]
    assert len(good) > 20 and len(bad) > 20
    assert not any(s["malapposed"] for s in good)
    malapposed = [s for s in bad if s["malapposed"]]
    assert malapposed and max(s["distance_to_lumen_um"] for s in malapposed) > 250
    assert pullbacks["stented-good"].truth.guidance["stent"]["struts_malapposed"] == 0
    assert pullbacks["stented-malapposed"].truth.guidance["stent"]["struts_malapposed"] == len(malapposed)


def test_geometry_is_a_parameter():
    pb = generate_pullback(
        "normal", seed=2, n_frames=2, n_alines=384, n_samples=700, ranging_depth_mm=5.0,
        refractive_index=1.36, z_offset_px=-8, n_padded_alines=6, intensity="LIN", rotation="CC",
    )
    g = pb.geometry
    assert (g.n_alines, g.n_valid_alines, g.n_samples) == (390, 384, 700)
    assert g.aline_spacing_mm == pytest.approx(5.0 / 700)
    assert (g.intensity, g.rotation) == ("LIN", "CC")
    assert np.all(pb.frames[:, 384:] == 0)
    assert np.all(pb.truth.frames[0].labels[384:] == Label.PADDING)
    assert len(pb.truth.frames[0].record["lumen"]["radius_mm"]) == 390
    assert pb.truth.frames[0].record["lumen"]["radius_mm"][-1] is None


def test_artefacts_scenario_flags_blood_frames():
    pb = generate_pullback("artefacts", seed=4, n_frames=40, n_alines=256, n_samples=512, frame_pitch_mm=1.0)
    status = [t.record["status"] for t in pb.truth.frames]
    assert status[5] == "low_confidence" and status[31] == "low_confidence"
    assert status[20] == "ok"
    assert len(set(pb.z_offset_px.tolist())) > 5  # z-offset drift
    assert max(t.record["nurd_deg"] for t in pb.truth.frames) > 5
