"""``octguide reanalyse SOURCE --out DIR [--address RAY_ADDRESS] [--model VERSION] [--workers N]
[--compare VERSION] [--sr/--no-sr] [--gpu/--no-gpu] [--read-batch-frames N]``.

Re-analyses an archive (a folder of DICOM IVOCT / ``.oct.h5`` pullbacks, searched recursively,
or a list file) on Ray with the engine's own per-frame analysis and results writer
(:mod:`engine.fleet.reanalyse`): ``DIR/pullbacks/<id>/{frames.jsonl,pullback.json}``,
``DIR/measurements.parquet``, ``DIR/failures.parquet``, ``DIR/summary.json``. Pullbacks already
analysed with the same model and config are skipped. ``--compare A`` also runs model version A
into ``DIR/compare-<A>`` and writes their agreement (:mod:`engine.fleet.compare`). Needs the
``[fleet]`` extra (ray, pyarrow, matplotlib).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from engine.commands.serve import add_config_arguments, build_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reanalyse",
        help="re-analyse an archive of pullbacks on a Ray cluster (or locally)",
        description="Re-analyse every pullback of SOURCE (a folder, recursively, or a list file) with "
        "the engine's analysis on Ray; resumable; writes results folders, a Parquet table and failures.",
    )
    parser.add_argument("source", type=Path, help="folder of pullback files or a list file")
    parser.add_argument("--out", type=Path, required=True, help="results folder of the run")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address HOST:PORT (default: start Ray locally with this machine's cores)")
    parser.add_argument("--model", default=None,
                        help="installed model version (octguide model list; default: the config's "
                        "[segment] model_version, else the one `octguide model activate` recorded)")
    parser.add_argument("--compare", default=None, metavar="VERSION",
                        help="shadow comparison: also run VERSION and report where the outputs differ")
    parser.add_argument("--workers", type=int, default=1, help="analysis actors, one model each (default 1)")
    parser.add_argument("--sr", action=argparse.BooleanOptionalAction, default=None,
                        help="write each pullback's DICOM SR beside its pullback.json (default: on when "
                        "the [hospital] extra is installed)")
    parser.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                        help="GPU actors, num_gpus=1 each, with the GPU segmentation runtime (default: where "
                        "the cluster has GPUs; --no-gpu: CPU actors)")
    parser.add_argument("--read-batch-frames", type=int, default=None, metavar="N",
                        help="frames a read task decodes at a time (default 8; it never holds more of a pullback)")
    parser.add_argument("--models-dir", type=Path, default=None, help="installed models (default: models/weights)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the active model version is recorded (default: ~/.config/octguide)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def format_summary(s: dict) -> str:
    model = s["model"]
    lines = [
        (f"pullbacks   {s['pullbacks']}: analysed {s['analysed']}, skipped {s['skipped']} "
         f"(already done), failed {s['failed']}"),
        (f"frames      {s['frames']} in {s['duration_s']:.1f} s ({s['frames_per_s'] or 0:.2f} frames/s), "
         f"{s['failed_frames']} with analysis errors"),
        f"model       {model['name']} {model['version']} (sha256 {model['sha256'][:12]}...)",
        f"workers     {s['workers']} on {len(s['nodes'])} node(s); frames read in {s['read_batches']} batches",
        (f"actors      {', '.join((s.get('actors') or {}).get('runtimes') or []) or 'none started'}"
         f"{' on one GPU each' if (s.get('actors') or {}).get('num_gpus') else ''}"),
        f"DICOM SR    {s['sr']}: {s['sr_written']} written, {s['sr_failed']} failed",
    ]
    lines += [f"failed      {f['source']}: {f['reason']}" for f in s["failures"][:20]]
    lines.append(f"results     {s['outputs']['pullbacks']}, {s['outputs']['measurements']}, "
                 f"{s['outputs']['failures']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from engine.fleet.reanalyse import ReanalysisOptions, reanalyse
    from engine.fleet.registry import ModelRegistry

    if args.workers < 1:
        raise SystemExit("octguide reanalyse: error: --workers must be at least 1")
    registry = ModelRegistry(args.models_dir, args.state_dir)
    config = build_config(args.config, args.overrides)
    model = registry.resolve(args.model, config.segment)
    if args.read_batch_frames is not None and args.read_batch_frames < 1:
        raise SystemExit("octguide reanalyse: error: --read-batch-frames must be at least 1")
    batching = {"read_batch_frames": args.read_batch_frames} if args.read_batch_frames else {}
    options = ReanalysisOptions(model_path=str(model.model_path), config=config, workers=args.workers,
                                address=args.address, sr=args.sr, gpu=args.gpu, **batching)
    summary = reanalyse(args.source, args.out, options)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if args.compare:
        from engine.fleet.compare import compare_runs, format_comparison

        baseline = registry.resolve(args.compare)
        base_out = args.out / f"compare-{baseline.key}"
        reanalyse(args.source, base_out, dataclasses.replace(options, model_path=str(baseline.model_path)))
        report = compare_runs(base_out, args.out, args.out / "comparison")
        print(format_comparison(report))
    return 0
