"""``octguide audit [--db FILE] [--event EVENT] [--csv | --json]``: the hospital audit trail
(:mod:`engine.hospital.audit`): every receive, rejection, analysis, send and failure, with who,
what (SOP Instance UIDs), when and the result."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from engine.hospital.audit import EVENTS, AuditLog, to_csv, to_json
from streams.errors import OctguideError

DEFAULT_DB = Path("octguide-listen") / "hospital.sqlite"


class AuditError(OctguideError):
    """The audit database does not exist."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="print or export the hospital audit trail (receive, analysis, send, failure)",
        description="Print the audit rows (who, what, when, result) of octguide listen / send, "
        "or export them as CSV or JSON.")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB,
                        help=f"audit database (default {DEFAULT_DB}; octguide send: OUTBOX/outbox.sqlite)")
    parser.add_argument("--event", choices=EVENTS, default=None, help="only rows of this event")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows (oldest first)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV on stdout")
    form.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.db.is_file():
        raise AuditError(f"{args.db}: no audit database there (see --db)")
    with AuditLog(args.db) as audit:
        rows = audit.rows(args.event, args.limit)
    if args.csv:
        sys.stdout.write(to_csv(rows))
    elif args.json:
        sys.stdout.write(to_json(rows))
    else:
        for row in rows:
            when = dt.datetime.fromtimestamp(row["time_unix"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            what = ", ".join(row["what"]) or "-"
            print(f"{when}Z  {row['event']:<8} {row['who']:<32} {row['result']:<24} {what}"
                  + (f"  ({row['detail']})" if row["detail"] else ""))
        print(f"{len(rows)} rows", file=sys.stderr)
    return 0
