"""The pages connected to the viewer: one WebSocket session each, with its outbox.

A page's session begins with a snapshot of everything the viewer holds, then receives what the
bridge broadcasts and the answers to its own requests (``get_image`` only: anything else is one
``error`` reply, counted). Each page has an outbox of at most ``MAX_OUTBOX`` items sent in
order; a live image waiting there is stripped to its record when a newer live image arrives, so
a slow page shows the newest frame and still receives every record. A page this far behind is
closed (counted as ``pages_dropped``); it reconnects and resyncs from a new snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streams.wire.protocol import dumps

log = logging.getLogger(__name__)

MAX_OUTBOX = 4096  #: messages queued for one page at most (a page this far behind is dropped)
SNAPSHOT_CHUNK = 256  #: frame records per outbox item of a new page's snapshot
MAX_REQUEST_FRAME = 2**31 - 1  #: get_image frame indices are ints in 0..this


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



class BadPageRequest(ValueError):
    """A page request that is not ``{"type": "get_image", "frame": int}``; the message is the
    one-line reason the page is sent."""


def parse_page_request(text: str) -> int:
    """The frame index a page's request asks the image of.

    >>> parse_page_request('{"type": "get_image", "frame": 7}')
    7
    >>> parse_page_request('{"type": "get_image", "frame": -1}')
    Traceback (most recent call last):
    ...
    engine.viewer.pages.BadPageRequest: get_image: 'frame' must be an integer in 0..2147483647
    """
    try:
        request = json.loads(text)
    except (ValueError, RecursionError):
        raise BadPageRequest("requests are JSON objects with a 'type'") from None
    if not isinstance(request, dict) or not isinstance(request.get("type"), str):
        raise BadPageRequest("requests are JSON objects with a 'type'")
    if request["type"] != "get_image":
        raise BadPageRequest(f"unknown request type {request['type'][:40]!r}")
    if set(request) - {"type", "frame"}:
        raise BadPageRequest("get_image takes only 'frame'")
    frame = request.get("frame")
    if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame <= MAX_REQUEST_FRAME:
        raise BadPageRequest(f"get_image: 'frame' must be an integer in 0..{MAX_REQUEST_FRAME}")
    return frame


class PageSessions:
    """The connected pages: each one's WebSocket session, and broadcasts to all of them.

    Parameters
    ----------
    stats : dict
        The viewer's counters; this adds to ``pages_dropped`` and ``bad_requests``.
    """

    def __init__(self, stats: dict[str, int]):
        self.pages: set[Page] = set()
        self.stats = stats

    async def serve(self, ws: ServerConnection, snapshot: Callable[[Page], None],
                    answer: Callable[[Page, int], Awaitable[None]]) -> None:
        """One page's session until it closes: ``snapshot(page)`` fills its outbox first, then
        each valid request is ``await answer(page, frame)``, in order."""
        page = Page(ws)
        snapshot(page)
        self.pages.add(page)
        pump = asyncio.create_task(page.pump())
        try:
            async for message in ws:
                if not isinstance(message, str):
                    self.bad_request(page, "requests are JSON text messages")
                    continue
                try:
                    frame = parse_page_request(message)
                except BadPageRequest as exc:
                    self.bad_request(page, str(exc))
                    continue
                await answer(page, frame)
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

    def bad_request(self, page: Page, error: str) -> None:
        self.stats["bad_requests"] += 1
        page.put_text({"type": "error", "error": error})

    def broadcast_text(self, message: dict) -> None:
        for page in list(self.pages):
            self._deliver(page, page.put_text, message)

    def broadcast_frame(self, entry: FrameEntry, image: tuple[bytes, tuple[int, int]] | None,
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


__all__ = ["MAX_OUTBOX", "MAX_REQUEST_FRAME", "SNAPSHOT_CHUNK", "BadPageRequest", "FrameEntry", "Page",
           "PageSessions", "encode_frame", "parse_page_request"]
