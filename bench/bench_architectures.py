"""Latency of candidate network sizes, untrained, with ONNX Runtime CPU (``octguide bench``-style).

Each candidate (:class:`models.network.NetworkConfig` on a model grid) is built with random
weights (latency does not depend on the values), traced to ONNX exactly as the shipped model is
(:func:`models.training.export.to_onnx`) and timed with the runtime's default session options
(2 intra-op threads, all graph optimisations, no spinning), batch 1. Candidates take turns in
blocks of calls (:func:`bench.bench_model.measure`) and are reported as ratios of their median to
the first candidate's (today's network) from the same run, so that load on the shared cores
cancels out.

    python bench/bench_architectures.py [--repeats 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_model import measure

from models.grid import ModelGrid

CANDIDATES = {
    "v1 16/32/64/96 f2 256x384": ((16, 32, 64, 96), 2, False, (256, 384)),
    "12/24/48/64 f2 256x384": ((12, 24, 48, 64), 2, False, (256, 384)),
    "16/32/64/96 f2 sep 256x384": ((16, 32, 64, 96), 2, True, (256, 384)),
    "24/48/64/96 f4 256x384": ((24, 48, 64, 96), 4, False, (256, 384)),
    "16/32/64/96 f2 256x320": ((16, 32, 64, 96), 2, False, (256, 320)),
    "12/24/48/64 f2 sep 256x384": ((12, 24, 48, 64), 2, True, (256, 384)),
    "16/32/64/96 f4 256x384": ((16, 32, 64, 96), 4, False, (256, 384)),
    "16/32/48/64 f4 256x384": ((16, 32, 48, 64), 4, False, (256, 384)),
    "24/48/64/96 f4 sep 256x384": ((24, 48, 64, 96), 4, True, (256, 384)),
    "16/32/64/96 f4 256x320": ((16, 32, 64, 96), 4, False, (256, 320)),
}
"""name -> (widths, fold, separable, (K, J)); the first is the baseline (octseg 1.x)."""


def session(widths, fold, separable, shape, folder: Path):
    import onnx
    import onnxruntime as ort
    import torch

    from models.network import NetworkConfig, SegNet
    from models.training.export import to_onnx

    torch.manual_seed(0)
    config = NetworkConfig(widths=tuple(widths), fold=fold, separable=separable)
    net = SegNet(config).eval()
    grid = ModelGrid(shape[0], shape[1], 5.0)
    path = folder / f"{'-'.join(map(str, widths))}-{fold}-{int(separable)}-{shape[1]}.onnx"
    onnx.save(to_onnx(net, grid), path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    params = sum(p.numel() for p in net.parameters())
    x = np.random.default_rng(0).random((1, 1, *shape), dtype=np.float32)
    return params, (lambda i: sess.run(None, {"frames": x}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    args = parser.parse_args(argv)
    names = args.only or list(CANDIDATES)
    calls, params = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            params[name], calls[name] = session(*CANDIDATES[name], Path(tmp))
        stats = measure(calls, args.repeats, args.warmup, args.rounds)
    base = stats[names[0]]["median_ms"]
    out = {"load_average": os.getloadavg(), "candidates": {}}
    for name in names:
        out["candidates"][name] = {"params": params[name], **stats[name],
                                   "ratio_vs_baseline": round(stats[name]["median_ms"] / base, 3)}
        print(f"{name:32s} {params[name]:8d} params  median {stats[name]['median_ms']:6.2f} ms"
              f"  p99 {stats[name]['p99_ms']:6.2f}  ratio {stats[name]['median_ms'] / base:5.2f}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
