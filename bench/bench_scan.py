"""Scan-conversion benchmark: octguide's kernels against the usual alternatives, same frames.

Run ``python bench/bench_scan.py [--json] [--repeats N]`` or ``octguide bench scan`` from a source
checkout. Every backend converts the same 500 x 1000 uint16 polar frames (per-frame z offset and
seam for octguide's own paths) to a 1024 x 1024 image covering the ranging depth; each is warmed up
first, then timed per call. CPU times are wall-clock per call (``time.perf_counter``); GPU times are
device time per launch from CUDA events. The result (machine, versions, median / p99 / mean ms, and
each peer's median as a multiple of octguide's) is printed as a table or JSON and written to
``bench/results/scan_<host>_<date>.json``.

Peers, and what each does per call:

* octguide's previous CPU path, the "quad" re-layout (``tests/engine/compute/quad_reference.py``):
  this hot loop favours it (its buffers stay cached); in the frame loop the direct gather wins
  (``bench/bench_cpu_reference.py``, docs/scan_conversion.md).
* ``cv2.warpPolar`` (inverse map): builds its maps on every call, the usual one-liner.
* ``cv2.remap`` with precomputed float maps over a copy of the frame padded with the wrap-around
  row: the OpenCV alternative to octguide's Numba path (maps fixed per geometry + z).
* ``scipy.ndimage.map_coordinates`` (order 1) with precomputed coordinates.
* GPU: ``cupyx.scipy.ndimage.map_coordinates`` with precomputed coordinates, and octguide's CuPy
  RawModule and Numba CUDA kernels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.compute.backends import registry  # noqa: E402
from engine.compute.benchmarking import machine_info, save_json  # noqa: E402
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, build_table  # noqa: E402
from streams.geometry import FrameGeometry  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARGETS = {
    "cpu_median_ms": 1.5,
    "cpu_speedup_vs_warpPolar": 2.0,
    "gpu_median_ms": 0.05,
    "gpu_speedup_vs_cupyx": 5.0,
}
N_ALINES, N_SAMPLES, OUT_PX = 500, 1000, 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--repeats", type=int, default=300, metavar="N",
                        help="timed calls per fast backend (slow peers get fewer; default 300)")
    parser.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="measure all backends this many times, interleaved, and pool the samples")
    parser.add_argument("--frames", type=int, default=8, metavar="N", help="distinct frames cycled")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_frames(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Speckle-like LOG frames: bright near wall, decaying with depth, Rayleigh speckle."""
    depth = np.arange(N_SAMPLES)[None, :]
    frames = []
    for _ in range(count):
        wall = rng.uniform(150, 300)
        envelope = np.where(depth > wall, np.exp(-(depth - wall) / 250.0), 0.05)
        speckle = rng.rayleigh(1.0, (N_ALINES, N_SAMPLES))
        db = 10 * np.log10(1e-3 + envelope * speckle)
        frames.append(np.clip((db + 30) / 36 * 65535, 0, 65535).astype(np.uint16))
    return frames


def _time_cpu(call: Callable[[int], object], repeats: int, warmup: int, budget_s: float) -> np.ndarray:
    for i in range(warmup):
        call(i)
    first = time.perf_counter()
    call(0)
    once = time.perf_counter() - first
    repeats = int(max(5, min(repeats, budget_s / max(once, 1e-6))))
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        samples[i] = time.perf_counter() - start
    return samples * 1e3


def _stats(samples: np.ndarray) -> dict:
    return {
        "median_ms": float(np.median(samples)),
        "p99_ms": float(np.percentile(samples, 99)),
        "mean_ms": float(samples.mean()),
        "min_ms": float(samples.min()),
        "samples": int(samples.size),
    }


def cpu_backends(frames: list[np.ndarray], geometry: FrameGeometry, grid: CartesianGrid) -> dict:
    """Name -> per-call function (argument: call index) for every CPU backend."""
    reg = registry()
    cv2 = reg.module("opencv")
    ndimage = __import__("scipy.ndimage", fromlist=["map_coordinates"]) if reg.available("scipy") else None
    from engine.compute.scan_convert import NumbaScanKernel

    table = build_table(geometry, grid, DisplayOrientation())
    numba_kernel = NumbaScanKernel()
    out = np.empty((OUT_PX, OUT_PX), np.float32)
    count = len(frames)
    centre = (OUT_PX - 1) / 2.0
    radius_px = N_SAMPLES * geometry.sample_spacing_mm / grid.pixel_mm
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP | cv2.WARP_FILL_OUTLIERS

    # Precomputed maps (z = 0, no seam shift) in source (column, row) over a frame padded with
    # the wrap-around row, as an OpenCV or SciPy user would write it.
    offsets = grid.offsets_mm()
    dx, dy = np.meshgrid(offsets, offsets)
    rows = np.mod(np.arctan2(dx, -dy) * N_ALINES / (2 * np.pi), N_ALINES).astype(np.float32)
    cols = (np.hypot(dx, dy) / geometry.sample_spacing_mm).astype(np.float32)
    padded = np.zeros((N_ALINES + 1, N_SAMPLES + 1), np.float32)
    coordinates = np.stack([rows, cols])

    def numba_call(i: int) -> object:
        return numba_kernel.convert(frames[i % count], table, i % 11, (7 * i) % N_ALINES, out)

    from tests.engine.compute.quad_reference import QuadScan

    quad = QuadScan()

    def quad_call(i: int) -> object:
        return quad.convert(frames[i % count], table, i % 11, (7 * i) % N_ALINES, out)

    def warp_polar(i: int) -> object:
        return cv2.warpPolar(frames[i % count], (OUT_PX, OUT_PX), (centre, centre), radius_px, flags)

    def pad(i: int) -> np.ndarray:
        frame = frames[i % count]
        padded[:N_ALINES, :N_SAMPLES] = frame
        padded[N_ALINES, :N_SAMPLES] = frame[0]
        return padded

    def remap(i: int) -> object:
        return cv2.remap(pad(i), cols, rows, cv2.INTER_LINEAR, dst=out,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    backends = {"octguide numba (default)": numba_call, "octguide quad (before issue 17)": quad_call,
                "cv2.warpPolar": warp_polar,
                "cv2.remap float maps": remap}
    if ndimage is not None:
        backends["scipy map_coordinates"] = lambda i: ndimage.map_coordinates(
            pad(i), coordinates, output=out, order=1, mode="constant", cval=0.0, prefilter=False)
    return backends


def gpu_backends(frames: list[np.ndarray], geometry: FrameGeometry, grid: CartesianGrid) -> dict:
    """Name -> (launch(i), timer) for GPU backends; device time via CUDA events."""
    reg = registry()
    table = build_table(geometry, grid, DisplayOrientation())
    count = len(frames)
    backends: dict = {}
    if reg.available("cupy"):
        cp = reg.module("cupy")
        from cupyx.scipy import ndimage as cundimage

        from engine.compute.scan_convert import CupyScanKernel

        kernel = CupyScanKernel()
        kernel.prepare(table)
        device_frames = [cp.asarray(f) for f in frames]
        out = cp.empty((OUT_PX, OUT_PX), cp.float32)
        offsets = grid.offsets_mm()
        dx, dy = np.meshgrid(offsets, offsets)
        rows = np.mod(np.arctan2(dx, -dy) * N_ALINES / (2 * np.pi), N_ALINES)
        cols = np.hypot(dx, dy) / geometry.sample_spacing_mm
        coordinates = cp.asarray(np.stack([rows, cols]).astype(np.float32))
        padded = [cp.asarray(np.vstack([f, f[:1]]).astype(np.float32)) for f in frames]

        def cupy_timer(launch: Callable[[int], object], stream) -> Callable[[int], float]:
            start, end = cp.cuda.Event(), cp.cuda.Event()

            def timed(i: int) -> float:
                start.record(stream)
                launch(i)
                end.record(stream)
                end.synchronize()
                return cp.cuda.get_elapsed_time(start, end)
            return timed

        backends["octguide cupy RawModule"] = cupy_timer(
            lambda i: kernel.convert(device_frames[i % count], table, i % 11, (7 * i) % N_ALINES, out),
            kernel.stream)

        def cupyx_launch(i: int) -> object:
            with kernel.stream:
                return cundimage.map_coordinates(padded[i % count], coordinates, output=out,
                                                 order=1, mode="constant", cval=0.0, prefilter=False)
        backends["cupyx map_coordinates"] = cupy_timer(cupyx_launch, kernel.stream)
    if reg.available("numba_cuda") and not reg.probe("numba_cuda").detail.get("simulator"):
        cuda = reg.module("numba_cuda")
        from engine.compute.scan_convert import NumbaCudaScanKernel

        nkernel = NumbaCudaScanKernel()
        nkernel.prepare(table)
        nframes = [cuda.to_device(f) for f in frames]
        nout = cuda.device_array((OUT_PX, OUT_PX), np.float32)
        nstart, nend = cuda.event(), cuda.event()

        def numba_timed(i: int) -> float:
            nstart.record(nkernel.stream)
            nkernel.convert(nframes[i % count], table, i % 11, (7 * i) % N_ALINES, nout)
            nend.record(nkernel.stream)
            nend.synchronize()
            return cuda.event_elapsed_time(nstart, nend)
        backends["octguide numba_cuda"] = numba_timed
    return backends


def _time_gpu(timed: Callable[[int], float], repeats: int, warmup: int) -> np.ndarray:
    for i in range(warmup):
        timed(i)
    return np.array([timed(i) for i in range(repeats)])


def run_benchmark(repeats: int = 300, warmup: int = 20, rounds: int = 3, n_frames: int = 8) -> dict:
    """Measure every available backend; returns the result dict (see the module docstring)."""
    geometry = FrameGeometry(n_alines=N_ALINES, n_samples=N_SAMPLES, aline_spacing_mm=0.0065,
                             refractive_index=1.34)
    grid = CartesianGrid(OUT_PX, 2 * N_SAMPLES * geometry.sample_spacing_mm)
    frames = make_frames(n_frames, np.random.default_rng(2024))
    info = machine_info()
    cpu = cpu_backends(frames, geometry, grid)
    gpu = gpu_backends(frames, geometry, grid)
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in [*cpu, *gpu]}
    for _ in range(rounds):
        for name, call in cpu.items():
            pooled[name].append(_time_cpu(call, repeats, warmup, budget_s=2.0))
        for name, timed in gpu.items():
            pooled[name].append(_time_gpu(timed, repeats, warmup))
    results = {name: {"device": "gpu" if name in gpu else "cpu", **_stats(np.concatenate(s))}
               for name, s in pooled.items()}
    ours_cpu = results["octguide numba (default)"]["median_ms"]
    ours_gpu = results.get("octguide cupy RawModule", results.get("octguide numba_cuda", {})).get("median_ms")
    for name, entry in results.items():
        base = ours_cpu if entry["device"] == "cpu" else ours_gpu
        entry["ratio_to_octguide"] = entry["median_ms"] / base if base else None
    targets = {
        "cpu_median_ms": {"target": TARGETS["cpu_median_ms"], "measured": ours_cpu},
        "cpu_speedup_vs_warpPolar": {"target": TARGETS["cpu_speedup_vs_warpPolar"],
                                     "measured": results["cv2.warpPolar"]["ratio_to_octguide"]},
    }
    if ours_gpu is not None:
        targets["gpu_median_ms"] = {"target": TARGETS["gpu_median_ms"], "measured": ours_gpu}
        if "cupyx map_coordinates" in results:
            targets["gpu_speedup_vs_cupyx"] = {
                "target": TARGETS["gpu_speedup_vs_cupyx"],
                "measured": results["cupyx map_coordinates"]["ratio_to_octguide"]}
    for name, entry in targets.items():
        better_low = name.endswith("_ms")
        entry["met"] = (entry["measured"] <= entry["target"]) if better_low else (entry["measured"] >= entry["target"])
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "benchmark": "scan",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "case": {"polar": [N_ALINES, N_SAMPLES], "polar_dtype": "uint16", "output": [OUT_PX, OUT_PX],
                 "output_dtype": "float32 (warpPolar: uint16)", "fov_mm": grid.fov_mm,
                 "frames": n_frames, "rounds": rounds, "repeats": repeats, "warmup": warmup,
                 "cpu_timing": "wall clock per call, output buffer preallocated where the API allows",
                 "gpu_timing": "CUDA events per launch, frame already on the device"},
        "machine": info,
        "results": results,
        "targets": targets,
    }


def format_table(result: dict) -> str:
    lines = [f"scan conversion {result['case']['polar'][0]}x{result['case']['polar'][1]} uint16 -> "
             f"{result['case']['output'][0]}x{result['case']['output'][1]}  on {result['machine']['cpu']} "
             f"({result['machine']['cores']} cores), load {result['machine']['loadavg_start']}",
             f"{'backend':28s} {'dev':>4s} {'median ms':>10s} {'p99 ms':>9s} {'x octguide':>11s} {'n':>6s}"]
    for name, e in result["results"].items():
        ratio = f"{e['ratio_to_octguide']:.2f}" if e["ratio_to_octguide"] else "-"
        lines.append(f"{name:28s} {e['device']:>4s} {e['median_ms']:10.3f} {e['p99_ms']:9.3f} "
                     f"{ratio:>11s} {e['samples']:6d}")
    for name, t in result["targets"].items():
        lines.append(f"target {name}: {t['measured']:.3f} vs {t['target']} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def save(result: dict, folder: Path = RESULTS) -> Path:
    """Write the result as ``scan_<host>_<date>.json``; returns the path."""
    return save_json("scan", result, folder)


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``octguide bench scan`` and this script."""
    for name in ("repeats", "warmup", "rounds", "frames"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            print(f"bench scan: --{name} must be positive", file=sys.stderr)
            return 2
    result = run_benchmark(args.repeats, args.warmup, args.rounds, args.frames)
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
