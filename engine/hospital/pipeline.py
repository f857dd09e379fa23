"""What ``octguide listen`` does with a received pullback: analyse it (through the running
engine: the caller passes ``analyse``), write the SR and key images, queue them in the outbox for
every configured destination and send them; each step audited.

Two threads: the *analysis* worker takes received instances in arrival order (one pullback at a
time: the engine is the bottleneck, and the order is what the cath lab sent); the *sender* drains
the outbox every ``poll_s`` so a PACS outage delays reports without stopping the analysis.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.hospital.audit import AuditLog
from engine.hospital.config import DicomConfig
from engine.hospital.export import load_results, write_pullback_dicom
from engine.hospital.outbox import Outbox
from streams.errors import OctguideError

log = logging.getLogger(__name__)


class ListenPipeline:
    """Lifecycle: :meth:`start`, :meth:`submit` per received instance, :meth:`stop`."""

    def __init__(self, config: DicomConfig, audit: AuditLog, outbox: Outbox,
                 analyse: Callable[[Path], Path], poll_s: float = 0.2, max_queued: int = 64):
        self.config = config
        self.audit = audit
        self.outbox = outbox
        self.analyse = analyse
        self.poll_s = poll_s
        self._queue: queue.Queue[tuple[Path, str] | None] = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.counts = {"analysed": 0, "analysis_failed": 0, "reports": 0, "queued_for_send": 0}
        self.last_report_unix: float | None = None

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._analysis_loop, name="listen-analysis", daemon=True),
                         threading.Thread(target=self._send_loop, name="listen-send", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout_s)

    def submit(self, path: Path, who: str) -> None:
        """Queue a received instance (blocks when ``max_queued`` pullbacks are waiting: the
        SCP's response then waits too, which slows a sender instead of dropping a pullback)."""
        self._queue.put((path, who))

    def _analysis_loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            self.process(*item)

    def process(self, path: Path, who: str) -> list[Path]:
        """Analyse one received instance, write its SR and key images, queue them for sending."""
        source_uid = path.stem
        try:
            results = self.analyse(path)
            pullback, _ = load_results(results)
        except (OctguideError, OSError) as exc:
            self._count("analysis_failed")
            self.audit.record("failure", who, [source_uid], f"analysis failed: {exc}")
            return []
        self._count("analysed")
        self.audit.record("analysis", who, [source_uid], str(pullback.get("status")),
                          f"pullback {pullback.get('pullback_id')}, results {results}")
        try:
            paths = write_pullback_dicom(results, path, self.config)
        except (OctguideError, OSError, ValueError) as exc:
            self.audit.record("failure", who, [source_uid], f"report not written: {exc}")
            return []
        self._count("reports")
        self.last_report_unix = time.time()
        for destination in self.config.parsed_destinations():
            for report in paths:
                if self.outbox.enqueue(report, destination):
                    self._count("queued_for_send")
        return paths

    def _send_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.outbox.send_due()
            except OctguideError as exc:  # a malformed destination or file: say so, keep going
                log.error("outbox: %s", exc)
