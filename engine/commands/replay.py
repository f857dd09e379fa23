"""``octguide replay PULLBACK --out DIR [--rate realtime|max] [--engine ADDRESS]``.

Streams a recorded pullback through a real engine over real sockets and writes the results
contract (``DIR/frames.jsonl``, ``DIR/pullback.json``, docs/results.md):

* ``PULLBACK`` is a DICOM IVOCT file (For Processing or For Presentation), a native ``.oct.h5``,
  or ``phantom:SCENARIO[:SEED]`` for a bundled phantom scenario rendered on the fly;
* ``--engine tcp://HOST:PORT`` names a running engine's *control* endpoint (it reports its other
  endpoints); without it, replay starts ``octguide serve`` in a child process on free loopback
  ports (its case log and results under ``DIR/engine``) and stops it afterwards;
* ``--rate realtime`` sends at the pullback's frame rate (what the cath lab does), ``max`` as fast
  as the engine takes frames (a started engine then blocks instead of skipping at its limits).

It shows a progress bar (sent / analysed), waits until the engine has given every frame its
fate and published the guidance, fetches the results over the control socket, and prints the
guidance summary with how long after the last frame the guidance was ready.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from engine.commands.console_sim import add_curve_arguments, curve_keys
from engine.commands.serve import add_config_arguments
from engine.progress import Progress
from engine.realtime.child import ChildEngine
from engine.realtime.results import guidance_summary, percentile_summary
from engine.sources import open_pullback, wire_id
from engine.synthetic.phantom import SCENARIOS
from streams.errors import OctguideError
from streams.pullback import Pullback
from streams.wire.zmq_io import ControlClient, CurveClientKeys, FrameSender


class ReplayError(OctguideError):
    """The engine could not be started or reached, or did not finish the pullback."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="stream a recorded pullback through the engine and write its results",
        description="Replay a pullback (DICOM IVOCT, .oct.h5, or phantom:SCENARIO[:SEED]) through a "
        "real engine over ZeroMQ, write DIR/frames.jsonl and DIR/pullback.json, print the guidance.",
    )
    parser.add_argument("pullback", help="file, or phantom:SCENARIO[:SEED] "
                        f"(scenarios: {', '.join(sorted(SCENARIOS))})")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--rate", choices=("realtime", "max"), default="realtime",
                        help="send at the pullback's frame rate (default) or as fast as possible")
    parser.add_argument("--engine", default=None,
                        help="control endpoint of a running engine (default: start one)")
    parser.add_argument("--frames", type=int, default=None, help="phantom: frames (default: the scenario's)")
    parser.add_argument("--alines", type=int, default=500, help="phantom: A-lines (default 500)")
    parser.add_argument("--samples", type=int, default=1000, help="phantom: samples (default 1000)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the guidance after the last frame (default 600)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--sr", type=Path, default=None, metavar="FILE",
                        help="also write the DICOM SR measurement report to FILE (key images in "
                        "DIR/dicom/; needs the [hospital] extra, docs/dicom_sr.md)")
    add_config_arguments(parser)
    add_curve_arguments(parser)
    parser.set_defaults(handler=run)


def replay(pullback: Pullback, control_endpoint: str, out: Path, *, fps: float | None,
           timeout_s: float, curve: CurveClientKeys | None = None, show_progress: bool = True) -> dict:
    """Send ``pullback`` to the engine at ``control_endpoint``, wait for its guidance, write the
    results contract into ``out``; returns the summary :func:`run` prints."""
    with ControlClient(control_endpoint, timeout_s=10.0, curve=curve) as control:
        status = control.request("status")
        endpoints = status["endpoints"]
        pullback_id = wire_id(pullback.pullback_id)
        n = len(pullback)
        progress = Progress("replay") if show_progress else None
        analysed = 0
        last_poll = 0.0

        def poll(sent: int) -> dict | None:
            nonlocal analysed, last_poll
            now = time.monotonic()
            if now - last_poll < 0.2 and sent < n:
                return None
            last_poll = now
            try:
                state = control.request("pullback", pullback_id=pullback_id)["pullback"]
            except OctguideError:
                state = None  # the START frame has not been read yet
            if state is not None:
                analysed = state.get("analysed", analysed)
            if progress:
                progress.update(analysed, n, f"analysed, {sent} sent")
            return state

        with FrameSender(endpoints["frames"], curve=curve) as sender:
            report = sender.send_pullback(pullback, fps=fps, pullback_id=pullback_id,
                                          progress=lambda done, total: poll(done))
            sent_done = time.monotonic()
            deadline = sent_done + timeout_s
            while True:
                state = poll(n)
                if state is not None and state["state"] in ("complete", "incomplete"):
                    break
                if time.monotonic() > deadline:
                    raise ReplayError(f"no guidance for {pullback_id} within {timeout_s:.0f} s of the "
                                      f"last frame ({analysed}/{n} frames analysed)")
                time.sleep(0.05)
        if progress:
            progress.close()
        _, parts = control.request_parts("results", pullback_id=pullback_id, timeout_s=60.0)
    out.mkdir(parents=True, exist_ok=True)
    pullback_json, frames_jsonl = bytes(parts[0].buffer), bytes(parts[1].buffer)
    for name, data in (("frames.jsonl", frames_jsonl), ("pullback.json", pullback_json)):
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out / name)
    result = json.loads(pullback_json)
    records = [json.loads(line) for line in frames_jsonl.splitlines() if line.strip()]
    def end_to_end(lane: str) -> dict:
        return percentile_summary(np.asarray([r["latency_ms"]["end_to_end"] for r in records
                                              if r.get("lane") == lane and r.get("latency_ms")]))

    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.get("status")] = statuses.get(r.get("status"), 0) + 1
    return {
        "pullback_id": pullback_id,
        "source": pullback.attributes.get("source") or pullback.pullback_id,
        "frames": n,
        "send": {"rate_fps": fps, "duration_s": round(report.duration_s, 3),
                 "max_lag_ms": round(report.max_lag_ms, 3), "late": report.late},
        "statuses": statuses,
        "counts": result.get("counts"),
        "end_to_end_ms": {"live": end_to_end("live"), "backfill": end_to_end("backfill")},
        "guidance_delay_s": result.get("timing", {}).get("guidance_delay_s"),
        "guidance": guidance_summary(result),
        "results": {"frames": str(out / "frames.jsonl"), "pullback": str(out / "pullback.json")},
        "model": result.get("model"),
        "engine_version": result.get("engine_version"),
        "config_hash": result.get("config_hash"),
    }


def format_summary(summary: dict) -> str:
    g = summary["guidance"]
    lines = [
        f"pullback       {summary['pullback_id']} ({summary['frames']} frames)",
        (f"sent           in {summary['send']['duration_s']:.2f} s at "
         f"{summary['send']['rate_fps'] or 'max'} frames/s"),
        "frames         " + ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items())),
        f"guidance ready {summary['guidance_delay_s']} s after the last frame was received",
    ]
    for lane, lat in summary["end_to_end_ms"].items():
        if lat.get("n"):
            lines.append(f"{lane:<15}{lat['n']} overlays, receipt to send p50 {lat['p50']:.1f} ms, "
                         f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    lines.append(f"status         {g['status']}")
    if g.get("mla_mm2") is not None:
        lines.append(f"MLA            {g['mla_mm2']:.2f} mm2 at frame {g['mla_frame']}")
    if g.get("calcium_score") is not None:
        lines.append(f"calcium score  {g['calcium_score']}")
    if g.get("stent_diameter_mm") is not None or g.get("stent_length_mm") is not None:
        lines.append(f"stent          {g['stent_diameter_mm']} mm x {g['stent_length_mm']} mm")
    if g.get("expansion_pct") is not None:
        lines.append(f"expansion      {g['expansion_pct']:.0f}% ({g['expansion_class']})")
    for warning in g.get("warnings") or ():
        lines.append(f"warning        {warning}")
    model = summary.get("model") or {}
    lines.append(f"model          {model.get('name')} {model.get('version') or ''}".rstrip())
    lines.append(f"results        {summary['results']['frames']}, {summary['results']['pullback']}")
    lines.append("(engineering software on synthetic data: not a medical device)")
    return "\n".join(lines)


def write_replay_spec(args: argparse.Namespace, pullback_id: str) -> None:
    """``DIR/replay.json``: what was replayed, so ``octguide view --results DIR`` can load the
    same frames again (a file by absolute path, or a phantom scenario by seed and size)."""
    source = args.pullback if args.pullback.startswith("phantom:") else str(Path(args.pullback).resolve())
    spec = {"pullback": source, "pullback_id": pullback_id, "frames": args.frames,
            "alines": args.alines, "samples": args.samples}
    tmp = args.out / ".replay.json.tmp"
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(tmp, args.out / "replay.json")


def run(args: argparse.Namespace) -> int:
    pullback = open_pullback(args.pullback, args.frames, args.alines, args.samples)
    fps = pullback.frame_rate_hz if args.rate == "realtime" else None
    curve = curve_keys(args)
    child = None
    try:
        if args.engine:
            control = args.engine
        else:
            child = ChildEngine(args.config, args.overrides, args.out / "engine", block=args.rate == "max")
            control = child.start()
        summary = replay(pullback, control, args.out, fps=fps, timeout_s=args.timeout, curve=curve)
    finally:
        if child is not None:
            child.stop()
    write_replay_spec(args, summary["pullback_id"])
    if args.sr is not None:
        summary["dicom"] = [str(p) for p in write_sr(args, pullback)]
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def write_sr(args: argparse.Namespace, pullback: Pullback) -> list[Path]:
    """``--sr FILE``: the SR (copied to FILE) and key images of the replayed pullback."""
    import shutil

    from engine.hospital.export import report_source, write_pullback_dicom  # the [hospital] extra

    paths = write_pullback_dicom(args.out, report_source(args.pullback, pullback), None)
    args.sr.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths[0], args.sr)
    return [args.sr, *paths[1:]]
