"""``octguide build-engine``: build and cache the TensorRT engine of the segmentation model."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from engine.backends import BackendUnavailableError, registry
from engine.segment import DEFAULT_MODEL
from models.manifest import load_manifest
from models.runtime import DEFAULT_ENGINE_CACHE, PRECISIONS, RUNTIMES, TRT_MAX_BATCH, build_engine


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-engine",
        help="build the TensorRT engine of the segmentation model (GPU machines)",
        description="Verify the model against its manifest, build a TensorRT engine for this GPU and "
        "TensorRT version and cache it under a key of model sha256, precision, GPU and TensorRT "
        "version. The segmentation stage only loads cached engines; it never builds one.",
    )
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model .onnx or manifest (default: shipped)"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp16", help="engine precision (default fp16)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_ENGINE_CACHE,
        help=f"engine cache folder (default {DEFAULT_ENGINE_CACHE})",
    )
    parser.add_argument(
        "--max-batch", type=int, default=TRT_MAX_BATCH, help="largest batch the engine accepts"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    backends = registry()
    reason = backends.why_not(RUNTIMES["tensorrt"])
    if reason is not None:
        raise BackendUnavailableError(f"cannot build a TensorRT engine here: {reason}")
    manifest = load_manifest(Path(args.model))
    start = time.perf_counter()
    path = build_engine(manifest, backends, args.precision, args.cache, args.max_batch)
    result = {
        "engine": str(path),
        "model": manifest.name,
        "sha256": manifest.sha256,
        "precision": args.precision,
        "build_s": round(time.perf_counter() - start, 1),
    }
    print(
        json.dumps(result, indent=2)
        if args.json
        else f"built {args.precision} engine for {manifest.name} in {result['build_s']:.0f} s: {path}"
    )
    return 0
