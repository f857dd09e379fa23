"""``octguide console-sim --scenario NAME --fps 180``: a simulated cath-lab console.

Renders a phantom pullback (or reads a recorded one with ``--file``) *before* sending, then
PUSHes its frames over the octguide protocol at the real frame rate, zero-copy, with the START
and END flags - what a console vendor's implementation of docs/protocol.md does.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

from engine.synthetic.phantom import SCENARIOS, generate_pullback
from streams.files.io import read_pullback
from streams.pullback import Pullback
from streams.wire.protocol import PULLBACK_ID_PATTERN
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


def phantom(scenario: str, seed: int, frames: int | None, alines: int, samples: int) -> Pullback:
    """A phantom pullback at 180 frames/s (the OPTIS/Ultreon rate, DOMAIN.md section 1),
    rendered with a progress bar."""
    progress = Progress("rendering phantom")
    pullback = generate_pullback(scenario, seed=seed, n_frames=frames, n_alines=alines,
                                 n_samples=samples, frame_rate_hz=180.0, progress=progress.update)
    progress.close()
    return pullback


def wire_id(pullback_id: str) -> str:
    """A unique protocol pullback id derived from a source id (sending the same file twice makes
    two pullbacks; the engine rejects a finished id).

    >>> import re; bool(re.fullmatch(r"phantom-calcified-1\\.[0-9a-f]{8}", wire_id("phantom-calcified-1")))
    True
    """
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in pullback_id).lstrip("._-")
    candidate = f"{safe[:48] or 'pullback'}.{uuid.uuid4().hex[:8]}"
    assert PULLBACK_ID_PATTERN.fullmatch(candidate)
    return candidate


class Progress:
    """A one-line progress bar on stderr (every 10% when stderr is not a terminal)."""

    def __init__(self, label: str, width: int = 30):
        self.label = label
        self.width = width
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.start = time.perf_counter()

    def update(self, done: int, total: int, extra: str = "") -> None:
        fraction = done / total if total else 1.0
        if self.tty:
            filled = int(self.width * fraction)
            bar = "#" * filled + "-" * (self.width - filled)
            print(f"\r{self.label} [{bar}] {done}/{total} {extra} "
                  f"{time.perf_counter() - self.start:5.1f} s", end="", file=sys.stderr, flush=True)
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            print(f"{self.label}: {done}/{total} {extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


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
