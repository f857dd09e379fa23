"""Benchmark of the segmentation model: ONNX Runtime CPU vs torch eager, TensorRT, int8.

Run from the repository root::

    python bench/bench_model.py                 # ORT CPU vs torch eager, segment stage
    python bench/bench_model.py --int8          # + int8 dynamic/static latency and accuracy
    python bench/bench_model.py --out bench/results/model_cpu.json

What it measures, all on the shipped model at its grid, batch 1, in one process:

* ``onnxruntime``: per-frame inference latency of the verified ONNX model
  (:class:`models.runtime.OnnxRuntime`, 2 intra-op threads, all graph optimisations);
* ``torch_eager``: the same weights (``octseg.pt``) in torch eager mode, ``inference_mode``,
  2 threads (skipped when torch is not installed);
* ``segment_stage``: the whole stage per frame (preprocessing of a 500 x 1000 phantom frame,
  inference, read-out), ORT runtime;
* ``tensorrt``: TensorRT fp16 inference (when TensorRT and a GPU are usable and an engine was
  built with ``octguide build-engine``), and the whole stage with it;
* ``--int8``: ORT int8 dynamic and static variants (:mod:`models.quantize`): latency and the
  held-out 'ci' metrics next to the float32 model's.

ORT and torch alternate in blocks on the same input so that background load on shared cores hits
both alike; the first 20 runs of each are warm-up. Reported: median, p99, mean, in ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.backends import registry
from engine.segment import DEFAULT_MODEL, Segmenter, SegmenterConfig
from models.manifest import load_manifest
from models.runtime import RUNTIMES, OnnxRuntime

WARMUP = 20
BLOCK = 25


def stats(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "runs": int(ms.size),
    }


def phantom_frame(grid, mapping):
    """A preprocessed 500 x 1000 phantom frame (calcified lesion) and the raw frame."""
    from engine.preprocess import Preprocessor
    from streams.phantom import generate_pullback

    pullback = generate_pullback("calcified", seed=123_456, n_frames=1, frame_pitch_mm=20.0)
    frame = pullback.frame(0)
    stage = Preprocessor(grid, mapping)
    stage.start()
    x = stage.process(frame)[None, None]
    stage.stop()
    return x, pullback


def interleaved(runners: dict, x: np.ndarray, runs: int) -> dict:
    """Run each callable ``runs`` times after warm-up, alternating in blocks; return stats."""
    times = {name: [] for name in runners}
    for name, fn in runners.items():
        for _ in range(WARMUP):
            fn(x)
    while any(len(t) < runs for t in times.values()):
        for name, fn in runners.items():
            for _ in range(min(BLOCK, runs - len(times[name]))):
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    return {name: stats(t) for name, t in times.items()}


def torch_runner(manifest):
    """torch eager on the checkpoint next to the model, or None without torch/checkpoint."""
    try:
        import torch

        from models.network import InferenceModel
        from models.train import load_checkpoint
    except ImportError:
        return None
    checkpoint = manifest.model_path.with_suffix(".pt")
    if not checkpoint.is_file():
        return None
    torch.set_num_threads(2)
    net, _ = load_checkpoint(checkpoint)
    model = InferenceModel(net).eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return run


def stage_latency(config: SegmenterConfig, pullback, runs: int) -> dict:
    seg = Segmenter(config)
    seg.start(pullback.geometry)
    frame = pullback.frame(0)
    for _ in range(WARMUP):
        seg.process(frame)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        seg.process(frame)
        times.append(time.perf_counter() - start)
    seg.stop()
    return stats(times)


def int8_study(manifest, runs: int, x: np.ndarray) -> dict:
    """Latency and held-out 'ci' accuracy of the int8 variants next to float32."""
    from models.evaluate import EVAL_SETS, evaluate
    from models.quantize import quantize

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
        latency = interleaved({k: s.run for k, s in sessions.items()}, x, runs)
        reference = sessions["fp32"].run(x)
        for kind, m in variants.items():
            outputs = sessions[kind].run(x)
            seg = Segmenter(SegmenterConfig(model=str(m.model_path)))
            seg.start()
            metrics = evaluate(seg, EVAL_SETS["ci"])["metrics"]
            seg.stop()
            out[kind] = {
                "latency": latency[kind],
                "size_bytes": m.model_path.stat().st_size,
                "max_abs_prob_diff_vs_fp32": float(
                    np.abs(outputs.class_prob - reference.class_prob).max()
                ),
                "class_map_agreement_vs_fp32": float(
                    np.mean(outputs.class_prob.argmax(1) == reference.class_prob.argmax(1))
                ),
                "ci_metrics": {k: round(metrics[k], 4) for k in keys},
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument(
        "--runs", type=int, default=300, help="timed runs per variant (default 300)"
    )
    parser.add_argument(
        "--int8", action="store_true", help="also study int8 dynamic/static quantisation"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    manifest = load_manifest(Path(args.model))
    x, pullback = phantom_frame(manifest.grid, manifest.mapping)
    backends = registry()
    result = {
        "model": {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.sha256,
            "grid": [manifest.grid.n_alines, manifest.grid.n_depth, manifest.grid.depth_mm],
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "backends": {
            k: v["version"] for k, v in backends.report()["backends"].items() if v["available"]
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    ort = OnnxRuntime(manifest, backends, {"threads": 2})
    runners = {"onnxruntime": ort.run}
    torch_run = torch_runner(manifest)
    if torch_run is not None:
        runners["torch_eager"] = torch_run
    result["inference"] = interleaved(runners, x, args.runs)
    if torch_run is not None:
        result["onnxruntime_speedup_vs_torch"] = round(
            result["inference"]["torch_eager"]["median_ms"]
            / result["inference"]["onnxruntime"]["median_ms"],
            2,
        )
    result["segment_stage_onnxruntime"] = stage_latency(
        SegmenterConfig(model=args.model), pullback, args.runs
    )
    if backends.why_not(RUNTIMES["tensorrt"]) is None:
        config = SegmenterConfig(model=args.model, runtime="tensorrt", preprocess_backend="cupy")
        seg = Segmenter(config)
        seg.start(pullback.geometry)
        result["inference"].update(interleaved({"tensorrt_fp16": seg.runtime.run}, x, args.runs))
        seg.stop()
        result["segment_stage_tensorrt"] = stage_latency(config, pullback, args.runs)
    else:
        result["tensorrt"] = f"not run: {backends.why_not(RUNTIMES['tensorrt'])}"
    if args.int8:
        result["int8"] = int8_study(manifest, args.runs, x)
    result["machine"]["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
