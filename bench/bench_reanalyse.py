"""Archive re-analysis on Ray (``engine.fleet.reanalyse``) against the engine's own analysis stage.

On the same small phantom archive (default 4 pullbacks x 10 frames, 256 A-lines): the stage in a
plain loop in this process (one ONNX thread: the per-frame baseline), then ``reanalyse`` through
a local Ray with 1 and 2 workers. Reported: frames/s of each, the per-frame cost ratio
``(1 / fps_ray_1_worker) / baseline_s_per_frame`` (Ray's overhead; goal <= 1.15) with the actor start (model
load, about 10-20 s under load) counted, so use enough frames to amortise it, peak RSS per worker, and the load (``uptime``).

Usage: ``octguide bench reanalyse [--pullbacks N] [--frames N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.analysis.segment import DEFAULT_MODEL
from engine.config import Config
from engine.fleet.cluster import ray_session
from engine.fleet.reanalyse import ReanalysisOptions, analysis_stage, reanalyse
from engine.synthetic.phantom import generate_pullback
from streams.files.io import read_pullback, write_pullback

SCENARIOS = ("calcified", "stented-malapposed", "normal", "fibrous-stenosis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pullbacks", type=int, default=4)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--json", action="store_true")


def baseline_s_per_frame(files: list[Path]) -> float:
    stage = analysis_stage(Config(), str(DEFAULT_MODEL), threads=1)
    stage.start()
    try:
        n, total = 0, 0.0
        for path in files:
            pullback = read_pullback(path)
            for i in range(len(pullback)):
                t = time.perf_counter()
                stage.process(pullback.frame(i))
                total += time.perf_counter() - t
                n += 1
    finally:
        stage.stop()
    return total / n


def run(args: argparse.Namespace) -> int:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="og-bench-") as tmp:
        root = Path(tmp)
        files = []
        for k in range(args.pullbacks):
            scenario = SCENARIOS[k % len(SCENARIOS)]
            path = root / "archive" / f"{scenario}-{k}.oct.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_pullback(generate_pullback(scenario, seed=k, n_frames=args.frames, n_alines=256,
                                             n_samples=512), path)
            files.append(path)
        base = baseline_s_per_frame(files)
        runs = {}
        with ray_session(num_cpus=os.cpu_count()):
            for workers in (1, 2):
                t = time.perf_counter()
                s = reanalyse(root / "archive", root / f"run{workers}",
                              ReanalysisOptions(workers=workers, show_progress=False))
                runs[workers] = {"frames": s["frames"], "wall_s": round(time.perf_counter() - t, 3),
                                 "frames_per_s": s["frames_per_s"],
                                 "peak_worker_rss_mib": s.get("peak_worker_rss_mib")}
    one = runs[1]
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "archive": {"pullbacks": args.pullbacks, "frames_per_pullback": args.frames, "alines": 256},
        "baseline_stage_ms_per_frame": round(1e3 * base, 2),
        "ray": runs,
        "overhead_ratio_incl_actor_start": round((1.0 / one["frames_per_s"]) / base, 3),
        "speedup_2_vs_1_workers": round(runs[2]["frames_per_s"] / one["frames_per_s"], 3),
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
