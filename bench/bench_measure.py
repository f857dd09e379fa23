"""Per-frame measurement cost: metal detection + measurements, one CPU core, 500-A-line frames.

The guidance issue budgets all per-frame measurement work at <= 5 ms median on one core for a
500-A-line frame (the 50 ms frame budget holds then). Segmentation runs once per frame before
timing (it is the model's cost, benchmarked by ``bench_model``); what is timed is
:func:`engine.analysis.struts.detect_metal` and :func:`engine.analysis.analyse.frame_record` on its output, on
frames of a calcified lesion and of a malapposed stent (struts are the costliest case).

Usage: ``octguide bench measure [--frames N] [--repeats N] [--json]`` (or ``python bench/bench_measure.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.analysis import struts  # noqa: E402
from engine.analysis.analyse import frame_record  # noqa: E402
from engine.analysis.segment import Segmenter, SegmenterConfig  # noqa: E402
from engine.analysis.struts import detect_metal  # noqa: E402
from engine.clinical import kernels  # noqa: E402
from engine.compute.benchmarking import StageTimes, machine_info  # noqa: E402
from engine.config import GuidanceConfig  # noqa: E402
from engine.synthetic.phantom import generate_pullback  # noqa: E402

BUDGET_MS = 5.0


def run_benchmark(frames: int, repeats: int) -> dict:
    cfg = GuidanceConfig()
    segmenter = Segmenter(SegmenterConfig(threads=1))
    kernels.warm_up()
    struts.warm_up()
    times = StageTimes()
    for scenario in ("calcified", "stented-malapposed"):
        pb = generate_pullback(scenario, seed=5, n_frames=frames, frame_pitch_mm=30.0 / frames,
                               n_alines=500, n_samples=1000)
        segmenter.start(pb.geometry)
        inputs = [(f, segmenter.process(f)) for f in pb]
        for _ in range(repeats):
            for frame, seg in inputs:
                metal = times.call("detect_metal", detect_metal, frame)
                times.call("frame_record", frame_record, frame, seg, metal, cfg)
        segmenter.stop()
    times.sum_of("total", ("detect_metal", "frame_record"))
    result = {
        "benchmark": "measure",
        "machine": {**machine_info(), "threads": 1},
        "frame": "500 A-lines x 1000 samples (calcified + stented-malapposed phantom)",
        "stages": {name: {k: v[k] for k in ("median_ms", "p99_ms", "samples")}
                   for name, v in times.summary().items()},
        "budget_ms": BUDGET_MS,
    }
    result["budget_met"] = result["stages"]["total"]["median_ms"] <= BUDGET_MS
    result["ratio_total_to_budget"] = round(result["stages"]["total"]["median_ms"] / BUDGET_MS, 3)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=20, help="frames per scenario (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the frames (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``octguide bench measure`` and this script."""
    result = run_benchmark(args.frames, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, s in result["stages"].items():
            print(f"{name:14s} median {s['median_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms  ({s['samples']} frames)")
        print(f"budget {BUDGET_MS} ms: {'met' if result['budget_met'] else 'NOT met'} "
              f"(total / budget = {result['ratio_total_to_budget']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
