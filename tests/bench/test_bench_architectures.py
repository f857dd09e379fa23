"""Smoke test of ``bench/bench_architectures.py``: candidates build, export and run; the report
has a ratio per candidate against the first. Nothing about time is asserted (noisy machines)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def _module():
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_architectures.py"
    spec = importlib.util.spec_from_file_location("octguide_bench_arch_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_candidates_report_params_and_ratios(capsys):
    bench = _module()
    names = ["v1 16/32/64/96 f2 256x384", "16/32/64/96 f4 256x384"]
    assert bench.main(["--repeats", "3", "--rounds", "1", "--warmup", "1", "--only", *names]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = report["candidates"]
    assert list(got) == names
    assert got[names[0]]["ratio_vs_baseline"] == 1.0
    assert got[names[0]]["params"] == 272_284  # today's network, as the model card says
    assert got[names[1]]["samples"] == 3 and got[names[1]]["median_ms"] > 0
