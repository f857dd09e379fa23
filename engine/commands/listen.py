"""``octguide listen --ae OCTGUIDE --port 11112 --allow CONSOLE [--to AE@HOST:PORT]``: receive
IVOCT pullbacks by DICOM C-STORE, analyse each through the engine (the path of ``replay
--engine``), write the SR and key images and send them to the destinations.

The Storage SCP (:mod:`engine.hospital.scp`) acknowledges an instance only once it is on disk
and readable; the analysis, report and send run behind it (:mod:`engine.hospital.pipeline`).
Without ``--engine`` an engine is started as a child process (its case log under
``WORK/engine``). Files: ``WORK/received/`` (instances), ``WORK/results/<SOP Instance UID>/``
(results contract and ``dicom/``), ``WORK/outbox/``, and the audit table in
``WORK/hospital.sqlite`` (``octguide audit --db WORK/hospital.sqlite``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path

from engine.commands.replay import replay
from engine.commands.serve import add_config_arguments, build_config
from engine.hospital.audit import AuditLog
from engine.hospital.config import dicom_config
from engine.hospital.outbox import Outbox
from engine.hospital.pipeline import ListenPipeline
from engine.hospital.scp import StorageService
from engine.realtime.child import ChildEngine
from streams.files.io import read_pullback

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "listen", help="receive IVOCT pullbacks by C-STORE, analyse them, send SR + key images",
        description="DICOM Storage SCP for IVOCT pullbacks: each received instance is analysed "
        "through the engine, and its SR and key images are C-STOREd to the destinations.")
    parser.add_argument("--ae", default=None, help="our AE title (default [dicom] ae_title, OCTGUIDE)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11112, help="DICOM port (default 11112)")
    parser.add_argument("--allow", action="append", default=[], metavar="AE",
                        help="calling AE title allowed to push (repeat; adds to [dicom] "
                        "allowed_calling_aes)")
    parser.add_argument("--allow-any", action="store_true", help="accept any calling AE title (testing)")
    parser.add_argument("--to", action="append", default=[], metavar="AE@HOST:PORT|URL",
                        help="where the reports go: a DICOM peer (C-STORE) or a DICOMweb service "
                        "root http(s)://... (STOW-RS); repeat; adds to [dicom] destinations")
    parser.add_argument("--engine", default=None, help="control endpoint of a running engine "
                        "(default: start one)")
    parser.add_argument("--work", type=Path, default=Path("octguide-listen"),
                        help="working folder (default ./octguide-listen)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for a pullback's guidance (default 600)")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    add_config_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = build_config(args.config, args.overrides)
    dicom = dicom_config(config)
    dicom = dataclasses.replace(
        dicom, ae_title=args.ae or dicom.ae_title,
        allowed_calling_aes=tuple(dict.fromkeys((*dicom.allowed_calling_aes, *args.allow))),
        allow_any_calling_ae=dicom.allow_any_calling_ae or args.allow_any,
        destinations=tuple(dict.fromkeys((*dicom.destinations, *args.to))))
    work: Path = args.work
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    child = None
    audit = AuditLog(work / "hospital.sqlite")
    outbox = Outbox(work / "outbox", dicom, audit)
    scp = None
    pipeline = None
    try:
        if args.engine:
            control = args.engine
        else:
            child = ChildEngine(args.config, args.overrides, work / "engine", block=True)
            control = child.start()

        def analyse(path: Path) -> Path:
            out = work / "results" / path.stem
            replay(read_pullback(path), control, out, fps=None, timeout_s=args.timeout,
                   show_progress=False)
            return out

        pipeline = ListenPipeline(dicom, audit, outbox, analyse)
        scp = StorageService(dicom, work, audit, pipeline.submit)
        pipeline.start()
        host, port = scp.start(args.host, args.port)
        print(f"octguide listening on {host}:{port} as {dicom.ae_title}; allowed: "
              f"{'any' if dicom.allow_any_calling_ae else ', '.join(dicom.allowed_calling_aes)}; "
              f"reports to: {', '.join(dicom.destinations) or 'nowhere (results only)'}",
              file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        if scp is not None:
            scp.stop()
        if pipeline is not None:
            pipeline.stop()
            counts = {**(scp.counts if scp else {}), **pipeline.counts}
            print("octguide listen stopped: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
                  file=sys.stderr, flush=True)
        outbox.close()
        audit.close()
        if child is not None:
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
