"""The engine's writer thread: the only user of the SQLite case log (engine/realtime/caselog.py).

It commits frame records in batches and only then acknowledges them (so an acknowledged frame
survives a kill), opens and finishes pullbacks (guidance computed and the results folder written
atomically, :func:`engine.realtime.results.export_pullback`), and on start marks the pullbacks a
killed engine left open as interrupted. Other threads only :meth:`CaseLogWriter.put` items
(:data:`engine.realtime.messages.Write`); what the writer has to say goes back through the
engine's outbox (``post``) with a wake-up of the I/O thread's poll.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import zmq

from engine.config import Config
from engine.realtime.caselog import CaseLog
from engine.realtime.messages import (
    Acknowledged,
    BeginPullback,
    FinishPullback,
    FrameRecord,
    Outgoing,
    PullbackWritten,
    Write,
)
from engine.realtime.results import export_pullback
from engine.realtime.tracker import PullbackState, PullbackTracker

log = logging.getLogger(__name__)

WRITER_BATCH = 256  #: frame records committed per transaction at most
INTERRUPTED_REASON = "the engine stopped without closing it"  #: of pullbacks a previous run left open
_STOP = object()  #: the queue's end marker (not None: the batching loop holds None as "nothing held")


def wake(sock: zmq.Socket) -> None:
    """Wake the I/O thread's poll (results or acknowledgements are in the outbox)."""
    try:
        sock.send(b"", zmq.NOBLOCK)
    except zmq.Again:
        pass  # wake-ups are queued already


class CaseLogWriter:
    """The writer thread (module docstring).

    Parameters
    ----------
    config : Config
        The engine's configuration (results folder, guidance thresholds).
    config_hash : str
        Written into every pullback.json.
    model : callable
        ``model() -> dict``: the model identity (known once worker 0 has started).
    tracker : PullbackTracker
        Told the ids the case log knows (``known_ids``) before the engine reads any frame.
    post : callable
        Puts an :data:`~engine.realtime.messages.Outgoing` item in the engine's outbox.
    errors : list
        The engine's failures: a case log that cannot open or write is appended here.
    maxsize : int
        Items the queue holds at most (a full queue blocks the I/O thread: back-pressure).
    """

    def __init__(self, config: Config, config_hash: str, model: Callable[[], dict],
                 tracker: PullbackTracker, post: Callable[[Outgoing], None],
                 errors: list[BaseException], maxsize: int):
        self.config = config
        self.results_dir = Path(config.server.results_dir)
        self.config_hash = config_hash
        self._model = model
        self._tracker = tracker
        self._post = post
        self._errors = errors
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.ready = threading.Event()
        self.interrupted_ids: set[str] = set()  #: left open by a previous run, marked interrupted
        self.thread: threading.Thread | None = None

    # -- the other threads' side -------------------------------------------------------------------
    def put(self, item: Write) -> None:
        self._queue.put(item)

    def record(self, pb: PullbackState, record: dict, audit: dict) -> None:
        """Hand a frame's final record to the writer, with its pullback id and audit fields
        (a frame rejected before any frame described its pullback has no case-log row: dropped)."""
        record["pullback_id"] = pb.pullback_id
        record["audit"] = audit
        if pb.logged:
            self._queue.put(FrameRecord(pb.pullback_id, record))

    def close(self) -> None:
        """Tell the thread to stop once it has written everything queued before."""
        self._queue.put(_STOP)

    def start(self, context: zmq.Context, wake_endpoint: str) -> None:
        self.thread = threading.Thread(target=self._main, args=(context, wake_endpoint),
                                       name="octguide-writer", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout_s: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)

    # -- the writer thread ---------------------------------------------------------------------------
    def _main(self, context: zmq.Context, wake_endpoint: str) -> None:
        caselog = CaseLog(self.results_dir / "caselog.sqlite")
        waker = context.socket(zmq.PUSH)
        waker.linger = 0
        waker.connect(wake_endpoint)  # inproc: connecting before the I/O thread binds is fine
        try:
            caselog.open()
            interrupted = caselog.interrupt_open(INTERRUPTED_REASON)
            self.interrupted_ids = set(interrupted)
            for pullback_id in interrupted:
                self._export(caselog, pullback_id, "interrupted", [], None, {})
                log.warning("pullback %s was left open by a previous run: marked interrupted", pullback_id)
            self._tracker.known_ids = caselog.known_ids()  # read by the I/O thread only after this
        except BaseException as exc:  # noqa: BLE001 (re-raised by start() in the caller's thread)
            self._errors.append(exc)
            caselog.close()
            waker.close()
            return
        self.ready.set()
        try:
            self._loop(caselog, waker)
        except BaseException as exc:  # the case log failing is fatal for acknowledgement
            log.exception("case log writer failed")
            self._errors.append(exc)
        finally:
            caselog.close()
            waker.close()

    def _loop(self, caselog: CaseLog, waker: zmq.Socket) -> None:
        held = None  # an item taken while batching frames, handled next
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if item is _STOP:
                return
            if isinstance(item, FrameRecord):
                batch = [item]
                while len(batch) < WRITER_BATCH:
                    try:
                        held = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(held, FrameRecord):
                        break
                    batch.append(held)
                    held = None
                self._commit_frames(caselog, batch)
            else:
                self._write_one(caselog, item)
            wake(waker)

    def _commit_frames(self, caselog: CaseLog, batch: list[FrameRecord]) -> None:
        by_pullback: dict[str, list[dict]] = {}
        for item in batch:
            by_pullback.setdefault(item.pullback_id, []).append(item.record)
        for pullback_id, records in by_pullback.items():
            caselog.add_frames(pullback_id, records)
            self._post(Acknowledged(pullback_id, tuple(r["frame"] for r in records)))

    def _write_one(self, caselog: CaseLog, item: Write) -> None:
        if isinstance(item, BeginPullback):
            caselog.begin_pullback(item.pullback_id, **item.fields)
        elif isinstance(item, FinishPullback):
            result = self._export(caselog, item.pullback_id, item.state, list(item.spacing_mm),
                                  item.reason, item.summary)
            self._post(PullbackWritten(item.pullback_id, result["pullback"], result["results_dir"]))

    def _export(self, caselog: CaseLog, pullback_id: str, state: str, spacing: list,
                reason: str | None, summary: dict) -> dict:
        """Compute the guidance (complete pullbacks) and write the results folder atomically
        (:func:`engine.realtime.results.export_pullback`)."""
        return export_pullback(caselog, self.results_dir / "pullbacks", pullback_id, state, spacing, reason,
                               summary, self.config.guidance, self._model(), self.config_hash)


__all__ = ["INTERRUPTED_REASON", "WRITER_BATCH", "CaseLogWriter", "wake"]
