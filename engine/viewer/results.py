"""Results mode: a finished replay shown by ``octguide view --results DIR``.

Each frame's overlay and display image are rebuilt from the pullback the replay read, with the
engine's own functions (:mod:`engine.display.overlay`); without that pullback the page gets the
numbers, profile and guidance, no images.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

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
from engine.viewer.errors import ViewerError
from engine.viewer.feed import Feed, PullbackView
from engine.viewer.pages import FrameEntry
from streams.pullback import Pullback
from streams.wire.protocol import LMODE_ANGLES_DEG

log = logging.getLogger(__name__)


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



class ResultsFeed(Feed):
    """A finished replay as the viewer's feed: every frame's record at :meth:`start`, each
    image rendered again when a page asks for it."""

    mode = "results"

    def __init__(self, source: ResultsSource):
        super().__init__()
        self.source = source
        self.detail = ""  #: the results folder, and why there are no images when there are none
        self._index: dict[int, int] = {}  #: frame index -> position in the results' records

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    async def stop(self) -> None:
        self.source.stop()

    def _load(self) -> None:
        results = self.source
        results.start()
        self.image_size_px, self.fov_mm = results.grid.size_px, results.grid.fov_mm
        self.render_image = results.pullback is not None
        view = PullbackView(results.pullback_id, n_frames=len(results.records),
                            frame_spacing_mm=results.guidance.get("frame_spacing_mm"))
        self._index = {}
        for i, record in enumerate(results.records):
            entry, _ = results.render(i)
            view.frames[record["frame"]] = entry
            self._index[record["frame"]] = i
        view.guidance = results.guidance
        self.view = view
        self.detail = f"{results.results_dir}" + ("" if results.pullback is not None
                                                  else " (the replay's pullback is not here: no images)")

    async def image(self, frame: int) -> tuple[FrameEntry, tuple[bytes, tuple[int, int]]] | str:
        entry, image = await asyncio.to_thread(self.source.render, self._index[frame])
        if image is None:
            return "the replay's pullback is not available"
        return entry, (image, (self.image_size_px,) * 2)


def results_source(results_dir: Path, pullback_file: Path | None, config: Config) -> ResultsSource:
    """A :class:`ResultsSource` for ``octguide view --results``, on the engine's display grid."""
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    pullback = load_replay_pullback(results_dir, pullback_file)
    return ResultsSource(results_dir, pullback, grid)


__all__ = ["ResultsFeed", "ResultsSource", "load_replay_pullback", "read_results", "record_overlay", "results_source",
           "uncertainty_overlay"]
