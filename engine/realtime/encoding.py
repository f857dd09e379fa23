"""JSON encoding of the per-frame messages and records (issue 12 item 6, issue 17 item 3).

:func:`encode` is :func:`streams.wire.protocol.dumps` made fast with orjson: the same compact
JSON in meaning (every value parses back equal, floats bit for bit: both write the shortest
repr that round-trips; NaN and infinities become ``null``; NumPy scalars and arrays become plain
values; non-string keys become strings), spelled differently only where JSON allows (``0.00001``
for the standard library's ``1e-05``). Anything orjson refuses (an integer beyond 64 bits, a
type neither knows) goes through the standard library's encoder, so the result never depends on
which one ran. ``bench/bench_encoding.py`` measures both per overlay.

The results files (frames.jsonl, pullback.json) stay on the standard library's encoder: written
once per pullback, byte-identical to earlier versions.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.wire.protocol import dumps

#: No OPT_SERIALIZE_NUMPY: orjson writes a float32 as its own shortest repr (0.1), the standard
#: library as the double it is (0.10000000149011612); NumPy values go through ``tolist`` here,
#: as in the protocol's encoder, so both parse to the same double.
_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    """What orjson does not know natively: NumPy scalars (but float64) and arrays."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON of an outgoing message or record (module docstring).

    >>> encode({"a": float("nan"), "b": [1.5, float("inf")], 3: 1e-05})
    b'{"a":null,"b":[1.5,null],"3":0.00001}'
    """
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return dumps(obj)


__all__ = ["encode"]
