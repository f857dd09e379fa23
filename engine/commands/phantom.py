"""``octguide phantom``: generate a synthetic IVOCT pullback with ground truth."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.synthetic.phantom import SCENARIOS, generate_pullback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="generate a synthetic IVOCT pullback with exact ground truth",
        description="Generate a phantom pullback (polar frames + ground truth). Scenarios: "
        + ", ".join(f"{name} ({s.description})" for name, s in SCENARIOS.items()),
    )
    p.add_argument("scenario", choices=sorted(SCENARIOS), help="scenario name")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--frames", type=_frame_count, default=None, help="number of frames (default: the scenario's)")
    p.add_argument("--alines", type=int, default=500, help="valid A-lines per frame (default 500)")
    p.add_argument("--samples", type=int, default=1000, help="samples per A-line (default 1000)")
    p.add_argument("--pitch-mm", type=float, default=None, help="frame pitch, mm (default: the scenario's)")
    p.add_argument("--fps", type=float, default=180.0, help="frame rate, Hz (default 180)")
    p.add_argument("--out", type=Path, action="append", default=[],
                   help="write the pullback: .oct.h5 (native, with truth) or .dcm (DICOM IVOCT); repeatable")
    p.add_argument("--png", type=Path, default=None, help="folder for scan-converted previews of key frames")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run)


def _frame_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 5000:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..5000")
    return value


def run(args: argparse.Namespace) -> int:
    show = sys.stderr.isatty() and not args.json

    def progress(done: int, total: int) -> None:
        if show:
            print(f"\rrendering frame {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    start = time.perf_counter()
    pb = generate_pullback(
        args.scenario, seed=args.seed, n_frames=args.frames, n_alines=args.alines, n_samples=args.samples,
        frame_pitch_mm=args.pitch_mm, frame_rate_hz=args.fps, progress=progress,
    )
    elapsed = time.perf_counter() - start
    summary = {
        "scenario": args.scenario,
        "seed": args.seed,
        **pb.summary(),
        "generation_s": round(elapsed, 2),
        "generation_ms_per_frame": round(1000 * elapsed / len(pb), 1),
        "truth": pb.truth.guidance,
    }
    if args.out:
        from streams.files.io import write_pullback

        for path in args.out:
            write_pullback(pb, path)
        summary["written"] = [str(p) for p in args.out]
    if args.png is not None:
        from engine.display.preview import write_previews

        summary["previews"] = [str(p) for p in write_previews(pb, args.png)]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict) -> None:
    t = s["truth"]
    print(f"phantom '{s['scenario']}' seed {s['seed']}: {s['n_frames']} frames of "
          f"{s['n_valid_alines']} A-lines x {s['n_samples']} samples, "
          f"{s['pullback_length_mm']:.1f} mm at {s['frame_spacing_mm']:.2f} mm/frame, {s['frame_rate_hz']:g} fps")
    print(f"  generated in {s['generation_s']:.1f} s ({s['generation_ms_per_frame']:.0f} ms/frame incl. ground truth)")
    print(f"  MLA: {t['mla']['area_mm2']:.2f} mm2 at frame {t['mla']['frame']}")
    c = t["calcium"]
    print(f"  calcium score {c['score']} (max arc {c['max_arc_deg']:.0f} deg, max thickness "
          f"{c['max_thickness_mm']:.2f} mm, length {c['length_mm']:.1f} mm)")
    if t.get("sizing"):
        z = t["sizing"]
        print(f"  sizing: {z['diameter_mm']:.2f} x {z['length_mm']:g} mm stent ({z['basis']} basis), landing frames "
              f"{z['distal_landing_frame']}-{z['proximal_landing_frame']}")
    if t.get("stent"):
        st = t["stent"]
        print(f"  stent: MSA {st['msa_mm2']:.2f} mm2 at frame {st['msa_frame']}, expansion {st['expansion_pct']:.0f}%, "
              f"{st['struts_malapposed']}/{st['struts_total']} struts malapposed (max {st['max_malapposition_um']:.0f} um)")
    for w in t.get("warnings", []):
        print(f"  warning: {w}")
    for key in ("written", "previews"):
        if key in s:
            print(f"  {key}: {s[key]}")
