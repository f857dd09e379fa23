"""``octguide send FILE... --to AE@HOST:PORT|http(s)://DICOMWEB-ROOT [--outbox DIR]``: store
DICOM files on a PACS, by C-STORE or by STOW-RS to a DICOMweb URL, through the persistent outbox
(:mod:`engine.hospital.outbox`).

Every file is queued on disk before anything is sent; instances already queued or sent to that
destination are not queued again (by SOP Instance UID). Failed attempts are retried with
back-off until ``--timeout``; what is still pending stays in the outbox, and ``octguide send
--to ... --outbox DIR`` with no files sends it (after a crash, a reboot, a PACS outage). Every
attempt is a row of the audit log (``octguide audit --db DIR/outbox.sqlite``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from engine.hospital.config import DicomConfig, parse_destination
from engine.hospital.outbox import Outbox
from streams.errors import OctguideError

DEFAULT_OUTBOX = Path("octguide-outbox")


class SendError(OctguideError):
    """Some instances were not stored by the PACS within the time allowed."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send", help="C-STORE or STOW-RS DICOM files to a PACS through the persistent outbox",
        description="Queue DICOM files (SR, key images, any instance) in the on-disk outbox and "
        "store them on AE@HOST:PORT (C-STORE) or a DICOMweb service root http(s)://... (STOW-RS), "
        "retrying with back-off; with no FILE, send what is pending.")
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="DICOM files to send")
    parser.add_argument("--to", required=True, help="destination AE@HOST:PORT, or a DICOMweb "
                        "service root such as http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--outbox", type=Path, default=DEFAULT_OUTBOX,
                        help=f"outbox folder (default ./{DEFAULT_OUTBOX})")
    parser.add_argument("--ae", default="OCTGUIDE", help="calling AE title (default OCTGUIDE)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to keep retrying before giving up for now (default 120)")
    parser.add_argument("--retry-initial", type=float, default=1.0,
                        help="first retry delay, s (doubles up to --retry-max; default 1)")
    parser.add_argument("--retry-max", type=float, default=30.0, help="longest retry delay, s (default 30)")
    parser.add_argument("--pace", type=float, default=0.0,
                        help="seconds to wait before each instance (spare a busy PACS; default 0)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    destination = parse_destination(args.to)
    config = DicomConfig(ae_title=args.ae, retry_initial_s=args.retry_initial,
                         retry_max_s=max(args.retry_max, args.retry_initial))
    with Outbox(args.outbox, config) as outbox:
        queued = sum(outbox.enqueue(path, destination) for path in args.files)
        started = time.monotonic()
        pace = (lambda _entry: time.sleep(args.pace)) if args.pace > 0 else None
        outbox.drain(args.timeout, before_each=pace)
        mine = [e for e in outbox.entries() if e.destination == str(destination)]
        summary = {"destination": str(destination), "queued": queued,
                   "already_queued": len(args.files) - queued,
                   "sent": sum(e.state == "sent" for e in mine),
                   "pending": sum(e.state in ("pending", "sending") for e in mine),
                   "failed": sum(e.state == "failed" for e in mine),
                   "seconds": round(time.monotonic() - started, 3), "outbox": str(args.outbox)}
        problems = [e for e in mine if e.state != "sent"]
    print(json.dumps(summary, indent=2) if args.json else
          f"{summary['sent']} sent, {summary['pending']} pending, {summary['failed']} failed to "
          f"{destination} ({queued} queued now, {summary['already_queued']} already queued; "
          f"outbox {args.outbox})")
    if problems:
        raise SendError(f"{len(problems)} instance(s) not stored by {destination}; last result: "
                        f"{problems[0].last_result} (they stay in {args.outbox})")
    return 0
