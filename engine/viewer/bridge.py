"""The live viewer's bridge: engine overlays (ZeroMQ) to a browser page (WebSocket).

``octguide view`` runs one :class:`ViewerBridge`. It subscribes to the engine's overlay publisher
(topics ``overlay``, ``backfill``, ``display``, ``guidance``) and status publisher (``heartbeat``,
``event``), keeps what the page needs of the current pullback (every frame's vector overlay and
L-mode cuts, the live frames' images within a byte budget, the guidance) so that a page opened
late or reloaded sees the whole pullback, and serves the page (``engine/viewer/assets``) and a
WebSocket on one loopback port. ``--results DIR`` serves a finished replay instead, rebuilding
each frame's overlay and image from the pullback the replay read, with the engine's own
functions. The messages are specified in docs/viewer.md.

The bridge never slows the engine: it drains its SUB sockets as fast as they fill (a slow page
loses images, never frame records), and each page has its own outbox in which a newer live image
replaces an older one not yet sent.

Who may read it: the WebSocket (``/ws``) is refused (HTTP 403, one line, counted in
``stats['pages_refused']``) unless its ``Host`` header names the bound address (with
``localhost``/``127.0.0.1`` interchangeable on loopback), its ``Origin`` - when it has one, as
every browser's does - is the viewer's own or one of ``allowed_origins``, and its query carries
the per-session ``token`` that :attr:`ViewerBridge.url` (what ``octguide view`` prints) contains.
A page served from any other origin therefore cannot read the live pullback.

The parts, each in its module: :mod:`engine.viewer.serving` (the page's files and who may
open the WebSocket), :mod:`engine.viewer.pages` (each page's session and outbox),
:mod:`engine.viewer.engine_link` (the sockets to the engine), :mod:`engine.viewer.results`
(results mode). This module holds the pullback as the viewer knows it and the state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from engine import __version__
from engine.viewer.engine_link import EngineLink
from engine.viewer.errors import ViewerError
from engine.viewer.pages import (
    MAX_OUTBOX,
    MAX_REQUEST_FRAME,
    SNAPSHOT_CHUNK,
    FrameEntry,
    Page,
    PageSessions,
    encode_frame,
)
from engine.viewer.results import (
    ResultsSource,
    load_replay_pullback,
    read_results,
    record_overlay,
    results_source,
    uncertainty_overlay,
)
from engine.viewer.serving import (
    ASSET_TYPES,
    ASSETS,
    CONTENT_SECURITY_POLICY,
    PAGE_MODULES,
    PageGate,
    asset_response,
    check_assets,
)
from streams.wire.protocol import (
    LMODE_ANGLES_DEG,
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_EVENT,
    TOPIC_GUIDANCE,
    TOPIC_HEARTBEAT,
    TOPIC_OVERLAY,
    Limits,
)
from streams.wire.zmq_io import CurveClientKeys, Subscriber

log = logging.getLogger(__name__)

PENDING_IMAGE_S = 0.1  #: how long a live overlay waits for its image before going out without
RESULTS_TIMEOUT_S = 30.0  #: a long pullback's results are a few MB
TICK_S = 0.25  #: state re-evaluation period
MIN_LOST_AFTER_S = 3.0  #: an engine is lost after 3 heartbeat periods without one, at least this
MAX_AXIS_FRAMES = Limits().max_n_frames  #: an n_frames above this (or not a positive int) is unknown


# ---------------------------------------------------------------------------------------------
# The pullback as the viewer knows it
# ---------------------------------------------------------------------------------------------


@dataclass
class PullbackView:
    """The current pullback as the viewer knows it."""

    pullback_id: str
    n_frames: int | None = None
    frame_spacing_mm: float | None = None
    frames: dict[int, FrameEntry] = field(default_factory=dict)
    guidance: dict | None = None
    incomplete: str | None = None  #: the engine's reason when it closed the pullback incomplete
    unlisted_since: float | None = None  #: monotonic time the engine's heartbeat stopped listing it

    def message(self) -> dict:
        return {"type": "pullback", "pullback_id": self.pullback_id, "n_frames": axis_frames(self.n_frames),
                "frame_spacing_mm": self.frame_spacing_mm}


def axis_frames(n: object) -> int | None:
    """``n`` when it is a frame count a page can lay out (an int in 1..MAX_AXIS_FRAMES), else
    None (unknown: the page grows its axis with the frames it receives)."""
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_AXIS_FRAMES else None


class ImageCache:
    """Live frames' grey images, oldest dropped beyond a byte budget (counted)."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._images: OrderedDict[int, tuple[bytes, tuple[int, int]]] = OrderedDict()
        self._bytes = 0
        self.dropped = 0

    def put(self, frame: int, image: bytes, shape: tuple[int, int]) -> None:
        old = self._images.pop(frame, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._images[frame] = (image, shape)
        self._bytes += len(image)
        while self._bytes > self.budget_bytes and len(self._images) > 1:
            _, (dropped, _) = self._images.popitem(last=False)
            self._bytes -= len(dropped)
            self.dropped += 1

    def get(self, frame: int) -> tuple[bytes, tuple[int, int]] | None:
        return self._images.get(frame)

    def clear(self) -> None:
        self._images.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._images)


# ---------------------------------------------------------------------------------------------
# The bridge
# ---------------------------------------------------------------------------------------------


class ViewerBridge:
    """Serves the page and bridges one engine's publishers to it.

    Parameters
    ----------
    engine : str or None
        The engine's control endpoint (live mode); None with ``results``.
    host, port : str, int
        Where the page is served (port 0: any free port; :attr:`port` after :meth:`start`).
    results : ResultsSource or None
        Results mode: serve this finished replay instead of an engine.
    curve : CurveClientKeys or None
        Client keys when the engine requires CurveZMQ.
    image_cache_mib : float
        Live frames' images kept for scrubbing, at most.
    lost_after_s : float or None
        The engine is lost after this long without a heartbeat (default: three heartbeat
        periods, at least 3 s).
    allowed_origins : iterable of str
        Origins (``scheme://host[:port]``) besides the viewer's own whose pages may connect.
    token : str or None
        The session token pages must present (default: a new random one per bridge).
    """

    def __init__(self, engine: str | None, host: str = "127.0.0.1", port: int = 8080, *,
                 results: ResultsSource | None = None, curve: CurveClientKeys | None = None,
                 image_cache_mib: float = 512.0, lost_after_s: float | None = None,
                 allowed_origins: Iterable[str] = (), token: str | None = None):
        if (engine is None) == (results is None):
            raise ValueError("ViewerBridge needs exactly one of engine and results")
        self.gate = PageGate(allowed_origins, token)
        self.engine = engine
        self.host = host
        self.port = port
        self.results = results
        self.curve = curve
        self.lost_after_s = lost_after_s
        self.images = ImageCache(int(image_cache_mib * 2**20))
        self.view: PullbackView | None = None
        self.engine_info: dict | None = None
        self.counters: dict | None = None
        self.render_image = False
        self.image_size_px = 512
        self.fov_mm = 10.0
        self.heartbeat_s = 1.0
        self.last_heartbeat: float | None = None
        self.state = "results" if results is not None else "connecting"
        self.detail = ""
        self.stats = {"frames": 0, "images": 0, "guidance": 0, "recovered": 0, "pages_dropped": 0,
                      "pages_refused": 0, "bad_requests": 0}
        self.sessions = PageSessions(self.stats)
        self.link = EngineLink(engine, curve) if engine is not None else None
        self._pending: tuple[FrameEntry, float] | None = None
        self._server = None
        self._tasks: list[asyncio.Task] = []
        self._results_index: dict[int, int] = {}
        self._rehandshake = False
        self._newest_live: FrameEntry | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        check_assets()
        if self.results is not None:
            await asyncio.to_thread(self._load_results)
        try:
            self._server = await serve(self._handle_page, self.host, self.port,
                                       process_request=self._http, compression=None,
                                       max_size=2**16, ping_interval=5, ping_timeout=10)
        except OSError as exc:
            raise ViewerError(f"cannot serve on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if self.link is not None:
            self.link.start()
            self._tasks.append(asyncio.create_task(self._engine_loop()))
        self._tasks.append(asyncio.create_task(self._tick_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.link is not None:
            self.link.stop()
        if self.results is not None:
            self.results.stop()

    @property
    def token(self) -> str:
        """The session token pages must present."""
        return self.gate.token

    @property
    def allowed_origins(self) -> set[str]:
        return self.gate.allowed_origins

    @property
    def pages(self) -> set[Page]:
        """The connected pages."""
        return self.sessions.pages

    @property
    def url(self) -> str:
        """The page's address with this session's token (what ``octguide view`` prints)."""
        return self.gate.url(self.host, self.port)

    # -- HTTP: the page's files, and who may open the WebSocket ---------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path != "/ws":
            return asset_response(connection, path)
        refusal = self.gate.refusal(request, self.host, self.port)
        if refusal is None:
            return None  # the WebSocket handshake goes on
        self.stats["pages_refused"] += 1
        log.warning("page refused: %s", refusal)
        return connection.respond(403, refusal + "\n")

    # -- pages ---------------------------------------------------------------------------------------
    async def _handle_page(self, ws: ServerConnection) -> None:
        await self.sessions.serve(ws, self._snapshot, self._answer)

    def _hello(self) -> dict:
        return {"type": "hello", "mode": "results" if self.results is not None else "live",
                "viewer_version": __version__, "engine": self.engine,
                "image_size_px": self.image_size_px, "fov_mm": self.fov_mm,
                "lmode_angles_deg": list(LMODE_ANGLES_DEG), "render_image": self.render_image,
                "max_axis_frames": MAX_AXIS_FRAMES}

    def _state_message(self) -> dict:
        age = None if self.last_heartbeat is None else round(time.monotonic() - self.last_heartbeat, 2)
        return {"type": "state", "state": self.state, "detail": self.detail, "engine": self.engine_info,
                "heartbeat_age_s": age, "counters": self.counters}

    def _snapshot(self, page: Page) -> None:
        """Everything a newly opened page needs, in the order it needs it."""
        page.put_text(self._hello())
        page.put_text(self._state_message())
        view = self.view
        if view is None:
            return
        page.put_text(view.message())
        indices = sorted(view.frames)
        page.put_frames([view.frames[index] for index in indices], draw=False)
        newest_image = next((i for i in reversed(indices) if self.images.get(i) is not None), None)
        if newest_image is not None and self.results is None:
            page.put_frame(view.frames[newest_image], self.images.get(newest_image), draw=True)
        if view.guidance is not None:
            page.put_text({"type": "guidance", "pullback_id": view.pullback_id, "guidance": view.guidance})

    async def _answer(self, page: Page, frame: int) -> None:
        """Answer a page's ``get_image`` of ``frame`` (validated by :mod:`engine.viewer.pages`):
        the frame with its image, or ``no_image`` with the reason."""
        view = self.view
        if view is None or frame not in view.frames:
            page.put_text({"type": "no_image", "frame": frame, "reason": "no such frame"})
            return
        if self.results is not None:
            entry, image = await asyncio.to_thread(self.results.render, self._results_index[frame])
            if image is None:
                page.put_text({"type": "no_image", "frame": frame,
                               "reason": "the replay's pullback is not available"})
            else:
                page.put_frame(entry, (image, (self.image_size_px,) * 2), draw=False)
            return
        cached = self.images.get(frame)
        if cached is None:
            reason = ("the engine sends no images (server.render_image = false)" if not self.render_image
                      else "no image received for this frame (or dropped from the image cache)")
            page.put_text({"type": "no_image", "frame": frame, "reason": reason})
            return
        page.put_frame(view.frames[frame], cached, draw=False)

    def _broadcast_text(self, message: dict) -> None:
        self.sessions.broadcast_text(message)

    def _broadcast_frame(self, entry: FrameEntry, image: tuple[bytes, tuple[int, int]] | None,
                         draw: bool) -> None:
        self.sessions.broadcast_frame(entry, image, draw)

    # -- state ---------------------------------------------------------------------------------------
    def _evaluate_state(self) -> str:
        if self.results is not None:
            return "results"
        if self.last_heartbeat is None:
            return "connecting"
        lost_after = self.lost_after_s or max(MIN_LOST_AFTER_S, 3 * self.heartbeat_s)
        if time.monotonic() - self.last_heartbeat > lost_after:
            return "engine_lost"
        view = self.view
        if view is None:
            return "waiting"
        if view.guidance is not None:
            return "complete"
        if view.incomplete is not None:
            return "incomplete"
        return "live"

    def _update_state(self, force: bool = False) -> None:
        state = self._evaluate_state()
        if state != self.state or force:
            if state != self.state:
                log.info("viewer state %s -> %s", self.state, state)
            self.state = state
            self.detail = self._detail(state)
            self._broadcast_text(self._state_message())

    def _detail(self, state: str) -> str:
        view = self.view
        if state == "engine_lost":
            last = max(view.frames) if view and view.frames else None
            return f"no heartbeat from {self.engine}" + (f"; last frame {last}" if last is not None else "")
        if state == "incomplete" and view is not None:
            return f"{view.pullback_id}: {view.incomplete}"
        if state == "connecting":
            return f"reaching {self.engine}"
        return ""

    async def _tick_loop(self) -> None:
        last_full = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self._flush_pending(now)
            self._update_state(force=now - last_full >= 1.0)  # heartbeat age and counters, 1/s
            if now - last_full >= 1.0:
                last_full = now

    # -- the engine ----------------------------------------------------------------------------------
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
        self._broadcast_text(self._hello())
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
            if self.link.endpoints is None or self.state == "engine_lost" or self._rehandshake:
                self._rehandshake = False
                if not await self._handshake():
                    await asyncio.sleep(0.5)
                    continue
                self._update_state()
            if registered != self.link.subs:
                for sock in registered:
                    with contextlib.suppress(KeyError):
                        poller.unregister(sock)
                for sock in self.link.subs:
                    poller.register(sock, zmq.POLLIN)
                registered = list(self.link.subs)
            events = dict(await poller.poll(timeout=int(TICK_S * 1000)))
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
            self._rehandshake = self.state == "engine_lost"  # it may have restarted, reconfigured
            self._engine_status(envelope)
            self._update_state()
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
        """The pullback's guidance is in. Frames whose overlay this bridge never received (a
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
                self._broadcast_frame(entry, None, draw=False)
            self.stats["recovered"] += sum(i in records for i in missing)
            log.warning("%s: %d overlay(s) lost in transport, %d recovered from the engine's results",
                        view.pullback_id, len(missing), sum(i in records for i in missing))
        view.guidance = guidance
        view.frame_spacing_mm = guidance.get("frame_spacing_mm")
        self.stats["guidance"] += 1
        self._broadcast_text(view.message())
        self._broadcast_text({"type": "guidance", "pullback_id": view.pullback_id, "guidance": guidance})
        self._update_state()

    def _on_event(self, event: dict) -> None:
        name = event.get("event")
        if name == "pullback_opened":
            view = self._view_for(event["pullback_id"])
            view.n_frames = event.get("n_frames") or view.n_frames
            self._broadcast_text(view.message())
            self._update_state()
        elif name == "pullback_incomplete" and self.view and event.get("pullback_id") == self.view.pullback_id:
            self.view.incomplete = event.get("reason") or "incomplete"
            self._update_state()

    def _view_for(self, pullback_id: str) -> PullbackView:
        """The current pullback's view; a new id starts a new one (the page clears)."""
        if self.view is None or self.view.pullback_id != pullback_id:
            self._flush_pending(float("inf"))
            self.view = PullbackView(pullback_id)
            self.images.clear()
            self._broadcast_text(self.view.message())
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
            self._broadcast_frame(entry, None, draw=live)
        if view.guidance is None and view.incomplete is None:
            self._update_state()

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
        self._broadcast_frame(entry, (data, shape), draw=True)

    def _flush_pending(self, now: float) -> None:
        """Send a live overlay whose image did not come in time, without it."""
        if self._pending is not None and now >= self._pending[1]:
            entry, _ = self._pending
            self._pending = None
            self._broadcast_frame(entry, None, draw=True)

    # -- results mode ----------------------------------------------------------------------------------
    def _load_results(self) -> None:
        results = self.results
        results.start()
        self.image_size_px, self.fov_mm = results.grid.size_px, results.grid.fov_mm
        self.render_image = results.pullback is not None
        view = PullbackView(results.pullback_id, n_frames=len(results.records),
                            frame_spacing_mm=results.guidance.get("frame_spacing_mm"))
        self._results_index = {}
        for i, record in enumerate(results.records):
            entry, _ = results.render(i)
            view.frames[record["frame"]] = entry
            self._results_index[record["frame"]] = i
        view.guidance = results.guidance
        self.view = view
        self.detail = f"{results.results_dir}" + ("" if results.pullback is not None
                                                  else " (the replay's pullback is not here: no images)")


__all__ = ["ASSETS", "ASSET_TYPES", "CONTENT_SECURITY_POLICY", "MAX_OUTBOX", "MAX_REQUEST_FRAME", "PAGE_MODULES",
           "SNAPSHOT_CHUNK", "FrameEntry", "ImageCache", "Page", "PullbackView", "ResultsSource", "ViewerBridge",
           "ViewerError", "encode_frame", "load_replay_pullback", "read_results", "record_overlay",
           "results_source", "uncertainty_overlay"]
