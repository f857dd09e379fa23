"""measure_plaque (one pass over a packed or class map, Numba) against the frozen NumPy
measure module (tests/engine/clinical/numpy_reference_measure.py), on random class maps:
the records must be identical, with and without the wall mask, from masks and from labels."""

from __future__ import annotations

import numpy as np
import pytest

from engine.clinical import measure
from engine.config import GuidanceConfig
from tests.engine.clinical import numpy_reference_measure as ref

LUMEN, WALL, FIBROUS, LIPID, CALCIUM, BEYOND = range(6)
CODES = {"calcium": CALCIUM, "lipid": LIPID, "fibrous": FIBROUS}
SEEDS = range(10)


def _random_frame(seed: int, rows: int = 256, cols: int = 384, step_mm: float = 0.013):
    """A class map like the model's: lumen about an eccentric centre, wall, plaque blobs (lipid
    under a thin fibrous cap, calcium, fibrous), beyond-EEL, and stray misclassified pixels
    (some near the catheter, where every ray may see them)."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(rows) / rows
    radii = step_mm * np.arange(cols)
    centre = rng.uniform(-0.5, 0.5, 2)
    c, s = np.cos(angles), np.sin(angles)
    b = c * centre[0] + s * centre[1]
    lumen_r = b + np.sqrt(b * b - (centre @ centre - rng.uniform(1.3, 1.8) ** 2))
    lumen_r *= 1 + 0.05 * np.sin(3 * angles + rng.uniform(0, 6))
    depth = radii[None, :] - lumen_r[:, None]
    labels = np.where(depth < 0, LUMEN, WALL).astype(np.uint8)
    labels[depth > rng.uniform(0.5, 1.0)] = BEYOND
    for _ in range(rng.integers(1, 4)):
        kind = rng.choice([FIBROUS, LIPID, CALCIUM])
        r0, width = rng.integers(0, rows), rng.integers(8, rows // 3)
        sel = (r0 + np.arange(width)) % rows
        top = rng.uniform(0.0, 0.3) if kind != LIPID else rng.uniform(0.03, 0.12)
        band = (depth[sel] >= top) & (depth[sel] < top + rng.uniform(0.1, 0.8))
        labels[sel] = np.where(band, kind, labels[sel])
        if kind == LIPID:
            labels[sel] = np.where((depth[sel] >= 0) & (depth[sel] < top), FIBROUS, labels[sel])
    stray = rng.random(labels.shape) < 0.002
    labels[stray] = rng.choice([FIBROUS, LIPID, CALCIUM], int(stray.sum()))
    return labels, angles, radii, lumen_r


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("with_wall", [True, False])
def test_plaque_record_equals_numpy_reference(seed, with_wall):
    labels, angles, radii, lumen_r = _random_frame(seed)
    lumen = measure.measure_lumen(lumen_r, angles)
    grid = measure.PolarGrid(angles, radii)
    masks = {name: labels == code for name, code in CODES.items()}
    wall = labels != LUMEN if with_wall else None
    cfg = GuidanceConfig()
    step = radii[1] / 2
    old = ref.measure_plaque(masks, ref.PolarGrid(angles, radii), lumen, 500, cfg, n_rays=360, step_mm=step,
                             wall_mask=wall)
    assert old["plaque"], "the random frame should hold plaque"
    from_masks = measure.measure_plaque(masks, grid, lumen, 500, cfg, n_rays=360, step_mm=step, wall_mask=wall)
    from_labels = measure.measure_plaque_labels(labels, CODES, (LUMEN,) if with_wall else None, grid, lumen,
                                                500, cfg, n_rays=360, step_mm=step)
    assert from_masks == old
    assert from_labels == old


def test_lipid_caps_are_measured_from_the_wall_entry():
    """The wall branch runs (lipid is hit) and changes the cap, so the test above covers it."""
    hits = 0
    for seed in SEEDS:
        labels, angles, radii, lumen_r = _random_frame(seed)
        lumen = measure.measure_lumen(lumen_r, angles)
        grid = measure.PolarGrid(angles, radii)
        with_wall = measure.measure_plaque_labels(labels, CODES, (LUMEN,), grid, lumen, 500, GuidanceConfig(),
                                                  n_rays=360, step_mm=radii[1] / 2)
        without = measure.measure_plaque_labels(labels, CODES, None, grid, lumen, 500, GuidanceConfig(),
                                                n_rays=360, step_mm=radii[1] / 2)
        if with_wall["lipid"]["min_cap_thickness_mm"] is not None:
            hits += 1
            assert with_wall["lipid"]["min_cap_thickness_mm"] != without["lipid"]["min_cap_thickness_mm"]
    assert hits >= 3


def test_bad_inputs_are_rejected_with_a_reason():
    labels, angles, radii, lumen_r = _random_frame(0)
    lumen = measure.measure_lumen(lumen_r, angles)
    grid = measure.PolarGrid(angles, radii)
    masks = {name: labels == code for name, code in CODES.items()}
    with pytest.raises(ValueError, match="share one 2-D shape"):
        measure.measure_plaque(masks, grid, lumen, 500, GuidanceConfig(), wall_mask=labels[:, :10] > 0)
    with pytest.raises(ValueError, match="uint8"):
        measure.measure_plaque_labels(labels.astype(np.int32), CODES, (LUMEN,), grid, lumen, 500, GuidanceConfig())
