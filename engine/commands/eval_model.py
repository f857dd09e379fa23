"""``octguide eval-model``: held-out phantom evaluation of the segmentation model."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from engine.analysis.segment import DEFAULT_MODEL, Segmenter, SegmenterConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-model",
        help="evaluate the segmentation model on held-out phantom pullbacks",
        description="Generate held-out phantom pullbacks (seeds and a geometry never used in training), "
        "run every frame through the segmentation stage and report lumen Dice, lumen area error, EEL "
        "radius error, plaque Dice per class, guidewire IoU and confidence calibration against the "
        "targets.",
    )
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model .onnx or manifest (default: shipped)"
    )
    parser.add_argument(
        "--set",
        choices=("ci", "full"),
        default="full",
        dest="eval_set",
        help="held-out set: 'full' (default) or the small 'ci' set",
    )
    parser.add_argument("--runtime", choices=("onnxruntime", "tensorrt"), default="onnxruntime")
    parser.add_argument(
        "--fallback",
        choices=("onnxruntime",),
        default=None,
        help="runtime to fall back to (logged) when --runtime is not usable",
    )
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="also report each target metric's spread over N resamplings of the pullbacks",
    )
    parser.add_argument(
        "--write-manifest",
        action="store_true",
        help="store the metrics in the model's manifest under 'evaluation'",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from models.training.evaluate import (
        CI_MARGINS,
        EVAL_SETS,
        TARGETS,
        bootstrap,
        check_targets,
        evaluate,
    )

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    show = sys.stderr.isatty() and not args.json
    segmenter = Segmenter(
        SegmenterConfig(
            model=args.model, runtime=args.runtime, fallback=args.fallback, threads=args.threads
        )
    )
    segmenter.start()
    try:

        def progress(done: int, total: int) -> None:
            if show:
                print(
                    f"\rpullback {done}/{total}", end="" if done < total else "\n", file=sys.stderr
                )

        result = evaluate(segmenter, EVAL_SETS[args.eval_set], progress)
    finally:
        status = segmenter.status()
        segmenter.stop()
    metrics = result["metrics"]
    report = {
        "model": {k: status[k] for k in ("model", "version", "sha256")},
        "runtime": status["runtime"],
        "metrics": metrics,
        "targets": {k: {"op": op, "value": v} for k, (op, v) in TARGETS.items()},
        "pass": check_targets(metrics),
        "pass_with_ci_margins": check_targets(metrics, CI_MARGINS),
        "ci_margins": CI_MARGINS,
        "eval_set": result["eval_set"],
        "generation_s": result["generation_s"],
        "wall_s": result["wall_s"],
    }
    if args.bootstrap:
        report["bootstrap_std"] = bootstrap(result["per_case"], n=args.bootstrap)
    if args.write_manifest:
        from models.manifest import load_manifest

        manifest = load_manifest(args.model)
        evaluation = dict(manifest.data.get("evaluation", {}))
        evaluation[args.eval_set] = {
            k: report[k] for k in ("metrics", "targets", "pass", "eval_set")
        }
        if "bootstrap_std" in report:
            evaluation[args.eval_set]["bootstrap_std"] = report["bootstrap_std"]
        manifest.data["evaluation"] = evaluation
        manifest.write()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{report['model']['model']} {report['model']['version']} on the '{args.eval_set}' held-out set "
            f"({metrics['frames']} frames, {metrics['frames_ok']} ok):"
        )
        for name, (op, target) in TARGETS.items():
            verdict = "pass" if report["pass"][name] else "FAIL"
            print(f"  {name:<24} {metrics[name]:9.4f}   target {op} {target:<6}  {verdict}")
        for name in (
            "dice_fibrous",
            "strut_shadow_iou",
            "eel_row_recall",
            "confidence_ece",
            "low_confidence_recall",
            "segment_ms_median",
            "segment_ms_p99",
        ):
            print(f"  {name:<24} {metrics[name]:9.4f}")
    return 0
