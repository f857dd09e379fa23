"""Control requests are validated before the engine acts on one (engine/realtime/control.py)."""

from __future__ import annotations

import contextlib
import json

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.realtime.control import ControlRequestError, parse_request, results_folder

MAX = 1000


def parse(obj: object):
    return parse_request(obj if isinstance(obj, bytes) else json.dumps(obj).encode(), MAX)[0]


def test_a_valid_start_is_typed():
    r = parse({"cmd": "start_pullback", "id": 3, "pullback_id": "case-1", "n_frames": 10})
    assert (r.cmd, r.id, r.pullback_id, r.n_frames) == ("start_pullback", 3, "case-1", 10)


@pytest.mark.parametrize("body, reason", [
    (b'{"cmd": "start_pullback", "pullback_id": "a", "n_frames": 1e999}', "finite integer"),
    (b'{"cmd": "start_pullback", "pullback_id": "a", "n_frames": -5}', "in 1..1000"),
    (b'{"cmd": "start_pullback", "pullback_id": "a", "n_frames": 1001}', "in 1..1000"),
    (b'{"cmd": "start_pullback", "pullback_id": "a", "n_frames": 2.5}', "integer, not float"),
    (b'{"cmd": "start_pullback", "pullback_id": "a", "n_frames": true}', "integer, not bool"),
    (b'{"cmd": "start_pullback", "pullback_id": "a", "n_frames": NaN}', "not a JSON number"),
    (b'{"cmd": "ping", "id": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested"),
    (b'{"cmd": "ping", "id": ' + b"[" * 100000 + b"]" * 100000 + b"}", "exceeds"),
    (b'{"cmd": "ping", "id": [1]}', "'id' must be"),
    (b'{"cmd": "ping", "id": 1e3}', "'id' must be"),
    (b'{"cmd": "results", "pullback_id": "../etc"}', "must match"),
    (b'{"cmd": "results", "pullback_id": "' + b"a" * 65 + b'"}', "must match"),
    (b'{"cmd": "results", "pullback_id": 5}', "non-empty string"),
    (b'{"cmd": "ping", "extra": 1}', "takes no field"),
    (b'[1, 2]', "one JSON object"),
    (b'\xff\xfe', "not JSON"),
])
def test_hostile_requests_are_rejected_with_a_reason(body, reason):
    with pytest.raises(ControlRequestError, match=reason):
        parse(body)


def test_results_resolve_under_the_root_only(tmp_path):
    assert results_folder(tmp_path, "case.1") == (tmp_path / "pullbacks" / "case.1").resolve()
    with pytest.raises(ControlRequestError):
        results_folder(tmp_path, "..")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)
requests = st.fixed_dictionaries(
    {"cmd": st.sampled_from(["ping", "status", "start_pullback", "results", "pullback", "x"]) | st.text(max_size=5)},
    optional={"id": json_values, "pullback_id": json_values, "n_frames": json_values, "other": json_values})


@settings(max_examples=300, deadline=None)
@given(requests)
def test_control_fuzz_parses_or_rejects_never_raises_anything_else(raw):
    try:
        r = parse(raw)
    except ControlRequestError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert r.n_frames is None or (type(r.n_frames) is int and 1 <= r.n_frames <= MAX)


@contextlib.contextmanager
def raw_dealer(h, timeout_ms: int):
    """A bare DEALER on the running engine's control endpoint (no client library in the way)."""
    sock = h.engine.context.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = timeout_ms
    sock.connect(h.endpoints["control"])
    try:
        yield sock
    finally:
        sock.close()


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200) | requests.map(lambda r: json.dumps(r).encode()))
def test_control_fuzz_against_a_live_engine(start_engine_once, body):
    h = start_engine_once
    with raw_dealer(h, timeout_ms=5000) as sock:
        sock.send_multipart([b"", body])
        reply = json.loads(sock.recv_multipart()[-1])
    assert isinstance(reply["ok"], bool) and (reply["ok"] or reply["error"])
    assert h.status_()["phase"] == "running"


@pytest.mark.parametrize("size_mib", [2, 8])
def test_a_large_control_blob_gets_a_one_line_reply_and_the_engine_lives(start_engine_once, size_mib):
    """Up to the control socket's 16 MiB part limit a blob is read and answered (a larger part
    makes libzmq drop the sender's connection, which is counted); extra parts are refused too."""
    h = start_engine_once
    with raw_dealer(h, timeout_ms=10000) as sock:
        sock.send_multipart([b"", b"{" + b" " * (size_mib << 20) + b"}"])
        reply = json.loads(sock.recv_multipart()[-1])
        assert reply["ok"] is False and "exceeds 65536" in reply["error"] and "\n" not in reply["error"]
        sock.send_multipart([b"", b'{"cmd": "ping"}', *([b"x" * 1000] * 50)])
        reply = json.loads(sock.recv_multipart()[-1])
        assert reply["ok"] is False and "one message part of JSON (51 sent)" in reply["error"]
        sock.send_multipart([b"", b'{"cmd": "ping", "id": 7}'])
        reply = json.loads(sock.recv_multipart()[-1])
        assert reply["ok"] is True and reply["id"] == 7
    assert h.status_()["phase"] == "running"


def test_a_part_above_the_wire_limit_drops_only_that_connection_and_is_counted(start_engine_once):
    from engine.realtime.sockets import MAX_CONTROL_BYTES

    h = start_engine_once
    closed = h.status_()["counters"]["connections_closed"]
    with raw_dealer(h, timeout_ms=1500) as sock:
        sock.send_multipart([b"", b" " * (MAX_CONTROL_BYTES + 1)])
        with pytest.raises(zmq.Again):
            sock.recv_multipart()
    assert h.status_()["phase"] == "running"
    assert h.status_()["counters"]["connections_closed"] > closed


@pytest.fixture(scope="module")
def start_engine_once(tmp_path_factory):
    from engine.realtime.server import Engine
    from tests.engine.realtime.test_server import Harness, SlowMetal, engine_config

    h = Harness(Engine(engine_config(tmp_path_factory.mktemp("results")), lambda: SlowMetal()), ())
    yield h
    h.close()
