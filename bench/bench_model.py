"""Segmentation model benchmark: ONNX Runtime CPU vs torch eager, the whole stage, TensorRT, int8.

Run from the repository root (``octguide bench model`` once the suite is registered)::

    python bench/bench_model.py              # table; writes bench/results/model_<host>_<date>.json
    python bench/bench_model.py --int8       # + int8 dynamic/static latency and held-out accuracy

What it measures, on the shipped model at its grid, batch 1, in one process:

* ``onnxruntime``: inference latency of the verified ONNX model (:class:`models.runtime.OnnxRuntime`,
  2 intra-op threads, all graph optimisations, no spinning), and with 1 thread, basic optimisations
  only, or spinning threads;
* ``torch eager``: the same weights (``octseg.pt``) in torch eager mode, ``inference_mode``,
  2 threads (absent when torch is not installed);
* ``segment stage``: the whole stage per frame (preprocessing of a 500 x 1000 phantom frame,
  inference, read-out) with ONNX Runtime;
* ``tensorrt fp16``: inference and whole stage with TensorRT, where TensorRT and a GPU are usable
  and ``octguide build-engine`` has cached an engine;
* ``--int8``: ONNX Runtime int8 dynamic and static variants (:mod:`models.training.quantize`): latency,
  agreement with float32, and the held-out 'ci' metrics of each.

Inputs are ``--frames`` distinct preprocessed phantom frames, cycled. Backends take turns in
blocks of 25 calls, ``--repeats x --rounds`` calls each after ``--warmup`` untimed ones, so that
background load on shared cores hits all of them alike; reported: median, p99, mean, min in ms,
and the speed-up over torch as the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.analysis.segment import DEFAULT_MODEL, Segmenter, SegmenterConfig
from engine.compute.backends import registry
from engine.compute.benchmarking import interleaved, machine_info, save_json
from engine.compute.preprocess import Preprocessor
from engine.synthetic.phantom import generate_pullback
from models.manifest import Manifest, load_manifest
from models.runtime import RUNTIMES, OnnxRuntime

RESULTS = REPO / "bench" / "results"
BLOCK = 25  #: consecutive calls of one backend before the next takes its turn
TARGETS = {
    "onnxruntime_median_ms": ("<=", 12.0),
    "onnxruntime_speedup_vs_torch": (">=", 2.0),
    "tensorrt_fp16_median_ms": ("<=", 1.0),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.add_argument(
        "--repeats", type=int, default=300, metavar="N", help="timed calls per backend"
    )
    parser.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed calls first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="measure all backends this many times, interleaved",
    )
    parser.add_argument("--frames", type=int, default=8, metavar="N", help="distinct frames cycled")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model .onnx (default: shipped)"
    )
    parser.add_argument(
        "--int8", action="store_true", help="also study int8 dynamic/static quantisation"
    )


def _with_torch(machine: dict) -> dict:
    """Add the torch version (the eager peer) to the machine's library versions, when present."""
    try:
        import torch
    except ImportError:
        return machine
    machine["libraries"]["torch"] = str(torch.__version__)
    return machine


def measure(
    calls: dict[str, Callable[[int], object]], repeats: int, warmup: int, rounds: int
) -> dict:
    """Time every ``call(i)`` ``repeats x rounds`` times after ``warmup`` untimed calls each.

    Backends take turns in blocks of :data:`BLOCK` calls, so that load that comes and goes on
    shared cores hits all of them alike; a block rather than single calls, because a runtime's
    idle threads keep spinning for a while after a call and would tax whichever backend runs next.
    """
    return interleaved(calls, repeats * rounds, warmup, block=BLOCK).summary()


def phantom_frames(manifest: Manifest, count: int):
    """``count`` 500 x 1000 phantom frames along a calcified lesion, raw and preprocessed."""
    pullback = generate_pullback("calcified", seed=123_456, n_frames=count, frame_pitch_mm=1.0)
    stage = Preprocessor(manifest.grid, manifest.mapping)
    stage.start(pullback.geometry)
    inputs = [stage.process(pullback.frame(i))[None, None] for i in range(count)]
    stage.stop()
    return pullback, inputs


def torch_call(manifest: Manifest, inputs: list[np.ndarray]) -> Callable[[int], object] | None:
    """torch eager on the checkpoint next to the model; None without torch or checkpoint."""
    checkpoint = manifest.model_path.with_suffix(".pt")
    try:
        import torch

        from models.network import InferenceModel
        from models.training.train import load_checkpoint
    except ImportError:
        return None
    if not checkpoint.is_file():
        return None
    torch.set_num_threads(2)
    net, _ = load_checkpoint(checkpoint)
    model = InferenceModel(net).eval()
    tensors = [torch.from_numpy(x) for x in inputs]

    def call(i: int) -> object:
        with torch.inference_mode():
            return model(tensors[i % len(tensors)])

    return call


def stage_call(segmenter: Segmenter, pullback) -> Callable[[int], object]:
    frames = [pullback.frame(i) for i in range(len(pullback))]
    return lambda i: segmenter.process(frames[i % len(frames)])


def int8_study(manifest: Manifest, inputs: list[np.ndarray], args: argparse.Namespace) -> dict:
    """Latency, agreement with float32 and held-out 'ci' metrics of the int8 variants."""
    from models.training.evaluate import EVAL_SETS, evaluate
    from models.training.quantize import quantize

    keys = (
        "lumen_dice",
        "lumen_area_error_pct",
        "eel_mae_um",
        "dice_fibrous",
        "dice_lipid",
        "dice_calcium",
        "guidewire_iou",
        "confidence_ece",
    )
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"fp32": manifest}
        for kind in ("int8-dynamic", "int8-static"):
            variants[kind] = quantize(manifest, Path(tmp), kind)
        sessions = {k: OnnxRuntime(m, registry(), {"threads": 2}) for k, m in variants.items()}
        calls = {k: (lambda i, s=s: s.run(inputs[i % len(inputs)])) for k, s in sessions.items()}
        latency = measure(calls, args.repeats, args.warmup, args.rounds)
        reference = [sessions["fp32"].run(x) for x in inputs]
        for kind, variant in variants.items():
            got = [sessions[kind].run(x) for x in inputs]
            segmenter = Segmenter(SegmenterConfig(model=str(variant.model_path)))
            segmenter.start()
            metrics = evaluate(segmenter, EVAL_SETS["ci"])["metrics"]
            segmenter.stop()
            out[kind] = {
                "latency": latency[kind],
                "size_bytes": variant.model_path.stat().st_size,
                "max_abs_prob_diff_vs_fp32": float(
                    max(np.abs(g.class_prob - r.class_prob).max() for g, r in zip(got, reference))
                ),
                "class_map_agreement_vs_fp32": float(
                    np.mean(
                        [
                            np.mean(g.class_prob.argmax(1) == r.class_prob.argmax(1))
                            for g, r in zip(got, reference)
                        ]
                    )
                ),
                "ci_metrics": {k: round(metrics[k], 4) for k in keys},
            }
    return out


def run_benchmark(args: argparse.Namespace) -> dict:
    manifest = load_manifest(Path(args.model))
    pullback, inputs = phantom_frames(manifest, args.frames)
    backends = registry()
    ort = OnnxRuntime(manifest, backends, {"threads": 2})
    calls = {"onnxruntime": lambda i: ort.run(inputs[i % len(inputs)])}
    # Tuning alternatives to the shipped settings (2 threads, all graph optimisations, no spinning).
    for label, options in (
        ("1 thread", {"threads": 1}),
        ("basic graph opt", {"optimization": "basic"}),
        ("spinning threads", {"spinning": True}),
    ):
        variant = OnnxRuntime(manifest, backends, options)
        calls[f"onnxruntime ({label})"] = lambda i, v=variant: v.run(inputs[i % len(inputs)])
    torch_run = torch_call(manifest, inputs)
    if torch_run is not None:
        calls["torch eager"] = torch_run
    segmenter = Segmenter(SegmenterConfig(model=args.model, warmup_frames=0))
    segmenter.start(pullback.geometry)
    calls["segment stage (onnxruntime)"] = stage_call(segmenter, pullback)
    gpu_segmenter = None
    trt_reason = backends.why_not(RUNTIMES["tensorrt"])
    if trt_reason is None:
        gpu_segmenter = Segmenter(
            SegmenterConfig(
                model=args.model, runtime="tensorrt", preprocess_backend="cupy", warmup_frames=0
            )
        )
        gpu_segmenter.start(pullback.geometry)
        calls["tensorrt fp16"] = lambda i: gpu_segmenter.runtime.run(inputs[i % len(inputs)])
        calls["segment stage (tensorrt fp16)"] = stage_call(gpu_segmenter, pullback)
    results = measure(calls, args.repeats, args.warmup, args.rounds)
    segmenter.stop()
    if gpu_segmenter is not None:
        gpu_segmenter.stop()

    measured = {"onnxruntime_median_ms": results["onnxruntime"]["median_ms"]}
    if "torch eager" in results:
        measured["onnxruntime_speedup_vs_torch"] = round(
            results["torch eager"]["median_ms"] / results["onnxruntime"]["median_ms"], 3
        )
    if "tensorrt fp16" in results:
        measured["tensorrt_fp16_median_ms"] = results["tensorrt fp16"]["median_ms"]
    targets = {
        name: {
            "target": f"{op} {value}",
            "measured": measured[name],
            "met": measured[name] <= value if op == "<=" else measured[name] >= value,
        }
        for name, (op, value) in TARGETS.items()
        if name in measured
    }
    result = {
        "suite": "model",
        "model": {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.sha256,
            "grid": [manifest.grid.n_alines, manifest.grid.n_depth, manifest.grid.depth_mm],
        },
        "case": {
            "input": "500 x 1000 uint16 phantom frames (stage), model grid (inference)",
            "batch": 1,
        },
        "machine": _with_torch(machine_info()),
        "results": results,
        "targets": targets,
    }
    if trt_reason is not None:
        result["tensorrt"] = f"not measured: {trt_reason}"
    if getattr(args, "int8", False):
        result["int8"] = int8_study(manifest, inputs, args)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def format_table(result: dict) -> str:
    m = result["machine"]
    lines = [
        (
            f"segmentation model {result['model']['name']} {result['model']['version']} "
            f"grid {result['model']['grid']} on {m['cpu']} ({m['cores']} cores), load {m['loadavg_start']}"
        ),
        f"{'backend':32s} {'median ms':>10s} {'p99 ms':>9s} {'mean ms':>9s} {'n':>6s}",
    ]
    for name, e in result["results"].items():
        lines.append(
            f"{name:32s} {e['median_ms']:10.3f} {e['p99_ms']:9.3f} {e['mean_ms']:9.3f} {e['samples']:6d}"
        )
    for name, t in result["targets"].items():
        lines.append(
            f"target {name}: {t['measured']} vs {t['target']} -> {'met' if t['met'] else 'NOT met'}"
        )
    if "tensorrt" in result:
        lines.append(f"tensorrt: {result['tensorrt']}")
    for kind, e in result.get("int8", {}).items():
        lines.append(
            f"{kind:14s} median {e['latency']['median_ms']:.3f} ms, agreement {e['class_map_agreement_vs_fp32']:.4f}, "
            f"ci {e['ci_metrics']}"
        )
    return "\n".join(lines)


def save(result: dict, folder: Path = RESULTS) -> Path:
    """Write the result as ``model_<host>_<date>.json``; returns the path."""
    return save_json("model", result, folder)


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``octguide bench model`` and this script."""
    for name in ("repeats", "rounds", "frames"):
        if getattr(args, name) < 1:
            print(f"bench model: --{name} must be positive", file=sys.stderr)
            return 2
    if not hasattr(args, "model"):
        args.model = str(DEFAULT_MODEL)
    result = run_benchmark(args)
    if not args.no_save:
        result["saved_to"] = str(save(result).relative_to(REPO))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
