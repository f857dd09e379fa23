"""``octguide drift REFERENCE CURRENT --out DIR``: per-frame feature drift between two
``reanalyse`` runs (PSI and two-sample KS per feature, a verdict each, PNG plots and an offline
HTML page in DIR; :mod:`engine.fleet.drift`). Exit status 0 either way; the verdicts are the output."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("drift", help="feature drift between two reanalyse runs",
                                   description="Compare per-frame features of two reanalyse runs "
                                   "(PSI, KS): stable / watch / drift per feature, with a report.")
    parser.add_argument("reference", type=Path, help="reanalyse run folder (or its measurements.parquet)")
    parser.add_argument("current", type=Path, help="reanalyse run folder (or its measurements.parquet)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--psi-watch", type=float, default=0.1)
    parser.add_argument("--psi-drift", type=float, default=0.25)
    parser.add_argument("--ks-p-watch", type=float, default=0.01)
    parser.add_argument("--ks-p-drift", type=float, default=0.001)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.fleet.drift import DriftThresholds, drift_report

    t = DriftThresholds(args.psi_watch, args.psi_drift, args.ks_p_watch, args.ks_p_drift)
    report = drift_report(args.reference, args.current, args.out, t)
    for r in report["features"]:
        print(f"{r['feature']:<18} {r['verdict']:<12} PSI {r['psi']}  KS p {r['ks_p']}")
    print(f"report {args.out / 'index.html'}")
    return 0
