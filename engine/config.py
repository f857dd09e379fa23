"""Validated engine configuration: every section typed, every number with its unit and range.

One :class:`Config` is loaded once (:func:`load_config` from TOML, or :meth:`Config.from_dict`)
and handed whole to what needs it (the engine, :func:`engine.analysis.stages.stage_factory`).
Each section is a frozen pydantic v2 model: fields are strictly typed (``"180"`` is not a number,
``1`` is not ``true``), numbers are finite and inside their range, unknown keys are rejected
with the list of valid ones, and every field carries its unit, range, source and meaning
(:func:`describe`). Every invalid value raises :class:`ConfigError` with one line that names the
field; :meth:`Config.config_hash` identifies a configuration in audit records.

Sections: ``[server]`` (endpoints, queues, limits, security), ``[guidance]`` (the clinical
thresholds), ``[segment]`` (model and inference runtime), ``[metal]`` (the classical strut and
guidewire detector), ``[analysis]`` (per-frame analysis: confidence, stent, catheter),
``[scan]`` (scan-conversion backend), ``[display]`` (on-screen angular placement) and
``[dicom]`` (DICOM SR export and its destinations).

Clinical sources are those of DOMAIN.md (sections 4-5 and 8): ILUMIEN III (Lancet
2016;388:2618), the EHJ 2017;38:3139 consensus, Fujino et al. (EuroIntervention 2018) and
CLI-OPCI; the full list, and the definitions chosen where they are silent, is in
``docs/guidance_rules.md``.

Why pydantic v2 (and not msgspec): measured on the 2-core development VM (load 0.1), a
stand-in of this config (8 sections, 80 range-checked fields) costs 148-227 ms with pydantic
2.14 (import, class creation and one validation) against 36-52 ms with msgspec 0.23, about 4x,
in the same run; validating a full config takes 0.07-0.13 ms (pydantic) and 0.6-0.9 ms (msgspec's
first ``convert``). The difference is ~0.15 s once per process, against the CLI's 1.6-2.4 s
start and the engine's multi-second model warm-up. pydantic was chosen because it validates on
construction: ``GuidanceConfig(calcium_arc_deg=-5)`` raises, as the rules and tests rely on,
where a msgspec ``Struct``'s constructor checks nothing (only ``msgspec.convert`` does).

This module imports nothing from ``streams`` or other ``engine`` modules.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import reprlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "SEGMENT_RUNTIMES",
    "AnalysisSettings",
    "Config",
    "ConfigError",
    "DicomConfig",
    "DisplayConfig",
    "GuidanceConfig",
    "MetalConfig",
    "ScanConfig",
    "SegmentConfig",
    "ServerConfig",
    "describe",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration value, key or file is invalid; the message (one line) names which and why."""


_ENGINEERING = "engineering setting; docs/protocol.md and docs/architecture.md"


def _meta(unit: str, low: float | None, high: float | None, source: str, **extra: Any) -> dict:
    return {"unit": unit, "low": low, "high": high, "source": source, **extra}


def _threshold(default: float, *, unit: str, low: float, high: float, source: str, doc: str) -> Any:
    """A finite float field with its unit, inclusive range ``[low, high]``, source and meaning."""
    return Field(float(default), ge=low, le=high, strict=True, allow_inf_nan=False,
                 description=doc, json_schema_extra=_meta(unit, low, high, source))


def _list_of_lengths(default: tuple[float, ...], *, unit: str, low: float, high: float,
                     source: str, doc: str) -> Any:
    """A field holding a non-empty, strictly increasing tuple of floats, each in ``[low, high]``
    (checked by :func:`_check_lengths`)."""
    return Field(tuple(float(v) for v in default), min_length=1, description=doc,
                 json_schema_extra=_meta(unit, low, high, source, items="numbers"))


def _integer(default: int, *, unit: str, low: int, high: int, doc: str,
             source: str = _ENGINEERING) -> Any:
    """An int field with its unit and inclusive range."""
    return Field(int(default), ge=low, le=high, strict=True, description=doc,
                 json_schema_extra=_meta(unit, low, high, source))


def _setting(default: float, *, unit: str, low: float, high: float, doc: str) -> Any:
    """An engineering (non-clinical) float setting."""
    return _threshold(default, unit=unit, low=low, high=high, source=_ENGINEERING, doc=doc)


def _flag(default: bool, *, doc: str) -> Any:
    """A bool field."""
    return Field(bool(default), strict=True, description=doc,
                 json_schema_extra=_meta("", None, None, _ENGINEERING))


def _text(default: str, *, doc: str, source: str = _ENGINEERING) -> Any:
    """A str field (choices, where there are any, are the field's ``Literal`` annotation)."""
    return Field(default, description=doc, json_schema_extra=_meta("", None, None, source))


_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _check_lengths(model: type[_Section], name: str, values: tuple[float, ...]) -> tuple[float, ...]:
    """Each of ``values`` inside the field's range, strictly increasing (a ``_list_of_lengths``)."""
    meta = model.model_fields[name].json_schema_extra
    where = f"{model.section}.{name}"
    for i, number in enumerate(values):
        if not meta["low"] <= number <= meta["high"]:
            raise ValueError(
                f"{where}[{i}]={number:g} is outside {meta['low']:g}..{meta['high']:g} {meta['unit']}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{where} must be sorted in strictly increasing order, got {list(values)}")
    return values

_VALUE = reprlib.Repr()
_VALUE.maxstring = 60
_VALUE.maxother = 60


def _one_line(model: type[_Section], exc: ValidationError) -> str:
    """The first error of a pydantic ``ValidationError`` as one line naming the field."""
    err = exc.errors(include_url=False)[0]
    kind, loc, value = err["type"], err["loc"], err.get("input")
    ctx = err.get("ctx") or {}
    names = list(model.model_fields)
    name = str(loc[0]) if loc else ""
    where = f"{model.section}.{name}" + "".join(f"[{i}]" for i in loc[1:])
    meta = (model.model_fields[name].json_schema_extra or {}) if name in model.model_fields else {}
    shown = _VALUE.repr(value)
    if kind == "extra_forbidden":
        return f"unknown key {name!r} in [{model.section}]; valid keys: {', '.join(names)}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low = meta.get("low", ctx.get("ge", ctx.get("gt")))
        high = meta.get("high", ctx.get("le", ctx.get("lt")))
        return f"{where}={value:g} is outside {low:g}..{high:g} {meta.get('unit', '')}".rstrip()
    if kind == "finite_number":
        return f"{where} must be finite, got {shown}"
    if kind in ("float_type", "float_parsing"):
        return f"{where} must be a number, got {shown}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{where} must be an integer, got {shown}"
    if kind == "bool_type":
        return f"{where} must be true or false, got {shown}"
    if kind == "string_type":
        return f"{where} must be a string, got {shown}"
    if kind == "literal_error":
        return f"{where}={shown} is not one of {ctx.get('expected')}"
    if kind in ("tuple_type", "list_type"):
        return f"{where} must be a list of {meta.get('items', 'values')}, got {shown}"
    if kind == "too_short":
        return f"{where} must not be empty"
    if kind == "too_long":
        return f"{where} has {ctx.get('actual_length')} entries, at most {ctx.get('max_length')}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    return f"{where}: {err['msg']} (got {shown})"


class _Section(BaseModel):
    """Strict, frozen validation, ``from_dict`` and ``to_dict`` shared by every config section."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False,
                              hide_input_in_errors=False)

    section: ClassVar[str]
    #: Whether the section takes part in :meth:`Config.config_hash` (what shaped the results).
    audited: ClassVar[bool] = True
    #: Fields that take part in the hash only when set (not empty): added later, they leave the
    #: hash of every configuration that does not use them, and of its earlier records, as it was.
    hashed_when_set: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_one_line(type(self), exc)) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Section:
        """Build the section from a mapping; absent keys keep their defaults.

        Raises
        ------
        ConfigError
            On an unknown key (naming it and listing the valid keys), a wrong type or a value out
            of range (naming the field).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"[{cls.section}] must be a table of key = value, got {type(data).__name__}"
            )
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"[{cls.section}] keys must be strings, got {bad[0]!r}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready values (tuples become lists)."""
        return self.model_dump(mode="json")

    def audited_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` as :meth:`Config.config_hash` hashes it (``hashed_when_set`` fields
        left out while empty)."""
        return {k: v for k, v in self.to_dict().items() if v != "" or k not in self.hashed_when_set}


_ILUMIEN = "ILUMIEN III (Lancet 2016;388:2618); EHJ 2017;38:3139; DOMAIN.md s4"
_FUJINO = "Fujino et al., EuroIntervention 2018 (OCT calcium score); DOMAIN.md s4"


class GuidanceConfig(_Section):
    """Thresholds of the MLD MAX pre-PCI plan and the post-PCI checks (DOMAIN.md sections 4-5).

    Every comparison the rules make against these values is documented in
    ``docs/guidance_rules.md`` (which side of the threshold counts, and why).
    """

    section: ClassVar[str] = "guidance"

    reference_window_pre_mm: float = _threshold(
        10.0, unit="mm", low=1.0, high=30.0, source=_ILUMIEN,
        doc="Pre-PCI reference frames: largest lumen within this distance proximal and distal of "
        "the lesion edges.",
    )  # fmt: skip
    reference_window_post_mm: float = _threshold(
        5.0, unit="mm", low=1.0, high=20.0, source="ILUMIEN III; DOMAIN.md s4-5",
        doc="Post-PCI reference frames: largest lumen within this distance outside each stent "
        "edge.",
    )  # fmt: skip
    eel_visible_arc_deg: float = _threshold(
        180.0, unit="deg", low=0.0, high=360.0, source=_ILUMIEN,
        doc="EEL-based sizing needs the EEL visible over more than this arc at both references.",
    )  # fmt: skip
    diameter_step_mm: float = _threshold(
        0.25, unit="mm", low=0.05, high=1.0, source=_ILUMIEN,
        doc="Stent diameters are rounded to this step (EEL: down; lumen: up).",
    )  # fmt: skip
    stent_lengths_mm: tuple[_Number, ...] = _list_of_lengths(
        (8.0, 12.0, 15.0, 18.0, 23.0, 28.0, 33.0, 38.0), unit="mm", low=1.0, high=100.0,
        source="DOMAIN.md s4 (example list; set it to the devices on the shelf)",
        doc="Available stent lengths, strictly increasing; the landing-to-landing distance is "
        "rounded up to the next one.",
    )  # fmt: skip
    plaque_min_thickness_mm: float = _threshold(
        0.05, unit="mm", low=0.0, high=1.0,
        source="octguide definition: ~4x OCT axial resolution (10-15 um, DOMAIN.md s1)",
        doc="A ray about the lumen centroid counts as plaque only where its plaque is at least "
        "this thick: the tapering edge of a plaque, thinner than the image resolves, is not "
        "plaque for arcs and landing zones.",
    )  # fmt: skip
    landing_plaque_free_arc_deg: float = _threshold(
        220.0, unit="deg", low=0.0, high=360.0,
        source="DOMAIN.md s4: plaque-free arc >= 220 deg predicts plaque burden < 40%; "
        "landing zones avoid lipid",
        doc="A frame is normal (a landing zone, outside the lesion) when its plaque-free arc is at "
        "least this and it has no lipid.",
    )  # fmt: skip
    calcium_arc_deg: float = _threshold(
        180.0, unit="deg", low=0.0, high=360.0, source=_FUJINO,
        doc="Calcium score: maximum calcium arc greater than this scores 2 points.",
    )  # fmt: skip
    calcium_thickness_mm: float = _threshold(
        0.5, unit="mm", low=0.05, high=3.0, source=_FUJINO,
        doc="Calcium score: maximum calcium thickness greater than this scores 1 point.",
    )  # fmt: skip
    calcium_length_mm: float = _threshold(
        5.0, unit="mm", low=0.5, high=50.0, source=_FUJINO,
        doc="Calcium score: calcium length greater than this scores 1 point.",
    )  # fmt: skip
    tcfa_cap_thickness_um: float = _threshold(
        65.0, unit="um", low=10.0, high=500.0, source="DOMAIN.md s4 (thin-cap fibroatheroma)",
        doc="Thin-cap fibroatheroma: minimum fibrous-cap thickness below this.",
    )  # fmt: skip
    tcfa_lipid_arc_deg: float = _threshold(
        90.0, unit="deg", low=0.0, high=360.0,
        source="DOMAIN.md s4 (>= 90 deg in some definitions, >= 2 quadrants = 180 in others)",
        doc="Thin-cap fibroatheroma: lipid arc at least this (0 disables the arc criterion).",
    )  # fmt: skip
    malapposition_threshold_um: float = _threshold(
        110.0, unit="um", low=50.0, high=500.0,
        source="DOMAIN.md s5: strut + polymer thickness, device-specific 110-160 um",
        doc="A strut is malapposed when its axial distance to the lumen surface exceeds this.",
    )  # fmt: skip
    malapposition_relevant_um: float = _threshold(
        200.0, unit="um", low=50.0, high=1000.0,
        source="DOMAIN.md s5: clinically relevant thresholds quoted at 200, 300 and 400 um",
        doc="Malapposition distance above which malapposition is reported as clinically relevant "
        "(when also longer than malapposition_relevant_length_mm).",
    )  # fmt: skip
    malapposition_relevant_length_mm: float = _threshold(
        1.0, unit="mm", low=0.0, high=20.0, source="DOMAIN.md s5 (> 1 mm long)",
        doc="Relevant malapposition must extend longitudinally over more than this.",
    )  # fmt: skip
    expansion_optimal_pct: float = _threshold(
        95.0, unit="%", low=50.0, high=150.0, source="ILUMIEN III; DOMAIN.md s5",
        doc="Stent expansion at least this (each half against its nearer reference) is optimal.",
    )  # fmt: skip
    expansion_acceptable_pct: float = _threshold(
        90.0, unit="%", low=50.0, high=150.0, source="ILUMIEN III; DOMAIN.md s5",
        doc="Stent expansion at least this, below optimal, is acceptable; below it, suboptimal.",
    )  # fmt: skip
    msa_min_mm2: float = _threshold(
        4.5, unit="mm2", low=0.5, high=20.0, source="CLI-OPCI; DOMAIN.md s5",
        doc="Minimum stent area below this is suboptimal whatever the relative expansion.",
    )  # fmt: skip
    dissection_flap_um: float = _threshold(
        200.0, unit="um", low=10.0, high=2000.0, source="DOMAIN.md s5 (edge dissection)",
        doc="An edge dissection is reported when its flap is larger than this.",
    )  # fmt: skip
    dissection_edge_window_mm: float = _threshold(
        5.0, unit="mm", low=0.5, high=20.0, source="DOMAIN.md s5 (edge dissection)",
        doc="Edge dissections are searched within this distance outside each stent edge.",
    )  # fmt: skip
    dissection_major_arc_deg: float = _threshold(
        60.0, unit="deg", low=0.0, high=360.0, source="DOMAIN.md s5 (edge dissection)",
        doc="An edge dissection is major when its arc is at least this (or see the length).",
    )  # fmt: skip
    dissection_major_length_mm: float = _threshold(
        3.0, unit="mm", low=0.0, high=50.0, source="DOMAIN.md s5 (edge dissection)",
        doc="An edge dissection is major when its length is at least this (or see the arc).",
    )  # fmt: skip

    @field_validator("stent_lengths_mm")
    @classmethod
    def _lengths(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        return _check_lengths(cls, "stent_lengths_mm", values)

    @model_validator(mode="after")
    def _consistent(self) -> GuidanceConfig:
        if self.expansion_acceptable_pct > self.expansion_optimal_pct:
            raise ValueError(
                f"guidance.expansion_acceptable_pct={self.expansion_acceptable_pct:g} must not "
                f"exceed guidance.expansion_optimal_pct={self.expansion_optimal_pct:g}"
            )
        return self


_ENDPOINT = re.compile(r"^(?:tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(?P<port>\*|[0-9]{1,5})"
                       r"|ipc://\S+|inproc://\S+)$")


def _check_endpoint(where: str, value: str) -> str:
    """A ZeroMQ endpoint this engine can bind: ``tcp://HOST:PORT`` with PORT 1..65535 or ``*``
    (a free port), ``ipc://PATH`` or ``inproc://NAME``. libzmq itself takes
    ``tcp://127.0.0.1:99999`` and binds a random port, so the range is checked here.

    >>> _check_endpoint("server.frames_endpoint", "tcp://127.0.0.1:*")
    'tcp://127.0.0.1:*'
    >>> _check_endpoint("server.frames_endpoint", "tcp://127.0.0.1:99999")
    Traceback (most recent call last):
    ...
    ValueError: server.frames_endpoint='tcp://127.0.0.1:99999': port 99999 is outside 1..65535
    """
    match = _ENDPOINT.match(value)
    if match is None:
        raise ValueError(f"{where}={value!r} is not a ZeroMQ endpoint (tcp://HOST:PORT, "
                         "tcp://HOST:*, ipc://PATH or inproc://NAME)")
    port = match.group("port")
    if port not in (None, "*") and not 1 <= int(port) <= 65535:
        raise ValueError(f"{where}={value!r}: port {int(port)} is outside 1..65535")
    return value


class ServerConfig(_Section):
    """The engine's endpoints, queues, limits and security (``octguide serve``).

    Not part of :meth:`Config.config_hash`: where the engine listens and how much it buffers
    does not change any measurement, so two engines that differ only here produce results with
    the same hash.
    """

    section: ClassVar[str] = "server"
    audited: ClassVar[bool] = False

    frames_endpoint: str = _text(
        "tcp://127.0.0.1:5555",
        doc="PULL socket the console's frames arrive on. Non-loopback addresses need curve = true "
        "(or insecure = true).")  # fmt: skip
    overlay_endpoint: str = _text(
        "tcp://127.0.0.1:5556", doc="XPUB socket for overlays, images, backfill and guidance.")
    status_endpoint: str = _text(
        "tcp://127.0.0.1:5557", doc="PUB socket for heartbeats and events (rejections, pullbacks).")
    control_endpoint: str = _text(
        "tcp://127.0.0.1:5558", doc="ROUTER socket for status, config and pullback control requests.")
    results_dir: str = _text(
        "octguide-results", doc="Folder for the case log and one results folder per pullback.")
    analysis: Literal["full", "metal"] = _text(
        "full",
        doc="Per-frame analysis stage: 'full' (engine.analysis.analyse: preprocess, segment, metal detection, "
        "measure) or 'metal' (scan conversion and metal detection only: no model, no lumen).")  # fmt: skip
    workers: int = _integer(
        1, unit="threads", low=1, high=8,
        doc="Analysis threads, each with its own stage; 1 keeps the live lane's latency lowest on "
        "a 2-core CPU.")  # fmt: skip
    max_pending_frames: int = _integer(
        1024, unit="frames", low=1, high=1_000_000,
        doc="Frames received but not yet analysed (live slot plus backfill) at most.")
    max_pending_mib: float = _setting(
        1024.0, unit="MiB", low=1.0, high=1_048_576.0,
        doc="Bytes of frames received but not yet analysed at most.")
    overload_policy: Literal["skip", "block"] = _text(
        "skip",
        doc="At a pending limit: 'skip' the oldest backfill frame (recorded as skipped, counted) or "
        "'block' (stop reading frames; the sender's PUSH blocks at its high-water mark).")  # fmt: skip
    max_frame_mib: float = _setting(
        64.0, unit="MiB", low=0.01, high=1024.0,
        doc="Largest frame payload accepted (larger declared payloads are rejected 'oversized'); "
        "libzmq drops any connection sending a part larger than twice this.")  # fmt: skip
    max_frames_per_pullback: int = _integer(
        20_000, unit="frames", low=1, high=1_000_000, doc="Frames beyond this are rejected.")
    max_open_pullbacks: int = _integer(
        4, unit="pullbacks", low=1, high=64,
        doc="A START frame while this many pullbacks are open is rejected ('too_many_pullbacks').")
    frames_hwm: int = _integer(
        16, unit="messages", low=1, high=100_000, doc="Receive high-water mark of the frame socket.")
    overlay_hwm: int = _integer(
        4, unit="messages", low=1, high=100_000,
        doc="Send high-water mark per display: a slower display loses messages beyond it.")
    status_hwm: int = _integer(
        1000, unit="messages", low=1, high=1_000_000, doc="Send high-water mark of the status socket.")
    heartbeat_s: float = _setting(1.0, unit="s", low=0.05, high=60.0, doc="Heartbeat period.")
    pullback_idle_timeout_s: float = _setting(
        10.0, unit="s", low=0.1, high=3600.0,
        doc="An open pullback with no frame for this long is closed as incomplete (sender gone).")
    end_grace_s: float = _setting(
        1.0, unit="s", low=0.0, high=600.0,
        doc="After the END frame, wait this long for missing lower frame indices before recording "
        "them as never received.")  # fmt: skip
    stop_drain_s: float = _setting(
        5.0, unit="s", low=0.0, high=600.0,
        doc="On SIGINT/SIGTERM, keep analysing pending frames this long before recording the rest "
        "as skipped.")  # fmt: skip
    render_image: bool = _flag(
        False, doc="Also publish the Cartesian image with the overlay burned in (topic 'image').")
    image_size_px: int = _integer(512, unit="px", low=64, high=4096, doc="Display image width and height.")
    image_fov_mm: float = _setting(10.0, unit="mm", low=1.0, high=50.0, doc="Display field of view.")
    curve: bool = _flag(
        False, doc="Require CurveZMQ on every socket (always required off loopback/IPC).")
    server_secret_key: str = _text(
        "", doc="Engine secret certificate (from 'octguide keys'), needed with curve.")
    authorized_clients: str = _text(
        "", doc="Folder of public certificates of the clients allowed to connect (curve).")
    insecure: bool = _flag(
        False, doc="Allow binding non-loopback addresses without CurveZMQ (logged and reported).")

    @field_validator("frames_endpoint", "overlay_endpoint", "status_endpoint", "control_endpoint")
    @classmethod
    def _endpoints(cls, value: str, info: Any) -> str:
        return _check_endpoint(f"server.{info.field_name}", value)


SEGMENT_RUNTIMES = ("onnxruntime", "tensorrt", "torch-cuda")
"""Segmentation runtimes a config may name (``models.runtime.RUNTIMES`` registers each)."""

_Runtime = Literal["onnxruntime", "tensorrt", "torch-cuda"]

MODEL_VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}(@[A-Za-z0-9][A-Za-z0-9._+-]{0,63})?")
"""An installed model's key (its manifest's file stem: ``octseg``, ``octseg.int8-static``) or
``NAME@VERSION`` (``octseg@1.0.1``)."""


class SegmentConfig(_Section):
    """The segmentation model and the runtime that executes it (``engine.analysis.segment``).

    Where ``runtime`` is not usable on this machine (no TensorRT, no CUDA device), starting the
    engine fails with one line giving the backend registry's reason, unless ``fallback`` names a
    runtime; a fallback is logged and shown on the status channel (``stage.segment``).
    """

    section: ClassVar[str] = "segment"
    hashed_when_set: ClassVar[tuple[str, ...]] = ("model_version",)

    model: str = _text(
        "", doc="Path of the .onnx model (or its .manifest.json); empty: the shipped model "
        "(models/weights/octseg.onnx, or its int8 variant for precision = 'int8').")  # fmt: skip
    runtime: _Runtime = _text(
        "onnxruntime", doc="Inference runtime: 'onnxruntime' (CPU), 'tensorrt' (GPU, needs an "
        "engine from `octguide build-engine`) or 'torch-cuda' (GPU, PyTorch).")  # fmt: skip
    precision: Literal["auto", "fp32", "fp16", "int8"] = _text(
        "auto", doc="Numeric precision: 'auto' is the runtime's own (fp32 for ONNX Runtime, fp16 "
        "for TensorRT and torch-cuda); 'int8' runs the statically quantised model.")  # fmt: skip
    fallback: Literal["", "onnxruntime", "tensorrt", "torch-cuda"] = _text(
        "", doc="Runtime used when 'runtime' is not usable here; empty: none (an error).")
    threads: int = _integer(
        2, unit="threads", low=1, high=64, doc="ONNX Runtime intra-op threads.")
    engine_cache: str = _text(
        "", doc="TensorRT engine cache folder; empty: ~/.cache/octguide/engines.")
    preprocess_backend: Literal["auto", "numba", "cupy", "numpy"] = _text(
        "auto", doc="Preprocessing backend; 'auto': the first usable (GPU first).")
    warmup_frames: int = _integer(
        3, unit="frames", low=0, high=100, doc="Inference runs in start(), before the first frame.")
    model_version: str = _text(
        "", doc="The active installed model (`octguide model list`): its key, e.g. 'octseg' or "
        "'octseg.int8-static', or NAME@VERSION, e.g. 'octseg@1.0.1'; `octguide model activate "
        "VERSION --config FILE` writes it. Empty: the installed default weights "
        "(models/weights/octseg.onnx). Precedence: a command's --model, then this, then 'model' "
        "(a path; naming both is an error), then the version `octguide model activate` recorded "
        "without --config, then the default.")  # fmt: skip

    @field_validator("model_version")
    @classmethod
    def _model_key(cls, value: str) -> str:
        if value and not MODEL_VERSION_PATTERN.fullmatch(value):
            raise ValueError(f"segment.model_version={value!r} is not an installed model's key or "
                             "NAME@VERSION (letters, digits, '.', '_', '+', '-')")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SegmentConfig:
        if self.fallback == self.runtime:
            raise ValueError(f"segment.fallback={self.fallback!r} must differ from segment.runtime")
        if self.model and self.model_version:
            raise ValueError(f"segment.model={self.model!r} and segment.model_version="
                             f"{self.model_version!r} both name the model; set one")
        return self


_STRUTS = "octguide definition: DOMAIN.md s3 (metal: bright narrow peak, full shadow)"


class MetalConfig(_Section):
    """The classical strut and guidewire detector (``engine.analysis.struts``); intensities are
    normalised to [0, 1], distances in mm."""

    section: ClassVar[str] = "metal"

    min_radius_mm: float = _threshold(
        0.40, unit="mm", low=0.0, high=2.0, source=_STRUTS,
        doc="Search from here outward: inside the sheath (~0.39-0.45 mm), so a guidewire lying on "
        "the sheath is still seen.")  # fmt: skip
    peak_margin: float = _threshold(
        0.3, unit="fraction", low=0.0, high=1.0, source=_STRUTS,
        doc="A metal peak exceeds the frame's bright-tissue level (99th percentile) by this "
        "fraction of the way from that level to full scale.")  # fmt: skip
    shadow_start_mm: float = _threshold(
        0.06, unit="mm", low=0.0, high=1.0, source=_STRUTS,
        doc="Everything from this far behind the peak to the end of the A-line must be in shadow.")
    shadow_fraction: float = _threshold(
        0.3, unit="fraction", low=0.0, high=1.0, source=_STRUTS,
        doc="The shadow window stays below noise + this fraction of (tissue - noise).")
    max_strut_width_mm: float = _threshold(
        0.2, unit="mm", low=0.01, high=1.0, source="DOMAIN.md s3: guidewire 0.36 mm, strut ~0.1 mm",
        doc="Wider runs of metal A-lines are the guidewire; narrower ones struts.")
    max_step_mm: float = _threshold(
        0.2, unit="mm", low=0.01, high=2.0, source=_STRUTS,
        doc="Neighbouring metal A-lines whose peaks differ more than this in radius belong to "
        "different objects.")  # fmt: skip
    specular_margin: float = _threshold(
        0.6, unit="fraction", low=0.0, high=1.0, source=_STRUTS,
        doc="Partial-shadow test: a peak (mean over +-12 um) this far from the bright-tissue "
        "level to full scale...")  # fmt: skip
    contrast_arc_mm: float = _threshold(
        0.25, unit="mm", low=0.05, high=2.0, source=_STRUTS,
        doc="...compared with the same radius of the A-lines this far along the arc on both sides...")
    contrast_margin: float = _threshold(
        0.35, unit="fraction", low=0.0, high=1.0, source=_STRUTS,
        doc="...stands out from them by this fraction of (full scale - bright-tissue level)...")
    shadow_drop: float = _threshold(
        0.08, unit="fraction", low=0.0, high=1.0, source=_STRUTS,
        doc="...and darkens the 0.5 mm behind it by this fraction of (tissue - noise) relative to them...")
    lumen_fraction: float = _threshold(
        0.5, unit="fraction", low=0.0, high=1.0, source=_STRUTS,
        doc="...unless it stands in the lumen: they stay below noise + this fraction of "
        "(tissue - noise) at its radius (a malapposed strut).")  # fmt: skip


class AnalysisSettings(_Section):
    """Per-frame analysis (``engine.analysis.analyse``): confidence, stent contour, catheter.

    Named ``AnalysisSettings`` so it does not shadow ``engine.analysis.analyse.AnalysisConfig``,
    the stage's own settings built from it.
    """

    section: ClassVar[str] = "analysis"

    min_confidence: float = _threshold(
        0.5, unit="probability", low=0.0, high=1.0, source="DOMAIN.md s6 (say when unsure)",
        doc="Frames whose model confidence is below this are low_confidence: shown, no numbers.")
    min_stent_struts: int = _integer(
        4, unit="struts", low=1, high=100, source="octguide definition (one stray reflection is "
        "not a stent)", doc="Struts needed in a frame to report a stent contour.")  # fmt: skip
    catheter_outer_diameter_mm: float = _threshold(
        0.9, unit="mm", low=0.3, high=2.0,
        source="DOMAIN.md s8: Dragonfly family about 2.7 F (0.9 mm); Terumo 2.6 F; Gentuity "
        "HF-OCT 1.8 F (0.6 mm) (vendor figures; set it to the catheter in use)",
        doc="Imaging catheter crossing profile: the lumen lies outside it; the sheath guard "
        "compares the detected sheath radius with half of it.")  # fmt: skip


class ScanConfig(_Section):
    """Scan conversion (``engine.compute.scan_convert.ScanConverter``)."""

    section: ClassVar[str] = "scan"
    audited: ClassVar[bool] = False

    backend: Literal["auto", "cupy", "numba_cuda", "numba", "numpy"] = _text(
        "auto", doc="Scan-conversion backend; 'auto': the first usable (GPU first).")
    strict: bool = _flag(False, doc="Fail at start instead of falling back from 'backend'.")
    cache_size: int = _integer(
        4, unit="tables", low=1, high=64, doc="Lookup tables kept (one per frame geometry).")


class DisplayConfig(_Section):
    """Where the A-lines go on screen (``engine.compute.scan_convert.DisplayOrientation``).
    Angles are degrees clockwise from 12 o'clock."""

    section: ClassVar[str] = "display"
    audited: ClassVar[bool] = False

    first_aline_deg: float = _setting(
        0.0, unit="deg", low=0.0, high=359.999,
        doc="seam_mode = 'stored': screen angle of stored row 0 (DICOM First A-line Location).")
    seam_mode: Literal["stored", "annex_eee"] = _text(
        "stored", doc="'stored' (row i always at the same angle) or 'annex_eee' (rotate by the "
        "frame's seam).")  # fmt: skip
    seam_line_deg: float = _setting(
        0.0, unit="deg", low=0.0, high=359.999,
        doc="seam_mode = 'annex_eee': screen angle of the seam A-line (DICOM Seam Line Location).")


_AE_DESTINATION = re.compile(r"^[ -~]{1,16}@[A-Za-z0-9.\-:\[\]]+:[0-9]{1,5}$")
_DICOMWEB_DESTINATION = re.compile(r"^https?://[^\s?#]+$")  # STOW-RS base URL (engine.hospital.stow)


class DicomConfig(_Section):
    """DICOM export of the guidance (Structured Report) and where it is sent."""

    section: ClassVar[str] = "dicom"
    audited: ClassVar[bool] = False

    write_sr: bool = _flag(False, doc="Write a DICOM SR of the guidance beside pullback.json.")
    destinations: tuple[str, ...] = Field(
        (), max_length=16, description="Where the SR is sent: Storage SCPs 'AE_TITLE@HOST:PORT' (C-STORE) or DICOMweb base URLs "
        "'http(s)://HOST:PORT/dicom-web' (STOW-RS).",
        json_schema_extra=_meta("", None, None, _ENGINEERING, items="strings"))

    @field_validator("destinations")
    @classmethod
    def _destinations(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for i, value in enumerate(values):
            if isinstance(value, str) and _DICOMWEB_DESTINATION.match(value.strip()):
                continue
            if not isinstance(value, str) or not _AE_DESTINATION.match(value.strip()) or \
                    not 1 <= int(value.rsplit(":", 1)[1]) <= 65535:
                raise ValueError(f"dicom.destinations[{i}]={value!r} is neither AE_TITLE@HOST:PORT "
                                 "(AE title 1-16 characters, port 1..65535) nor an http(s):// DICOMweb URL")
        return values


_SECTIONS: dict[str, type[_Section]] = {
    section.section: section
    for section in (GuidanceConfig, ServerConfig, SegmentConfig, MetalConfig, AnalysisSettings,
                    ScanConfig, DisplayConfig, DicomConfig)
}


class Config(BaseModel):
    """The whole engine configuration: one validated section per concern (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    guidance: GuidanceConfig = Field(default_factory=GuidanceConfig, strict=True)
    server: ServerConfig = Field(default_factory=ServerConfig, strict=True)
    segment: SegmentConfig = Field(default_factory=SegmentConfig, strict=True)
    metal: MetalConfig = Field(default_factory=MetalConfig, strict=True)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings, strict=True)
    scan: ScanConfig = Field(default_factory=ScanConfig, strict=True)
    display: DisplayConfig = Field(default_factory=DisplayConfig, strict=True)
    dicom: DicomConfig = Field(default_factory=DicomConfig, strict=True)

    def __init__(self, **sections: Any) -> None:
        for name, value in sections.items():
            if name in _SECTIONS and not isinstance(value, _SECTIONS[name]):
                raise ConfigError(f"Config.{name} must be a {_SECTIONS[name].__name__}, "
                                  f"got {type(value).__name__}")
        try:
            super().__init__(**sections)
        except ValidationError as exc:
            raise ConfigError(f"Config: {exc.errors(include_url=False)[0]['msg']}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build from ``{section: {key: value}}``; absent sections and keys keep their defaults.

        Raises
        ------
        ConfigError
            On an unknown section or key (naming it and listing the valid ones) or a bad value.

        Examples
        --------
        >>> cfg = Config.from_dict({"guidance": {"malapposition_threshold_um": 160}})
        >>> cfg.guidance.malapposition_threshold_um
        160.0
        >>> try:
        ...     Config.from_dict({"guidance": {"calcium_arc": 180}})
        ... except ConfigError as exc:
        ...     print(str(exc)[:70])
        unknown key 'calcium_arc' in [guidance]; valid keys: reference_window_
        >>> Config.from_dict({"segment": {"runtime": "tensorrt"}}).segment.runtime
        'tensorrt'
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"configuration must be a table of sections, got {type(data).__name__}"
            )
        unknown = sorted(str(name) for name in set(data) - set(_SECTIONS))
        if unknown:
            raise ConfigError(
                f"unknown section [{unknown[0]}]; valid sections: {', '.join(_SECTIONS)}"
            )
        return cls(**{name: _SECTIONS[name].from_dict(data[name]) for name in data})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {key: value}}`` with plain JSON/TOML-ready values."""
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    def config_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the audited sections' :meth:`to_dict`, for
        audit records (sections with ``audited = False``, such as ``server``, are left out).

        Canonical: sorted keys, no whitespace, every float a float, so equal configurations hash
        equally however they were written (``10`` and ``10.0`` in TOML give the same hash).
        """
        audited = {name: getattr(self, name).audited_dict() for name, section in _SECTIONS.items()
                   if section.audited}
        text = json.dumps(audited, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_config(path: str | Path) -> Config:
    """Load and validate a TOML configuration file.

    Parameters
    ----------
    path : str or Path
        TOML file with one table per section, e.g. ``[guidance]``.

    Raises
    ------
    ConfigError
        If the file cannot be read, is not UTF-8 TOML, or holds an invalid value; the one-line
        message starts with the path.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a TOML text file (byte {exc.start} is not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {str(exc).splitlines()[0]}") from None
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def describe(section: type[_Section] | _Section) -> list[dict[str, Any]]:
    """One row per field of a config section: name, value (or default), unit, range, source, doc.

    For showing settings to users and for documentation; see ``docs/guidance_rules.md``.

    Examples
    --------
    >>> row = describe(GuidanceConfig)[0]
    >>> row["name"], row["value"], row["unit"]
    ('reference_window_pre_mm', 10.0, 'mm')
    >>> [r["name"] for r in describe(SegmentConfig)][:3]
    ['model', 'runtime', 'precision']
    """
    model = section if isinstance(section, type) else type(section)
    rows = []
    for name, info in model.model_fields.items():
        value = info.default if isinstance(section, type) else getattr(section, name)
        meta = info.json_schema_extra or {}
        rows.append({
            "name": name,
            "value": list(value) if isinstance(value, tuple) else value,
            "unit": meta.get("unit", ""),
            "low": meta.get("low"),
            "high": meta.get("high"),
            "source": meta.get("source", ""),
            "doc": info.description or "",
        })
    return rows
