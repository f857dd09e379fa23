"""Smoke test of ``octguide bench stages``: every stage is timed and set against its budget; it
asserts nothing about time (a bench prints, it never fails CI)."""

from __future__ import annotations

import json

import pytest

from engine.commands.cli import main
from tests.models.conftest import needs_onnxruntime

pytestmark = pytest.mark.timeout(120)


@needs_onnxruntime
def test_stages_reports_every_stage_against_its_budget(capsys):
    assert main(["bench", "stages", "--frames", "2", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    stages = result["stages"]
    assert set(stages) == {"preprocess", "segment_inference", "read_out", "metal", "measure",
                           "scan_conversion", "render", "encoding", "segment", "analysis"}
    assert all(row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["samples"] == 4
               for row in stages.values())
    assert stages["segment"]["budget_slow_class_ms"] == 8.0
    assert stages["analysis"]["budget_this_machine_ms"] == round(13.0 / 3, 3)
    assert result["naive_loop"]["samples"] == 4 and result["naive_loop"]["p50_ms"] > 0
    assert result["segment_runtime"]["selected"] == "onnxruntime"


@needs_onnxruntime
def test_the_table_prints_raw_and_scaled_budgets(capsys):
    assert main(["bench", "stages", "--frames", "2", "--repeats", "1", "--slowdown", "1"]) == 0
    out = capsys.readouterr().out
    assert "budget (slow class)" in out and "naive loop" in out and "x its speed" in out
