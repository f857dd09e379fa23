"""The live feed: one engine's publishers, as the viewer keeps them.

The feed drains its SUB sockets as fast as they fill (a slow page loses images, never frame
records): every frame's overlay and L-mode cuts go into the current :class:`PullbackView`, the
live frames' images into a byte-bounded cache, and each is broadcast to the pages. A live
overlay waits up to ``PENDING_IMAGE_S`` for its image. When the guidance arrives, overlays lost
in transport are recovered from the engine's results (numbers only). A heartbeat after the
engine was lost, or an engine that no longer lists the pullback, is handled here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from engine.viewer.engine_link import EngineLink
from engine.viewer.feed import Feed, ImageCache, PullbackView, axis_frames, cancel_tasks
from engine.viewer.pages import FrameEntry, Page, PageSessions
from engine.viewer.results import record_overlay
from streams.wire.protocol import (
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_EVENT,
    TOPIC_GUIDANCE,
    TOPIC_HEARTBEAT,
    TOPIC_OVERLAY,
)
from streams.wire.zmq_io import CurveClientKeys, Subscriber

log = logging.getLogger(__name__)

PENDING_IMAGE_S = 0.1  #: how long a live overlay waits for its image before going out without
RESULTS_TIMEOUT_S = 30.0  #: a long pullback's results are a few MB
POLL_S = 0.25  #: the engine loop's poll timeout (it re-checks its sockets this often)
MIN_LOST_AFTER_S = 3.0  #: an engine is lost after 3 heartbeat periods without one, at least this


class EngineFeed(Feed):
    """One engine's overlays and status, kept for the pages and broadcast to them.

    Parameters
    ----------
    engine : str
        The engine's control endpoint.
    curve : CurveClientKeys or None
        Client keys when the engine requires CurveZMQ.
    sessions : PageSessions
        The pages to broadcast to.
    stats : dict
        The viewer's counters; this adds to ``frames``, ``images``, ``guidance``, ``recovered``.
    image_cache_mib : float
        Live frames' images kept for scrubbing, at most.
    state, changed, hello : callables
        The viewer's current state (``"engine_lost"`` makes the feed ask the engine again),
        the call that re-evaluates it after a change, and its ``hello`` message (sent again
        after a new handshake).
    """

    mode = "live"

    def __init__(self, engine: str, curve: CurveClientKeys | None, sessions: PageSessions,
                 stats: dict[str, int], image_cache_mib: float, *, state: Callable[[], str],
                 changed: Callable[[], None], hello: Callable[[], dict]):
        super().__init__()
        self.engine = engine
        self.link = EngineLink(engine, curve)
        self.sessions = sessions
        self.stats = stats
        self.images = ImageCache(int(image_cache_mib * 2**20))
        self._state = state
        self._changed = changed
        self._hello = hello
        self._pending: tuple[FrameEntry, float] | None = None
        self._newest_live: FrameEntry | None = None
        self._rehandshake = False
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.link.start()
        self._tasks.append(asyncio.create_task(self._engine_loop()))

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        self.link.stop()

    def tick(self, now: float) -> None:
        self._flush_pending(now)

    def put_snapshot_image(self, page: Page) -> None:
        """The newest frame with an image, drawn: a page opened late shows where the pullback is."""
        view = self.view
        newest = next((i for i in sorted(view.frames, reverse=True) if self.images.get(i) is not None), None)
        if newest is not None:
            page.put_frame(view.frames[newest], self.images.get(newest), draw=True)

    async def image(self, frame: int) -> tuple[FrameEntry, tuple[bytes, tuple[int, int]]] | str:
        cached = self.images.get(frame)
        if cached is None:
            return ("the engine sends no images (server.render_image = false)" if not self.render_image
                    else "no image received for this frame (or dropped from the image cache)")
        return self.view.frames[frame], cached

    async def _handshake(self) -> bool:
        """Ask the engine for its endpoints and configuration; (re)subscribe when they changed."""
        status = await self.link.request("status")
        config = await self.link.request("config") if status else None
        if not status or not config:
            return False
        server = config["config"]["server"]
        self.render_image = bool(server.get("render_image"))
        self.image_size_px = int(server.get("image_size_px", 512))
        self.fov_mm = float(server.get("image_fov_mm", 10.0))
        self.heartbeat_s = float(server.get("heartbeat_s", 1.0))
        self._engine_status(status)
        self.link.subscribe(status["endpoints"])
        self.sessions.broadcast_text(self._hello())
        return True

    def _engine_status(self, status: dict) -> None:
        self.last_heartbeat = time.monotonic()
        self.counters = status.get("counters")
        stage = status.get("stage") or {}
        model = status.get("model") or {}
        self.engine_info = {"engine_version": status.get("engine_version"),
                            "model": {"name": model.get("name"), "version": model.get("version")},
                            "config_hash": status.get("config_hash"), "render_image": self.render_image,
                            "backends": stage.get("backends"), "fallbacks": stage.get("fallbacks")}
        view = self.view
        if view is None or view.guidance is not None or view.incomplete is not None:
            return
        info = (status.get("pullbacks") or {}).get(view.pullback_id)
        if info is not None:
            view.n_frames = view.n_frames or info.get("n_frames_expected")
            view.unlisted_since = None
        elif view.unlisted_since is None:
            view.unlisted_since = time.monotonic()
        elif time.monotonic() - view.unlisted_since > MIN_LOST_AFTER_S:
            # Its guidance would have arrived by now (published before the pullback leaves the
            # open list); an engine that restarted marked it interrupted.
            view.incomplete = "the engine no longer has this pullback open and sent no guidance"

    async def _engine_loop(self) -> None:
        poller = zmq.asyncio.Poller()
        registered: list = []
        while True:
            if self.link.endpoints is None or self._state() == "engine_lost" or self._rehandshake:
                self._rehandshake = False
                if not await self._handshake():
                    await asyncio.sleep(0.5)
                    continue
                self._changed()
            if registered != self.link.subs:
                for sock in registered:
                    with contextlib.suppress(KeyError):
                        poller.unregister(sock)
                for sock in self.link.subs:
                    poller.register(sock, zmq.POLLIN)
                registered = list(self.link.subs)
            events = dict(await poller.poll(timeout=int(POLL_S * 1000)))
            for sock in self.link.subs:
                while sock in events:
                    try:
                        parts = await sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._on_message(Subscriber._decode(parts))
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("ignored a malformed engine message: %s", exc)

    def _on_message(self, message: Any) -> None:
        topic, envelope = message.topic, message.envelope
        if topic == TOPIC_HEARTBEAT:
            self._rehandshake = self._state() == "engine_lost"  # it may have restarted, reconfigured
            self._engine_status(envelope)
            self._changed()
        elif topic == TOPIC_EVENT:
            self._on_event(envelope)
        elif topic in (TOPIC_OVERLAY, TOPIC_BACKFILL):
            self._on_overlay(topic, envelope, message.body, message.raw)
        elif topic == TOPIC_DISPLAY:
            self._on_display(envelope, message.raw)
        elif topic == TOPIC_GUIDANCE:
            view = self._view_for(envelope.get("pullback_id") or message.body.get("pullback_id"))
            self._flush_pending(float("inf"))
            self._tasks = [task for task in self._tasks if not task.done()]
            self._tasks.append(asyncio.create_task(self._complete(view, message.body)))

    async def _complete(self, view: PullbackView, guidance: dict) -> None:
        """The pullback's guidance is in. Frames whose overlay the viewer never received (a
        publisher queue overflowed) are filled in from the engine's results, numbers only, so
        the profile and the frame count are whole; then the guidance goes to the pages."""
        n_frames = axis_frames(guidance.get("n_frames")) or 0
        missing = sorted(set(range(n_frames)) - set(view.frames))
        if missing:
            reply = await self.link.request("results", timeout_s=RESULTS_TIMEOUT_S, pullback_id=view.pullback_id)
            records = {}
            if reply is not None and len(reply["_parts"]) >= 2:
                for line in reply["_parts"][1].splitlines():
                    if line.strip():
                        record = json.loads(line)
                        records[record.get("frame")] = record
            for index in missing:
                if index not in records:
                    continue
                record = records[index]
                entry = FrameEntry({"type": "frame", "pullback_id": view.pullback_id, "frame": index,
                                    "lane": record.get("lane"), "status": record.get("status"),
                                    "sent_unix_ns": None, "recovered": True,
                                    "overlay": record_overlay(record, view.pullback_id)})
                view.frames[index] = entry
                self.sessions.broadcast_frame(entry, None, draw=False)
            self.stats["recovered"] += sum(i in records for i in missing)
            log.warning("%s: %d overlay(s) lost in transport, %d recovered from the engine's results",
                        view.pullback_id, len(missing), sum(i in records for i in missing))
        view.guidance = guidance
        view.frame_spacing_mm = guidance.get("frame_spacing_mm")
        self.stats["guidance"] += 1
        self.sessions.broadcast_text(view.message())
        self.sessions.broadcast_text({"type": "guidance", "pullback_id": view.pullback_id, "guidance": guidance})
        self._changed()

    def _on_event(self, event: dict) -> None:
        name = event.get("event")
        if name == "pullback_opened":
            view = self._view_for(event["pullback_id"])
            view.n_frames = event.get("n_frames") or view.n_frames
            self.sessions.broadcast_text(view.message())
            self._changed()
        elif name == "pullback_incomplete" and self.view and event.get("pullback_id") == self.view.pullback_id:
            self.view.incomplete = event.get("reason") or "incomplete"
            self._changed()

    def _view_for(self, pullback_id: str) -> PullbackView:
        """The current pullback's view; a new id starts a new one (the page clears)."""
        if self.view is None or self.view.pullback_id != pullback_id:
            self._flush_pending(float("inf"))
            self.view = PullbackView(pullback_id)
            self.images.clear()
            self.sessions.broadcast_text(self.view.message())
        return self.view

    def _on_overlay(self, topic: bytes, envelope: dict, overlay: dict, raw: list) -> None:
        view = self._view_for(envelope["pullback_id"])
        lmode_info = envelope.get("lmode")
        lmode = bytes(raw[0].buffer) if lmode_info and raw else None
        header = {"type": "frame", "pullback_id": view.pullback_id, "frame": envelope["frame"],
                  "lane": envelope.get("lane"), "status": envelope.get("status"),
                  "sent_unix_ns": envelope.get("sent_unix_ns"), "overlay": overlay,
                  "lmode": None if lmode is None else {"n_angles": len(lmode_info["angles_deg"]),
                                                       "length_px": lmode_info["length_px"]}}
        entry = FrameEntry(header, lmode)
        view.frames[envelope["frame"]] = entry
        self.stats["frames"] += 1
        live = topic == TOPIC_OVERLAY
        if live:
            self._newest_live = entry
        if live and self.render_image:
            self._flush_pending(float("inf"))
            self._pending = (entry, time.monotonic() + PENDING_IMAGE_S)  # its image follows
        else:
            self.sessions.broadcast_frame(entry, None, draw=live)
        if view.guidance is None and view.incomplete is None:
            self._changed()

    def _on_display(self, envelope: dict, raw: list) -> None:
        if not raw or self.view is None or envelope.get("pullback_id") != self.view.pullback_id:
            return
        frame = envelope["frame"]
        shape = tuple(envelope["image"]["shape"][:2])
        data = bytes(raw[0].buffer)
        if len(data) != shape[0] * shape[1]:
            raise ValueError(f"display image of {len(data)} bytes for shape {shape}")
        self.images.put(frame, data, shape)
        self.stats["images"] += 1
        entry = self.view.frames.get(frame)
        if entry is None:
            return
        if self._pending is not None and self._pending[0] is entry:
            self._pending = None
        elif entry.header.get("lane") != "live" or entry is not self._newest_live:
            return  # a backfill frame's image: kept for scrubbing, not drawn now
        self.sessions.broadcast_frame(entry, (data, shape), draw=True)

    def _flush_pending(self, now: float) -> None:
        """Send a live overlay whose image did not come in time, without it."""
        if self._pending is not None and now >= self._pending[1]:
            entry, _ = self._pending
            self._pending = None
            self.sessions.broadcast_frame(entry, None, draw=True)


__all__ = ["EngineFeed"]
