"""The CPU stages issue 17 item 3 rewrote, against their frozen NumPy implementations, in one run.

Usage: ``python bench/bench_cpu_reference.py [--frames N] [--repeats N] [--json]``. It prints;
it never fails.

Per phantom frame (a calcified lesion and a malapposed stent, 500 A-lines x 1000 samples), old
and new are called alternately, so both see the same load:

* ``metal``: ``detect_metal`` against ``tests/engine/analysis/test_struts_numpy.py``'s reference;
* ``measure``: ``frame_record`` against the same function on the frozen NumPy contours and
  measure modules (``tests/engine/clinical/numpy_reference*.py``);
* ``scan``: ``ScanConverter.process`` (the direct gather) against the "quad" re-layout it
  replaced (``tests/engine/compute/quad_reference.py``), both into preallocated images;
* ``render``: ``display_grey`` + ``burn_overlay`` into preallocated frames against the
  np.percentile window and fresh arrays.

Both wall time and the thread's CPU time are reported (p50 per stage and the ratio old / new):
on a shared machine CPU time is the steadier of the two. The segmentation each frame needs is
computed once, untimed. Outputs are checked equal while timing (the tests check them too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.analysis import analyse, struts
from engine.analysis.analyse import AnalysisConfig, frame_record
from engine.analysis.segment import Segmenter
from engine.analysis.stages import metal_settings, segmenter_settings
from engine.clinical import kernels
from engine.compute.benchmarking import StageTimes, machine_info
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.config import Config
from engine.display import kernels as display_kernels
from engine.display.overlay import build_overlay, burn_overlay, display_grey
from engine.synthetic.phantom import generate_pullback
from tests.engine.analysis.test_struts_numpy import reference_detect_metal
from tests.engine.clinical import numpy_reference, numpy_reference_measure
from tests.engine.compute.quad_reference import QuadScan
from tests.engine.display.test_display_grey import _reference_grey

SCENARIOS = ("calcified", "stented-malapposed")
STAGES = ("metal", "measure", "scan", "render")
SCAN_TOLERANCE = 4 * float(np.spacing(np.float32(65535.0)))
"""Direct gather against the quad path on uint16 frames (tests/engine/compute/test_scan_direct.py)."""


def _old_frame_record(*args):
    """frame_record with analyse's contours/measure swapped for the frozen NumPy modules."""
    new_contours, new_measure = analyse.contours, analyse.measure
    analyse.contours, analyse.measure = numpy_reference, numpy_reference_measure
    try:
        return frame_record(*args)
    finally:
        analyse.contours, analyse.measure = new_contours, new_measure


def _render_new(image, overlay, grey_out, bgr_out):
    return burn_overlay(display_grey(image, out=grey_out), overlay, out=bgr_out)


def _render_old(image, overlay):
    return burn_overlay(_reference_grey(image), overlay)


def run_benchmark(frames: int, repeats: int) -> dict:
    config = Config.from_dict({"server": {"render_image": True}})
    settings, _ = segmenter_settings(config.segment)
    metal_cfg = metal_settings(config.metal)
    analysis_cfg = AnalysisConfig(min_confidence=config.analysis.min_confidence,
                                  min_stent_struts=config.analysis.min_stent_struts)
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    orientation = DisplayOrientation()
    segmenter, converter = Segmenter(settings), ScanConverter(grid, orientation)
    n = grid.size_px
    grey_out, bgr_out = np.empty((n, n), np.uint8), np.empty((n, n, 3), np.uint8)
    kernels.warm_up()
    struts.warm_up()
    display_kernels.warm_up()
    times = StageTimes()
    quad = QuadScan()
    image_new, image_old = np.empty((n, n), np.float32), np.empty((n, n), np.float32)
    mismatches = 0
    load_before = os.getloadavg()[0]
    for scenario in SCENARIOS:
        pb = generate_pullback(scenario, seed=5, n_frames=frames, frame_pitch_mm=30.0 / frames)
        segmenter.start(pb.geometry)
        converter.start()
        table = converter.table(pb.geometry)
        prepared = [(frame, segmenter.process(frame), converter.process(frame)) for frame in pb]
        for rep in range(repeats + 1):  # the first pass warms caches, untimed
            clock = times if rep else StageTimes()
            for frame, seg, image in prepared:
                new_metal = clock.call("metal_new", struts.detect_metal, frame, metal_cfg)
                old_metal = clock.call("metal_old", reference_detect_metal, frame, metal_cfg)
                args = (frame, seg, new_metal, config.guidance, analysis_cfg)
                new_rec = clock.call("measure_new", frame_record, *args)
                old_rec = clock.call("measure_old", _old_frame_record, *args)
                polar = frame.pixels[: frame.geometry.n_valid_alines]
                clock.call("scan_new", converter.process, frame, out=image_new)
                clock.call("scan_old", quad.convert, polar, table, int(frame.z_offset_px), 0, image_old)
                overlay = build_overlay(new_rec, frame, grid, orientation, {"segment": 1.0})
                new_img = clock.call("render_new", _render_new, image, overlay, grey_out, bgr_out)
                old_img = clock.call("render_old", _render_old, image, overlay)
                mismatches += int(not np.array_equal(np.sort(old_metal.strut_rows), new_metal.strut_rows))
                mismatches += int(json.dumps(old_rec) != json.dumps(new_rec))
                mismatches += int(not np.array_equal(old_img, new_img))
                mismatches += int(not np.allclose(image_new, image_old, rtol=0, atol=SCAN_TOLERANCE))
        converter.stop()
        segmenter.stop()
    p50 = {f"{name}_{clock}": float(np.median(times.samples_ms(name, clock)))
           for name in times.wall_s for clock in ("wall", "cpu")}
    stages = {}
    for stage in STAGES:
        row = {}
        for clock in ("wall", "cpu"):
            old, new = p50[f"{stage}_old_{clock}"], p50[f"{stage}_new_{clock}"]
            row[f"old_{clock}_p50_ms"] = round(old, 3)
            row[f"new_{clock}_p50_ms"] = round(new, 3)
            row[f"{clock}_ratio_old_over_new"] = round(old / new, 2) if new > 0 else None
        stages[stage] = row
    return {"benchmark": "cpu_reference", "machine": machine_info(),
            "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "frames": f"{len(SCENARIOS)} scenarios x {frames} frames x {repeats} passes",
            "outputs_differing": mismatches, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per scenario (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run_benchmark(args.frames, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m, load = result["machine"], result["load_average_1min"]
    print(f"{m['cpu']}, {m['cores_usable'] or m['cores']} usable cores, load {load['before']} -> "
          f"{load['after']}; {result['frames']}; outputs differing old/new: {result['outputs_differing']}")
    print(f"{'stage':8s} {'old wall':>9s} {'new wall':>9s} {'ratio':>6s} {'old cpu':>9s} {'new cpu':>9s} {'ratio':>6s}  (p50 ms)")
    for name, r in result["stages"].items():
        print(f"{name:8s} {r['old_wall_p50_ms']:9.3f} {r['new_wall_p50_ms']:9.3f} {r['wall_ratio_old_over_new']:6.2f} "
              f"{r['old_cpu_p50_ms']:9.3f} {r['new_cpu_p50_ms']:9.3f} {r['cpu_ratio_old_over_new']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
