"""The I/O thread's sockets: made, configured and bound in one place (docs/protocol.md gives
their roles), and what a socket monitor's event means for the counters."""

from __future__ import annotations

from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from engine.realtime.errors import EngineError
from engine.realtime.security import CurveServer

MONITOR_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                  | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
MAX_CONTROL_BYTES = 16 << 20
"""A control message part, bytes (``ZMQ_MAXMSGSIZE``): anything up to it is read and answered with
a one-line reason (the request itself may be :data:`engine.realtime.control.MAX_REQUEST_BYTES`);
a larger part makes libzmq drop that connection (counted ``connections_closed``, logged)."""
MAX_CONTROL_PARTS = 3  #: [identity, b"", request]: further parts are read and released, not kept


def bind_sockets(context: zmq.Context, cfg, curve: CurveServer | None, wake_endpoint: str,
                 max_payload_bytes: int, made: list) -> tuple[dict[str, zmq.Socket], dict[str, str]]:
    """Create, configure and bind the wake-up PULL and the four public sockets (``frames``
    PULL, ``overlay`` XPUB, ``status`` PUB, ``control`` ROUTER) from ``cfg`` (``config.server``).

    Every socket is appended to ``made`` as soon as it exists, so the caller closes them
    whatever fails. Returns the sockets by name and the bound endpoints (ports resolved).

    Raises
    ------
    EngineError
        An endpoint could not be bound (one line naming it).
    """

    def make(kind: int) -> zmq.Socket:
        sock = context.socket(kind)
        made.append(sock)
        sock.linger = 0
        if curve is not None:
            curve.apply(sock)
        return sock

    wake = make(zmq.PULL)
    wake.bind(wake_endpoint)
    frames = make(zmq.PULL)
    frames.rcvhwm = cfg.frames_hwm
    frames.maxmsgsize = 2 * max_payload_bytes
    overlay = make(zmq.XPUB)
    overlay.sndhwm = cfg.overlay_hwm
    overlay.linger = 500
    status = make(zmq.PUB)
    status.sndhwm = cfg.status_hwm
    status.linger = 500
    control = make(zmq.ROUTER)
    control.maxmsgsize = MAX_CONTROL_BYTES
    control.router_mandatory = False
    endpoints: dict[str, str] = {}
    for sock, endpoint, name in ((frames, cfg.frames_endpoint, "frames"),
                                 (overlay, cfg.overlay_endpoint, "overlay"),
                                 (status, cfg.status_endpoint, "status"),
                                 (control, cfg.control_endpoint, "control")):
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise EngineError(f"cannot bind {name} endpoint {endpoint}: {exc}") from exc
        endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return {"wake": wake, "frames": frames, "overlay": overlay, "status": status, "control": control}, endpoints


def connection_event(event: dict) -> tuple[str, str, str]:
    """A socket monitor's event as ``(counter, detail, endpoint)``."""
    kind = event["event"]
    if kind == zmq.EVENT_ACCEPTED:
        key, what = "connections_accepted", "connected"
    elif kind == zmq.EVENT_DISCONNECTED:
        key, what = "connections_closed", "disconnected"
    elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        key, what = "auth_failures", "authentication failed"
    else:
        key, what = "handshake_failures", "handshake failed"
    endpoint = event["endpoint"]
    return key, what, endpoint.decode() if isinstance(endpoint, bytes) else endpoint


def read_monitor(monitor: zmq.Socket, name: str, counters: dict, event: Callable[..., None]) -> None:
    """Count and announce (``connection`` events) what a socket monitor reports."""
    while True:
        try:
            message = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return
        key, what, endpoint = connection_event(message)
        counters[key] += 1
        event("connection", socket=name, detail=what, endpoint=endpoint)


def recv_control(sock: zmq.Socket) -> tuple[list[bytes], int]:
    """One control message from the ROUTER, read part by part (``zmq.Again`` when none waits):
    the first :data:`MAX_CONTROL_PARTS` parts and the total count. libzmq bounds a part's size,
    not a message's part count, so extra parts are released as they are read."""
    kept: list[bytes] = [sock.recv(zmq.NOBLOCK)]
    count = 1
    while sock.rcvmore:
        part = sock.recv()
        count += 1
        if len(kept) < MAX_CONTROL_PARTS:
            kept.append(part)
    return kept, count


__all__ = ["MAX_CONTROL_BYTES", "MAX_CONTROL_PARTS", "MONITOR_EVENTS", "bind_sockets", "connection_event",
           "read_monitor", "recv_control"]
