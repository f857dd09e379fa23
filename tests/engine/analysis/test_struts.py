"""Classical metal detection against the phantom's exact struts and guidewire."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.struts import detect_metal
from engine.synthetic.phantom import generate_pullback


def _match(pb, index):
    """(true positives, false positives, false negatives, radius errors um, guidewire IoU)."""
    a = pb.geometry.n_valid_alines
    det = detect_metal(pb.frame(index))
    record = pb.truth.frames[index].record
    used, errors = set(), []
    for strut in record["struts"]:
        gap = np.abs((det.strut_rows - strut["aline"] + a // 2) % a - a // 2)
        candidates = [k for k in np.argsort(gap) if gap[k] <= max(4, a // 120) and k not in used]
        if candidates:
            used.add(candidates[0])
            errors.append(1000 * (det.strut_radius_mm[candidates[0]] - strut["radius_mm"]))
    tp = len(used)
    truth_gw = np.zeros(a, dtype=bool)
    if record["guidewire"]:
        first, last = record["guidewire"]["alines"]
        truth_gw[(np.arange((last - first) % a + 1) + first) % a] = True
    iou = (truth_gw & det.guidewire_rows).sum() / max((truth_gw | det.guidewire_rows).sum(), 1)
    return tp, len(det.strut_rows) - tp, len(record["struts"]) - tp, errors, iou


@pytest.mark.parametrize(
    "scenario, geometry",
    [
        ("stented-malapposed", dict(n_alines=500, n_samples=1000)),
        ("stented-good", dict(n_alines=384, n_samples=700, ranging_depth_mm=5.5, z_offset_px=-10)),
        ("stented-malapposed", dict(n_alines=1024, n_samples=1200, refractive_index=1.38)),
    ],
)
def test_struts_found_with_precision_recall_and_radius(scenario, geometry):
    pb = generate_pullback(scenario, seed=31, n_frames=16, frame_pitch_mm=1.0, **geometry)
    tp = fp = fn = 0
    errors, ious = [], []
    for i in range(len(pb)):
        t, f, n, e, iou = _match(pb, i)
        tp, fp, fn = tp + t, fp + f, fn + n
        errors += e
        ious.append(iou)
    assert tp + fn > 40
    assert tp / (tp + fp) >= 0.95
    assert tp / (tp + fn) >= 0.95
    assert np.max(np.abs(errors)) < 10.0  # um: a fraction of the 110 um apposition threshold
    assert np.mean(ious) >= 0.9


def test_no_struts_in_an_unstented_vessel_and_the_guidewire_is_found():
    pb = generate_pullback("calcified", seed=32, n_frames=6, frame_pitch_mm=6.0, n_alines=504, n_samples=970)
    for i in range(len(pb)):
        tp, fp, fn, _, iou = _match(pb, i)
        assert fp == 0 and fn == 0
        assert iou >= 0.85
