"""The pullback tracker: which pullbacks are open, which frame each has seen, and when each is
finished (issue 12 item 4). Pure bookkeeping of the I/O thread: no sockets, no threads, no
clock of its own (every method takes ``now``), so it is unit-tested without an engine
(tests/engine/realtime/test_tracker.py). The engine does the side effects (events, case-log
writes, scheduling) on what it decides.

Admission policy (docs/results.md, "Admission"): a START opens a pullback only once its frame is
accepted (:meth:`PullbackTracker.candidate`, then :meth:`~PullbackTracker.register`); at most
``max_open`` are open or ending; a pullback silent for ``idle_timeout_s`` ends incomplete; after
END, ``end_grace_s`` is waited for missing frames.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from streams.geometry import FrameGeometry
from streams.wire.protocol import FrameHeader, ProtocolError

RECENT_PULLBACKS = 64  #: finished pullbacks kept in memory for status queries
#: Rejections of a frame of an open pullback that still use up its index (like a payload
#: rejection): the frame's record carries the reason and a correct resend is a duplicate_frame.
INDEX_USING_REJECTIONS = frozenset({"geometry_changed"})


@dataclass
class PullbackState:
    """What the I/O thread knows of one pullback.

    States: ``open`` (accepting frames), ``ending`` (END seen, stopped, or the sender went
    silent: waiting for outstanding frames), ``finalizing`` (handed to the writer), ``complete``
    or ``incomplete``.
    """

    pullback_id: str
    opened_monotonic: float
    opened_unix: float
    geometry: FrameGeometry | None = None
    dtype_code: int = 0
    frame_rate_hz: float = 0.0
    n_frames_expected: int = 0
    state: str = "open"
    reason: str | None = None
    end_index: int | None = None
    highest: int = -1
    seen: set = field(default_factory=set)
    spacing_mm: dict = field(default_factory=dict)
    position_mm: float = 0.0
    outstanding: int = 0
    last_frame_monotonic: float = 0.0
    last_frame_unix: float = 0.0
    last_shown: int = -1
    logged: bool = False  #: the case log has its row
    counts: dict = field(default_factory=lambda: {
        "received": 0, "rejected": 0, "shown": 0, "backfilled": 0, "late": 0, "failed": 0,
        "skipped": 0, "never_received": 0, "out_of_order": 0, "acknowledged": 0})
    results_dir: str | None = None
    guidance_delay_s: float | None = None

    def admit(self, header: FrameHeader, max_frames: int) -> None:
        """Check a frame against the pullback; raises :class:`ProtocolError` to reject it."""
        index = header.frame_index
        if self.state != "open" and not (self.state == "ending" and self.end_index is not None
                                         and self.reason is None):
            raise ProtocolError("finished_pullback", f"pullback {self.pullback_id} is {self.state}")
        if index in self.seen:
            raise ProtocolError("duplicate_frame", f"frame {index} of {self.pullback_id} was already received")
        if self.end_index is not None and index > self.end_index:
            raise ProtocolError("frame_after_end", f"frame {index} is after the END frame {self.end_index}")
        if index >= max_frames:
            raise ProtocolError("pullback_too_long", f"frame {index} exceeds max_frames_per_pullback={max_frames}")
        geometry = header.geometry()
        if self.geometry is not None and (geometry != self.geometry or header.dtype_code != self.dtype_code):
            raise ProtocolError("geometry_changed", f"frame {index} geometry differs from the pullback's")


@dataclass(frozen=True)
class Completion:
    """A pullback the tracker found finished: its final state and the frames never received."""

    pullback: PullbackState
    state: str  #: "complete" or "incomplete"
    missing: tuple[int, ...]


class PullbackTracker:
    """Every pullback the engine knows of (module docstring).

    Parameters
    ----------
    max_open : int
        Pullbacks open or ending at once (``server.max_open_pullbacks``).
    max_frames : int
        Frames per pullback (``server.max_frames_per_pullback``).
    idle_timeout_s, end_grace_s : float
        ``server.pullback_idle_timeout_s`` and ``server.end_grace_s``, s.
    results_root : Path, optional
        Where results folders live: an id with a folder there is known too.
    """

    def __init__(self, max_open: int, max_frames: int, idle_timeout_s: float, end_grace_s: float,
                 results_root: Path | None = None, recent: int = RECENT_PULLBACKS):
        self.max_open = max_open
        self.max_frames = max_frames
        self.idle_timeout_s = idle_timeout_s
        self.end_grace_s = end_grace_s
        self.results_root = results_root
        self.recent = recent
        self.pullbacks: OrderedDict[str, PullbackState] = OrderedDict()
        self.known_ids: set[str] = set()  #: every id in the case log (set once at start, then added to)

    def get(self, pullback_id: str) -> PullbackState | None:
        return self.pullbacks.get(pullback_id)

    def known(self, pullback_id: str) -> bool:
        """Whether a pullback was ever opened: the case log is the source of truth (a results
        folder removed by hand does not make its id new again); an existing results folder
        counts too."""
        return pullback_id in self.known_ids or (
            self.results_root is not None and (self.results_root / "pullbacks" / pullback_id).exists())

    def open_count(self) -> int:
        return sum(p.state in ("open", "ending") for p in self.pullbacks.values())

    def candidate(self, header: FrameHeader, now_monotonic: float, now_unix: float) -> PullbackState:
        """The pullback a START frame would open, its frame admitted (not registered).

        Raises
        ------
        ProtocolError
            ``finished_pullback``, ``unknown_pullback`` (not a START), ``too_many_pullbacks``, or
            what :meth:`PullbackState.admit` raises.
        """
        pid = header.pullback_id
        if self.known(pid):
            raise ProtocolError("finished_pullback", f"pullback {pid} has already been received")
        if not header.start_of_pullback:
            raise ProtocolError("unknown_pullback",
                                f"pullback {pid} was never opened (no START frame or start_pullback)")
        if self.open_count() >= self.max_open:
            raise ProtocolError("too_many_pullbacks",
                                f"{self.max_open} pullbacks are open (server.max_open_pullbacks)")
        pb = PullbackState(pid, now_monotonic, now_unix, n_frames_expected=header.n_frames,
                           last_frame_monotonic=now_monotonic)
        pb.admit(header, self.max_frames)
        return pb

    def new(self, pullback_id: str, n_frames: int, now_monotonic: float, now_unix: float) -> PullbackState:
        """A pullback opened by the control channel (``start_pullback``), registered."""
        return self.register(PullbackState(pullback_id, now_monotonic, now_unix, n_frames_expected=n_frames,
                                           last_frame_monotonic=now_monotonic))

    def register(self, pb: PullbackState) -> PullbackState:
        self.pullbacks[pb.pullback_id] = pb
        self.known_ids.add(pb.pullback_id)
        self.trim()
        return pb

    def admit(self, pb: PullbackState, header: FrameHeader) -> None:
        """Check a frame of an open pullback (raises :class:`ProtocolError`)."""
        pb.admit(header, self.max_frames)

    @staticmethod
    def note_frame(pb: PullbackState, header: FrameHeader, now_monotonic: float, now_unix: float) -> None:
        """Record that ``pb`` has seen the frame of ``header`` (its index is used up)."""
        index = header.frame_index
        pb.seen.add(index)
        pb.counts["received"] += 1
        pb.spacing_mm[index] = header.step_mm
        pb.last_frame_monotonic = now_monotonic
        pb.last_frame_unix = now_unix
        if header.end_of_pullback:
            pb.end_index = index
            pb.state = "ending"
        if index < pb.highest:
            pb.counts["out_of_order"] += 1
        elif index == pb.highest + 1:
            pb.position_mm += header.step_mm if index else 0.0
        else:
            pb.position_mm = index * header.step_mm
        pb.highest = max(pb.highest, index)

    @staticmethod
    def missing(pb: PullbackState) -> list[int]:
        last = pb.end_index if pb.end_index is not None else pb.highest
        return [i for i in range(last + 1) if i not in pb.seen]

    def silent(self, now_monotonic: float) -> list[PullbackState]:
        """Open pullbacks whose sender has been silent past the idle timeout: now ``ending``
        with the reason (returned, so the engine can say so)."""
        out = []
        for pb in self.pullbacks.values():
            silent_s = now_monotonic - pb.last_frame_monotonic
            if pb.state == "open" and silent_s > self.idle_timeout_s:
                pb.state = "ending"
                pb.reason = (f"sender silent for {silent_s:.1f} s after frame {pb.highest} "
                             "without an END frame")
                out.append(pb)
        return out

    def completions(self, now_monotonic: float) -> list[Completion]:
        """Pullbacks ending with nothing outstanding whose missing frames are no longer awaited
        (none missing, a reason to stop, or ``end_grace_s`` over)."""
        out = []
        for pb in self.pullbacks.values():
            if pb.state != "ending" or pb.outstanding:
                continue
            missing = self.missing(pb)
            if missing and pb.reason is None and now_monotonic - pb.last_frame_monotonic < self.end_grace_s:
                continue
            out.append(Completion(pb, "complete" if pb.reason is None else "incomplete", tuple(missing)))
        return out

    def trim(self) -> None:
        """Forget finished pullbacks beyond the ``recent`` newest."""
        done = [pid for pid, p in self.pullbacks.items() if p.state in ("complete", "incomplete")]
        for pid in done[: max(0, len(done) - self.recent)]:
            del self.pullbacks[pid]


__all__ = ["INDEX_USING_REJECTIONS", "Completion", "PullbackState", "PullbackTracker"]
