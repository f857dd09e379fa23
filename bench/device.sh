#!/usr/bin/env bash
# GPU tests and GPU benchmarks in one go, on a fresh GPU machine with no network access.
#
#   bash bench/device.sh [OUT_DIR]        (default: $OUT, else bench/results/device-<date>)
#
# Installs nothing: it uses the Python found first among $PYTHON, the checkout's .venv and
# python3, with whatever that has (CUDA, PyTorch, CuPy, numba-cuda, ONNX Runtime, TensorRT), and
# records what is missing instead of failing. Every step has its own timeout and the whole run
# stays under $DEVICE_BUDGET_S (default 540 s); each step's output goes to OUT_DIR/<step>.log
# (benchmarks also to OUT_DIR/<step>.json), and OUT_DIR/summary.txt lists each step's exit code
# and duration (124: timed out). A failed step does not stop the next one.
#
# Steps: environment (nvidia-smi, library versions, the backend registry's report); the GPU tests;
# `octguide bench scan` (octguide's CuPy and Numba CUDA kernels against cupyx map_coordinates);
# torch CUDA fp16 inference of the segmentation model, eager and as a CUDA graph (the stand-in
# for TensorRT where TensorRT is not installed); `octguide bench e2e` at 30, 180 frames/s and
# flat out with the engine's GPU backends (the backend registry picks CuPy for preprocessing and
# scan conversion where it is usable; segmentation stays on ONNX Runtime: the engine config does
# not choose TensorRT yet), then a 540-frame pullback at 180 frames/s for the guidance delay;
# `octguide build-engine` (TensorRT fp16, where TensorRT is installed) and `octguide bench model`.
set -u

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$REPO/bench/results/device-$(date +%Y%m%d-%H%M%S)}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$REPO" || exit 1

BUDGET_S="${DEVICE_BUDGET_S:-540}"
START_S=$(date +%s)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PIP_NO_INDEX=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x "$REPO/.venv/bin/python" ] && "$REPO/.venv/bin/python" -c "import numpy" 2>/dev/null; then
    PY="$REPO/.venv/bin/python"
else
    PY="$(command -v python3)"
fi

SUMMARY="$OUT_DIR/summary.txt"
echo "octguide device run $(date -u +%FT%TZ) on $(hostname), python $PY, budget ${BUDGET_S}s" > "$SUMMARY"

# step NAME LIMIT_S COMMAND...: run with the smaller of LIMIT_S and the time left; log; record.
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$(( BUDGET_S - ($(date +%s) - START_S) ))
    if [ "$left" -lt 15 ]; then
        echo "$name: not run (budget spent)" | tee -a "$SUMMARY"
        return
    fi
    [ "$limit" -gt "$left" ] && limit="$left"
    local t0=$(date +%s)
    timeout -k 5 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "$name: rc=$rc in $(( $(date +%s) - t0 ))s (limit ${limit}s)" | tee -a "$SUMMARY"
}

# bench NAME LIMIT_S SUITE ARGS...: an `octguide bench` suite with --json; the JSON is the last
# top-level object of stdout (suites print progress on stderr).
bench() {
    local name="$1" limit="$2"
    shift 2
    step "$name" "$limit" "$PY" -m engine.commands.cli bench "$@" --json
    "$PY" - "$OUT_DIR/$name.log" "$OUT_DIR/$name.json" <<'EOF' 2>/dev/null || true
import json, sys
text = open(sys.argv[1]).read()
start = text.find("\n{") + 1 if not text.startswith("{") else 0
json.dump(json.loads(text[start:text.rindex("}") + 1]), open(sys.argv[2], "w"), indent=2)
EOF
}

step nvidia-smi 20 nvidia-smi
step environment 60 "$PY" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "zmq", "numba", "cupy", "torch", "onnxruntime", "tensorrt", "cv2", "scipy"):
    try:
        module = importlib.import_module(name)
        extra = ""
        if name == "torch":
            extra = f" cuda={module.version.cuda} available={module.cuda.is_available()}"
        if name == "cupy":
            extra = f" devices={module.cuda.runtime.getDeviceCount()}"
        print(f"{name:12s} {getattr(module, '__version__', '?')}{extra}")
    except Exception as exc:
        print(f"{name:12s} MISSING ({type(exc).__name__}: {exc})")
EOF
step backends 60 "$PY" -c "import json; from engine.compute.backends import registry; print(json.dumps(registry().report(), indent=2, default=str))"

step gpu-tests 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT_DIR/gpu-tests.xml" tests

bench scan 60 scan --repeats 300 --rounds 3 --no-save

step torch-cuda-fp16 90 "$PY" - "$OUT_DIR/torch-cuda-fp16.json" <<'EOF'
"""Segmentation model in torch on CUDA, fp16: eager and replayed as a CUDA graph (device time
per call from CUDA events, 200 calls after 30 warm-up calls, batch 1, the model's grid)."""
import json, sys, time
import numpy as np
import torch
from engine.analysis.segment import DEFAULT_MODEL
from models.manifest import load_manifest
from models.network import InferenceModel
from models.training.train import load_checkpoint

manifest = load_manifest(DEFAULT_MODEL)
net, _ = load_checkpoint(manifest.model_path.with_suffix(".pt"))
model = InferenceModel(net).eval().cuda().half()
shape = tuple(manifest.inputs[0].shape) if hasattr(manifest, "inputs") else None
shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape) if shape else \
    (1, 1, manifest.grid.n_alines, manifest.grid.n_depth)
x = torch.rand(shape, device="cuda", dtype=torch.float16)

def timed(call, n=200, warmup=30):
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(n):
        start.record(); call(); end.record(); end.synchronize()
        samples.append(start.elapsed_time(end))
    a = np.asarray(samples)
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()), "samples": n}

result = {"benchmark": "torch-cuda-fp16", "device": torch.cuda.get_device_name(0),
          "torch": torch.__version__, "input_shape": list(shape)}
with torch.inference_mode():
    result["eager"] = timed(lambda: model(x))
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
        result["cuda_graph"] = timed(graph.replay)
    except Exception as exc:  # a model that cannot be captured: say so, keep the eager numbers
        result["cuda_graph"] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(result, indent=2))
json.dump(result, open(sys.argv[1], "w"), indent=2)
EOF

bench e2e 150 e2e --frames 120 --fps 30 180 0 --out "$OUT_DIR"
bench e2e-540 120 e2e --frames 540 --fps 180 --no-naive --out "$OUT_DIR"
step build-engine 120 "$PY" -m engine.commands.cli build-engine
bench model 90 model --repeats 100 --rounds 2 --no-save

echo "total $(( $(date +%s) - START_S ))s; results in $OUT_DIR" | tee -a "$SUMMARY"
