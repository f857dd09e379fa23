"""``octguide drift REFERENCE CURRENT --out DIR``: per-frame feature drift between two sets of
results, each a ``reanalyse`` run, the engine's case log (``caselog.sqlite`` or the results
folder holding it, read-only) or results folders, those two over a date range (``--since``,
``--until``, and ``--reference-since``/``--reference-until``; UTC) (PSI and two-sample KS per
feature, a verdict each, PNG plots and an offline HTML page in DIR; :mod:`engine.fleet.drift`).
Exit status 0 either way; the verdicts are the output."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path


def utc_time(text: str) -> float:
    """An ISO date or date-time (UTC unless it names a zone) -> s since the epoch.

    >>> utc_time("2026-12-01"), utc_time("2026-12-01T12:00:00+01:00")
    (1796083200.0, 1796122800.0)
    """
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("drift", help="feature drift between two reanalyse runs",
                                   description="Compare per-frame features of two reanalyse runs "
                                   "(PSI, KS): stable / watch / drift per feature, with a report.")
    parser.add_argument("reference", type=Path,
                        help="reanalyse run (folder or its measurements.parquet), case log or results folder")
    parser.add_argument("current", type=Path,
                        help="reanalyse run (folder or its measurements.parquet), case log or results folder")
    parser.add_argument("--since", type=utc_time, default=None, metavar="DATE",
                        help="CURRENT: pullbacks opened from DATE (case log, results folders)")
    parser.add_argument("--until", type=utc_time, default=None, metavar="DATE",
                        help="CURRENT: pullbacks opened before DATE")
    parser.add_argument("--reference-since", type=utc_time, default=None, metavar="DATE")
    parser.add_argument("--reference-until", type=utc_time, default=None, metavar="DATE")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--psi-watch", type=float, default=0.1)
    parser.add_argument("--psi-drift", type=float, default=0.25)
    parser.add_argument("--ks-p-watch", type=float, default=0.01)
    parser.add_argument("--ks-p-drift", type=float, default=0.001)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.fleet.drift import DriftThresholds, drift_report

    t = DriftThresholds(args.psi_watch, args.psi_drift, args.ks_p_watch, args.ks_p_drift)
    report = drift_report(args.reference, args.current, args.out, t,
                          reference_range=(args.reference_since, args.reference_until),
                          current_range=(args.since, args.until))
    for r in report["features"]:
        print(f"{r['feature']:<18} {r['verdict']:<12} PSI {r['psi']}  KS p {r['ks_p']}")
    print(f"report {args.out / 'index.html'}")
    return 0
