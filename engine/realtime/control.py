"""Validation of control-channel requests before the engine acts on one.

A request is one JSON object, at most :data:`MAX_REQUEST_BYTES` bytes, nested at most
:data:`MAX_DEPTH` levels, with a string ``cmd`` from :data:`CONTROL_COMMANDS` and only the
fields that command takes. :func:`parse_request` turns the raw bytes into a
:class:`ControlRequest` or raises :class:`ControlRequestError` with a one-line reason (the
engine replies ``ok: false`` with it and counts it); it never acts on anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from streams.errors import OctguideError
from streams.wire.protocol import PULLBACK_ID_PATTERN

CONTROL_COMMANDS = ("ping", "status", "config", "start_pullback", "stop_pullback", "pullback", "results")
MAX_REQUEST_BYTES = 64 * 1024  #: a control request's JSON body, bytes
MAX_DEPTH = 4  #: nesting of objects/arrays in a request (the request object itself is depth 1)
MAX_ID_CHARS = 128  #: a string request id's length
MAX_ID_INT = 2**53  #: an integer request id's magnitude (exact in every JSON reader)
MAX_PULLBACK_ID_BYTES = 64  #: as the frame header's pullback_id field

_FIELDS = {  # the fields each command takes besides cmd and id
    "ping": (), "status": (), "config": (),
    "start_pullback": ("pullback_id", "n_frames"),
    "stop_pullback": ("pullback_id",), "pullback": ("pullback_id",), "results": ("pullback_id",),
}


class ControlRequestError(OctguideError, ValueError):
    """A control request that is not acted on; ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class ControlRequest:
    """A validated control request: ``cmd`` is known, ``pullback_id`` (when the command takes
    one) matches the frame header's rule, ``n_frames`` is None or an int in 1..max."""

    cmd: str
    id: str | int | None = None
    pullback_id: str | None = None
    n_frames: int | None = None


def _depth(value: object) -> int:
    """Nesting depth of a decoded JSON value, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in item)
    return deepest


def _reject_constant(name: str) -> float:
    raise ControlRequestError(f"{name} is not a JSON number")


def _decode(body: bytes) -> object:
    if len(body) > MAX_REQUEST_BYTES:
        raise ControlRequestError(f"request of {len(body)} bytes exceeds {MAX_REQUEST_BYTES}")
    # a cheap bound before parsing: each nesting level needs one opening bracket
    if body.count(b"[") + body.count(b"{") > 4096:
        raise ControlRequestError("request has too many nested values")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ControlRequestError(f"request nested deeper than {MAX_DEPTH}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlRequestError(f"request is not JSON: {exc}") from None


def validate_pullback_id(pid: object) -> str:
    """The frame header's rule: ASCII, 1..64 bytes, :data:`PULLBACK_ID_PATTERN`."""
    if not isinstance(pid, str) or not pid:
        raise ControlRequestError("needs a 'pullback_id' (a non-empty string)")
    if len(pid.encode("utf-8")) > MAX_PULLBACK_ID_BYTES or not PULLBACK_ID_PATTERN.fullmatch(pid):
        raise ControlRequestError(f"pullback_id {pid[:80]!r} must match {PULLBACK_ID_PATTERN.pattern}")
    return pid


def _request_id(value: object) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ControlRequestError("'id' must be a string, an integer or null")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ControlRequestError(f"'id' longer than {MAX_ID_CHARS} characters")
    if isinstance(value, int) and abs(value) > MAX_ID_INT:
        raise ControlRequestError(f"'id' beyond +-{MAX_ID_INT}")
    return value


def _n_frames(value: object, max_frames: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and not math.isfinite(value):
            raise ControlRequestError("'n_frames' must be a finite integer")
        raise ControlRequestError(f"'n_frames' must be an integer, not {type(value).__name__}")
    if not 1 <= value <= max_frames:
        raise ControlRequestError(f"'n_frames' must be in 1..{max_frames}")
    return value


def safe_id(raw: object) -> str | int | None:
    """The id to echo on a rejected request: the request's id when it is valid, else None."""
    try:
        return _request_id(raw.get("id")) if isinstance(raw, dict) else None
    except ControlRequestError:
        return None


def parse_request(body: bytes, max_frames: int) -> tuple[ControlRequest | None, object]:
    """``(request, decoded)``; raises :class:`ControlRequestError` (``decoded`` is attached as
    ``exc.decoded`` so the reply can echo a valid id)."""
    decoded = _decode(body)
    try:
        return _validate(decoded, max_frames), decoded
    except ControlRequestError as exc:
        exc.decoded = decoded  # type: ignore[attr-defined]
        raise


def _validate(raw: object, max_frames: int) -> ControlRequest:
    if not isinstance(raw, dict):
        raise ControlRequestError("a request is one JSON object with a string 'cmd'")
    if _depth(raw) > MAX_DEPTH:
        raise ControlRequestError(f"request nested deeper than {MAX_DEPTH}")
    cmd = raw.get("cmd")
    if not isinstance(cmd, str):
        raise ControlRequestError("a request is one JSON object with a string 'cmd'")
    if cmd not in CONTROL_COMMANDS:
        raise ControlRequestError(f"unknown command {cmd[:40]!r}; known: {', '.join(CONTROL_COMMANDS)}")
    rid = _request_id(raw.get("id"))
    extra = sorted(set(raw) - {"cmd", "id", *_FIELDS[cmd]})
    if extra:
        raise ControlRequestError(f"{cmd!r} takes no field {', '.join(repr(k[:40]) for k in extra[:5])}")
    pid = validate_pullback_id(raw.get("pullback_id")) if "pullback_id" in _FIELDS[cmd] else None
    n_frames = _n_frames(raw.get("n_frames"), max_frames) if cmd == "start_pullback" else None
    return ControlRequest(cmd, rid, pid, n_frames)


def results_folder(results_dir: Path, pullback_id: str) -> Path:
    """The results folder of a validated id, resolved and checked to lie under the results root."""
    root = (results_dir / "pullbacks").resolve()
    folder = (root / validate_pullback_id(pullback_id)).resolve()
    if folder.parent != root:
        raise ControlRequestError(f"pullback_id {pullback_id!r} resolves outside the results root")
    return folder


__all__ = ["CONTROL_COMMANDS", "ControlRequest", "ControlRequestError", "parse_request",
           "results_folder", "safe_id", "validate_pullback_id"]
