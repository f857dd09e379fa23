"""The contract of a per-frame analysis stage and what it returns (no sockets, no threads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streams.pullback import Frame


@dataclass(frozen=True)
class FrameResult:
    """What the analysis stage makes of one frame.

    Attributes
    ----------
    pullback_id : str
        Pullback of the frame.
    frame_index : int
        0-based acquisition index.
    timestamp_s : float
        Acquisition time of the frame, s.
    record : dict
        The frame's ``frames.jsonl`` object (docs/results.md) as measured: ``frame``,
        ``status``, ``confidence``, ``lumen``, ``eel``, ``plaque``, ``plaque_free_arc_deg``,
        ``calcium``, ``lipid``, ``guidewire``, ``struts``, ``stent``. The engine adds
        ``pullback_id``, ``latency_ms`` and ``audit``.
    latency_ms : dict of str to float
        Processing time of each stage in order, ms (e.g. ``{"preprocess": .., "segment": ..}``).
    image : numpy.ndarray or None
        The frame scan-converted to the engine's display grid (``(N, N)``, any real dtype), for
        the rendered overlay; None when the stage makes none.
    """

    pullback_id: str
    frame_index: int
    timestamp_s: float
    record: dict
    latency_ms: dict
    image: np.ndarray | None = None


class AnalysisStage(Protocol):
    """The per-frame analysis the engine runs: one instance per worker thread.

    ``start()`` loads models, opens runtimes and warms up (called in the worker thread, before
    the engine binds its sockets); ``process(frame)`` analyses one frame; ``stop()`` releases
    everything. ``reset()``, where a stage has it, forgets state carried from frame to frame
    (the engine calls it after its warm-up frames). ``status()`` reports, at least, ``{"model": {"name", "version", "sha256"},
    "backends": {...}, "fallbacks": [...]}`` for the status channel and audit records.
    """

    def start(self) -> None: ...

    def process(self, frame: Frame) -> FrameResult: ...

    def stop(self) -> None: ...

    def status(self) -> dict: ...


__all__ = ["AnalysisStage", "FrameResult"]
