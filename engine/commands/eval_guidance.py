"""``octguide eval-guidance``: accuracy of the guidance against held-out phantom ground truth."""

from __future__ import annotations

import argparse
import json
import sys

from engine.synthetic.foreign import SCENARIOS as FOREIGN_SCENARIOS
from engine.synthetic.phantom import SCENARIOS
from streams.errors import OctguideError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-guidance",
        help="measure guidance accuracy on held-out phantom pullbacks",
        description="Run the shipped analysis on held-out phantom pullbacks (every scenario, a geometry "
        "unlike the training data) and compare lumen, struts, apposition, calcium, sizing and MSA with the "
        "ground truth.",
    )
    p.add_argument("--frames", type=int, default=60, help="frames per pullback (default 60)")
    p.add_argument("--seed", type=int, default=None, help="first seed (default: the held-out seed)")
    p.add_argument("--source", choices=("phantom", "foreign"), default="phantom",
                   help="phantom (default) or the independent foreign renderer (validation only)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS) + sorted(FOREIGN_SCENARIOS),
                   help="limit to these (repeatable; names of the chosen source)")
    p.add_argument("--model", help="model file (.onnx) or installed key / NAME@VERSION to evaluate "
                                   "(default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=run)


def _analyser(model: str):
    """The shipped analysis with ``model``: a file, or an installed key or NAME@VERSION."""
    from pathlib import Path

    from engine.analysis.analyse import FrameAnalyser
    from engine.analysis.segment import DEFAULT_MODEL, SegmenterConfig
    from models.manifest import MANIFEST_SUFFIX, find_installed, load_manifest

    path = Path(model)
    if not path.exists():
        path = find_installed(model, Path(DEFAULT_MODEL).parent)
    path = load_manifest(path).model_path if path.name.endswith(MANIFEST_SUFFIX) else path
    return FrameAnalyser(segmenter=SegmenterConfig(model=str(path)))


def run(args: argparse.Namespace) -> int:
    from engine.evaluation.guidance_accuracy import EVAL_SEED, evaluate

    def progress(name: str) -> None:
        if not args.json:
            print(f"  evaluated {name}", file=sys.stderr)

    try:
        analyser = None if args.model is None else _analyser(args.model)
        report = evaluate(args.scenario, n_frames=args.frames, seed=EVAL_SEED if args.seed is None else args.seed,
                          analyser=analyser, progress=progress, source=args.source)
    except (ValueError, OctguideError) as e:
        print(f"eval-guidance: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"held-out {report['source']}: {report['frames_per_pullback']} frames per scenario, "
          f"geometry {report['geometry']}")
    for key, value in report["metrics"].items():
        met = report["met"].get(key)
        mark = "n/a" if met is None else ("ok" if met else "MISSED")
        print(f"  {key:28s} {value!s:>10}   target {report['targets'].get(key, '-'):>8}   {mark}")
    print("  confidence: " + ", ".join(f"{k}={v}" for k, v in report["confidence"].items()))
    for name, s in report["scenarios"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    return 0
