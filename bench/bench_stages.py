"""Per-frame cost of each stage of the frame path against its budget (issue 17 item 1).

Usage: ``octguide bench stages [--frames N] [--repeats N] [--threads N] [--precision P] [--json]``
(or ``python bench/bench_stages.py``). It prints; it never fails (exit 0 whatever it measures).

What is timed, one frame at a time on one Python thread, with the shipped configuration
(``engine.config.Config()``: ONNX Runtime with ``segment.threads`` intra-op threads, the first
usable scan and preprocessing backends), over phantom frames of a calcified lesion and of a
malapposed stent (the costliest measurement case), each stage as the engine calls it:

* ``preprocess``: polar frame -> model input (``Segmenter.preprocessor.process``);
* ``segment_inference``: the runtime on one ``(1, 1, K, J)`` batch;
* ``read_out``: model outputs -> radii and flags (``engine.analysis.segment.read_out``);
* ``metal``: ``engine.analysis.struts.detect_metal`` (given the frame's detected sheath);
* ``measure``: ``engine.analysis.analyse.frame_record``;
* ``scan_conversion``: ``ScanConverter.process`` onto the 512 px display grid (into a
  preallocated ``out``);
* ``render``: ``display_grey`` + ``burn_overlay`` (the burned-in image, into preallocated
  uint8 grey and BGR frames);

The Numba kernels of measurement and metal detection are compiled (or loaded from the cache)
before the first frame, as the engine's ``start()`` must.
* ``encoding``: ``build_overlay`` + ``streams.wire.protocol.dumps`` (the overlay message).

Budgets (issue 17): on the slower 2-core machine class, segment (preprocess + inference +
read-out) <= 8 ms, metal <= 1.5, measure <= 1.5, scan conversion <= 1.0, render <= 0.5,
encoding and engine overhead <= 0.5, the whole analysis <= 13 ms p50. That class measured about
3x slower than the developers' VM (naive per-frame service 43.7 ms against 16.0 ms), so the
table prints each raw budget and the budget / 3 that the same code must meet on a machine of
this one's speed (``--slowdown`` changes the 3).

The baseline, measured in the same run: the **naive loop**, every stage above one after the
other per frame (``Segmenter.process`` whole, then metal, measure, scan, render, encoding), timed
as one block per frame. Its p50 is printed with its ratio to the sum of the stage p50s (timer
and Python overhead between stages) and to the analysis budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.analysis import struts
from engine.analysis.analyse import AnalysisConfig, frame_record
from engine.analysis.segment import Segmenter, read_out
from engine.analysis.stages import metal_settings, segmenter_settings
from engine.analysis.struts import detect_metal
from engine.clinical import kernels as clinical_kernels
from engine.compute.benchmarking import StageTimes, machine_info
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.config import Config
from engine.display import kernels as display_kernels
from engine.display.overlay import build_overlay, burn_overlay, display_grey
from engine.synthetic.phantom import generate_pullback
from streams.wire.protocol import dumps

SLOW_CLASS_BUDGET_MS = {
    "segment": 8.0,  # preprocess + segment_inference + read_out
    "metal": 1.5,
    "measure": 1.5,
    "scan_conversion": 1.0,
    "render": 0.5,
    "encoding": 0.5,  # with the engine's own overhead
    "analysis": 13.0,  # the whole per-frame analysis, p50
}
"""Per-stage p50 budgets on the slower 2-core machine class (issue 17), ms."""

STAGES = ("preprocess", "segment_inference", "read_out", "metal", "measure", "scan_conversion",
          "render", "encoding")
SLOW_CLASS_NAIVE_MS = 43.7
"""Naive per-frame service time issue 17 measured on the slower machine class (all stages, one
thread), ms: this run's naive loop against it says how fast this machine is, so ``--slowdown``
can be checked (the default 3 assumes a machine of the developers' VM's speed)."""

SEGMENT_PARTS = ("preprocess", "segment_inference", "read_out")
SCENARIOS = ("calcified", "stented-malapposed")


def _one_frame(frame, segmenter, converter, config, metal_cfg, analysis_cfg, grid, orientation,
               buffers, times: StageTimes) -> None:
    """Every stage of one frame, each timed on its own (module docstring)."""
    with times.stage("preprocess"):
        x = segmenter.preprocessor.process(frame)
    with times.stage("segment_inference"):
        outputs = segmenter.runtime.run(x[None, None])
    times.call("read_out", read_out, outputs.class_prob[0], outputs.aline_prob[0],
               segmenter.manifest.grid, frame.geometry.n_valid_alines)
    seg = segmenter.process(frame)  # the Segmentation frame_record needs (untimed: done above)
    metal = times.call("metal", detect_metal, frame, metal_cfg, sheath=seg.sheath)
    record = times.call("measure", frame_record, frame, seg, metal, config.guidance, analysis_cfg)
    image = times.call("scan_conversion", converter.process, frame, out=buffers["image"])
    with times.stage("encoding"):
        overlay = build_overlay(record, frame, grid, orientation, {"segment": 1.0})
        dumps(overlay)
    with times.stage("render"):
        burn_overlay(display_grey(image, out=buffers["grey"]), overlay, out=buffers["bgr"])


def _naive_frame(frame, segmenter, converter, config, metal_cfg, analysis_cfg, grid,
                 orientation, buffers, times: StageTimes) -> None:
    """The naive loop's service time of one frame: every stage in sequence, one block."""
    with times.stage("naive"):
        _naive_stages(frame, segmenter, converter, config, metal_cfg, analysis_cfg, grid,
                      orientation, buffers)


def _naive_stages(frame, segmenter, converter, config, metal_cfg, analysis_cfg, grid,
                  orientation, buffers) -> None:
    seg = segmenter.process(frame)
    metal = detect_metal(frame, metal_cfg, sheath=seg.sheath)
    record = frame_record(frame, seg, metal, config.guidance, analysis_cfg)
    image = converter.process(frame, out=buffers["image"])
    overlay = build_overlay(record, frame, grid, orientation, {"segment": 1.0})
    dumps(overlay)
    burn_overlay(display_grey(image, out=buffers["grey"]), overlay, out=buffers["bgr"])


def run_benchmark(frames: int, repeats: int, threads: int, precision: str, slowdown: float) -> dict:
    config = Config.from_dict({"segment": {"threads": threads, "precision": precision},
                               "server": {"render_image": True}})
    settings, choice = segmenter_settings(config.segment)
    metal_cfg = metal_settings(config.metal)
    analysis_cfg = AnalysisConfig(min_confidence=config.analysis.min_confidence,
                                  min_stent_struts=config.analysis.min_stent_struts)
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    orientation = DisplayOrientation()
    segmenter = Segmenter(settings)
    converter = ScanConverter(grid, orientation)
    n = grid.size_px
    # Preallocated outputs, as the engine keeps them (issue 17 item 3: no per-frame image arrays).
    buffers = {"image": np.empty((n, n), np.float32), "grey": np.empty((n, n), np.uint8),
               "bgr": np.empty((n, n, 3), np.uint8)}
    clinical_kernels.warm_up()
    struts.warm_up()
    display_kernels.warm_up()
    times = StageTimes()
    load_before = os.getloadavg()[0]
    for scenario in SCENARIOS:
        pb = generate_pullback(scenario, seed=5, n_frames=frames, frame_pitch_mm=30.0 / frames)
        segmenter.start(pb.geometry)
        converter.start()
        args = (segmenter, converter, config, metal_cfg, analysis_cfg, grid, orientation, buffers)
        for frame in list(pb)[:2]:  # warm caches and JIT outside the timed passes
            _one_frame(frame, *args, StageTimes())
        for _ in range(repeats):
            for frame in pb:
                _one_frame(frame, *args, times)
                _naive_frame(frame, *args, times)
        converter.stop()
        segmenter.stop()
    times.sum_of("segment", SEGMENT_PARTS)
    times.sum_of("analysis", STAGES)
    keep = ("p50_ms", "p99_ms", "samples")
    stages = {name: {k: v[k] for k in keep}
              for name, v in times.summary([*STAGES, "segment", "analysis"], centre="p50").items()}
    rows = {}
    for name, stat in stages.items():
        budget = SLOW_CLASS_BUDGET_MS.get(name)
        here = None if budget is None else round(budget / slowdown, 3)
        rows[name] = {**stat, "budget_slow_class_ms": budget, "budget_this_machine_ms": here,
                      "p50_over_budget_here": None if here is None else round(stat["p50_ms"] / here, 2)}
    naive_stats = {k: v for k, v in times.summary(["naive"], centre="p50")["naive"].items() if k in keep}
    return {
        "benchmark": "stages",
        "machine": machine_info(),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "frames": f"{len(SCENARIOS)} scenarios x {frames} frames x {repeats} passes "
                  f"({pb.geometry.n_alines} A-lines x {pb.geometry.n_samples} samples)",
        "segment_runtime": choice,
        "onnxruntime_threads": threads,
        "slowdown_of_slow_class": slowdown,
        "stages": rows,
        "naive_loop": {**naive_stats,
                       "ratio_to_sum_of_stage_p50": round(naive_stats["p50_ms"] / stages["analysis"]["p50_ms"], 3),
                       "ratio_to_analysis_budget_here": round(
                           naive_stats["p50_ms"] / (SLOW_CLASS_BUDGET_MS["analysis"] / slowdown), 3),
                       "slow_class_naive_ms": SLOW_CLASS_NAIVE_MS,
                       "speed_vs_slow_class": round(SLOW_CLASS_NAIVE_MS / naive_stats["p50_ms"], 2)},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=12, help="frames per scenario (default 12)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over them (default 3)")
    parser.add_argument("--threads", type=int, default=Config().segment.threads,
                        help="ONNX Runtime intra-op threads (default: the config's)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"),
                        help="segment.precision (default auto: fp32 on ONNX Runtime)")
    parser.add_argument("--slowdown", type=float, default=3.0,
                        help="how much slower the budget's machine class is than this one (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``octguide bench stages`` and this script. Always 0: a bench prints."""
    result = run_benchmark(args.frames, args.repeats, args.threads, args.precision, args.slowdown)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m, load = result["machine"], result["load_average_1min"]
    print(f"{m['cpu']}, {m['cores_usable'] or m['cores']} usable cores, load {load['before']} -> "
          f"{load['after']}; {result['frames']}; segment runtime {result['segment_runtime']}")
    print(f"{'stage':18s} {'p50 ms':>8s} {'p99 ms':>8s} {'budget (slow class)':>20s} "
          f"{'budget / ' + format(args.slowdown, 'g') + ' (here)':>18s} {'p50 / here':>10s}")
    for name, row in result["stages"].items():
        budget = "" if row["budget_slow_class_ms"] is None else f"{row['budget_slow_class_ms']:g}"
        here = "" if row["budget_this_machine_ms"] is None else f"{row['budget_this_machine_ms']:g}"
        ratio = "" if row["p50_over_budget_here"] is None else f"{row['p50_over_budget_here']:.2f}x"
        print(f"{name:18s} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} {budget:>20s} {here:>18s} {ratio:>10s}")
    naive = result["naive_loop"]
    print(f"naive loop (all stages, one block per frame): p50 {naive['p50_ms']:.3f} ms, p99 "
          f"{naive['p99_ms']:.3f} ms; / sum of stage p50s = {naive['ratio_to_sum_of_stage_p50']}; "
          f"/ analysis budget here = {naive['ratio_to_analysis_budget_here']}")
    print(f"the slower class's naive loop took {naive['slow_class_naive_ms']} ms (issue 17): this "
          f"machine runs at {naive['speed_vs_slow_class']}x its speed (budget / --slowdown assumes "
          f"{args.slowdown:g}x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
