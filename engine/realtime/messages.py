"""What moves between the engine's threads (issue 12 item 3), as frozen dataclasses instead of
string-tagged tuples and dicts. Each is built by one thread and read by another; none is
changed after it is put on a queue.

* worker -> I/O thread (the outbox): :class:`Analysed` (a :class:`FrameJob` and its
  :class:`FrameOutcome`);
* writer -> I/O thread: :class:`Acknowledged`, :class:`PullbackWritten`;
* I/O thread or ``stop()`` -> I/O thread: :class:`Skipped`; reader thread -> I/O thread:
  :class:`ControlReply`;
* I/O thread -> writer: :class:`BeginPullback`, :class:`FrameRecord`, :class:`FinishPullback`.

The frame record *dicts* inside stay dicts: they are the results contract
(docs/schemas/frame_record.schema.json), written as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.realtime.scheduler import FrameJob


@dataclass(frozen=True)
class FrameOutcome:
    """A worker's whole per-frame result.

    Attributes
    ----------
    record : dict
        The frame's frames.jsonl record as measured (the I/O thread adds lane, latency, audit).
    latency_ms : dict of str to float
        Per-stage times, ms (``queue``, the stage's, ``render``, ``analysis``).
    overlay : bytes
        The encoded overlay message body.
    image, grey, lmode : numpy.ndarray or None
        Burned-in BGR image, grey display image, L-mode cuts (uint8), when wanted.
    failed : bool
        The frame's fate is ``failed`` (``record`` is rejected with the reason).
    buffers : BufferPool or None
        The worker's pool ``image`` and ``grey`` were lent from: the I/O thread gives them back
        after publishing (engine/realtime/frame_path.py).
    """

    record: dict
    latency_ms: dict
    overlay: bytes
    image: np.ndarray | None = None
    grey: np.ndarray | None = None
    lmode: np.ndarray | None = None
    failed: bool = False
    buffers: Any = None


@dataclass(frozen=True)
class Analysed:
    job: FrameJob
    outcome: FrameOutcome


@dataclass(frozen=True)
class Acknowledged:
    pullback_id: str
    frames: tuple[int, ...]


@dataclass(frozen=True)
class PullbackWritten:
    pullback_id: str
    pullback: dict  #: the pullback.json written
    results_dir: str


@dataclass(frozen=True)
class Skipped:
    jobs: tuple[FrameJob, ...]
    reason: str


@dataclass(frozen=True)
class ControlReply:
    route: tuple[bytes, ...]
    reply: dict
    parts: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class BeginPullback:
    pullback_id: str
    fields: dict  #: keyword arguments of CaseLog.begin_pullback


@dataclass(frozen=True)
class FrameRecord:
    pullback_id: str
    record: dict


@dataclass(frozen=True)
class FinishPullback:
    pullback_id: str
    state: str
    reason: str | None
    spacing_mm: tuple[float, ...]
    summary: dict = field(default_factory=dict)  #: counts and last_frame_unix


Outgoing = Analysed | Acknowledged | PullbackWritten | Skipped | ControlReply  #: the outbox's items
Write = BeginPullback | FrameRecord | FinishPullback  #: the writer queue's items (and None: stop)

__all__ = ["Acknowledged", "Analysed", "BeginPullback", "ControlReply", "FinishPullback", "FrameOutcome",
           "FrameRecord", "Outgoing", "PullbackWritten", "Skipped", "Write"]

