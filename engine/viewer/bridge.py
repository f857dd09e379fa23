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
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from engine import __version__
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.config import Config
from engine.display.overlay import (
    build_overlay,
    display_grey,
    lmode_cuts,
    overlay_metrics,
    uncertainty_ring,
)
from engine.sources import open_pullback
from streams.errors import OctguideError
from streams.pullback import Pullback
from streams.wire.protocol import (
    LMODE_ANGLES_DEG,
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_EVENT,
    TOPIC_GUIDANCE,
    TOPIC_HEARTBEAT,
    TOPIC_OVERLAY,
    Limits,
    dumps,
)
from streams.wire.zmq_io import CurveClientKeys, Subscriber

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("assets")
#: The page's ES modules (``viewer.js`` imports the others; no bundler): each is served as
#: ``text/javascript``, which a browser requires of a module script.
PAGE_MODULES = ("viewer.js", "common.js", "state.js", "socket.js", "messages.js", "navigation.js",
                "xsection.js", "lmode.js", "strips.js", "panels.js")
#: The page's files: name -> content type. Nothing else is served.
ASSET_TYPES = {"index.html": "text/html; charset=utf-8", "viewer.css": "text/css; charset=utf-8",
               **{name: "text/javascript; charset=utf-8" for name in PAGE_MODULES}}
#: The page loads nothing from anywhere but this server (the cath lab has no internet).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; "
                           "connect-src 'self' ws: wss:; script-src 'self'; style-src 'self'")
PENDING_IMAGE_S = 0.1  #: how long a live overlay waits for its image before going out without
CONTROL_TIMEOUT_S = 1.0
RESULTS_TIMEOUT_S = 30.0  #: a long pullback's results are a few MB
TICK_S = 0.25  #: state re-evaluation period
MIN_LOST_AFTER_S = 3.0  #: an engine is lost after 3 heartbeat periods without one, at least this
MAX_OUTBOX = 4096  #: messages queued for one page at most (a page this far behind is dropped)
SNAPSHOT_CHUNK = 256  #: frame records per outbox item of a new page's snapshot
MAX_AXIS_FRAMES = Limits().max_n_frames  #: an n_frames above this (or not a positive int) is unknown
MAX_REQUEST_FRAME = 2**31 - 1  #: get_image frame indices are ints in 0..this


class ViewerError(OctguideError):
    """The viewer could not start (port in use, results folder unreadable)."""


# ---------------------------------------------------------------------------------------------
# Messages to the page
# ---------------------------------------------------------------------------------------------


def encode_frame(header: dict, lmode: bytes | None = None, image: bytes | None = None,
                 image_shape: tuple[int, int] | None = None) -> bytes:
    """One binary frame message (docs/viewer.md): ``u32`` header length, JSON header, payload
    (L-mode cuts then image), with the header's ``lmode`` and ``image`` offsets filled in.

    >>> data = encode_frame({"type": "frame", "frame": 3, "lmode": {"n_angles": 1, "length_px": 2}},
    ...                     b"ab", b"wxyz", (2, 2))
    >>> n = int.from_bytes(data[:4], "little"); header = json.loads(data[4:4 + n])
    >>> header["lmode"]["offset"], header["image"], data[4 + n:]
    (0, {'offset': 2, 'shape': [2, 2]}, b'abwxyz')
    """
    header = dict(header)
    payload = []
    offset = 0
    if lmode is not None and header.get("lmode") is not None:
        header["lmode"] = {**header["lmode"], "offset": offset}
        payload.append(lmode)
        offset += len(lmode)
    else:
        header["lmode"] = None
    if image is not None and image_shape is not None:
        header["image"] = {"offset": offset, "shape": [int(image_shape[0]), int(image_shape[1])]}
        payload.append(image)
    else:
        header["image"] = None
    text = dumps(header)
    return struct.pack("<I", len(text)) + text + b"".join(payload)


@dataclass
class FrameEntry:
    """What the viewer keeps of one frame: the header of its frame message (overlay included)
    and its L-mode cuts."""

    header: dict
    lmode: bytes | None = None


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


class Page:
    """One connected page: its WebSocket and its outbox.

    Text messages and frame records are sent in order. A live image waiting in the outbox is
    stripped to its record when a newer live image arrives, so a slow page shows the newest
    frame and still receives every record.
    """

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self._outbox: deque[list] = deque()
        self._ready = asyncio.Event()
        self.images_stripped = 0
        self.unsendable = 0  #: text messages that could not be encoded (dropped, logged)

    def put_text(self, message: dict) -> None:
        self._put(["text", message])

    def put_frames(self, entries: list[FrameEntry], **header: Any) -> None:
        """Many frame records (no images), in order, in outbox items of SNAPSHOT_CHUNK records:
        a page opened after a long pullback gets all of it without filling its outbox."""
        for i in range(0, len(entries), SNAPSHOT_CHUNK):
            self._put(["frames", entries[i:i + SNAPSHOT_CHUNK], None, header])

    def put_frame(self, entry: FrameEntry, image: tuple[bytes, tuple[int, int]] | None = None,
                  **header: Any) -> None:
        if image is not None and header.get("draw"):
            for item in self._outbox:
                if item[0] == "frame" and item[2] is not None and item[3].get("draw"):
                    item[2] = None  # a newer live image supersedes this one
                    self.images_stripped += 1
        self._put(["frame", entry, image, header])

    def _put(self, item: list) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            raise OverflowError("page outbox full")
        self._outbox.append(item)
        self._ready.set()

    async def pump(self) -> None:
        """Send the outbox until the connection closes."""
        while True:
            await self._ready.wait()
            while self._outbox:
                kind, *rest = self._outbox.popleft()
                if kind == "text":
                    try:
                        text = json.dumps(rest[0], allow_nan=False)
                    except (TypeError, ValueError) as exc:  # never kill the loop over one message
                        log.warning("page message not sendable (%s): dropped", exc)
                        self.unsendable += 1
                        continue
                    await self.ws.send(text)
                    continue
                entries, image, extra = rest
                for entry in entries if kind == "frames" else (entries,):
                    header = {**entry.header, **extra, "bridge_unix_ns": time.time_ns()}
                    await self.ws.send(encode_frame(header, entry.lmode, *(image if image else (None, None))))
            self._ready.clear()


# ---------------------------------------------------------------------------------------------
# Results mode: a finished replay
# ---------------------------------------------------------------------------------------------


def read_results(results_dir: Path) -> tuple[dict, list[dict]]:
    """``pullback.json`` and the records of ``frames.jsonl`` of a replay's results folder."""
    try:
        guidance = json.loads((results_dir / "pullback.json").read_text())
        records = [json.loads(line) for line in
                   (results_dir / "frames.jsonl").read_text().splitlines() if line.strip()]
    except FileNotFoundError as exc:
        raise ViewerError(f"{results_dir}: not a results folder ({exc.filename} missing)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViewerError(f"{results_dir}: unreadable results: {exc}") from exc
    if not isinstance(guidance, dict) or not all(isinstance(r, dict) and isinstance(r.get("frame"), int)
                                                  for r in records):
        raise ViewerError(f"{results_dir}: pullback.json or frames.jsonl is not the results contract")
    return guidance, records


def record_overlay(record: dict, pullback_id: str) -> dict:
    """The overlay of a frame whose geometry is unknown (no source pullback): status and
    numbers, no contours."""
    return {
        "pullback_id": pullback_id, "frame": record["frame"], "timestamp_s": None,
        "status": record.get("status"), "reason": record.get("reason"),
        "confidence": record.get("confidence"), "grid": None, "lumen": None, "eel": None,
        "plaque": None, "guidewire": None, "struts": [],
        "metrics": overlay_metrics(record),
        "latency_ms": record.get("latency_ms") or {},
    }


class ResultsSource:
    """A finished replay: its results, and the pullback it read when that can be loaded.

    Parameters
    ----------
    results_dir : Path
        ``octguide replay --out`` folder (``frames.jsonl``, ``pullback.json``, ``replay.json``).
    pullback : Pullback or None
        The frames the replay sent; None shows numbers, profile and guidance without images.
    grid : CartesianGrid
        Display grid (the engine's ``server.image_size_px`` and ``image_fov_mm``).
    """

    def __init__(self, results_dir: Path, pullback: Pullback | None, grid: CartesianGrid,
                 orientation: DisplayOrientation | None = None):
        self.results_dir = results_dir
        self.guidance, self.records = read_results(results_dir)
        self.pullback = pullback
        self.grid = grid
        self.orientation = orientation or DisplayOrientation()
        self.pullback_id = str(self.guidance.get("pullback_id") or results_dir.name)
        self.converter: ScanConverter | None = None
        if pullback is not None and len(pullback) < len(self.records):
            raise ViewerError(f"{results_dir}: {len(self.records)} records but the pullback has only "
                              f"{len(pullback)} frames: not the pullback this replay read")

    def start(self) -> None:
        if self.pullback is not None:
            self.converter = ScanConverter(self.grid, self.orientation)
            self.converter.start()

    def stop(self) -> None:
        if self.converter is not None:
            self.converter.stop()
            self.converter = None

    def render(self, index: int) -> tuple[FrameEntry, bytes | None]:
        """Frame ``index``'s entry and grey image (None without the source pullback)."""
        record = self.records[index]
        header = {"type": "frame", "pullback_id": self.pullback_id, "frame": record["frame"],
                  "lane": record.get("lane"), "status": record.get("status"), "sent_unix_ns": None}
        if self.converter is None or self.pullback is None:
            return FrameEntry({**header, "overlay": record_overlay(record, self.pullback_id)}), None
        frame = self.pullback.frame(record["frame"])
        grey = display_grey(self.converter.process(frame))
        overlay = build_overlay(record, frame, self.grid, self.orientation,
                                record.get("latency_ms") or {})
        overlay["pullback_id"] = self.pullback_id
        overlay.setdefault("uncertainty", uncertainty_overlay(record, frame, self.grid, self.orientation))
        lmode = {"n_angles": len(LMODE_ANGLES_DEG), "length_px": self.grid.size_px}
        entry = FrameEntry({**header, "overlay": overlay, "lmode": lmode}, lmode_cuts(grey).tobytes())
        return entry, grey.tobytes()


def uncertainty_overlay(record: dict, frame: Any, grid: CartesianGrid, orientation: DisplayOrientation,
                        max_points: int = 360) -> dict | None:
    """The record's per-A-line ``uncertainty`` as the page draws it, for results mode (live
    overlays carry it already): :func:`engine.display.overlay.uncertainty_ring`."""
    return uncertainty_ring(record, frame, grid, orientation, max_points)


def load_replay_pullback(results_dir: Path, pullback_file: Path | None) -> Pullback | None:
    """The pullback a replay read: ``pullback_file``, else the one ``replay.json`` names
    (a file, or a phantom scenario rendered again from its seed); None when neither exists."""
    if pullback_file is not None:
        return open_pullback(str(pullback_file), None, 500, 1000)
    try:
        spec = json.loads((results_dir / "replay.json").read_text())
    except FileNotFoundError:
        log.warning("%s has no replay.json and no --pullback was given: no images", results_dir)
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise ViewerError(f"{results_dir / 'replay.json'}: unreadable: {exc}") from exc
    source = str(spec.get("pullback", ""))
    if not source.startswith("phantom:") and not Path(source).is_file():
        log.warning("the replay's pullback %s is not here: no images", source)
        return None
    return open_pullback(source, spec.get("frames"), int(spec.get("alines", 500)), int(spec.get("samples", 1000)))


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
        self.token = token or secrets.token_urlsafe(24)
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.engine = engine
        self.host = host
        self.port = port
        self.results = results
        self.curve = curve
        self.lost_after_s = lost_after_s
        self.images = ImageCache(int(image_cache_mib * 2**20))
        self.pages: set[Page] = set()
        self.view: PullbackView | None = None
        self.engine_info: dict | None = None
        self.counters: dict | None = None
        self.render_image = False
        self.image_size_px = 512
        self.fov_mm = 10.0
        self.heartbeat_s = 1.0
        self.endpoints: dict | None = None
        self.last_heartbeat: float | None = None
        self.state = "results" if results is not None else "connecting"
        self.detail = ""
        self.stats = {"frames": 0, "images": 0, "guidance": 0, "recovered": 0, "pages_dropped": 0,
                      "pages_refused": 0, "bad_requests": 0}
        self._pending: tuple[FrameEntry, float] | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._subs: list[zmq.asyncio.Socket] = []
        self._control: zmq.asyncio.Socket | None = None
        self._request_ids = 0
        self._server = None
        self._tasks: list[asyncio.Task] = []
        self._results_index: dict[int, int] = {}
        self._rehandshake = False
        self._newest_live: FrameEntry | None = None
        self._control_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        missing = [name for name in ASSET_TYPES if not (ASSETS / name).is_file()]
        if missing:
            raise ViewerError(f"viewer assets missing from {ASSETS}: {', '.join(missing)}")
        if self.results is not None:
            await asyncio.to_thread(self._load_results)
        try:
            self._server = await serve(self._handle_page, self.host, self.port,
                                       process_request=self._http, compression=None,
                                       max_size=2**16, ping_interval=5, ping_timeout=10)
        except OSError as exc:
            raise ViewerError(f"cannot serve on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if self.results is None:
            self._ctx = zmq.asyncio.Context()
            self._control = self._socket(zmq.DEALER)
            self._control.connect(self.engine)
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
        for sock in [*self._subs, self._control]:
            if sock is not None:
                sock.close(0)
        self._subs.clear()
        if self._ctx is not None:
            self._ctx.term()
        if self.results is not None:
            self.results.stop()

    @property
    def url(self) -> str:
        """The page's address with this session's token (what ``octguide view`` prints)."""
        return f"http://{_url_host(self.host)}:{self.port}/?token={self.token}"

    def _hosts(self) -> set[str]:
        """``Host`` header values that name the bound address."""
        names = {_url_host(self.host)}
        if _is_loopback(self.host):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        return {f"{n}:{self.port}".lower() for n in names}

    def _refusal(self, request: Request) -> str | None:
        """Why a WebSocket handshake is refused, or None when it may go on."""
        hosts, origins = request.headers.get_all("Host"), request.headers.get_all("Origin")
        host = hosts[0].strip().lower() if len(hosts) == 1 else ""
        if host not in self._hosts():
            return f"Host {', '.join(hosts) or '(none)'} is not this viewer's address"
        if len(origins) > 1:
            return "more than one Origin header"
        if origins:
            origin = origins[0].strip().rstrip("/").lower()
            if origin not in {f"http://{h}" for h in self._hosts()} | self.allowed_origins:
                return f"Origin {origin} is not allowed (octguide view --allow-origin)"
        query = request.path.split("?", 1)[1] if "?" in request.path else ""
        tokens = [v for k, _, v in (kv.partition("=") for kv in query.split("&")) if k == "token"]
        if len(tokens) != 1 or not hmac.compare_digest(tokens[0].encode(), self.token.encode()):
            return "missing or wrong session token (open the URL octguide view printed)"
        return None

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(kind)
        sock.linger = 0
        if self.curve is not None:
            self.curve.apply(sock)
        return sock

    # -- HTTP: the page's files ----------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            refusal = self._refusal(request)
            if refusal is None:
                return None  # the WebSocket handshake goes on
            self.stats["pages_refused"] += 1
            log.warning("page refused: %s", refusal)
            return connection.respond(403, refusal + "\n")
        name = "index.html" if path == "/" else path.lstrip("/")
        if name not in ASSET_TYPES:
            return connection.respond(404, "not found\n")
        body = (ASSETS / name).read_bytes()
        headers = Headers([("Content-Type", ASSET_TYPES[name]), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store"),
                           ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                           ("X-Content-Type-Options", "nosniff")])
        return Response(200, "OK", headers, body)

    # -- pages ---------------------------------------------------------------------------------------
    async def _handle_page(self, ws: ServerConnection) -> None:
        page = Page(ws)
        self._snapshot(page)
        self.pages.add(page)
        pump = asyncio.create_task(page.pump())
        try:
            async for message in ws:
                if isinstance(message, str):
                    await self._page_request(page, message)
                else:
                    self._bad_request(page, "requests are JSON text messages")
        except ConnectionClosed:
            pass
        except OverflowError:  # the page asks faster than it reads
            self.stats["pages_dropped"] += 1
            log.warning("a page fell %d messages behind its own requests: closing it", MAX_OUTBOX)
            await ws.close(1013, "too far behind")
        finally:
            self.pages.discard(page)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await pump

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

    def _bad_request(self, page: Page, error: str) -> None:
        self.stats["bad_requests"] += 1
        page.put_text({"type": "error", "error": error})

    async def _page_request(self, page: Page, text: str) -> None:
        """Answer one page request: validated first (a JSON object ``{"type": "get_image",
        "frame": int}`` and nothing else); anything else is one ``error`` reply, counted."""
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):
            self._bad_request(page, "requests are JSON objects with a 'type'")
            return
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            self._bad_request(page, "requests are JSON objects with a 'type'")
            return
        if request["type"] != "get_image":
            self._bad_request(page, f"unknown request type {request['type'][:40]!r}")
            return
        if set(request) - {"type", "frame"}:
            self._bad_request(page, "get_image takes only 'frame'")
            return
        frame = request.get("frame")
        if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame <= MAX_REQUEST_FRAME:
            self._bad_request(page, f"get_image: 'frame' must be an integer in 0..{MAX_REQUEST_FRAME}")
            return
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
        for page in list(self.pages):
            self._deliver(page, page.put_text, message)

    def _broadcast_frame(self, entry: FrameEntry, image: tuple[bytes, tuple[int, int]] | None,
                         draw: bool) -> None:
        for page in list(self.pages):
            self._deliver(page, page.put_frame, entry, image, draw=draw)

    def _deliver(self, page: Page, put: Callable, *args: Any, **kwargs: Any) -> None:
        try:
            put(*args, **kwargs)
        except OverflowError:
            log.warning("a page fell %d messages behind: closing it (it reconnects and resyncs)", MAX_OUTBOX)
            self.stats["pages_dropped"] += 1
            self.pages.discard(page)
            asyncio.ensure_future(page.ws.close(1013, "too far behind"))

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
    async def _request(self, cmd: str, timeout_s: float = CONTROL_TIMEOUT_S, **args: Any) -> dict | None:
        """One control request (its extra parts as ``_parts``); None when the engine does not
        answer in time."""
        async with self._control_lock:
            return await self._request_unlocked(cmd, timeout_s, **args)

    async def _request_unlocked(self, cmd: str, timeout_s: float, **args: Any) -> dict | None:
        self._request_ids += 1
        request_id = self._request_ids
        await self._control.send_multipart([b"", dumps({"cmd": cmd, "id": request_id, **args})])
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not await self._control.poll(int(remaining * 1000) + 1):
                break
            parts = await self._control.recv_multipart()
            if len(parts) >= 2 and parts[0] == b"":
                reply = json.loads(parts[1])
                if reply.get("id") == request_id:
                    return {**reply, "_parts": parts[2:]} if reply.get("ok") else None
        # No answer: a fresh socket, so requests queued for a dead engine are not replayed to it.
        self._control.close(0)
        self._control = self._socket(zmq.DEALER)
        self._control.connect(self.engine)
        return None

    async def _handshake(self) -> bool:
        """Ask the engine for its endpoints and configuration; (re)subscribe when they changed."""
        status = await self._request("status")
        config = await self._request("config") if status else None
        if not status or not config:
            return False
        server = config["config"]["server"]
        self.render_image = bool(server.get("render_image"))
        self.image_size_px = int(server.get("image_size_px", 512))
        self.fov_mm = float(server.get("image_fov_mm", 10.0))
        self.heartbeat_s = float(server.get("heartbeat_s", 1.0))
        self._engine_status(status)
        endpoints = status["endpoints"]
        if endpoints != self.endpoints:
            for sock in self._subs:
                sock.close(0)
            overlay = self._socket(zmq.SUB)
            # libzmq's I/O thread moves messages off the engine's small per-display queue into
            # this one without waiting for Python, so only a bridge this far behind loses any.
            overlay.rcvhwm = 2000
            for topic in (TOPIC_OVERLAY, TOPIC_BACKFILL, TOPIC_DISPLAY, TOPIC_GUIDANCE):
                overlay.subscribe(topic)
            overlay.connect(endpoints["overlay"])
            status_sock = self._socket(zmq.SUB)
            for topic in (TOPIC_HEARTBEAT, TOPIC_EVENT):
                status_sock.subscribe(topic)
            status_sock.connect(endpoints["status"])
            self._subs = [overlay, status_sock]
            self.endpoints = endpoints
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
            if self.endpoints is None or self.state == "engine_lost" or self._rehandshake:
                self._rehandshake = False
                if not await self._handshake():
                    await asyncio.sleep(0.5)
                    continue
                self._update_state()
            if registered != self._subs:
                for sock in registered:
                    with contextlib.suppress(KeyError):
                        poller.unregister(sock)
                for sock in self._subs:
                    poller.register(sock, zmq.POLLIN)
                registered = list(self._subs)
            events = dict(await poller.poll(timeout=int(TICK_S * 1000)))
            for sock in self._subs:
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
            reply = await self._request("results", timeout_s=RESULTS_TIMEOUT_S, pullback_id=view.pullback_id)
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 literals bracketed)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def results_source(results_dir: Path, pullback_file: Path | None, config: Config) -> ResultsSource:
    """A :class:`ResultsSource` for ``octguide view --results``, on the engine's display grid."""
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    pullback = load_replay_pullback(results_dir, pullback_file)
    return ResultsSource(results_dir, pullback, grid)


__all__ = ["ASSETS", "FrameEntry", "ImageCache", "Page", "PullbackView", "ResultsSource", "ViewerBridge",
           "ViewerError", "encode_frame", "load_replay_pullback", "read_results", "record_overlay",
           "results_source"]
