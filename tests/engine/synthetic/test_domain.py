"""Domain randomisation of the phantom's imaging system (training data only)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.synthetic.phantom import generate_pullback
from engine.synthetic.phantom.domain import draw_domain, draw_optics
from engine.synthetic.phantom.render import DEFAULT_DOMAIN, DISPLAY_RANGE_DB, ImagingDomain
from models.classes import TissueClass
from models.grid import ModelGrid
from models.training.targets import frame_targets, soft_class_targets

FOREIGN_LIKE = ImagingDomain(
    rings=((0.06, 1.0), (0.24, 1.5), (0.36, 2.0), (0.9, 0.05)),  # 3 sheath rings + a ghost line
    catheter_radius_mm=0.36,
)


def test_draws_cover_ring_counts_radii_and_storage():
    rng = np.random.default_rng(1)
    counts, radii, spans, scales, floors = set(), [], [], [], []
    for _ in range(400):
        d = draw_domain(rng)
        sheath = [r for r, _ in d.rings if 0.05 <= r <= 0.5]
        counts.add(len(sheath))
        radii += sheath
        assert d.catheter_radius_mm == pytest.approx(max(sheath))
        assert 0.30 <= d.catheter_radius_mm <= 0.50
        lo, hi = d.stored_range_db
        spans.append(hi - lo)
        scales.append(d.full_scale)
        floors.append(10 * np.log10(d.noise_floor))
        s = d.intensity_scale("LOG")
        assert s.source == "header" and s.db_per_count == pytest.approx((hi - lo) / d.full_scale)
        draw_optics(rng)
    assert counts == {1, 2, 3, 4}
    assert min(radii) < 0.08 and max(radii) > 0.47
    assert 30 <= min(spans) < 33 and 67 < max(spans) <= 70
    assert min(scales) < 5000 and max(scales) > 60000
    assert min(floors) < -53 and max(floors) > -33


def test_default_domain_is_the_phantom_system_and_is_stated():
    assert DEFAULT_DOMAIN.stored_range_db == DISPLAY_RANGE_DB
    pb = generate_pullback("normal", seed=2, n_frames=1, n_alines=128, n_samples=256)
    s = pb.geometry.intensity_scale
    assert s.offset_db == DISPLAY_RANGE_DB[0]
    assert s.db_per_count * 65535 == pytest.approx(DISPLAY_RANGE_DB[1] - DISPLAY_RANGE_DB[0])


@pytest.fixture(scope="module")
def two_catheters():
    kwargs = {"seed": 5, "n_frames": 1, "n_alines": 256, "n_samples": 600,
              "ranging_depth_mm": 5.0, "z_offset_px": 0}
    return (generate_pullback("normal", **kwargs),
            generate_pullback("normal", domain=FOREIGN_LIKE, **kwargs))


def test_rings_render_in_every_aline_and_do_not_change_the_truth(two_catheters):
    base, foreign = two_catheters
    g = foreign.geometry
    db = g.intensity_scale.to_db(foreign.frames[0].astype(np.float64))
    floor = np.median(db[:, -100:])
    for r, _ in FOREIGN_LIKE.rings[:3]:
        column = round(float(g.column(r, 0)))
        peak = db[:, max(column - 2, 0): column + 3].max(axis=1)
        assert np.mean(peak > floor + 20) > 0.95, f"ring at {r} mm not bright in most A-lines"
    t0, t1 = base.truth.frames[0], foreign.truth.frames[0]
    np.testing.assert_allclose(t1.lumen_radius_mm, t0.lumen_radius_mm)


def test_lumen_class_starts_outside_every_ring(two_catheters):
    _, foreign = two_catheters
    grid = ModelGrid(256, 384, 5.0)
    t = frame_targets(foreign.truth.frames[0], foreign.geometry, int(foreign.z_offset_px[0]), grid)
    classes = soft_class_targets(t.tissue[None], t.lumen_px[None], t.eel_px[None])[0]
    lumen = classes[TissueClass.LUMEN]
    rows = np.isfinite(t.lumen_px)
    for r, _ in FOREIGN_LIKE.rings:
        j = round(r / grid.depth_step_mm)
        assert np.all(lumen[rows, j] == 1.0), f"ring at {r} mm is not lumen in the targets"


def test_tissue_draws_vary_contrast_but_keep_the_classes_in_order():
    from engine.synthetic.phantom.render import CALCIUM, FIBROUS, LIPID, OPTICS

    rng = np.random.default_rng(3)
    calcium_vs_fibrous_db = []
    for _ in range(400):
        d = draw_domain(rng)
        table = d.optics_table()
        assert table is not OPTICS and np.array_equal(table[:, 2], OPTICS[:, 2])
        assert table[CALCIUM, 1] < table[FIBROUS, 1]  # calcium stays signal-poor
        assert table[CALCIUM, 0] < table[LIPID, 0]  # and slower to decay than lipid
        calcium_vs_fibrous_db.append(10 * np.log10(table[CALCIUM, 1] / table[FIBROUS, 1]))
        assert 0.1 <= d.calcium_edge <= 3.2
    own = 10 * np.log10(OPTICS[CALCIUM, 1] / OPTICS[FIBROUS, 1])
    assert min(calcium_vs_fibrous_db) < own - 9 and max(calcium_vs_fibrous_db) > own + 2
    assert DEFAULT_DOMAIN.optics_table() is OPTICS


def test_a_darker_calcium_system_renders_darker_calcium_under_the_same_labels():
    from engine.synthetic.phantom.render import CALCIUM, OPTICS
    from streams.truth import Label

    tissue = [(1.0, 1.0)] * len(OPTICS)
    tissue[CALCIUM] = (0.6, 0.15)
    dark = ImagingDomain(tissue=tuple(tissue), calcium_edge=0.2)
    kwargs = {"seed": 4, "frame_pitch_mm": 3.0, "n_alines": 128, "n_samples": 400,
              "ranging_depth_mm": 5.0, "z_offset_px": 0}
    own = generate_pullback("calcified", **kwargs)
    other = generate_pullback("calcified", domain=dark, **kwargs)
    labels = np.stack([f.labels for f in own.truth.frames])
    assert np.array_equal(labels, np.stack([f.labels for f in other.truth.frames]))
    k = int(np.argmax((labels == Label.CALCIUM).sum(axis=(1, 2))))
    calcium = labels[k] == Label.CALCIUM
    assert calcium.sum() > 300
    drop = own.frames[k][calcium].astype(float).mean() - other.frames[k][calcium].astype(float).mean()
    assert drop > 0.05 * 65535 * 6 / 70  # at least ~6 dB darker on the 70 dB stored range
    with pytest.raises(ValueError, match="tissue needs"):
        ImagingDomain(tissue=((1.0, 1.0),))
