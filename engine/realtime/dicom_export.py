"""The engine's DICOM export of completed pullbacks (issue 14: ``[dicom] write_sr``,
``[dicom] destinations``).

When a pullback completes, :meth:`DicomExport.submit` hands its results folder to one thread of
its own ("octguide-dicom": never the I/O thread, and not the writer, whose frame
acknowledgements must not wait on an SR): the SR and key images are written with
:func:`engine.hospital.export.write_pullback_dicom` (the same function ``octguide listen`` and
``replay --sr`` use), queued for every configured destination in the persistent
:class:`engine.hospital.outbox.Outbox` (``results_dir/outbox``), and sent. The I/O thread calls
:meth:`poll` on each heartbeat so entries waiting on back-off (a PACS that is down) are retried.
Every failure is counted and its last reason kept for status; none stops the engine.

The hospital packages (highdicom, pynetdicom) are imported only when the export is enabled.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_KEEPERS = 8  #: open wire pullbacks whose key-frame candidates are kept at once (~9 frames each)


class DicomExport:
    """SR + key images per completed pullback, and their sending (module docstring).

    Parameters
    ----------
    config : Config
        The engine config (``config.dicom``: ``write_sr``, ``destinations``, AE title).
    results_root : Path
        The engine's results folder; the outbox lives in ``results_root/outbox``.
    """

    def __init__(self, config: Any, results_root: Path):
        from engine.hospital.config import dicom_config

        self.config = config
        self.dicom = dicom_config(config)
        self.destinations = list(self.dicom.parsed_destinations())
        self.outbox_folder = Path(results_root) / "outbox"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octguide-dicom")
        self._outbox: Any = None  # opened on the pool's thread (SQLite: one thread per connection)
        self._lock = threading.Lock()
        self._sending = False
        self.counts = {"reports_written": 0, "report_failures": 0, "queued_for_send": 0,
                       "sent": 0, "send_failures": 0}
        self.last_error: str | None = None
        self._keepers: dict[str, Any] = {}  # pullback id -> KeyFrameKeeper (I/O thread only)

    # called from the I/O thread (cheap: everything happens on the pool's thread) ---------------------
    def offer(self, frame: Any, record: dict) -> None:
        """Consider an analysed wire frame for the key images (MLA, MSA, worst malapposition):
        a wire pullback has no IVOCT instance to take them from later, so the few candidates
        are kept (pixels copied) as they pass (``engine.hospital.wire_frames``). At most
        :data:`MAX_KEEPERS` pullbacks are tracked; a failure is counted, never raised."""
        try:
            keeper = self._keepers.get(frame.pullback_id)
            if keeper is None:
                if len(self._keepers) >= MAX_KEEPERS:
                    self._keepers.pop(next(iter(self._keepers)))  # the oldest open pullback
                from engine.hospital.wire_frames import KeyFrameKeeper

                keeper = self._keepers[frame.pullback_id] = KeyFrameKeeper(frame.pullback_id)
            keeper.offer(frame, record)
        except Exception as exc:  # noqa: BLE001 (key images are a by-product: never the frame's fate)
            self._fail("report_failures", f"pullback {frame.pullback_id}: key frame not kept: "
                       f"{type(exc).__name__}: {exc}")

    def discard(self, pullback_id: str) -> None:
        """Forget the key-frame candidates of a pullback that will get no report."""
        self._keepers.pop(pullback_id, None)

    def submit(self, pullback_id: str, results_dir: str | Path, n_frames: int | None = None) -> None:
        """Write and queue the DICOM of one completed pullback (off the caller's thread), with
        the key images of the frames kept by :meth:`offer`."""
        keeper = self._keepers.pop(pullback_id, None)
        kept = keeper.kept(n_frames) if keeper is not None else None
        self._pool.submit(self._export, pullback_id, Path(results_dir), kept)

    def poll(self) -> None:
        """Retry what the outbox holds (one pass at a time; nothing when no destination)."""
        if not self.destinations:
            return
        with self._lock:
            if self._sending:
                return
            self._sending = True
        self._pool.submit(self._send)

    def status(self) -> dict:
        with self._lock:
            return {"write_sr": True, "destinations": [str(d) for d in self.destinations],
                    **self.counts, "last_error": self.last_error}

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish what was submitted (one last send pass), then close the outbox."""
        del timeout_s  # the pool's queue is short: an export and one send pass per pullback
        self._pool.submit(self._close_outbox)
        self._pool.shutdown(wait=True)

    # the pool's thread ------------------------------------------------------------------------------
    def _fail(self, key: str, text: str) -> None:
        with self._lock:
            self.counts[key] += 1
            self.last_error = text[:500]
        log.warning("dicom export: %s", text)

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self.counts[key] += n

    def _export(self, pullback_id: str, results_dir: Path, kept: Any = None) -> None:
        try:
            from engine.hospital.export import write_pullback_dicom

            paths = write_pullback_dicom(results_dir, kept, self.config)
        except Exception as exc:  # noqa: BLE001 (a report that cannot be written is counted, never fatal)
            self._fail("report_failures", f"pullback {pullback_id}: SR not written: {type(exc).__name__}: {exc}")
            return
        self._count("reports_written", 1)
        if not self.destinations:
            return
        try:
            outbox = self._open_outbox()
            queued = sum(bool(outbox.enqueue(path, destination))
                         for destination in self.destinations for path in paths)
        except Exception as exc:  # noqa: BLE001
            self._fail("send_failures", f"pullback {pullback_id}: not queued: {type(exc).__name__}: {exc}")
            return
        self._count("queued_for_send", queued)
        with self._lock:
            self._sending = True
        self._send()

    def _open_outbox(self) -> Any:
        if self._outbox is None:
            from engine.hospital.outbox import Outbox

            self._outbox = Outbox(self.outbox_folder, self.dicom)
        return self._outbox

    def _send(self) -> None:
        try:
            counts = self._open_outbox().send_due()
            self._count("sent", counts.get("sent", 0))
            failed = counts.get("failed_attempts", 0)
            if failed:
                self._fail("send_failures", f"{failed} send attempts failed (retried with back-off; "
                           "the outbox audit has each reason)")
                with self._lock:
                    self.counts["send_failures"] += failed - 1
        except Exception as exc:  # noqa: BLE001 (a PACS problem never stops the engine)
            self._fail("send_failures", f"outbox: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._sending = False

    def _close_outbox(self) -> None:
        if self._outbox is not None:
            if self.destinations:
                self._send()
            self._outbox.close()
            self._outbox = None


__all__ = ["DicomExport"]
