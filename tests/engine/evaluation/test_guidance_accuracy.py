"""Guidance accuracy on held-out phantom pullbacks, end to end through the shipped model.

The issue's targets, asserted on a small set (every scenario, a geometry unlike the training
data), without extra margin: the full 60-frame evaluation clears every target by a wide margin
(lumen Dice 0.998 vs 0.97, strut precision/recall 1.0 vs 0.95, MSA error 1.1% vs 5%), so noise
at 24 frames does not reach the thresholds. Stent diameters must be equal, except where the
unrounded EEL diameters agree within 1% and straddle a 0.25 mm step (seen once: 3.4994 vs
3.5028 mm).
"""

from __future__ import annotations

import pytest

from engine.analysis.segment import DEFAULT_MODEL
from engine.evaluation.guidance_accuracy import TARGETS, evaluate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the shipped model is missing"),
]


@pytest.fixture(scope="module")
def report():
    return evaluate(n_frames=24)


def test_every_metric_meets_its_target(report):
    missed = {k: report["metrics"][k] for k, ok in report["met"].items() if ok is False}
    assert not missed, f"missed targets {missed} (targets {TARGETS})"
    assert all(report["metrics"][k] is not None for k in TARGETS)


def test_calcium_score_exact_and_sizing_close_in_every_scenario(report):
    for name, s in report["scenarios"].items():
        assert s["calcium_score_exact"], name
        if s.get("sizing_basis") and s["sizing_basis"][1] is not None:
            assert s["sizing_basis_equal"], name
            assert s["sizing_diameter_within_precision"], name
            assert s["sizing_length_within_one_step"], name
    assert report["scenarios"]["calcified"]["calcium_score"] == [4, 4]
