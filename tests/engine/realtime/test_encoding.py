"""engine.realtime.encoding.encode means what streams.wire.protocol.dumps means (orjson for the
per-frame messages; issue 12 item 6)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.realtime.encoding import encode
from streams.wire.protocol import dumps

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_every_json_value_parses_back_the_same_from_both_encoders(value):
    assert json.loads(encode(value)) == json.loads(dumps(value))


def test_floats_are_bit_identical_when_parsed():
    values = [0.1, 1e-05, 123456.789, 5e-324, 1.7976931348623157e308, -0.0, 2 / 3, np.float32(0.1)]
    ours, theirs = json.loads(encode(values)), json.loads(dumps(values))
    assert all(a.hex() == b.hex() for a, b in zip(ours, theirs, strict=True))


def test_non_finite_numpy_and_odd_keys_as_the_protocol_writes_them():
    message = {"nan": float("nan"), "inf": [float("-inf")], "arr": np.array([1.5, np.nan]),
               "i": np.int64(7), "b": np.bool_(True), 3: "int key", "view": np.arange(6).reshape(2, 3)[:, ::2],
               "big": 2**70}
    assert json.loads(encode(message)) == json.loads(dumps(message))
    assert b"NaN" not in encode(message) and b"Infinity" not in encode(message)
