"""What the engine publishes (I/O thread only): display messages on the overlay XPUB socket and
events and heartbeats on the status PUB socket (docs/protocol.md).

Sequence numbers count what a subscriber can see: a display topic's ``seq`` rises by one per
message *published on that topic* (taken only when the message goes out, so a display
subscribed to any set of topics sees consecutive numbers per topic unless it lost one); the
status channel's ``seq`` rises by one per event or heartbeat sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import zmq

from engine.realtime.encoding import encode
from streams.wire.protocol import (
    PROTOCOL_VERSION,
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_EVENT,
    TOPIC_HEARTBEAT,
    TOPIC_IMAGE,
    TOPIC_OVERLAY,
    dumps,
)


class Publisher:
    """The overlay and status sockets' sending side, the displays' subscriptions and the
    per-topic sequence numbers.

    Parameters
    ----------
    counters : dict
        The engine's counters; ``overlays_published`` and ``overlays_without_display`` are
        counted here.
    audit : callable
        ``audit() -> dict``: the model, engine version and config hash every envelope carries.
    """

    def __init__(self, counters: dict[str, Any], audit: Callable[[], dict]):
        self.counters = counters
        self._audit = audit
        self.overlay: zmq.Socket | None = None
        self.status: zmq.Socket | None = None
        self.subscriptions: set[bytes] = set()
        self.image_wanted = False  #: a display subscribes to burned-in images (read by workers)
        self.display_wanted = False  #: a display subscribes to grey images and L-mode cuts
        self._topic_seq: dict[bytes, int] = {}
        self._status_seq = 0

    def attach(self, overlay: zmq.Socket, status: zmq.Socket) -> None:
        """Use these bound sockets (owned and closed by the I/O thread)."""
        self.overlay, self.status = overlay, status

    # -- display messages ------------------------------------------------------------------------
    def envelope(self, pullback_id: str, frame: int | None, lane: str | None, status: str | None) -> dict:
        """The envelope of a display message; ``seq`` is set by :meth:`send` per topic."""
        return {"v": PROTOCOL_VERSION, "seq": None, "pullback_id": pullback_id, "frame": frame,
                "lane": lane, "status": status, "sent_unix_ns": time.time_ns(), **self._audit()}

    def send(self, topic: bytes, envelope: dict, parts: list) -> bool:
        """Publish on the overlay socket without ever blocking; counts messages that no display
        subscribes to. Returns whether the message went out (then it took the topic's next
        ``seq``)."""
        return self.send_tracked(topic, envelope, parts, track=False)[0]

    def send_tracked(self, topic: bytes, envelope: dict, parts: list, track: bool = True
                     ) -> tuple[bool, zmq.MessageTracker | None]:
        """:meth:`send`, also returning the ``MessageTracker`` of the zero-copy send (None when
        nothing was sent): ``tracker.done`` once ZeroMQ no longer reads ``parts``' buffers."""
        subscribed = any(topic.startswith(s) for s in self.subscriptions)
        overlay = topic in (TOPIC_OVERLAY, TOPIC_BACKFILL)
        if not subscribed:
            if overlay:
                self.counters["overlays_without_display"] += 1
            return False, None
        seq = self._topic_seq.get(topic, 0) + 1
        envelope["seq"] = seq
        try:
            tracker = self.overlay.send_multipart([topic, encode(envelope), *parts], zmq.NOBLOCK,
                                                  copy=False, track=track)
        except zmq.Again:  # XPUB drops per subscriber at its HWM; this is the whole socket refusing
            return False, None
        self._topic_seq[topic] = seq
        if overlay:
            self.counters["overlays_published"] += 1
        return True, tracker if track else None

    def handle_subscriptions(self) -> None:
        """Read the displays' (un)subscriptions off the XPUB socket; the workers render images
        only while a display wants them."""
        while True:
            try:
                message = self.overlay.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if message[:1] == b"\x01":
                self.subscriptions.add(message[1:])
            elif message[:1] == b"\x00":
                self.subscriptions.discard(message[1:])
        self.image_wanted = any(TOPIC_IMAGE.startswith(s) for s in self.subscriptions)
        self.display_wanted = any(TOPIC_DISPLAY.startswith(s) for s in self.subscriptions)

    def displays(self) -> list[str]:
        """The topics displays subscribe to (status)."""
        return sorted(s.decode("ascii", "replace") for s in self.subscriptions)

    # -- status channel --------------------------------------------------------------------------
    def event(self, event: str, **fields: Any) -> None:
        """Publish an event (dropped silently before the sockets exist: nobody can hear it)."""
        if self.status is None:
            return
        self._status_seq += 1
        message = {"v": PROTOCOL_VERSION, "seq": self._status_seq, "event": event,
                   "unix_ns": time.time_ns(), **fields}
        try:
            self.status.send_multipart([TOPIC_EVENT, dumps(message)], zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB never blocks; a full pipe drops for that subscriber only

    def heartbeat(self, status: dict) -> None:
        """Publish the status document as a heartbeat."""
        self._status_seq += 1
        message = {"v": PROTOCOL_VERSION, "seq": self._status_seq, "unix_ns": time.time_ns(), **status}
        try:
            self.status.send_multipart([TOPIC_HEARTBEAT, dumps(message)], zmq.NOBLOCK)
        except zmq.Again:
            pass


__all__ = ["Publisher"]
