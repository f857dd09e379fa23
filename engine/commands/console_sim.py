"""``octguide console-sim --scenario NAME --fps 180``: a simulated cath-lab console.

Renders a phantom pullback (or reads a recorded one with ``--file``) *before* sending, then
PUSHes its frames over the octguide protocol at the real frame rate, zero-copy, with the START
and END flags - what a console vendor's implementation of docs/protocol.md does.

It then asks the engine's control endpoint (``--control``) for its verdict on every pullback it
sent and exits 1 with the reason when the engine rejected frames or whole pullbacks (e.g.
``too_many_pullbacks``), left a pullback incomplete, or stopped answering for
:data:`LIVENESS_S` seconds (``--no-verdicts`` only sends).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engine.progress import Progress
from engine.sources import phantom, wire_id
from engine.synthetic.phantom import SCENARIOS
from streams.errors import OctguideError
from streams.files.io import read_pullback
from streams.wire.zmq_io import (
    ControlClient,
    ControlError,
    CurveClientKeys,
    FrameSender,
    TransportError,
)

DEFAULT_FRAMES = "tcp://127.0.0.1:5555"
DEFAULT_CONTROL = "tcp://127.0.0.1:5558"
LIVENESS_S = 3.0
"""Seconds without any control reply after which a command takes the engine for gone."""
TERMINAL_STATES = ("complete", "incomplete", "finished", "interrupted")


class EngineVerdictError(OctguideError):
    """The engine stopped answering, or rejected (part of) what a command sent it."""


class EngineWatch:
    """Control requests that notice the engine's absence: each waits at most 1 s, and once no
    request has been answered for ``liveness_s`` seconds :meth:`request` raises
    :class:`EngineVerdictError` (``ControlError``, an ``ok: false`` reply, passes through)."""

    def __init__(self, control: ControlClient, liveness_s: float = LIVENESS_S):
        self.control = control
        self.liveness_s = liveness_s
        self.last_reply = time.monotonic()

    def request(self, cmd: str, **args: object) -> dict | None:
        """The reply, or ``None`` when this one went unanswered but the engine is not yet gone."""
        try:
            reply = self.control.request(cmd, timeout_s=min(1.0, self.liveness_s), **args)
        except TransportError:
            silent = time.monotonic() - self.last_reply
            if silent >= self.liveness_s:
                raise EngineVerdictError(f"engine at {self.control.endpoint} not answering for "
                                         f"{silent:.1f} s") from None
            return None
        self.last_reply = time.monotonic()
        return reply

    def first(self, cmd: str, **args: object) -> dict:
        """The reply to ``cmd``, retried until it comes or the engine is taken for gone."""
        while True:
            reply = self.request(cmd, **args)
            if reply is not None:
                return reply


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
    parser.add_argument("--engine", default=DEFAULT_FRAMES,
                        help=f"the engine's frame endpoint (default {DEFAULT_FRAMES})")
    parser.add_argument("--control", default=None,
                        help="the engine's control endpoint, asked for its verdicts (default "
                        f"{DEFAULT_CONTROL} with the default --engine; required with another)")
    parser.add_argument("--no-verdicts", action="store_true",
                        help="only send: do not ask the engine what it made of the frames")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the engine's verdicts after the last frame "
                        "(default 600; an engine that stops answering fails within "
                        f"{LIVENESS_S:.0f} s)")
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


def control_endpoint(args: argparse.Namespace) -> str | None:
    if args.no_verdicts:
        return None
    if args.control:
        return args.control
    if args.engine == DEFAULT_FRAMES:
        return DEFAULT_CONTROL
    raise SystemExit("octguide: error: console-sim --engine ADDRESS needs --control ADDRESS (the "
                     "engine's control endpoint, for its verdicts) or --no-verdicts")


def counted_rejections(before: dict, after: dict) -> dict[str, int]:
    """Frames the engine rejected between two ``status`` replies, by reason."""
    b, a = before["counters"]["rejected"], after["counters"]["rejected"]
    return {k: n - b.get(k, 0) for k, n in sorted(a.items()) if n - b.get(k, 0) > 0}


def verdicts(watch: EngineWatch, before: dict, sent: dict[str, int], timeout_s: float) -> list[str]:
    """Wait until the engine has read every frame sent (``counters.received``) and finished every
    pullback it opened; one line per problem (empty when all were accepted and complete).

    ``sent`` maps each pullback id to its number of frames; a pullback the engine answers
    ``unknown`` once it has read every frame was rejected whole."""
    deadline = time.monotonic() + timeout_s
    target = before["counters"]["received"] + sum(sent.values())
    states: dict[str, dict | None] = {}
    while True:
        status = watch.request("status")
        read_all = status is not None and status["counters"]["received"] >= target
        for pid in sent:
            if states.get(pid) is not None and states[pid]["state"] in TERMINAL_STATES:
                continue
            try:
                reply = watch.request("pullback", pullback_id=pid)
            except ControlError:
                reply = {"pullback": {"pullback_id": pid, "state": "unknown"}}
            if reply is not None:
                states[pid] = reply["pullback"]
        done = all(s is not None and (s["state"] in TERMINAL_STATES or (s["state"] == "unknown" and read_all))
                   for s in (states.get(pid) for pid in sent))
        if read_all and done:
            break
        if time.monotonic() > deadline:
            waiting = [pid for pid in sent if (states.get(pid) or {}).get("state") not in TERMINAL_STATES]
            return [f"no verdict within {timeout_s:.0f} s of the last frame for {', '.join(waiting)}"]
        time.sleep(0.1)
    problems = []
    rejected = counted_rejections(before, status)
    if rejected:
        problems.append("engine rejected " + ", ".join(f"{n} frames {k}" for k, n in rejected.items()))
    for pid, n in sent.items():
        state = states[pid]
        if state["state"] == "unknown":
            problems.append(f"{pid}: rejected whole, never opened ({n} frames)")
        elif state["state"] in ("incomplete", "interrupted"):
            problems.append(f"{pid}: {state['state']}: {state.get('reason') or 'no reason given'}")
    return problems


def run(args: argparse.Namespace) -> int:
    if args.file is not None:
        pullback = read_pullback(args.file)
    else:
        pullback = phantom(args.scenario, args.seed, args.frames, args.alines, args.samples)
    fps = pullback.frame_rate_hz if args.fps is None else (args.fps or None)
    curve = curve_keys(args)
    endpoint = control_endpoint(args)
    control = ControlClient(endpoint, curve=curve) if endpoint else None
    if control is not None:
        control.start()
    try:
        watch = EngineWatch(control) if control is not None else None
        before = watch.first("status") if watch is not None else None
        sent: dict[str, int] = {}
        with FrameSender(args.engine, curve=curve) as sender:
            for _ in range(args.repeat):
                pullback_id = wire_id(pullback.pullback_id)
                start = time.perf_counter()
                progress = Progress("sending")
                report = sender.send_pullback(pullback, fps=fps, pullback_id=pullback_id,
                                              progress=progress.update)
                progress.close()
                sent[pullback_id] = report.sent
                rate = report.sent / max(time.perf_counter() - start, 1e-9)
                print(f"{pullback_id}: sent {report.sent} frames in {report.duration_s:.2f} s "
                      f"({rate:.1f} frames/s; target {fps or 'max'}), max lag {report.max_lag_ms:.2f} ms, "
                      f"{report.late} sends more than a frame late")
        if watch is None:
            return 0
        problems = verdicts(watch, before, sent, args.timeout)
    finally:
        if control is not None:
            control.stop()
    if problems:
        raise EngineVerdictError("; ".join(problems))
    print(f"engine verdict: {len(sent)} pullback(s) complete, no frame rejected")
    return 0
