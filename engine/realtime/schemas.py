"""JSON Schemas (draft 2020-12) of what the engine writes and publishes (issue 12 item 6):

* ``frame_record``: one line of ``frames.jsonl`` (docs/results.md, "frames.jsonl" and "Fields
  the engine adds");
* ``pullback``: ``pullback.json``;
* ``overlay``: the body of an ``overlay`` / ``backfill`` display message;
* ``display_envelope``: the first JSON part of every display message (``seq`` per topic);
* ``status``: the ``status`` control reply and the heartbeat (their common fields); its
  ``admission`` and ``warmup`` sections are generated from their frozen dataclasses
  (:mod:`engine.realtime.status`), the rest is still written here.

:func:`schemas` builds them; ``docs/schemas/NAME.schema.json`` are its output, written by
``python -m engine.realtime.schemas docs/schemas`` (a test keeps them equal). The schemas are
strict where a reader relies on a field (types, required keys, enumerations, units in the
descriptions) and open (``additionalProperties`` allowed) inside domain objects that grow, so a
new measurement is not a schema break; a field that is removed or changes type is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from engine.realtime.status import Admission, WarmupStatus, section_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://octguide.invalid/schemas/"  #: $id prefix (not fetched: ids name, never locate)

NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}
INT_OR_NULL = {"type": ["integer", "null"]}
STR_OR_NULL = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
ROW_RANGE = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}
PER_ROW_MM = {"type": ["array", "null"], "items": NUM_OR_NULL}
RECORD_STATES = ["ok", "low_confidence", "rejected", "skipped"]
PULLBACK_STATES = ["complete", "incomplete", "interrupted"]
ENGINE_PHASES = ["new", "running", "draining", "closing", "stopped", "failed"]


def _obj(properties: dict, required: tuple = (), *, closed: bool = False, nullable: bool = False,
         description: str | None = None) -> dict:
    out: dict[str, Any] = {"type": ["object", "null"] if nullable else "object",
                           "properties": properties, "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


MODEL = _obj({"name": STR_OR_NULL, "version": STR_OR_NULL, "sha256": STR_OR_NULL},
             ("name", "version", "sha256"), description="the segmentation model")
AUDIT = _obj({"model": MODEL, "engine_version": {"type": "string"}, "config_hash": {"type": "string"}},
             ("model", "engine_version", "config_hash"))
LATENCY = {"type": "object", "additionalProperties": NUM, "description": "per stage, ms"}


def frame_record() -> dict:
    plaque = _obj({"type": {"enum": ["calcium", "lipid", "fibrous"]}, "alines": ROW_RANGE,
                   "arc_deg": NUM, "max_thickness_mm": NUM_OR_NULL,
                   "min_cap_thickness_mm": NUM_OR_NULL}, ("type", "alines", "arc_deg"))
    strut = _obj({"aline": {"type": "integer", "minimum": 0}, "radius_mm": NUM,
                  "distance_to_lumen_um": NUM_OR_NULL, "malapposed": {"type": ["boolean", "null"]}},
                 ("aline", "radius_mm"))
    return {
        "$schema": DIALECT, "$id": SCHEMA_BASE + "frame_record.schema.json",
        "title": "frames.jsonl record", "description": "One analysed (or unanalysed) frame; docs/results.md.",
        **_obj({
            "frame": {"type": "integer", "minimum": 0, "description": "0-based frame index"},
            "status": {"enum": RECORD_STATES},
            "reason": STR_OR_NULL,
            "confidence": NUM_OR_NULL,
            "pullback_id": {"type": "string", "minLength": 1},
            "lane": {"enum": ["live", "backfill"]},
            "latency_ms": LATENCY,
            "audit": AUDIT,
            "sheath": _obj({"outer_radius_mm": NUM_OR_NULL, "rings_mm": {"type": "array", "items": NUM},
                            "calibration": {"enum": ["ok", "mismatch", "not_found"]},
                            "carried": {"type": "boolean"}}, nullable=True),
            "uncertainty": PER_ROW_MM,
            "lumen": _obj({"area_mm2": NUM_OR_NULL, "min_diameter_mm": NUM_OR_NULL,
                           "max_diameter_mm": NUM_OR_NULL, "mean_diameter_mm": NUM_OR_NULL,
                           "radius_mm": PER_ROW_MM,
                           "centroid_mm": {"type": ["array", "null"], "items": NUM, "minItems": 2, "maxItems": 2}},
                          nullable=True, description="mm, mm2"),
            "eel": _obj({"radius_mm": PER_ROW_MM, "visible_arc_deg": NUM_OR_NULL,
                         "mean_diameter_mm": NUM_OR_NULL}, nullable=True),
            "plaque": {"type": ["array", "null"], "items": plaque},
            "plaque_free_arc_deg": NUM_OR_NULL,
            "calcium": _obj({"arc_deg": NUM_OR_NULL, "max_thickness_mm": NUM_OR_NULL}, nullable=True),
            "lipid": _obj({"arc_deg": NUM_OR_NULL, "min_cap_thickness_mm": NUM_OR_NULL,
                           "tcfa": {"type": ["boolean", "null"]}}, nullable=True),
            "guidewire": _obj({"alines": ROW_RANGE}, nullable=True),
            "struts": {"type": ["array", "null"], "items": strut},
            "stent": _obj({"area_mm2": NUM_OR_NULL, "min_diameter_mm": NUM_OR_NULL}, nullable=True),
        }, ("frame", "status", "pullback_id", "audit")),
        "allOf": [{"if": {"properties": {"status": {"enum": ["rejected", "skipped"]}}},
                   "then": {"required": ["reason"], "properties": {"reason": {"type": "string", "minLength": 1}}}}],
    }


def pullback() -> dict:
    counts = {"type": "object", "additionalProperties": COUNT,
              "properties": {k: COUNT for k in ("received", "rejected", "shown", "backfilled", "late",
                                                 "failed", "skipped", "never_received", "out_of_order")}}
    timing = _obj({"opened_unix": NUM_OR_NULL, "last_frame_received_unix": NUM_OR_NULL,
                   "guidance_ready_unix": NUM_OR_NULL, "guidance_delay_s": NUM_OR_NULL,
                   "first_live_ms": NUM_OR_NULL, "live_median_ms": NUM_OR_NULL},
                  ("opened_unix", "last_frame_received_unix", "guidance_ready_unix", "guidance_delay_s"),
                  description="s (Unix time), s, ms")
    return {
        "$schema": DIALECT, "$id": SCHEMA_BASE + "pullback.schema.json",
        "title": "pullback.json", "description": "The guidance of one pullback; docs/results.md.",
        **_obj({
            "pullback_id": {"type": "string", "minLength": 1},
            "status": {"enum": PULLBACK_STATES},
            "reason": STR_OR_NULL,
            "model": MODEL,
            "engine_version": {"type": "string"},
            "config_hash": {"type": "string"},
            "counts": counts,
            "timing": timing,
            "n_frames": COUNT,
            "frame_spacing_mm": NUM_OR_NULL,
            "mla": _obj({"frame": {"type": "integer"}, "area_mm2": NUM}, nullable=True),
            "lesion": {"type": ["object", "null"]},
            "references": {"type": ["object", "null"]},
            "calcium": {"type": ["object", "null"]},
            "sizing": {"type": ["object", "null"]},
            "stent": {"type": ["object", "null"]},
            "warnings": {"type": "array", "items": {"type": "string"}},
        }, ("pullback_id", "status", "reason", "model", "engine_version", "config_hash", "counts",
            "timing", "n_frames", "warnings")),
    }


def overlay() -> dict:
    points = {"type": "array", "items": {"type": "array", "items": NUM, "minItems": 2, "maxItems": 2}}
    return {
        "$schema": DIALECT, "$id": SCHEMA_BASE + "overlay.schema.json",
        "title": "overlay message body", "description": "The vector overlay of one frame (overlay/backfill topics); "
                                                        "docs/protocol.md.",
        **_obj({
            "pullback_id": {"type": "string"},
            "frame": {"type": "integer", "minimum": 0},
            "timestamp_s": NUM,
            "status": {"enum": RECORD_STATES},
            "reason": STR_OR_NULL,
            "confidence": NUM_OR_NULL,
            "grid": _obj({"size_px": {"type": "integer", "minimum": 1}, "fov_mm": NUM, "pixel_mm": NUM},
                         ("size_px", "fov_mm", "pixel_mm"), description="display grid: px, mm, mm/px"),
            "lumen": _obj({"points_px": points}, nullable=True),
            "eel": _obj({"points_px": points, "visible_arc_deg": NUM_OR_NULL}, nullable=True),
            "plaque": {"type": ["array", "null"], "items": {"type": "object"}},
            "guidewire": {"type": ["object", "null"]},
            "struts": {"type": ["array", "null"], "items": {"type": "object"}},
            "metrics": {"type": ["object", "null"]},
            "uncertainty": _obj({"angles_deg": {"type": "array", "items": NUM},
                                 "values": {"type": "array", "items": NUM}},
                                ("angles_deg", "values"), nullable=True,
                                description="per-A-line model uncertainty 0..1 at screen degrees"),
            "latency_ms": LATENCY,
        }, ("frame", "status")),
        "allOf": [{"if": {"properties": {"status": {"enum": ["ok", "low_confidence"]}}},
                   "then": {"required": ["pullback_id", "grid", "latency_ms"]}}],
    }


def display_envelope() -> dict:
    return {
        "$schema": DIALECT, "$id": SCHEMA_BASE + "display_envelope.schema.json",
        "title": "display message envelope",
        "description": "First JSON part of every overlay/backfill/image/display/guidance message; seq is +1 "
                       "per message published on the topic, from 1.",
        **_obj({
            "v": {"type": "integer"},
            "seq": {"type": "integer", "minimum": 1},
            "pullback_id": {"type": "string"},
            "frame": INT_OR_NULL,
            "lane": {"enum": ["live", "backfill", None]},
            "status": STR_OR_NULL,
            "sent_unix_ns": {"type": "integer"},
            "end_to_end_ms": NUM,
            "model": MODEL,
            "engine_version": {"type": "string"},
            "config_hash": {"type": "string"},
            "image": _obj({"shape": {"type": "array", "items": {"type": "integer"}},
                           "dtype": {"const": "uint8"}, "colour": {"enum": ["BGR", "GREY"]},
                           "fov_mm": NUM}, ("shape", "dtype", "colour", "fov_mm")),
            "lmode": {"type": "object"},
        }, ("v", "seq", "pullback_id", "frame", "lane", "status", "sent_unix_ns", "model",
            "engine_version", "config_hash")),
    }


def status() -> dict:
    counters = _obj({k: COUNT for k in ("received", "accepted", "shown", "backfilled", "late", "failed",
                                        "never_received", "acknowledged", "control_requests",
                                        "control_errors", "pullbacks_opened")}
                    | {"rejected": {"type": "object", "additionalProperties": COUNT},
                       "skipped": {"type": "object", "additionalProperties": COUNT}},
                    ("received", "accepted", "rejected", "shown", "backfilled", "late", "failed", "skipped"))
    dicom = _obj({"write_sr": {"type": "boolean"}, "destinations": {"type": "array", "items": {"type": "string"}},
                  "reports_written": COUNT, "report_failures": COUNT, "queued_for_send": COUNT, "sent": COUNT,
                  "send_failures": COUNT, "last_error": STR_OR_NULL}, ("write_sr",))
    latency = _obj({"frames": COUNT, "p50": NUM, "p99": NUM, "max": NUM}, ("frames", "p50", "p99", "max"),
                   nullable=True, description="live end-to-end, ms")
    return {
        "$schema": DIALECT, "$id": SCHEMA_BASE + "status.schema.json",
        "title": "engine status", "description": "The status control reply and the heartbeat; docs/protocol.md.",
        **_obj({
            "engine_version": {"type": "string"},
            "protocol_version": {"type": "integer"},
            "uptime_s": NUM,
            "phase": {"enum": ENGINE_PHASES},
            "error": STR_OR_NULL,
            "config_hash": {"type": "string"},
            "model": {"type": "object"},
            "stage": {"type": "object"},
            "warmup": section_schema(WarmupStatus),
            "backends": {"type": "object"},
            "fallbacks": {"type": "array", "items": {"type": "string"}},
            "security": {"type": ["object", "null"]},
            "endpoints": {"type": "object", "additionalProperties": {"type": "string"}},
            "counters": counters,
            "scheduler": {"type": "object"},
            "admission": section_schema(Admission),
            "dicom": dicom,
            "end_to_end_ms": latency,
            "displays": {"type": "array", "items": {"type": "string"}},
            "pullbacks": {"type": "object", "additionalProperties": {"type": "object"}},
        }, ("engine_version", "protocol_version", "uptime_s", "phase", "error", "config_hash", "model",
            "stage", "warmup", "backends", "fallbacks", "security", "endpoints", "counters", "scheduler",
            "admission", "dicom", "end_to_end_ms", "displays", "pullbacks")),
    }


def schemas() -> dict[str, dict]:
    """Every schema by name (``docs/schemas/NAME.schema.json``)."""
    return {"frame_record": frame_record(), "pullback": pullback(), "overlay": overlay(),
            "display_envelope": display_envelope(), "status": status()}


def render(schema: dict) -> str:
    """The file text of a schema (stable: sorted keys, 2-space indent, final newline)."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: str | Path) -> list[Path]:
    """Write every schema into ``folder``; returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schemas().items():
        path = out / f"{name}.schema.json"
        path.write_text(render(schema), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m engine.realtime.schemas docs/schemas
    for written in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"):
        print(written)


__all__ = ["render", "schemas", "write_schemas"]
