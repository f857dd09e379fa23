"""Results folders (docs/results.md) small enough to report in milliseconds: a pre-PCI and a
post-PCI pullback of six frames, with measured, low-confidence and rejected frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.hospital.orthanc import orthanc  # noqa: F401  (the fixture)

N_ALINES = 16

MODEL = {"name": "octseg", "version": "1.0.1", "sha256": "29f56c1875ca0355530dcde9bff077aa8170b5215ef62784839d2295883fb160"}
CONFIG_HASH = "7ac71513da938a04d44e739c09134a4febf8d69eea336aea0ec0265beff1a006"


def frame_record(index: int, status: str = "ok", stented: bool = False, n_alines: int = N_ALINES) -> dict:
    if status != "ok":
        return {"frame": index, "status": status, "confidence": 0.2,
                "reason": "residual blood" if status == "low_confidence" else "bad geometry",
                "lumen": None, "eel": None, "plaque": None, "struts": None, "stent": None}
    area = 6.0 - 0.5 * index
    struts = ([{"aline": 3, "radius_mm": 1.2, "distance_to_lumen_um": 250.0, "malapposed": True},
               {"aline": 9, "radius_mm": 1.3, "distance_to_lumen_um": 20.0, "malapposed": False}]
              if stented else [])
    return {
        "frame": index, "status": "ok", "confidence": 0.97,
        "lumen": {"area_mm2": area, "min_diameter_mm": 2.5, "max_diameter_mm": 2.9,
                  "mean_diameter_mm": 2.7 + 0.01 * index, "radius_mm": [1.3] * n_alines,
                  "centroid_mm": [0.1, -0.2]},
        "eel": {"radius_mm": [1.7] * n_alines, "visible_arc_deg": 300.0 - index,
                "mean_diameter_mm": 3.4 if index % 2 == 0 else None},
        "plaque": [{"type": "calcium", "alines": [2, 5], "arc_deg": 90.0 + index,
                    "max_thickness_mm": 0.6, "min_cap_thickness_mm": None},
                   {"type": "fibrous", "alines": [6, 8], "arc_deg": 45.0,
                    "max_thickness_mm": 0.3, "min_cap_thickness_mm": None},
                   {"type": "fibrous", "alines": [12, 13], "arc_deg": 22.5,
                    "max_thickness_mm": 0.2, "min_cap_thickness_mm": None}],
        "plaque_free_arc_deg": 202.5 - index,
        "calcium": {"arc_deg": 90.0 + index, "max_thickness_mm": 0.6},
        "lipid": {"arc_deg": 0.0, "min_cap_thickness_mm": None, "tcfa": False},
        "guidewire": {"alines": [14, 15]},
        "struts": struts,
        "stent": {"area_mm2": area + 0.2, "min_diameter_mm": 2.4} if stented else None,
    }


def pullback_result(pullback_id: str, stented: bool) -> dict:
    common = {
        "pullback_id": pullback_id, "status": "complete", "reason": None, "model": MODEL,
        "engine_version": "0.1.0", "config_hash": CONFIG_HASH, "n_frames": 6,
        "frame_spacing_mm": 0.2, "mla": {"frame": 4, "area_mm2": 4.0},
        "references": {"proximal_frame": 5, "distal_frame": 0, "proximal_lumen_area_mm2": 8.9588,
                       "distal_lumen_area_mm2": 6.0, "proximal_eel_mean_diameter_mm": None,
                       "distal_eel_mean_diameter_mm": 3.5263},
        "calcium": {"score": 4, "arc_points": 2, "thickness_points": 1, "length_points": 1,
                    "max_arc_deg": 244.0, "max_thickness_mm": 0.8268, "length_mm": 9.0},
        "lesion": {"distal_edge_frame": 1, "proximal_edge_frame": 4, "mla_frame": 4},
        "warnings": ["calcium score 4: vessel preparation advised"],
    }
    if not stented:
        return {**common, "stent": None, "sizing": {
            "basis": "eel", "diameter_mm": 3.5, "length_mm": 12.0, "proximal_landing_frame": 5,
            "distal_landing_frame": 0, "required_length_mm": 9.8,
            "warnings": ["calcium score 4: vessel preparation advised"]}}
    return {**common, "sizing": None, "stent": {
        "msa_mm2": 4.2, "msa_frame": 4, "expansion_pct": 67.18319293856815,
        "proximal_expansion_pct": 62.19877082322498, "distal_expansion_pct": 81.22643808322462,
        "classification": "suboptimal", "msa_below_threshold": True, "warnings": [],
        "struts_total": 8, "struts_measured": 8, "struts_malapposed": 4,
        "max_malapposition_um": 462.3, "malapposed_length_mm": 0.8, "struts_relevant": 2,
        "relevant_length_mm": 0.4, "clinically_relevant": False}}


def write_results(folder: Path, stented: bool, n_alines: int = N_ALINES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    statuses = ["ok", "ok", "low_confidence", "ok", "ok", "rejected"]
    records = [frame_record(i, s, stented, n_alines) for i, s in enumerate(statuses)]
    (folder / "frames.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pullback = pullback_result("stented-1" if stented else "calcified-1", stented)
    (folder / "pullback.json").write_text(json.dumps(pullback))
    return folder


@pytest.fixture(params=[False, True], ids=["pre-pci", "post-pci"])
def results_dir(request, tmp_path) -> Path:
    return write_results(tmp_path / "results", request.param)


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines dciodvfy reports for a file (warnings are not errors); skips where
    dciodvfy is not installed (.ci/run installs dicom3tools)."""
    import shutil
    import subprocess

    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120,
                         check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]
