"""Smoke test of ``octguide bench e2e``: a real engine process, real sockets, ~20 frames.

It checks the report's shape and that every frame's fate is counted; it asserts nothing about
time (CI machines are too noisy for that: the numbers go to BENCHMARKS.md, not to tests).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from engine.commands.cli import main

pytestmark = pytest.mark.timeout(120)

FRAMES, SKIP = 20, 2
LATENCY_KEYS = {"n", "p50", "p95", "p99", "p99.9", "max", "mean"}


def _bench_module():
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_e2e.py"
    spec = importlib.util.spec_from_file_location("octguide_bench_e2e_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_e2e_smoke_reports_every_frame(tmp_path, capsys):
    code = main(["bench", "e2e", "--frames", str(FRAMES), "--skip", str(SKIP), "--fps", "60", "0",
                 "--json", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "e2e"
    assert {"host", "cpu", "cores_usable", "loadavg_start", "loadavg_end"} <= report["machine"].keys()
    assert report["engine"]["start_s"] > 0 and report["engine"]["peak"]["peak_rss_mib"] > 0
    assert [run["rate_fps"] for run in report["runs"]] == [60.0, "max"]
    for run in report["runs"]:
        assert run["frames"] == FRAMES
        assert run["fates_total"] == FRAMES and run["every_fate_counted"]
        assert run["fates"]["shown"] >= 1 and run["fates"]["failed"] == 0
        assert run["guidance_status"] == "complete" and run["guidance_delay_s"] >= 0
        assert run["guidance_at_display_s"] >= 0
        assert run["throughput_fps"] > 0
        assert run["engine_cpu"]["cpu_s"] > 0 and run["engine_memory"]["peak_rss_mib"] > 0
        assert run["skipped_for_live"] == run["fates"]["backfilled"] + run["fates"]["late"]
        live = run["live"]
        for key in ("engine_ms", "console_to_display_ms", "hop_in_ms", "hop_out_ms"):
            assert live[key]["n"] == 0 or LATENCY_KEYS <= live[key].keys()
    paced = report["runs"][0]["live"]
    assert paced["engine_ms"]["n"] >= 1
    assert {"queue", "segment", "detect_metal", "measure", "scan_convert", "render", "analysis",
            "engine_overhead"} <= paced["stages_ms"].keys()
    assert paced["console_to_display_ms"]["p50"] >= paced["engine_ms"]["p50"]
    naive = report["naive"]
    assert {"decode", "segment", "detect_metal", "measure", "scan_convert", "render", "total"} <= naive["stages_ms"].keys()
    assert len(naive["rates"]) == 2
    assert all({"p99_latency", "guidance_delay", "throughput_engine_over_naive"} <= run["naive_over_engine"].keys()
               for run in report["runs"])
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert len(saved) == 2 and saved[0].endswith(".json") and saved[1].endswith(".png")
    assert json.loads((tmp_path / saved[0]).read_text())["runs"][0]["fates_total"] == FRAMES


def test_e2e_rejects_too_few_frames(capsys):
    assert main(["bench", "e2e", "--frames", "4", "--skip", "2", "--no-save"]) == 2
    assert "--frames" in capsys.readouterr().err


def test_naive_schedule_is_a_fifo_queue():
    bench = _bench_module()
    # 10 ms per frame: at 50 fps (20 ms apart) nothing queues; flat out frame i waits for i others.
    service = np.full(6, 10.0)
    paced = bench.naive_at_rate(service, 50.0, 0, guidance_s=0.0)
    assert paced["latency_ms"]["max"] == pytest.approx(10.0)
    assert paced["guidance_delay_s"] == pytest.approx(0.01)
    flat = bench.naive_at_rate(service, 0.0, 0, guidance_s=0.5)
    assert flat["latency_ms"]["max"] == pytest.approx(60.0)
    assert flat["throughput_fps"] == pytest.approx(100.0)
    assert flat["guidance_delay_s"] == pytest.approx(0.56)


def test_summary_percentiles():
    bench = _bench_module()
    s = bench.summary([1.0, 2.0, 3.0, float("nan")])
    assert s["n"] == 3 and s["p50"] == 2.0 and s["max"] == 3.0
    assert bench.summary([]) == {"n": 0}
