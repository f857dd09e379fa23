"""The viewer's sockets to one engine: control requests over a DEALER, and SUB sockets on the
engine's overlay and status publishers (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import zmq
import zmq.asyncio

from streams.wire.protocol import (
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_EVENT,
    TOPIC_GUIDANCE,
    TOPIC_HEARTBEAT,
    TOPIC_OVERLAY,
    dumps,
)
from streams.wire.zmq_io import CurveClientKeys

CONTROL_TIMEOUT_S = 1.0
#: messages the overlay SUB socket holds: libzmq's I/O thread moves them off the engine's small
#: per-display queue into this one without waiting for Python, so only a bridge this far behind
#: loses any.
OVERLAY_RCVHWM = 2000


class EngineLink:
    """One engine's control endpoint and, once :meth:`subscribe` is given its endpoints, its
    publishers. Lifecycle: :meth:`start` (sockets open), :meth:`stop` (all closed).

    Parameters
    ----------
    control : str
        The engine's control endpoint (``octguide view --engine``).
    curve : CurveClientKeys or None
        Client keys when the engine requires CurveZMQ.
    """

    def __init__(self, control: str, curve: CurveClientKeys | None = None):
        self.control = control
        self.curve = curve
        self.endpoints: dict | None = None  #: the publishers subscribed to, from the engine's status
        self.subs: list[zmq.asyncio.Socket] = []  #: overlay SUB, status SUB
        self._ctx: zmq.asyncio.Context | None = None
        self._dealer: zmq.asyncio.Socket | None = None
        self._request_ids = 0
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._ctx = zmq.asyncio.Context()
        self._dealer = self._socket(zmq.DEALER)
        self._dealer.connect(self.control)

    def stop(self) -> None:
        for sock in [*self.subs, self._dealer]:
            if sock is not None:
                sock.close(0)
        self.subs.clear()
        self._dealer = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def request(self, cmd: str, timeout_s: float = CONTROL_TIMEOUT_S, **args: Any) -> dict | None:
        """One control request, one at a time (its extra parts as ``_parts``); None when the
        engine does not answer in time or answers not ok."""
        async with self._lock:
            return await self._request_unlocked(cmd, timeout_s, **args)

    async def _request_unlocked(self, cmd: str, timeout_s: float, **args: Any) -> dict | None:
        self._request_ids += 1
        request_id = self._request_ids
        await self._dealer.send_multipart([b"", dumps({"cmd": cmd, "id": request_id, **args})])
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not await self._dealer.poll(int(remaining * 1000) + 1):
                break
            parts = await self._dealer.recv_multipart()
            if len(parts) >= 2 and parts[0] == b"":
                reply = json.loads(parts[1])
                if reply.get("id") == request_id:
                    return {**reply, "_parts": parts[2:]} if reply.get("ok") else None
        # No answer: a fresh socket, so requests queued for a dead engine are not replayed to it.
        self._dealer.close(0)
        self._dealer = self._socket(zmq.DEALER)
        self._dealer.connect(self.control)
        return None

    def subscribe(self, endpoints: dict) -> None:
        """Subscribe to the publishers ``endpoints`` names (the engine's status reply), unless
        these are the ones already subscribed to."""
        if endpoints == self.endpoints:
            return
        for sock in self.subs:
            sock.close(0)
        overlay = self._socket(zmq.SUB)
        overlay.rcvhwm = OVERLAY_RCVHWM
        for topic in (TOPIC_OVERLAY, TOPIC_BACKFILL, TOPIC_DISPLAY, TOPIC_GUIDANCE):
            overlay.subscribe(topic)
        overlay.connect(endpoints["overlay"])
        status = self._socket(zmq.SUB)
        for topic in (TOPIC_HEARTBEAT, TOPIC_EVENT):
            status.subscribe(topic)
        status.connect(endpoints["status"])
        self.subs = [overlay, status]
        self.endpoints = endpoints

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(kind)
        sock.linger = 0
        if self.curve is not None:
            self.curve.apply(sock)
        return sock


__all__ = ["CONTROL_TIMEOUT_S", "EngineLink"]
