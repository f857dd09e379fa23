"""The control channel's dispatcher (I/O thread only): reads the ROUTER socket, validates each
request (:func:`engine.realtime.control.parse_request`) before anything acts on it, answers it;
``results`` files are read on a reader thread and the reply goes out through the engine's outbox.
Any exception while handling one request is an ``ok: false`` reply with its reason, counted in
``control_errors``: the I/O thread lives on."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import zmq

from engine.realtime.control import (
    ControlRequest,
    ControlRequestError,
    parse_request,
    results_folder,
    safe_id,
)
from engine.realtime.messages import ControlReply
from engine.realtime.sockets import recv_control
from engine.realtime.status import pullback_status, status_message
from engine.realtime.writer import wake
from streams.wire.protocol import dumps

if TYPE_CHECKING:
    from engine.realtime.server import Engine

log = logging.getLogger(__name__)


class ControlDispatcher:
    """Answers control requests for ``engine`` (module docstring)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def handle(self, sock: zmq.Socket) -> None:
        """Answer every waiting control request."""
        counters = self.engine.counters
        while True:
            try:
                parts, count = recv_control(sock)
            except zmq.Again:
                return
            counters["control_requests"] += 1
            # [identity, b"", request] from REQ or a DEALER that adds the delimiter (ControlClient);
            # [identity, request] from a bare DEALER: the reply uses the same envelope.
            split = 2 if len(parts) > 2 and parts[1] == b"" else 1
            route, body = parts[:split], parts[split:]
            request_id = None
            try:
                if len(body) != 1 or count != len(parts):
                    raise ControlRequestError(f"a request is one message part of JSON ({count - split} sent)")
                request, _ = parse_request(bytes(body[0]), self.engine.cfg.max_frames_per_pullback)
                request_id = request.id
                if request.cmd == "results":
                    self._results_off_thread(route, request)
                    continue
                reply, extra = self.answer(request)
                reply = {"ok": True, **reply}
            except Exception as exc:  # noqa: BLE001 (one bad request never ends the I/O thread)
                counters["control_errors"] += 1
                if request_id is None:
                    request_id = safe_id(getattr(exc, "decoded", None))
                text = str(exc) if isinstance(exc, (ValueError, TypeError, OSError)) else \
                    f"internal error: {type(exc).__name__}: {exc}"
                if not isinstance(exc, (ValueError, TypeError, OSError)):
                    log.warning("control request failed: %s", text)
                reply, extra = {"ok": False, "error": text[:500]}, []
            reply["id"] = request_id
            sock.send_multipart([*route, dumps(reply), *extra])

    def send_reply(self, sock: zmq.Socket, item: ControlReply) -> None:
        """Send a reply prepared off the I/O thread (``results``)."""
        if not item.reply["ok"]:
            self.engine.counters["control_errors"] += 1
        sock.send_multipart([*item.route, dumps(item.reply), *item.parts])

    def _results_off_thread(self, route: list, request: ControlRequest) -> None:
        """Check a ``results`` request here, read its files (possibly MBs) on a reader thread; the
        reply goes out through the outbox on the I/O thread."""
        engine = self.engine
        pid = request.pullback_id
        pb = engine.tracker.pullbacks.get(pid)
        if pb is not None and pb.state not in ("complete", "incomplete"):
            raise ControlRequestError(f"pullback {pid} is {pb.state}: results are written when it finishes")
        folder = results_folder(engine.results_dir, pid)

        def read() -> None:
            try:
                parts = [(folder / "pullback.json").read_bytes(), (folder / "frames.jsonl").read_bytes()]
                reply = {"ok": True, "pullback_id": pid, "results_dir": str(folder),
                         "parts": ["pullback.json", "frames.jsonl"], "id": request.id}
            except OSError:
                parts, reply = [], {"ok": False, "error": f"no results for pullback {pid}",
                                    "id": request.id}
            engine._post(ControlReply(tuple(route), reply, tuple(parts)))
            waker = engine.context.socket(zmq.PUSH)
            waker.linger = 0
            try:
                waker.connect(engine.wake_endpoint)
                wake(waker)
            finally:
                waker.close()

        engine.readers.submit(read)

    def answer(self, request: ControlRequest) -> tuple[dict, list]:
        """The reply body and extra parts of a validated request other than ``results``."""
        engine = self.engine
        cmd = request.cmd
        if cmd == "ping":
            return {"pong": time.time()}, []
        if cmd == "status":
            return status_message(engine), []
        if cmd == "config":
            return {"config": engine.config.to_dict(), "config_hash": engine.config_hash}, []
        pid = request.pullback_id
        pullbacks = engine.tracker.pullbacks
        if cmd == "start_pullback":
            if pid in pullbacks or engine.tracker.known(pid):
                raise ValueError(f"pullback {pid} already exists")
            engine.intake.new_pullback(pid, request.n_frames or 0)
            return {"pullback": pullback_status(pullbacks[pid])}, []
        pb = pullbacks.get(pid)
        if cmd == "stop_pullback":
            if pb is None or pb.state not in ("open", "ending"):
                raise ValueError(f"pullback {pid} is not open")
            if pb.end_index is None:
                pb.end_index = pb.highest
            pb.state = "ending"
            engine.publisher.event("pullback_stopped", pullback_id=pid, end_index=pb.end_index)
            return {"pullback": pullback_status(pb)}, []
        if cmd == "pullback":
            if pb is None:
                if not engine.tracker.known(pid):
                    raise ValueError(f"unknown pullback {pid}")
                state = "interrupted" if pid in engine.writer.interrupted_ids else "finished"
                return {"pullback": {"pullback_id": pid, "state": state, "results_dir":
                                     str(engine.results_dir / "pullbacks" / pid)}}, []
            return {"pullback": pullback_status(pb)}, []
        raise AssertionError(cmd)  # every command in CONTROL_COMMANDS is handled above


__all__ = ["ControlDispatcher"]
