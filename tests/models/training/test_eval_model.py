"""``octguide eval-model`` on the small held-out 'ci' set: the targets, within the noise of the set.

The set (21 phantom pullbacks, 252 frames, seeds and a geometry never used in training) is
generated on the fly; the run takes well under a minute on two cores. Each target is asserted
with :data:`models.training.evaluate.CI_MARGINS` (three bootstrap standard deviations of the metric on a
set this small). The result must also reproduce what the manifest recorded for this set, within
the same margins, so a change to the model, the phantom or the stage that moves the numbers is
seen here even while the targets still hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.analysis.segment import DEFAULT_MODEL
from models.manifest import load_manifest
from models.training.evaluate import CI_MARGINS, TARGETS
from tests.models.conftest import needs_onnxruntime

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report() -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "engine.commands.cli", "eval-model", "--set", "ci", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
@needs_onnxruntime
@pytest.mark.parametrize("name", list(TARGETS))
def test_ci_set_meets_the_target(report, name):
    op, target = TARGETS[name]
    value, margin = report["metrics"][name], CI_MARGINS[name]
    if op == ">=":
        assert value >= target - margin, f"{name} = {value:.4f} < {target} - {margin}"
    else:
        assert value <= target + margin, f"{name} = {value:.4f} > {target} + {margin}"


@pytest.mark.slow
@needs_onnxruntime
def test_ci_set_reproduces_the_manifest(report):
    recorded = load_manifest(DEFAULT_MODEL).data["evaluation"]["ci"]["metrics"]
    stale = (
        "the held-out numbers recorded in the manifest (and the model card) no longer describe this "
        "model on this phantom; after a deliberate change, re-run `octguide eval-model --set ci "
        "--bootstrap 200 --write-manifest` (and --set full) and update docs/model_card.md"
    )
    assert report["metrics"]["frames"] == recorded["frames"], stale
    for name, margin in CI_MARGINS.items():
        assert report["metrics"][name] == pytest.approx(recorded[name], abs=margin), (
            f"{name}: {stale}"
        )
    assert report["metrics"]["low_confidence_recall"] == recorded["low_confidence_recall"], stale
