"""``octguide train``: train the segmentation network on phantom data and export it (``[train]``)."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from streams.errors import OctguideError

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models" / "weights"
DEFAULT_CACHE = Path.home() / ".cache" / "octguide" / "train"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the segmentation network on phantom pullbacks and export it to ONNX",
        description="Generate (or load cached) phantom pullbacks with random geometries, train the "
        "polar segmentation network, write <name>.pt, <name>.curve.png and <name>.history.json, and "
        "export <name>.onnx with its manifest. Needs the [train] extra (torch, onnx). Deterministic "
        "for a given seed and thread count.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--name", default="octseg", help="file stem and model name (default octseg)"
    )
    parser.add_argument("--version", default="2.0.0", help="model version for the manifest")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument(
        "--epochs", type=_positive, default=None, help="epochs (default: TrainConfig's)"
    )
    parser.add_argument(
        "--pullbacks",
        type=_positive,
        default=None,
        help="training pullbacks to generate (default: the recipe's)",
    )
    parser.add_argument(
        "--validation-pullbacks",
        type=_positive,
        default=None,
        help="validation pullbacks for the curves (default: the recipe's)",
    )
    parser.add_argument("--threads", type=_positive, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="training device (default: CUDA when torch sees a GPU)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"cache of generated phantom frames (default {DEFAULT_CACHE})",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="regenerate the phantom data, cache nothing"
    )
    parser.add_argument("--no-export", action="store_true", help="write the checkpoint only")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        from models.training.export import export
        from models.training.train import TrainConfig, load_checkpoint, train
    except ImportError as exc:
        raise OctguideError(f"training needs the [train] extra (torch, onnx): {exc}") from None
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = TrainConfig(seed=args.seed, threads=args.threads)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    if args.pullbacks is not None:
        config = replace(config, train=replace(config.train, n_pullbacks=args.pullbacks))
    if args.validation_pullbacks is not None:
        config = replace(
            config, validation=replace(config.validation, n_pullbacks=args.validation_pullbacks)
        )
    summary = train(
        config, args.out, None if args.no_cache else args.cache, name=args.name, device=args.device
    )
    if not args.no_export:
        net, checkpoint = load_checkpoint(Path(summary["checkpoint"]))
        manifest = export(
            net,
            config.train.grid,
            args.out / f"{args.name}.onnx",
            name=args.name,
            version=args.version,
            data={
                "description": "Polar U-Net segmenting lumen, wall, fibrous, lipid, calcium and "
                "beyond-EEL tissue, guidewire/strut shadow A-lines, EEL visibility and frame confidence "
                "in IVOCT frames. Trained on synthetic phantom data only: not a medical device.",
                "training": {"config": checkpoint["config"], "summary": checkpoint["summary"]},
            },
        )
        summary["onnx"] = str(manifest.model_path)
        summary["manifest"] = str(manifest.path)
        summary["sha256"] = manifest.sha256
    print(
        json.dumps(summary, indent=2, default=str)
        if args.json
        else f"trained in {summary['wall_s']:.0f} s ({summary['data_s']:.0f} s data, {summary['train_s']:.0f} s "
        f"training) on {summary['train_frames']} frames; checkpoint {summary['checkpoint']}"
        + (f"; model {summary['onnx']}" if "onnx" in summary else "")
    )
    return 0
