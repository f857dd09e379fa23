"""Shadow comparison of two re-analysis runs of the same archive (model A, the one in use, and
model B, the candidate): per-frame and per-pullback agreement, and the pullbacks whose clinical
outputs change (stent sizing step, calcium score, malapposed strut count).

Lumen Dice is computed on the polar contours: per stored A-line the lumen is the sector
``0..r(theta)``, so with equal angular steps ``Dice = 2 sum min(r_a, r_b)^2 / sum (r_a^2 + r_b^2)``
over the A-lines both runs measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

AREA_TOLERANCE_MM2 = 0.5  #: MLA change counted as a clinical change, mm2 (beyond a sizing step)


def lumen_dice(radius_a: list | None, radius_b: list | None) -> float | None:
    """Dice of two polar lumen contours (radii per A-line, mm; None/NaN rows left out).

    >>> lumen_dice([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    1.0
    >>> round(lumen_dice([1.0] * 4, [0.5] * 4), 3)
    0.4
    """
    if radius_a is None or radius_b is None:
        return None
    a = np.array([np.nan if v is None else v for v in radius_a], dtype=np.float64)
    b = np.array([np.nan if v is None else v for v in radius_b], dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return None
    a, b = a[both], b[both]
    return float(2 * np.sum(np.minimum(a, b) ** 2) / np.sum(a ** 2 + b ** 2))


def _load(run: Path) -> dict:
    runs = {}
    for folder in sorted((Path(run) / "pullbacks").iterdir()):
        if folder.name.startswith(".") or not (folder / "pullback.json").exists():
            continue
        records = [json.loads(x) for x in (folder / "frames.jsonl").read_text().splitlines() if x.strip()]
        runs[folder.name] = (json.loads((folder / "pullback.json").read_text()), records)
    return runs


def _lumen(record: dict) -> dict:
    return record.get("lumen") or {}


def frame_agreement(a: dict, b: dict) -> dict:
    """Agreement of one frame's records under models A and B."""
    area_a, area_b = _lumen(a).get("area_mm2"), _lumen(b).get("area_mm2")
    ca, cb = (a.get("calcium") or {}).get("arc_deg"), (b.get("calcium") or {}).get("arc_deg")
    return {
        "frame": a["frame"], "status_a": a.get("status"), "status_b": b.get("status"),
        "lumen_area_diff_mm2": None if area_a is None or area_b is None else round(area_b - area_a, 4),
        "lumen_dice": lumen_dice(_lumen(a).get("radius_mm"), _lumen(b).get("radius_mm")),
        "calcium_arc_diff_deg": None if ca is None or cb is None else round(cb - ca, 2),
        "struts_a": len(a.get("struts") or []), "struts_b": len(b.get("struts") or []),
    }


def _malapposed(records: list[dict]) -> int:
    return sum(1 for r in records for s in (r.get("struts") or []) if s.get("malapposed"))


def pullback_agreement(pa: dict, ra: list[dict], pb: dict, rb: list[dict]) -> dict:
    """Per-pullback agreement and the clinical outputs that change (``changes``, empty when none)."""
    frames = [frame_agreement(x, y) for x, y in zip(ra, rb)]
    dice = [f["lumen_dice"] for f in frames if f["lumen_dice"] is not None]
    diffs = [abs(f["lumen_area_diff_mm2"]) for f in frames if f["lumen_area_diff_mm2"] is not None]
    sizing = lambda p: {k: (p.get("sizing") or {}).get(k) for k in ("diameter_mm", "length_mm")}
    score = lambda p: (p.get("calcium") or {}).get("score")
    mla = lambda p: (p.get("mla") or {}).get("area_mm2")
    changes = []
    if sizing(pa) != sizing(pb):
        changes.append(f"stent sizing {sizing(pa)} -> {sizing(pb)}")
    if score(pa) != score(pb):
        changes.append(f"calcium score {score(pa)} -> {score(pb)}")
    if _malapposed(ra) != _malapposed(rb):
        changes.append(f"malapposed struts {_malapposed(ra)} -> {_malapposed(rb)}")
    if mla(pa) is not None and mla(pb) is not None and abs(mla(pb) - mla(pa)) > AREA_TOLERANCE_MM2:
        changes.append(f"MLA {mla(pa):.2f} -> {mla(pb):.2f} mm2")
    return {
        "frames": len(frames),
        "lumen_dice_mean": round(float(np.mean(dice)), 5) if dice else None,
        "lumen_dice_min": round(float(np.min(dice)), 5) if dice else None,
        "lumen_area_abs_diff_mean_mm2": round(float(np.mean(diffs)), 4) if diffs else None,
        "status_agreement": round(float(np.mean([f["status_a"] == f["status_b"] for f in frames])), 4)
        if frames else None,
        "calcium_score": [score(pa), score(pb)], "sizing": [sizing(pa), sizing(pb)],
        "struts": [sum(f["struts_a"] for f in frames), sum(f["struts_b"] for f in frames)],
        "malapposed": [_malapposed(ra), _malapposed(rb)],
        "models": [pa.get("model"), pb.get("model")],
        "changes": changes, "flagged": bool(changes), "per_frame": frames,
    }


def compare_runs(run_a: Path, run_b: Path, out: Path | None = None) -> dict:
    """Compare the pullbacks both runs analysed; writes ``out/comparison.json`` when given."""
    a, b = _load(run_a), _load(run_b)
    pullbacks = {pid: pullback_agreement(*a[pid], *b[pid]) for pid in sorted(a.keys() & b.keys())}
    report = {"run_a": str(run_a), "run_b": str(run_b), "pullbacks": pullbacks,
              "only_in_a": sorted(a.keys() - b.keys()), "only_in_b": sorted(b.keys() - a.keys()),
              "flagged": sorted(pid for pid, p in pullbacks.items() if p["flagged"])}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_comparison(report: dict) -> str:
    lines = [f"shadow comparison: {len(report['pullbacks'])} pullbacks, {len(report['flagged'])} flagged"]
    for pid, p in report["pullbacks"].items():
        mark = "FLAG" if p["flagged"] else "ok  "
        lines.append(f"{mark} {pid}: lumen Dice mean {p['lumen_dice_mean']}, |dA| mean "
                     f"{p['lumen_area_abs_diff_mean_mm2']} mm2" + ("; " + "; ".join(p["changes"]) if p["changes"] else ""))
    return "\n".join(lines)
