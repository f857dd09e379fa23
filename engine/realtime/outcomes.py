"""What the I/O thread does with what comes back (I/O thread only): an analysed frame is given
its fate (``shown``, ``late``, ``backfilled`` or ``failed``), published and recorded; the
writer's acknowledgements are counted and announced; pullbacks that are done (END plus grace,
silence, stop) are finished through the writer, and the guidance it returns is published."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.realtime.dicom_export import DicomExport
from engine.realtime.messages import FinishPullback, FrameOutcome
from engine.realtime.publisher import Publisher
from engine.realtime.scheduler import FrameJob
from engine.realtime.status import LatencyWindow
from engine.realtime.tracker import PullbackState, PullbackTracker
from engine.realtime.writer import CaseLogWriter
from streams.wire.protocol import (
    LMODE_ANGLES_DEG,
    TOPIC_BACKFILL,
    TOPIC_DISPLAY,
    TOPIC_GUIDANCE,
    TOPIC_IMAGE,
    TOPIC_OVERLAY,
    dumps,
)


class Outcomes:
    """Fates, acknowledgements and finished pullbacks (module docstring).

    Parameters
    ----------
    counters : dict
        The engine's counters.
    tracker : PullbackTracker
        The open pullbacks.
    publisher : Publisher
        Display messages and events.
    writer : CaseLogWriter
        Frame records and pullback finishing.
    latency : LatencyWindow
        Live end-to-end times (status).
    image_fov_mm : float
        Field of view of published images, mm (their envelope states it).
    dicom_export : DicomExport or None
        SR and key images of complete pullbacks (``[dicom] write_sr``).
    audit : callable
        ``audit() -> dict``: model, engine version and config hash of every record.
    """

    def __init__(self, counters: dict[str, Any], tracker: PullbackTracker, publisher: Publisher,
                 writer: CaseLogWriter, latency: LatencyWindow, image_fov_mm: float,
                 dicom_export: DicomExport | None, audit: Callable[[], dict]):
        self.counters = counters
        self.tracker = tracker
        self.publisher = publisher
        self.writer = writer
        self.latency = latency
        self.image_fov_mm = image_fov_mm
        self.dicom_export = dicom_export
        self._audit = audit

    # -- analysed frames ---------------------------------------------------------------------------
    def _fate(self, job: FrameJob, out: FrameOutcome, pb: PullbackState | None) -> tuple[str, bytes]:
        """The frame's fate and the topic its overlay goes out on."""
        frame = job.frame
        if out.failed:
            rejected = self.counters["rejected"]
            rejected["analysis_error"] = rejected.get("analysis_error", 0) + 1
            self.publisher.event("rejected", reason="analysis_error", detail=out.record["reason"],
                                 pullback_id=frame.pullback_id, frame=frame.index)
            return "failed", TOPIC_OVERLAY if job.lane == "live" else TOPIC_BACKFILL
        if job.lane == "live" and pb is not None and frame.index > pb.last_shown:
            return "shown", TOPIC_OVERLAY
        if job.lane == "live":
            return "late", TOPIC_BACKFILL
        return "backfilled", TOPIC_BACKFILL

    def analysed(self, job: FrameJob, out: FrameOutcome) -> None:
        """Publish an analysed frame (overlay, L-mode cuts, images) and record its fate."""
        frame = job.frame
        pb = self.tracker.pullbacks.get(frame.pullback_id)
        record, latency = out.record, out.latency_ms
        fate, topic = self._fate(job, out, pb)
        if topic == TOPIC_OVERLAY and pb is not None:
            pb.last_shown = max(pb.last_shown, frame.index)
        envelope = self.publisher.envelope(frame.pullback_id, frame.index, job.lane, record.get("status"))
        end_to_end_ms = (time.perf_counter_ns() - job.received_ns) / 1e6
        envelope["end_to_end_ms"] = round(end_to_end_ms, 3)
        self._publish(topic, envelope, out)
        if self.dicom_export is not None and record.get("status") == "ok":
            self.dicom_export.offer(frame, record)
        if fate == "shown":
            self.latency.add(end_to_end_ms)
        self.counters[fate] += 1
        if pb is None:
            return
        pb.outstanding -= 1
        pb.counts[fate] += 1
        latency["end_to_end"] = end_to_end_ms
        record["latency_ms"] = {k: round(v, 3) for k, v in latency.items()}
        record["lane"] = "live" if topic == TOPIC_OVERLAY else "backfill"
        self.writer.record(pb, record, self._audit())

    def _publish(self, topic: bytes, envelope: dict, out: FrameOutcome) -> None:
        parts = [out.overlay]
        if out.lmode is not None:
            envelope["lmode"] = {"angles_deg": list(LMODE_ANGLES_DEG),
                                 "length_px": int(out.lmode.shape[1]), "dtype": "uint8"}
            parts.append(out.lmode)
        self.publisher.send(topic, envelope, parts)
        envelope.pop("lmode", None)
        image_tracker = grey_tracker = None
        if out.image is not None and topic == TOPIC_OVERLAY:
            image = out.image
            envelope["image"] = {"shape": list(image.shape), "dtype": "uint8", "colour": "BGR",
                                 "fov_mm": self.image_fov_mm}
            sent, image_tracker = self.publisher.send_tracked(TOPIC_IMAGE, envelope, [image])
            if sent:
                self.counters["images_published"] += 1
        if out.grey is not None:  # every lane: a display scrubbing back needs backfill frames too
            grey = out.grey
            envelope["image"] = {"shape": list(grey.shape), "dtype": "uint8", "colour": "GREY",
                                 "fov_mm": self.image_fov_mm}
            sent, grey_tracker = self.publisher.send_tracked(TOPIC_DISPLAY, envelope, [grey])
            if sent:
                self.counters["images_published"] += 1
        if out.buffers is not None:  # reused by the worker once ZeroMQ has sent them
            out.buffers.give_back(out.image, image_tracker)
            out.buffers.give_back(out.grey, grey_tracker)

    def acknowledged(self, pullback_id: str, frames: list[int]) -> None:
        """The writer committed these frames' records."""
        self.counters["acknowledged"] += len(frames)
        pb = self.tracker.pullbacks.get(pullback_id)
        if pb is not None:
            pb.counts["acknowledged"] += len(frames)
        self.publisher.event("ack", pullback_id=pullback_id, frames=frames)

    # -- pullback completion -----------------------------------------------------------------------
    def finished(self, pullback_id: str, result: dict) -> None:
        """The writer wrote a pullback's results folder: publish the guidance, announce it."""
        pb = self.tracker.pullbacks.get(pullback_id)
        pullback = result["pullback"]
        if pb is not None:
            pb.state = pullback["status"] if pullback["status"] in ("complete", "incomplete") else "incomplete"
            pb.results_dir = result["results_dir"]
            pb.guidance_delay_s = pullback["timing"]["guidance_delay_s"]
        self.counters["pullbacks_complete" if pullback["status"] == "complete" else "pullbacks_incomplete"] += 1
        envelope = self.publisher.envelope(pullback_id, None, None, pullback["status"])
        if pullback["status"] == "complete":
            self.counters["guidance_published"] += 1
            self.publisher.send(TOPIC_GUIDANCE, envelope, [dumps(pullback)])
            if self.dicom_export is not None:  # SR + key images, sent: on the export's own thread
                self.dicom_export.submit(pullback_id, result["results_dir"], pullback.get("n_frames"))
        elif self.dicom_export is not None:
            self.dicom_export.discard(pullback_id)
        self.publisher.event(f"pullback_{pullback['status']}", pullback_id=pullback_id,
                             results_dir=result["results_dir"], reason=pullback.get("reason"),
                             guidance_delay_s=pullback["timing"]["guidance_delay_s"])
        self.tracker.trim()

    def check(self, now: float) -> None:
        """Announce silent senders; finish pullbacks that are done."""
        for pb in self.tracker.silent(now):
            self.publisher.event("sender_lost", pullback_id=pb.pullback_id, detail=pb.reason)
        for done in self.tracker.completions(now):
            self.finalize(done.pullback, done.state, list(done.missing))

    def finalize(self, pb: PullbackState, state: str, missing: list[int]) -> None:
        """Record the frames never received, then hand the pullback to the writer to finish."""
        for index in missing:
            pb.seen.add(index)
            pb.counts["never_received"] += 1
            self.counters["never_received"] += 1
            self.writer.record(pb, {"frame": index, "status": "rejected",
                                    "reason": "never received (missing between START and END)"},
                               self._audit())
        pb.state = "finalizing"
        if not pb.logged:  # opened but no frame ever arrived
            pb.state = "incomplete"
            self.counters["pullbacks_incomplete"] += 1
            self.publisher.event("pullback_incomplete", pullback_id=pb.pullback_id,
                                 reason=pb.reason or "no frames")
            return
        last = max(pb.seen) if pb.seen else -1
        spacing = [pb.spacing_mm.get(i, pb.spacing_mm.get(0, 0.0)) for i in range(last + 1)]
        counts = {k: v for k, v in pb.counts.items() if k != "acknowledged"}  # still rising: a gauge
        summary = {"counts": counts, "last_frame_unix": pb.last_frame_unix}
        self.writer.put(FinishPullback(pb.pullback_id, state, pb.reason, tuple(spacing), summary))

    def close_all(self) -> None:
        """Engine closing: every pullback still open or ending is finished now."""
        for pb in list(self.tracker.pullbacks.values()):
            if pb.state in ("open", "ending"):
                if pb.reason is None and (pb.state == "open" or pb.outstanding):
                    pb.reason = "the engine stopped before the pullback ended"
                self.finalize(pb, "complete" if pb.reason is None else "incomplete",
                              self.tracker.missing(pb))


__all__ = ["Outcomes"]
