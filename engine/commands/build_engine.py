"""``octguide build-engine``: build the runtime artefacts of the segmentation model.

``--precision fp16|fp32`` builds and caches a TensorRT engine (GPU machines);
``--precision int8`` writes the ONNX Runtime int8 (static, QDQ) variant next to the model, with
its own manifest (:mod:`models.training.quantize`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from engine.analysis.segment import DEFAULT_MODEL
from engine.compute.backends import BackendUnavailableError, registry
from models.manifest import load_manifest
from models.runtime import DEFAULT_ENGINE_CACHE, PRECISIONS, RUNTIMES, TRT_MAX_BATCH, build_engine


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-engine",
        help="build the TensorRT engine (fp16/fp32) or the ONNX Runtime int8 variant of the model",
        description="Verify the model against its manifest, then either build a TensorRT engine for "
        "this GPU and TensorRT version and cache it under a key of model sha256, precision, GPU and "
        "TensorRT version (the segmentation stage only loads cached engines; it never builds one), "
        "or, with --precision int8, write the statically quantised ONNX Runtime variant and its "
        "manifest next to the model.",
    )
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model .onnx or manifest (default: shipped)"
    )
    parser.add_argument(
        "--precision",
        choices=(*PRECISIONS, "int8"),
        default="fp16",
        help="TensorRT engine precision, or int8 for the ONNX Runtime variant (default fp16)",
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
    manifest = load_manifest(Path(args.model))
    start = time.perf_counter()
    if args.precision == "int8":
        from models.training.quantize import quantize

        backends.module("onnxruntime")
        variant = quantize(manifest, manifest.model_path.parent, "int8-static")
        path = variant.model_path
    else:
        reason = backends.why_not(RUNTIMES["tensorrt"])
        if reason is not None:
            raise BackendUnavailableError(f"cannot build a TensorRT engine here: {reason}")
        path = build_engine(manifest, backends, args.precision, args.cache, args.max_batch)
    result = {
        "artefact": str(path),
        "model": manifest.name,
        "sha256": manifest.sha256,
        "precision": args.precision,
        "build_s": round(time.perf_counter() - start, 1),
    }
    print(
        json.dumps(result, indent=2)
        if args.json
        else f"built {args.precision} artefact for {manifest.name} in {result['build_s']:.0f} s: {path}"
    )
    return 0
