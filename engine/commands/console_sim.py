"""``octguide console-sim --scenario NAME --fps 180``: a simulated cath-lab console.

Renders a phantom pullback (or reads a recorded one with ``--file``) *before* sending, then
PUSHes its frames over the octguide protocol at the real frame rate, zero-copy, with the START
and END flags - what a console vendor's implementation of docs/protocol.md does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.progress import Progress
from engine.sources import phantom, wire_id
from engine.synthetic.phantom import SCENARIOS
from streams.files.io import read_pullback
from streams.wire.zmq_io import CurveClientKeys, FrameSender


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "console-sim",
        help="simulate a cath-lab console sending frames to the engine in real time",
        description="Send a phantom (--scenario) or recorded (--file) pullback to an engine's "
        "frame endpoint at the real frame rate over the octguide protocol.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", choices=sorted(SCENARIOS), help="phantom scenario")
    source.add_argument("--file", type=Path, help="recorded pullback (DICOM IVOCT or .oct.h5)")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument("--frames", type=int, default=None, help="phantom frames (default: the scenario's)")
    parser.add_argument("--alines", type=int, default=500, help="phantom A-lines (default 500)")
    parser.add_argument("--samples", type=int, default=1000, help="phantom samples (default 1000)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frames per second (default: the pullback's own, 180 for phantoms); "
                        "0 sends as fast as the engine takes them")
    parser.add_argument("--engine", default="tcp://127.0.0.1:5555",
                        help="the engine's frame endpoint (default tcp://127.0.0.1:5555)")
    parser.add_argument("--repeat", type=int, default=1, help="send the pullback this many times, "
                        "each with a new pullback id (default 1)")
    add_curve_arguments(parser)
    parser.set_defaults(handler=run)


def add_curve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-key", type=Path, default=None,
                        help="this client's NAME.key_secret (when the engine requires CurveZMQ)")
    parser.add_argument("--server-key", type=Path, default=None, help="the engine's public engine.key")


def curve_keys(args: argparse.Namespace) -> CurveClientKeys | None:
    if args.client_key is None and args.server_key is None:
        return None
    if args.client_key is None or args.server_key is None:
        raise SystemExit("octguide: error: --client-key and --server-key go together")
    return CurveClientKeys.load(args.client_key, args.server_key)


def run(args: argparse.Namespace) -> int:
    if args.file is not None:
        pullback = read_pullback(args.file)
    else:
        pullback = phantom(args.scenario, args.seed, args.frames, args.alines, args.samples)
    fps = pullback.frame_rate_hz if args.fps is None else (args.fps or None)
    with FrameSender(args.engine, curve=curve_keys(args)) as sender:
        for _ in range(args.repeat):
            pullback_id = wire_id(pullback.pullback_id)
            start = time.perf_counter()
            progress = Progress("sending")
            report = sender.send_pullback(pullback, fps=fps, pullback_id=pullback_id,
                                          progress=progress.update)
            progress.close()
            rate = report.sent / max(time.perf_counter() - start, 1e-9)
            print(f"{pullback_id}: sent {report.sent} frames in {report.duration_s:.2f} s "
                  f"({rate:.1f} frames/s; target {fps or 'max'}), max lag {report.max_lag_ms:.2f} ms, "
                  f"{report.late} sends more than a frame late")
    return 0
