"""Validated engine configuration: every clinical threshold, with its unit and source.

One :class:`Config` is loaded once (:func:`load_config` from TOML, or :meth:`Config.from_dict`)
and passed to the stages that need it. Each section is a frozen dataclass whose fields carry
their unit, allowed range, source and meaning in ``dataclasses.field`` metadata, so the values
can be checked, shown to the user and cited (:func:`describe`). Unknown keys are rejected with the
list of valid ones; out-of-range values name the field. :meth:`Config.config_hash` identifies a
configuration in audit records.

Sources are those of DOMAIN.md (sections 4-5): ILUMIEN III (Lancet 2016;388:2618), the
EHJ 2017;38:3139 consensus, Fujino et al. (EuroIntervention 2018) and CLI-OPCI; the full list,
and the definitions chosen where they are silent, is in ``docs/guidance_rules.md``.

This module imports nothing from ``streams`` or other ``engine`` modules.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["Config", "ConfigError", "GuidanceConfig", "ServerConfig", "describe", "load_config"]


class ConfigError(ValueError):
    """A configuration value, key or file is invalid; the message names which and why."""


def _threshold(
    default: float,
    *,
    unit: str,
    low: float,
    high: float,
    source: str,
    doc: str,
) -> Any:
    """A float field with its unit, inclusive range ``[low, high]``, source and meaning."""
    return field(
        default=float(default),
        metadata={
            "kind": "float",
            "unit": unit,
            "low": low,
            "high": high,
            "source": source,
            "doc": doc,
        },
    )


def _list_of_lengths(
    default: tuple[float, ...],
    *,
    unit: str,
    low: float,
    high: float,
    source: str,
    doc: str,
) -> Any:
    """A field holding a strictly increasing tuple of floats, each in ``[low, high]``."""
    return field(
        default=tuple(float(v) for v in default),
        metadata={
            "kind": "floats",
            "unit": unit,
            "low": low,
            "high": high,
            "source": source,
            "doc": doc,
        },
    )


class _Section:
    """Validation, ``from_dict`` and ``to_dict`` shared by every config section."""

    section: ClassVar[str]
    #: Whether the section takes part in :meth:`Config.config_hash` (what shaped the results).
    audited: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            meta = f.metadata
            where = f"{self.section}.{f.name}"
            if meta["kind"] == "float":
                number = _as_number(where, value)
                _check_range(where, number, meta)
                object.__setattr__(self, f.name, number)
            elif meta["kind"] == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{where} must be an integer, got {value!r}")
                _check_range(where, value, meta)
            elif meta["kind"] == "bool":
                if not isinstance(value, bool):
                    raise ConfigError(f"{where} must be true or false, got {value!r}")
            elif meta["kind"] == "str":
                if not isinstance(value, str):
                    raise ConfigError(f"{where} must be a string, got {value!r}")
                if meta["choices"] and value not in meta["choices"]:
                    raise ConfigError(f"{where}={value!r} is not one of {list(meta['choices'])}")
            else:
                if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
                    raise ConfigError(f"{where} must be a list of numbers, got {value!r}")
                numbers = tuple(_as_number(f"{where}[{i}]", v) for i, v in enumerate(value))
                if not numbers:
                    raise ConfigError(f"{where} must not be empty")
                for i, number in enumerate(numbers):
                    _check_range(f"{where}[{i}]", number, meta)
                if any(b <= a for a, b in itertools.pairwise(numbers)):
                    raise ConfigError(
                        f"{where} must be sorted in strictly increasing order, got {list(numbers)}"
                    )
                object.__setattr__(self, f.name, numbers)
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Cross-field checks; sections override."""

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
        valid = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r} in [{cls.section}]; valid keys: {', '.join(valid)}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready values (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _as_number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    return number


def _check_range(where: str, number: float, meta: Mapping[str, Any]) -> None:
    if not meta["low"] <= number <= meta["high"]:
        raise ConfigError(
            f"{where}={number:g} is outside {meta['low']:g}..{meta['high']:g} {meta['unit']}"
        )


_ILUMIEN = "ILUMIEN III (Lancet 2016;388:2618); EHJ 2017;38:3139; DOMAIN.md s4"
_FUJINO = "Fujino et al., EuroIntervention 2018 (OCT calcium score); DOMAIN.md s4"


@dataclass(frozen=True)
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
    stent_lengths_mm: tuple[float, ...] = _list_of_lengths(
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

    def _check_consistency(self) -> None:
        if self.expansion_acceptable_pct > self.expansion_optimal_pct:
            raise ConfigError(
                f"guidance.expansion_acceptable_pct={self.expansion_acceptable_pct:g} must not "
                f"exceed guidance.expansion_optimal_pct={self.expansion_optimal_pct:g}"
            )


def _integer(default: int, *, unit: str, low: int, high: int, doc: str) -> Any:
    """An int field with its unit and inclusive range."""
    return field(default=int(default), metadata={
        "kind": "int", "unit": unit, "low": low, "high": high, "source": _ENGINEERING, "doc": doc})


def _flag(default: bool, *, doc: str) -> Any:
    """A bool field."""
    return field(default=bool(default), metadata={
        "kind": "bool", "unit": "", "low": None, "high": None, "source": _ENGINEERING, "doc": doc})


def _text(default: str, *, doc: str, choices: tuple[str, ...] = ()) -> Any:
    """A str field, optionally one of ``choices``."""
    return field(default=default, metadata={
        "kind": "str", "unit": "", "low": None, "high": None, "choices": choices,
        "source": _ENGINEERING, "doc": doc})


def _setting(default: float, *, unit: str, low: float, high: float, doc: str) -> Any:
    """An engineering (non-clinical) float setting."""
    return _threshold(default, unit=unit, low=low, high=high, source=_ENGINEERING, doc=doc)


_ENGINEERING = "engineering setting; docs/protocol.md and docs/architecture.md"


@dataclass(frozen=True)
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
    analysis: str = _text(
        "full", choices=("full", "metal"),
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
    overload_policy: str = _text(
        "skip", choices=("skip", "block"),
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


_SECTIONS: dict[str, type[_Section]] = {"guidance": GuidanceConfig, "server": ServerConfig}


@dataclass(frozen=True)
class Config:
    """The whole engine configuration: one validated section per concern.

    Later sections (endpoints, backends, limits) are added as sibling fields here and in
    ``_SECTIONS``; nothing else changes.
    """

    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    def __post_init__(self) -> None:
        for name, section_type in _SECTIONS.items():
            if not isinstance(getattr(self, name), section_type):
                raise ConfigError(f"Config.{name} must be a {section_type.__name__}")

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
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"configuration must be a table of sections, got {type(data).__name__}"
            )
        unknown = sorted(set(data) - set(_SECTIONS))
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

        Canonical: sorted keys, no whitespace, every number a float, so equal configurations hash
        equally however they were written (``10`` and ``10.0`` in TOML give the same hash).
        """
        audited = {name: getattr(self, name).to_dict() for name, section in _SECTIONS.items()
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
        If the file cannot be read or parsed, or holds an invalid value; the message starts with
        the path.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return Config.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def describe(section: type[_Section] | _Section) -> list[dict[str, Any]]:
    """One row per field of a config section: name, value (or default), unit, range, source, doc.

    For showing thresholds to users and for documentation; see ``docs/guidance_rules.md``.

    Examples
    --------
    >>> row = describe(GuidanceConfig)[0]
    >>> row["name"], row["value"], row["unit"]
    ('reference_window_pre_mm', 10.0, 'mm')
    """
    rows = []
    for f in fields(section):  # type: ignore[arg-type]
        if isinstance(section, type):
            value = f.default if f.default is not MISSING else None
        else:
            value = getattr(section, f.name)
        meta = f.metadata
        rows.append(
            {
                "name": f.name,
                "value": list(value) if isinstance(value, tuple) else value,
                "unit": meta["unit"],
                "low": meta["low"],
                "high": meta["high"],
                "source": meta["source"],
                "doc": meta["doc"],
            }
        )
    return rows
