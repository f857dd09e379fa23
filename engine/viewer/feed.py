"""The pullback as the viewer knows it, and the feeds that fill it in.

A feed is where the viewer's pullback comes from: a live engine
(:class:`engine.viewer.live.EngineFeed`) or a finished replay
(:class:`engine.viewer.results.ResultsFeed`). The bridge serves pages from whichever it has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field

from engine.viewer.pages import FrameEntry, Page
from streams.wire.protocol import Limits

MAX_AXIS_FRAMES = Limits().max_n_frames  #: an n_frames above this (or not a positive int) is unknown


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


async def cancel_tasks(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks``, wait until each has finished, and empty the list (a viewer part's stop)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()


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


class Feed:
    """What the bridge reads of a feed, and its lifecycle (:meth:`start`, :meth:`tick` every
    bridge tick, :meth:`stop`). The attributes are the display the page is told of in its
    ``hello`` and ``state`` messages; the live feed updates them from the engine."""

    mode = "live"  #: the page's mode (``hello.mode``)

    def __init__(self) -> None:
        self.view: PullbackView | None = None  #: the current pullback
        self.render_image = False  #: whether frames come with display images
        self.image_size_px = 512  #: the display grid's side, pixels
        self.fov_mm = 10.0  #: the display grid's field of view, mm
        self.heartbeat_s = 1.0  #: the engine's heartbeat period, seconds
        self.last_heartbeat: float | None = None  #: monotonic time of the engine's last status
        self.engine_info: dict | None = None  #: engine version, model, backends (state message)
        self.counters: dict | None = None  #: the engine's frame counters (state message)

    async def start(self) -> None:
        """Open what the feed reads (before the bridge serves pages)."""

    async def stop(self) -> None:
        """Close it (after the bridge stopped serving)."""

    def tick(self, now: float) -> None:
        """Periodic work at monotonic time ``now``."""

    def put_snapshot_image(self, page: Page) -> None:
        """After a new page's frame records: the image it should draw first, if any."""

    async def image(self, frame: int) -> tuple[FrameEntry, tuple[bytes, tuple[int, int]]] | str:
        """Frame ``frame`` (one of :attr:`view`'s) with its grey image and its shape, or the
        reason there is none."""
        raise NotImplementedError


__all__ = ["MAX_AXIS_FRAMES", "Feed", "ImageCache", "PullbackView", "axis_frames", "cancel_tasks"]
