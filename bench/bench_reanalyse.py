"""Archive re-analysis on Ray (``engine.fleet.reanalyse``) against the engine's own analysis stage.

On the same phantom archive (default 4 pullbacks x 30 frames, 256 A-lines): the engine's stage
(``engine.fleet.reanalyse.analysis_stage``, the one the actors run, one ONNX thread as each actor
here gets) in a plain loop in this process, before and after the Ray runs (their mean is the
baseline); then ``reanalyse`` through a local Ray with 1 and 2 workers.

Reported per worker count: frames/s over the whole run (actor start included) and in the steady
state (``summary["steady"]``: frames finished after the first actor batch over the time from its
end to the last batch's end, on the actors' clocks, so the actors' start and model load are out,
and so is the driver's buffering: results reach the driver in bursts), peak RSS per worker, and the steady
overhead ratio ``(workers / steady_fps) / baseline_s_per_frame`` (Ray's per-frame cost per worker
against the stage alone; goal <= 1.15). With 2 workers on a 2-core machine shared with other work
the ratio also holds CPU contention; the load (``os.getloadavg``) is printed before and after.

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
from engine.fleet.frames import FrameBatches
from engine.fleet.reanalyse import ActorRequest, ReanalysisOptions, analysis_stage, reanalyse
from engine.synthetic.phantom import generate_pullback
from streams.files.io import write_pullback

SCENARIOS = ("calcified", "stented-malapposed", "normal", "fibrous-stenosis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pullbacks", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--json", action="store_true")


def baseline_s_per_frame(files: list[Path]) -> float:
    """Mean wall time of the engine's analysis stage per frame, s (warm: after one frame)."""
    stage = analysis_stage(Config(), str(DEFAULT_MODEL), ActorRequest(1.0, 0, "onnxruntime", "", 1, "baseline"))
    stage.start()
    try:
        n, total = 0, 0.0
        for path in files:
            with FrameBatches(path) as reader:
                for batch in reader.batches():
                    for frame in batch:
                        t = time.perf_counter()
                        stage.process(frame)
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
        before = baseline_s_per_frame(files)
        runs = {}
        with ray_session(num_cpus=os.cpu_count()):
            for workers in (1, 2):
                t = time.perf_counter()
                s = reanalyse(root / "archive", root / f"run{workers}",
                              ReanalysisOptions(workers=workers, show_progress=False, sr=False))
                runs[workers] = {"frames": s["frames"], "wall_s": round(time.perf_counter() - t, 3),
                                 "frames_per_s_incl_start": s["frames_per_s"], "steady": s["steady"],
                                 "peak_worker_rss_mib": s.get("peak_worker_rss_mib")}
        after = baseline_s_per_frame(files)
    base = (before + after) / 2
    for workers, r in runs.items():
        fps = r["steady"]["frames_per_s"]
        r["steady_overhead_ratio"] = round((workers / fps) / base, 3) if fps else None
    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "archive": {"pullbacks": args.pullbacks, "frames_per_pullback": args.frames, "alines": 256},
        "baseline_stage_ms_per_frame": {"before": round(1e3 * before, 2), "after": round(1e3 * after, 2),
                                        "mean": round(1e3 * base, 2)},
        "ray": runs,
        "steady_speedup_2_vs_1_workers": (round(runs[2]["steady"]["frames_per_s"] / runs[1]["steady"]["frames_per_s"], 3)
                                          if runs[1]["steady"]["frames_per_s"] else None),
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
