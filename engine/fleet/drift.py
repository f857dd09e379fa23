"""Drift between two sets of results (REFERENCE, CURRENT: ``reanalyse`` runs, the engine's case
log or results folders, over a date range: :mod:`engine.fleet.history`): per-frame features compared with the population stability index and the two-sample
Kolmogorov-Smirnov test, a verdict per feature, and a report (PNG plots, an offline HTML page).

PSI over bins cut at the reference's deciles: ``sum (c_i - r_i) ln(c_i / r_i)`` with the bin
shares floored at :data:`PSI_FLOOR`. Verdicts (thresholds in :class:`DriftThresholds`): *drift*
when PSI >= ``psi_drift`` and the KS p-value < ``ks_p_drift``; *watch* when PSI >= ``psi_watch``
or the KS p-value < ``ks_p_watch``; else *stable*. The engine config has no drift section yet,
so the thresholds are command-line options.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from engine.fleet.history import frames_table

FEATURES = ("confidence", "low_confidence", "lumen_area_mm2", "noise_floor", "intensity_p50",
            "intensity_p99", "z_offset_px", "sheath_radius_mm", "n_struts")
PSI_BINS = 10
PSI_FLOOR = 1e-4  #: smallest bin share in the PSI (an empty bin would make it infinite)


@dataclass(frozen=True)
class DriftThresholds:
    """Verdict thresholds (dimensionless PSI; KS p-values)."""

    psi_watch: float = 0.1
    psi_drift: float = 0.25
    ks_p_watch: float = 0.01
    ks_p_drift: float = 0.001


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (1-D, finite values).

    >>> x = np.arange(1000.0)
    >>> psi(x, x) == 0.0, psi(x, x + 500) > 1
    (True, True)
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if edges.size < 3:  # a (nearly) constant reference: even bins over both ranges
        lo, hi = min(reference.min(), current.min()), max(reference.max(), current.max())
        if hi <= lo:
            return 0.0
        edges = np.linspace(lo, hi, bins + 1)
    edges = edges.astype(np.float64)
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.maximum(np.histogram(reference, edges)[0] / reference.size, PSI_FLOOR)
    c = np.maximum(np.histogram(current, edges)[0] / current.size, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _values(table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.empty(0)
    values = np.array([np.nan if v is None else float(v) for v in table.column(name).to_pylist()])
    return values[np.isfinite(values)]


def compare_feature(name: str, ref: np.ndarray, cur: np.ndarray, t: DriftThresholds) -> dict:
    if ref.size < 2 or cur.size < 2:
        return {"feature": name, "verdict": "unavailable", "n_reference": int(ref.size),
                "n_current": int(cur.size), "psi": None, "ks_statistic": None, "ks_p": None}
    p = psi(ref, cur)
    ks = stats.ks_2samp(ref, cur)
    if p >= t.psi_drift and ks.pvalue < t.ks_p_drift:
        verdict = "drift"
    elif p >= t.psi_watch or ks.pvalue < t.ks_p_watch:
        verdict = "watch"
    else:
        verdict = "stable"
    return {"feature": name, "verdict": verdict, "n_reference": int(ref.size), "n_current": int(cur.size),
            "psi": round(p, 4), "ks_statistic": round(float(ks.statistic), 4), "ks_p": float(ks.pvalue),
            "reference_median": float(np.median(ref)), "current_median": float(np.median(cur))}


def drift_report(reference: Path, current: Path, out: Path | None = None,
                 thresholds: DriftThresholds = DriftThresholds(),
                 reference_range: tuple[float | None, float | None] = (None, None),
                 current_range: tuple[float | None, float | None] = (None, None)) -> dict:
    """Compare every feature; with ``out``, write ``drift.json``, one PNG per feature and
    ``index.html`` (self-contained but for the PNGs beside it: opens offline). The ranges
    (``(since_unix, until_unix)``, s since the epoch) select case-log or results-folder
    pullbacks by opening time."""
    ref_t, cur_t = frames_table(reference, *reference_range), frames_table(current, *current_range)
    results = [compare_feature(f, _values(ref_t, f), _values(cur_t, f), thresholds) for f in FEATURES]
    report = {"reference": str(reference), "current": str(current), "thresholds": asdict(thresholds),
              "frames": [ref_t.num_rows, cur_t.num_rows], "features": results,
              "drift": [r["feature"] for r in results if r["verdict"] == "drift"],
              "watch": [r["feature"] for r in results if r["verdict"] == "watch"]}
    if out is not None:
        _write(report, ref_t, cur_t, Path(out))
    return report


def _write(report: dict, ref_t, cur_t, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in report["features"]:
        name = r["feature"]
        ref, cur = _values(ref_t, name), _values(cur_t, name)
        image = ""
        if ref.size and cur.size:
            fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
            lo, hi = min(ref.min(), cur.min()), max(ref.max(), cur.max())
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
            ax.hist(ref, bins, alpha=0.5, density=True, label="reference")
            ax.hist(cur, bins, alpha=0.5, density=True, label="current")
            ax.set_title(f"{name}: {r['verdict']}")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / f"{name}.png")
            plt.close(fig)
            image = f'<img src="{name}.png" alt="{name}">'
        rows.append(f"<tr class='{r['verdict']}'><td>{html.escape(name)}</td><td>{r['verdict']}</td>"
                    f"<td>{r['psi']}</td><td>{r['ks_statistic']}</td><td>{r['ks_p']}</td><td>{image}</td></tr>")
    (out / "drift.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>octguide drift report</title><style>"
        "body{font-family:sans-serif}td{padding:4px;border-bottom:1px solid #ccc}.drift{background:#fdd}"
        ".watch{background:#ffd}</style></head><body><h1>Drift report</h1>"
        f"<p>reference {html.escape(report['reference'])} ({report['frames'][0]} frames), current "
        f"{html.escape(report['current'])} ({report['frames'][1]} frames)</p>"
        "<table><tr><th>feature</th><th>verdict</th><th>PSI</th><th>KS D</th><th>KS p</th><th></th></tr>"
        + "".join(rows) + "</table><p>Engineering software on synthetic data: not a medical device.</p>"
        "</body></html>\n")
