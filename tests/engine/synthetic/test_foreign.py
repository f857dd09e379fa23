"""The foreign renderer (validation only): truth self-consistency, scale, determinism, DICOM."""

from __future__ import annotations

import numpy as np
import pytest

from engine.synthetic.foreign import SCENARIOS, Catheter, ForeignGeometry, generate_pullback
from streams.errors import GeometryError
from streams.truth import Label

N = 10


@pytest.fixture(scope="module")
def pullbacks():
    return {name: generate_pullback(name, seed=5, n_frames=N) for name in SCENARIOS}


def test_six_foreign_scenarios():
    assert len(SCENARIOS) == 6 and all(n.startswith("foreign-") for n in SCENARIOS)


def test_scale_is_stated_and_not_the_phantom_default(pullbacks):
    for pb in pullbacks.values():
        scale = pb.geometry.intensity_scale
        assert scale is not None and scale.source == "dicom-lut"
        assert abs(scale.db_per_count * 65535 - 48.0) > 1.0 and scale.offset_db != 0.0
        assert pb.frames.dtype == np.uint16 and pb.geometry.intensity == "LOG"


def test_truth_is_self_consistent(pullbacks):
    cath = Catheter()
    for name, pb in pullbacks.items():
        sp = pb.geometry.sample_spacing_mm
        for k, t in enumerate(pb.truth.frames):
            rec = t.record
            lumen = np.array(rec["lumen"]["radius_mm"])
            assert np.all(lumen > cath.outer_radius_mm), name
            assert np.all(lumen < t.eel_radius_full_mm), name
            vis = np.isfinite(t.eel_radius_mm)
            assert np.allclose(t.eel_radius_mm[vis], t.eel_radius_full_mm[vis])
            assert rec["lumen"]["area_mm2"] > 0 and rec["status"] in ("ok", "low_confidence")
            for s in rec["struts"]:
                assert s["radius_mm"] > cath.outer_radius_mm, name
                assert np.isclose(s["distance_to_lumen_um"], (lumen[s["aline"]] - s["radius_mm"]) * 1000, atol=0.2)
                assert s["malapposed"] == (s["distance_to_lumen_um"] > 110.0)
            # the label map agrees with the lumen radius (first and last lumen columns)
            cols = np.round(lumen / sp - pb.z_offset_px[k]).astype(int)
            rows = np.arange(lumen.size)
            inside = t.labels[rows, np.clip(cols - 2, 0, None)]
            assert np.all(np.isin(inside, (Label.LUMEN, Label.STRUT, Label.GUIDEWIRE))), name
            assert np.all(t.labels[rows, np.minimum(cols + 2, t.labels.shape[1] - 1)] != Label.LUMEN)


def test_scenarios_show_their_features(pullbacks):
    recs = {n: [t.record for t in pb.truth.frames] for n, pb in pullbacks.items()}
    assert any(r["calcium"]["max_thickness_mm"] > 0.5 for r in recs["foreign-heavy-calcium"])
    assert pullbacks["foreign-heavy-calcium"].truth.guidance["sizing"]["basis"] == "lumen"
    assert any(r["lipid"]["tcfa"] for r in recs["foreign-lipid-tcfa"])
    assert any(p["type"] == "fibrous" for r in recs["foreign-fibrous-stenosis"] for p in r["plaque"])
    assert pullbacks["foreign-stent-expanded"].truth.guidance["stent"]["msa_mm2"] > 0
    assert any(s["malapposed"] for r in recs["foreign-stent-underexpanded-malapposed"] for s in r["struts"])
    assert not any(s["malapposed"] for r in recs["foreign-stent-expanded"] for s in r["struts"])
    assert any(r["status"] == "low_confidence" for r in recs["foreign-mixed-artefacts"])
    assert any(r["guidewire"] is not None for r in recs["foreign-fibrous-stenosis"])


def test_deterministic_per_seed():
    a = generate_pullback("foreign-mixed-artefacts", seed=2, n_frames=3)
    b = generate_pullback("foreign-mixed-artefacts", seed=2, n_frames=3)
    c = generate_pullback("foreign-mixed-artefacts", seed=3, n_frames=3)
    assert np.array_equal(a.frames, b.frames) and a.truth.guidance == b.truth.guidance
    assert not np.array_equal(a.frames, c.frames)


def test_geometry_and_catheter_are_configurable_and_checked():
    pb = generate_pullback("foreign-fibrous-stenosis", n_frames=2,
                           geometry=ForeignGeometry(n_alines=256, n_samples=1200, aline_spacing_mm=0.005),
                           catheter=Catheter(ring_radii_mm=(0.1,), ring_gain_db=(3.0,), outer_radius_mm=0.3))
    assert pb.frames.shape == (2, 256, 1200)
    with pytest.raises(GeometryError):
        ForeignGeometry(n_alines=2000)
    with pytest.raises(GeometryError):
        Catheter(ring_radii_mm=(0.6,), ring_gain_db=(1.0,))


def _round_trip(pb, tmp_path):
    from streams.files.dicom import read_dicom, write_dicom

    write_dicom(pb, tmp_path / "f.dcm", log_range_db=pb.geometry.intensity_scale.db_per_count * 65535)
    return read_dicom(tmp_path / "f.dcm")


def test_dicom_round_trip_keeps_pixels_and_geometry(tmp_path, pullbacks):
    pb = pullbacks["foreign-stent-expanded"]
    back = _round_trip(pb, tmp_path)
    assert np.array_equal(back.frames, pb.frames)
    assert back.geometry.n_alines == pb.geometry.n_alines
    assert np.isclose(back.geometry.aline_spacing_mm, pb.geometry.aline_spacing_mm)
    assert np.allclose(back.frame_spacing_mm, pb.frame_spacing_mm)


def test_dicom_round_trip_keeps_scale(tmp_path, pullbacks):
    pb = pullbacks["foreign-stent-expanded"]
    back = _round_trip(pb, tmp_path)
    assert back.geometry.intensity_scale is not None and back.geometry.intensity_scale.source == "dicom-lut"
    assert np.isclose(back.geometry.intensity_scale.db_per_count, pb.geometry.intensity_scale.db_per_count, rtol=1e-3)


def test_source_spec():
    from engine.synthetic.foreign import from_spec

    pb = from_spec("foreign:foreign-lipid-tcfa:4", n_frames=2)
    assert pb.truth.scenario == {"name": "foreign-lipid-tcfa", "seed": 4, "renderer": "foreign"}
    with pytest.raises(GeometryError, match="unknown foreign scenario"):
        from_spec("foreign:lipid")
    with pytest.raises(GeometryError, match="not an integer"):
        from_spec("foreign:foreign-lipid-tcfa:x")
