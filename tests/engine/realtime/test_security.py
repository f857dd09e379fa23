"""Loopback by default, CurveZMQ with an allow-list otherwise, --insecure explicit and logged;
unauthenticated and unknown clients are refused. Only loopback addresses are ever bound."""

from __future__ import annotations

import logging
import stat
import time

import numpy as np
import pytest
import zmq

from engine.commands.cli import main
from engine.config import Config
from engine.realtime.security import SecurityError, decide, generate_keys, is_local_endpoint
from engine.realtime.server import Engine
from streams.wire.zmq_io import ControlClient, CurveClientKeys, FrameSender, TransportError
from tests.engine.realtime.test_server import (
    SlowMetal,
    engine_config,
    small_pullback,
    wait_for_pullback,
)

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")]


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:*", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/octguide.sock", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://eth0:5555", False),
    ("tcp://192.168.1.20:5555", False), ("tcp://[::]:5555", False), ("udp://127.0.0.1:1", False),
    ("no-transport", False),
])
def test_which_endpoints_are_local(endpoint, local):
    assert is_local_endpoint(endpoint) is local


def test_non_loopback_needs_curve_or_an_explicit_insecure_flag_which_is_logged(caplog):
    assert decide(["tcp://127.0.0.1:1", "ipc:///tmp/x"], curve=False, insecure=False).mode == "loopback"
    assert decide(["tcp://0.0.0.0:1"], curve=True, insecure=False).mode == "curve"
    with pytest.raises(SecurityError, match="needs CurveZMQ"):
        decide(["tcp://127.0.0.1:1", "tcp://*:1"], curve=False, insecure=False)
    with caplog.at_level(logging.WARNING, logger="engine.realtime.security"):
        policy = decide(["tcp://*:1"], curve=False, insecure=True)
    assert policy.mode == "insecure" and policy.public_endpoints == ("tcp://*:1",)
    assert "INSECURE" in caplog.text


def test_the_engine_refuses_to_bind_a_public_address_without_curve(tmp_path, capsys):
    config = Config.from_dict({"server": {"frames_endpoint": "tcp://0.0.0.0:*", "results_dir": str(tmp_path)}})
    engine = Engine(config, lambda: SlowMetal())
    with pytest.raises(SecurityError):
        engine.start()  # decided before any socket or thread exists
    assert engine.context is None
    assert main(["serve", "--set", "server.frames_endpoint=tcp://0.0.0.0:*",
                 "--set", f"server.results_dir={tmp_path}"]) == 1
    assert "needs CurveZMQ" in capsys.readouterr().err


def test_keys_are_created_private_and_never_overwritten(tmp_path, capsys):
    public, secret = generate_keys(tmp_path, "engine")
    assert public.read_text().count("public-key") == 1 and "secret-key" in secret.read_text()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(SecurityError, match="exists"):
        generate_keys(tmp_path, "engine")
    assert main(["keys", "--out", str(tmp_path), "--name", "console"]) == 0
    assert (tmp_path / "console.key").exists() and "authorized_clients" in capsys.readouterr().out


@pytest.fixture
def curve_engine(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    generate_keys(keys, "engine")
    generate_keys(keys, "console")
    generate_keys(keys, "intruder")
    (allowed / "console.key").write_bytes((keys / "console.key").read_bytes())
    config = engine_config(tmp_path / "results", curve=True, server_secret_key=str(keys / "engine.key_secret"),
                           authorized_clients=str(allowed))
    engine = Engine(config, lambda: SlowMetal())
    endpoints = engine.start()
    yield engine, endpoints, keys
    engine.stop()


def client_keys(keys, name: str) -> CurveClientKeys:
    return CurveClientKeys.load(keys / f"{name}.key_secret", keys / "engine.key")


def test_an_authorised_client_is_served(curve_engine):
    _, endpoints, keys = curve_engine
    console = client_keys(keys, "console")
    p = small_pullback(3)
    with ControlClient(endpoints["control"], curve=console) as control, \
            FrameSender(endpoints["frames"], curve=console, linger_ms=0) as sender:
        assert control.request("status")["security"]["mode"] == "curve"
        sender.send_pullback(p, fps=None)
        wait_for_pullback(control, p.pullback_id, lambda s: s["state"] == "complete")


@pytest.mark.parametrize("who", ["no keys", "keys not on the allow-list"])
def test_an_unauthenticated_client_is_refused(curve_engine, who):
    _, endpoints, keys = curve_engine
    curve = None if who == "no keys" else client_keys(keys, "intruder")
    with ControlClient(endpoints["control"], timeout_s=1.0, curve=curve) as control, \
            pytest.raises(TransportError, match="no reply"):
        control.request("ping")
    with FrameSender(endpoints["frames"], curve=curve, linger_ms=0, send_timeout_s=0.5) as sender:
        sender.send_raw([b"x" * 176, np.zeros(16, np.uint8)])  # queued, never delivered
        time.sleep(0.5)
    with ControlClient(endpoints["control"], curve=client_keys(keys, "console")) as control:
        deadline = time.monotonic() + 10
        while True:
            counters = control.request("status")["counters"]
            failures = counters["auth_failures"] + counters["handshake_failures"]
            if failures >= 2:
                break
            assert time.monotonic() < deadline, counters
            time.sleep(0.05)
        assert counters["received"] == 0
        if who != "no keys":
            assert counters["auth_failures"] >= 2
