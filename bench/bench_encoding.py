"""Per-overlay JSON encoding: the standard library (``streams.wire.protocol.dumps``) against
orjson (``engine.realtime.encoding.encode``), in the same run (issue 12 item 6, issue 17 item 3).

Usage: ``python bench/bench_encoding.py [--frames N] [--repeats N] [--json]``. It prints; it
never fails (exit 0 whatever it measures).

What is encoded: the vector overlay the engine publishes for each frame
(``engine.display.overlay.build_overlay`` of the phantom's per-frame truth records, the same
shape as the engine's records: lumen and EEL radii per A-line, plaque arcs, struts), on the
engine's 512 px display grid, for a calcified lesion and a malapposed stent; and the frame's
record as the case log stores it. Each message is encoded ``--repeats`` times by each encoder,
interleaved, and the per-message median is taken. Before timing, every message is checked to
parse back equal from both encoders (floats identical), so the two are compared on the same
output in meaning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from engine.compute.scan_convert import CartesianGrid, DisplayOrientation
from engine.display.overlay import build_overlay
from engine.realtime.encoding import encode
from engine.synthetic.phantom import generate_pullback
from streams.wire.protocol import dumps


def _messages(n_frames: int) -> dict[str, list]:
    grid, orientation = CartesianGrid(512, 10.0), DisplayOrientation()
    out: dict[str, list] = {"overlay": [], "record": []}
    for scenario in ("calcified", "stented-malapposed"):
        pullback = generate_pullback(scenario, seed=1, n_frames=n_frames)
        for i in range(n_frames):
            record = dict(pullback.truth.frames[i].record)
            frame = pullback.frame(i)
            latency = {"queue": 0.4, "segment": 7.91234, "detect_metal": 1.20001, "measure": 1.3}
            overlay = build_overlay(record, frame, grid, orientation, latency)
            overlay["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
            out["overlay"].append(overlay)
            out["record"].append({**record, "pullback_id": pullback.pullback_id, "lane": "live",
                                  "latency_ms": overlay["latency_ms"],
                                  "audit": {"model": {"name": "m", "version": "1", "sha256": "0" * 64},
                                            "engine_version": "0", "config_hash": "0" * 16}})
    return out


def _same_meaning(message: object) -> bool:
    return json.loads(dumps(message)) == json.loads(encode(message))


def run_benchmark(frames: int, repeats: int) -> dict:
    load_before = os.getloadavg()[0]
    messages = _messages(frames)
    result: dict = {"frames": frames * 2, "repeats": repeats, "kinds": {}}
    for kind, items in messages.items():
        assert all(_same_meaning(m) for m in items), f"{kind}: the encoders disagree"
        per = {"stdlib": [], "orjson": []}
        for message in items:
            times = {"stdlib": [], "orjson": []}
            for _ in range(repeats):
                for name, fn in (("stdlib", dumps), ("orjson", encode)):
                    t = time.perf_counter_ns()
                    fn(message)
                    times[name].append(time.perf_counter_ns() - t)
            for name, samples in times.items():
                per[name].append(statistics.median(samples) / 1e6)
        stdlib, fast = np.asarray(per["stdlib"]), np.asarray(per["orjson"])
        result["kinds"][kind] = {
            "bytes_median": int(statistics.median(len(dumps(m)) for m in items)),
            "stdlib_ms_p50": round(float(np.median(stdlib)), 4),
            "stdlib_ms_p99": round(float(np.percentile(stdlib, 99)), 4),
            "orjson_ms_p50": round(float(np.median(fast)), 4),
            "orjson_ms_p99": round(float(np.percentile(fast, 99)), 4),
            "speedup_p50": round(float(np.median(stdlib) / np.median(fast)), 1),
        }
    result["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    result["cores"] = os.cpu_count()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per scenario (2 scenarios)")
    parser.add_argument("--repeats", type=int, default=21, help="encodings of each message per encoder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    result = run_benchmark(args.frames, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    load = result["load_average_1min"]
    print(f"{result['cores']} cores, load {load['before']} -> {load['after']}; {result['frames']} "
          f"frames x {result['repeats']} repeats; same meaning checked for every message")
    print(f"{'message':8s} {'bytes':>7s} {'stdlib p50':>11s} {'p99':>8s} {'orjson p50':>11s} {'p99':>8s} {'speedup':>8s}")
    for kind, row in result["kinds"].items():
        print(f"{kind:8s} {row['bytes_median']:7d} {row['stdlib_ms_p50']:9.4f}ms {row['stdlib_ms_p99']:6.4f}ms "
              f"{row['orjson_ms_p50']:9.4f}ms {row['orjson_ms_p99']:6.4f}ms {row['speedup_p50']:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
