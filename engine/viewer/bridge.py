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

The parts, each in its module: :mod:`engine.viewer.serving` (the page's files and who may open
the WebSocket), :mod:`engine.viewer.pages` (each page's session and outbox),
:mod:`engine.viewer.feed` (the pullback as the viewer knows it), :mod:`engine.viewer.live` (the
live feed from an engine, over :mod:`engine.viewer.engine_link`) and
:mod:`engine.viewer.results` (results mode). This module composes them: it serves, holds the
viewer's state (connecting, waiting, live, complete, incomplete, engine_lost, results) and tells
the pages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from engine import __version__
from engine.viewer.errors import ViewerError
from engine.viewer.feed import (
    MAX_AXIS_FRAMES,
    Feed,
    ImageCache,
    PullbackView,
    axis_frames,
    cancel_tasks,
)
from engine.viewer.live import MIN_LOST_AFTER_S, EngineFeed
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
    ResultsFeed,
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
from streams.wire.protocol import LMODE_ANGLES_DEG
from streams.wire.zmq_io import CurveClientKeys

log = logging.getLogger(__name__)

TICK_S = 0.25  #: state re-evaluation period


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
        self.lost_after_s = lost_after_s
        self.state = "results" if results is not None else "connecting"
        self.detail = ""
        self.stats = {"frames": 0, "images": 0, "guidance": 0, "recovered": 0, "pages_dropped": 0,
                      "pages_refused": 0, "bad_requests": 0}
        self.sessions = PageSessions(self.stats)
        self.feed: Feed = (ResultsFeed(results) if results is not None else
                           EngineFeed(engine, curve, self.sessions, self.stats, image_cache_mib,
                                      state=lambda: self.state, changed=self._update_state,
                                      hello=self._hello))
        self._server = None
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        check_assets()
        await self.feed.start()
        try:
            self._server = await serve(self._handle_page, self.host, self.port,
                                       process_request=self._http, compression=None,
                                       max_size=2**16, ping_interval=5, ping_timeout=10)
        except OSError as exc:
            await self.feed.stop()
            raise ViewerError(f"cannot serve on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if isinstance(self.feed, ResultsFeed):
            self.detail = self.feed.detail
        self._tasks.append(asyncio.create_task(self._tick_loop()))

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.feed.stop()

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
    def view(self) -> PullbackView | None:
        """The current pullback (the feed's)."""
        return self.feed.view

    @view.setter
    def view(self, view: PullbackView | None) -> None:
        self.feed.view = view

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
        feed = self.feed
        return {"type": "hello", "mode": feed.mode, "viewer_version": __version__, "engine": self.engine,
                "image_size_px": feed.image_size_px, "fov_mm": feed.fov_mm,
                "lmode_angles_deg": list(LMODE_ANGLES_DEG), "render_image": feed.render_image,
                "max_axis_frames": MAX_AXIS_FRAMES}

    def _state_message(self) -> dict:
        feed = self.feed
        age = None if feed.last_heartbeat is None else round(time.monotonic() - feed.last_heartbeat, 2)
        return {"type": "state", "state": self.state, "detail": self.detail, "engine": feed.engine_info,
                "heartbeat_age_s": age, "counters": feed.counters}

    def _snapshot(self, page: Page) -> None:
        """Everything a newly opened page needs, in the order it needs it."""
        page.put_text(self._hello())
        page.put_text(self._state_message())
        view = self.view
        if view is None:
            return
        page.put_text(view.message())
        page.put_frames([view.frames[index] for index in sorted(view.frames)], draw=False)
        self.feed.put_snapshot_image(page)
        if view.guidance is not None:
            page.put_text({"type": "guidance", "pullback_id": view.pullback_id, "guidance": view.guidance})

    async def _answer(self, page: Page, frame: int) -> None:
        """Answer a page's ``get_image`` of ``frame`` (validated by :mod:`engine.viewer.pages`):
        the frame with its image, or ``no_image`` with the reason."""
        view = self.view
        if view is None or frame not in view.frames:
            page.put_text({"type": "no_image", "frame": frame, "reason": "no such frame"})
            return
        answer = await self.feed.image(frame)
        if isinstance(answer, str):
            page.put_text({"type": "no_image", "frame": frame, "reason": answer})
        else:
            page.put_frame(*answer, draw=False)

    # -- state ---------------------------------------------------------------------------------------
    def _evaluate_state(self) -> str:
        if self.results is not None:
            return "results"
        feed = self.feed
        if feed.last_heartbeat is None:
            return "connecting"
        lost_after = self.lost_after_s or max(MIN_LOST_AFTER_S, 3 * feed.heartbeat_s)
        if time.monotonic() - feed.last_heartbeat > lost_after:
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
            self.sessions.broadcast_text(self._state_message())

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
            self.feed.tick(now)
            self._update_state(force=now - last_full >= 1.0)  # heartbeat age and counters, 1/s
            if now - last_full >= 1.0:
                last_full = now


__all__ = ["ASSETS", "ASSET_TYPES", "CONTENT_SECURITY_POLICY", "MAX_OUTBOX", "MAX_REQUEST_FRAME", "PAGE_MODULES",
           "SNAPSHOT_CHUNK", "FrameEntry", "ImageCache", "Page", "PullbackView", "ResultsSource", "ViewerBridge",
           "ViewerError", "axis_frames", "encode_frame", "load_replay_pullback", "read_results", "record_overlay",
           "results_source", "uncertainty_overlay"]
