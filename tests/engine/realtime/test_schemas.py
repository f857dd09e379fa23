"""docs/schemas/*.schema.json are what engine/realtime/schemas.py generates, are valid JSON
Schemas, and reject what breaks the contract (the realtime tests validate every results file,
overlay, envelope and status reply they read against them: test_server.validate)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from engine.realtime.schemas import render, schemas
from tests.engine.realtime.test_server import validate

jsonschema = pytest.importorskip("jsonschema")

DOCS = Path(__file__).resolve().parents[3] / "docs" / "schemas"

RECORD = {"frame": 3, "status": "ok", "confidence": 0.9, "pullback_id": "pb-1", "lane": "live",
          "latency_ms": {"segment": 7.5, "end_to_end": 9.0},
          "audit": {"model": {"name": "m", "version": "1", "sha256": "ab"}, "engine_version": "0.1",
                    "config_hash": "cd"},
          "lumen": {"area_mm2": 5.1, "min_diameter_mm": 2.3, "max_diameter_mm": 2.8, "mean_diameter_mm": 2.5,
                    "radius_mm": [1.2, None, 1.3], "centroid_mm": [0.1, -0.2]},
          "plaque": [{"type": "calcium", "alines": [10, 40], "arc_deg": 90.0, "max_thickness_mm": 0.6}],
          "struts": [], "stent": None, "guidewire": {"alines": [100, 120]}}


@pytest.mark.parametrize("name", sorted(schemas()))
def test_the_shipped_schema_is_the_generated_one_and_valid(name):
    schema = schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert (DOCS / f"{name}.schema.json").read_text(encoding="utf-8") == render(schema), \
        "regenerate: python -m engine.realtime.schemas docs/schemas"


def test_a_good_record_passes():
    validate("frame_record", RECORD)
    validate("frame_record", {"frame": 0, "status": "rejected", "reason": "geometry_changed: ...",
                              "pullback_id": "pb-1", "audit": RECORD["audit"]})


@pytest.mark.parametrize("breakage", [
    lambda r: r.update(status="fine"),
    lambda r: r.pop("audit"),
    lambda r: r.update(frame=-1),
    lambda r: r["lumen"].update(area_mm2="5.1"),
    lambda r: r["plaque"][0].update(type="bone"),
    lambda r: r.update(status="rejected"),  # a rejected record without its reason
    lambda r: r.update(lane="sideways"),
], ids=["status", "audit", "frame", "area type", "plaque type", "rejected without reason", "lane"])
def test_a_broken_record_fails(breakage):
    record = copy.deepcopy(RECORD)
    breakage(record)
    with pytest.raises(AssertionError, match="breaks its schema"):
        validate("frame_record", record)


def test_a_pullback_without_counts_or_with_an_unknown_state_fails():
    good = {"pullback_id": "p", "status": "complete", "reason": None, "model": RECORD["audit"]["model"],
            "engine_version": "0", "config_hash": "c", "counts": {"received": 3},
            "timing": {"opened_unix": 1.0, "last_frame_received_unix": 2.0, "guidance_ready_unix": 3.0,
                       "guidance_delay_s": 1.0}, "n_frames": 3, "warnings": []}
    validate("pullback", good)
    for bad in ({**good, "status": "finished"}, {k: v for k, v in good.items() if k != "counts"},
                {**good, "counts": {"received": -1}}):
        with pytest.raises(AssertionError):
            validate("pullback", bad)


def test_the_typed_status_sections_are_generated_from_their_dataclasses():
    import json
    from dataclasses import asdict

    from engine.realtime.status import Admission, WarmupStatus, section_schema

    status = schemas()["status"]["properties"]
    assert status["warmup"] == section_schema(WarmupStatus)
    assert status["admission"] == section_schema(Admission)
    section = jsonschema.Draft202012Validator(status["warmup"])
    good = json.loads(json.dumps(asdict(WarmupStatus(8, 4, 0, (), 1234.5, geometries_prepared=1,
                                                     last_prepare_ms=3.2))))  # as the wire has it
    assert not list(section.iter_errors(good))
    for broken in ({**good, "frames": -1}, {**good, "surprise": 1},
                   {k: v for k, v in good.items() if k != "lumen_frames"}):
        assert list(section.iter_errors(broken))
