"""ZeroMQ endpoints of the octguide protocol (``docs/protocol.md``), for consoles, displays and tools.

* :class:`FrameSender` - what a cath-lab console does: PUSH frames at the real frame rate,
  zero-copy.
* :class:`ZmqFrameSource` - a :class:`~streams.pullback.FrameSource` fed by a PULL socket: the
  frames of one pullback as they arrive (for recorders and tests; the engine decodes with the
  same :func:`streams.wire.protocol.decode_frame`).
* :class:`Subscriber` - a display or tool listening to the engine's overlay or status publisher,
  with the drain-and-keep-newest receive a live display needs.
* :class:`ControlClient` - request/reply on the engine's control socket.

Every class opens its socket in ``start()`` and closes it in ``stop()`` (also usable as a context
manager); all take an optional ``zmq.Context`` (default: the process-wide instance) and
:class:`CurveClientKeys` when the engine requires CurveZMQ.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from streams.errors import OctguideError
from streams.pullback import Frame, FrameSource, Pullback
from streams.wire.protocol import (
    FLAG_END_OF_PULLBACK,
    FLAG_START_OF_PULLBACK,
    HEADER_SIZE,
    Limits,
    ProtocolError,
    decode_frame,
    dumps,
    encode_frame,
    frame_from_header,
    loads,
)


class TransportError(OctguideError):
    """A peer did not answer in time, or a socket could not be set up."""


def max_part_bytes(limits: Limits) -> int:
    """``ZMQ_MAXMSGSIZE`` for a frames socket, bytes: the largest part a frame message may have.

    libzmq checks this per part as it reads the wire and drops the peer's connection on a larger
    part, before the part is buffered; it has no bound on a message's part count, which
    :func:`recv_frame_parts` checks.
    """
    return max(HEADER_SIZE, limits.max_payload_bytes)


def recv_frame_parts(sock: zmq.Socket, limits: Limits, flags: int = 0) -> list[zmq.Frame]:
    """Receive one frames message part by part, keeping at most two parts (zero-copy).

    Parts beyond the second are released as they are read, so a message of many parts never
    holds more than two of them in Python; sizes are read from the ``zmq.Frame`` without copying.

    Raises
    ------
    zmq.Again
        ``flags`` has ``zmq.NOBLOCK`` and nothing is queued.
    ProtocolError
        ``malformed_header`` (not exactly 2 parts: the count is checked first) or ``oversized``
        (total bytes above ``HEADER_SIZE + limits.max_payload_bytes``); the whole message has
        been drained.
    """
    parts = [sock.recv(flags, copy=False)]
    n_parts, total_bytes = 1, len(parts[0])
    while sock.getsockopt(zmq.RCVMORE):
        part = sock.recv(copy=False)
        n_parts += 1
        total_bytes += len(part)
        if n_parts <= 2:
            parts.append(part)
    if n_parts != 2:
        raise ProtocolError("malformed_header", f"{n_parts} message parts, expected 2 (header, payload)")
    if total_bytes > HEADER_SIZE + limits.max_payload_bytes:
        raise ProtocolError("oversized", f"message of {total_bytes} bytes exceeds the limit of "
                            f"{HEADER_SIZE + limits.max_payload_bytes}")
    return parts


@dataclass(frozen=True)
class CurveClientKeys:
    """CurveZMQ keys of a client: its own pair and the engine's public key (Z85 bytes).

    Build with :meth:`load` from the certificates ``octguide keys`` writes.
    """

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, client_secret_file: str | Path, server_public_file: str | Path) -> CurveClientKeys:
        """Read ``NAME.key_secret`` (the client's pair) and ``engine.key`` (the engine's public key)."""
        public, secret = zmq.auth.load_certificate(str(client_secret_file))
        if secret is None:
            raise TransportError(f"{client_secret_file}: holds no secret key (use the .key_secret file)")
        server_public, _ = zmq.auth.load_certificate(str(server_public_file))
        return cls(public, secret, server_public)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a Curve client of the engine (before connecting)."""
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        sock.curve_serverkey = self.server_public


class _Endpoint:
    """Socket lifecycle shared by the classes below."""

    socket_type: int = 0

    def __init__(self, endpoint: str, *, bind: bool = False, linger_ms: int = 0,
                 curve: CurveClientKeys | None = None, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.bind = bind
        self.linger_ms = linger_ms
        self.curve = curve
        self.context = context
        self.socket: zmq.Socket | None = None

    def _configure(self, sock: zmq.Socket) -> None:
        """Socket options set before connecting; subclasses add theirs."""

    def start(self) -> str:
        """Open the socket and connect (or bind); returns the endpoint actually used."""
        ctx = self.context or zmq.Context.instance()
        sock = ctx.socket(self.socket_type)
        try:
            sock.linger = self.linger_ms
            if self.curve is not None:
                self.curve.apply(sock)
            self._configure(sock)
            if self.bind:
                sock.bind(self.endpoint)
                self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise TransportError(f"{self.endpoint}: {exc}") from exc
        self.socket = sock
        return self.endpoint

    def stop(self) -> None:
        """Close the socket (pending messages wait up to ``linger_ms``)."""
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def _require(self) -> zmq.Socket:
        if self.socket is None:
            raise RuntimeError(f"{type(self).__name__}.start() has not been called")
        return self.socket

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class SendReport:
    """What :meth:`FrameSender.send_pullback` did.

    Attributes
    ----------
    sent : int
        Frames handed to ZeroMQ.
    duration_s : float
        From the first to the last send, s.
    max_lag_ms : float
        Largest delay of a send behind its real-time schedule, ms (0 at ``fps=None``).
    late : int
        Sends more than one frame period behind schedule.
    """

    sent: int = 0
    duration_s: float = 0.0
    max_lag_ms: float = 0.0
    late: int = 0


class FrameSender(_Endpoint):
    """A console's frame output: PUSH, connected to the engine's frame endpoint.

    PUSH blocks (never drops) when the engine stops reading and ``hwm`` messages are queued, so
    :meth:`send_frame` waits at most ``send_timeout_s`` and then raises :class:`TransportError`.
    The default linger of 5 s lets the last frames of a pullback leave after :meth:`stop`.
    """

    socket_type = zmq.PUSH

    def __init__(self, endpoint: str, *, hwm: int = 16, send_timeout_s: float = 10.0,
                 linger_ms: int = 5000, curve: CurveClientKeys | None = None,
                 context: zmq.Context | None = None):
        super().__init__(endpoint, linger_ms=linger_ms, curve=curve, context=context)
        self.hwm = hwm
        self.send_timeout_s = send_timeout_s

    def _configure(self, sock: zmq.Socket) -> None:
        sock.sndhwm = self.hwm
        sock.sndtimeo = int(self.send_timeout_s * 1000)

    def send_frame(self, frame: Frame, *, frame_rate_hz: float, frame_spacing_mm: float = 0.0,
                   pullback_rate_mm_s: float = 0.0, n_frames: int = 0, flags: int = 0) -> None:
        """Send one frame; its pixels go zero-copy (they must not change until sent)."""
        parts = encode_frame(frame, frame_spacing_mm=frame_spacing_mm,
                             pullback_rate_mm_s=pullback_rate_mm_s, frame_rate_hz=frame_rate_hz,
                             n_frames=n_frames, flags=flags, send_time_ns=time.time_ns())
        try:
            self._require().send_multipart(parts, copy=False)
        except zmq.Again:
            raise TransportError(f"{self.endpoint}: the engine did not take frame {frame.index} "
                                 f"within {self.send_timeout_s} s") from None

    def send_raw(self, parts: list[Any]) -> None:
        """Send arbitrary message parts (for fault tests and protocol experiments)."""
        self._require().send_multipart(parts, copy=False)

    def send_pullback(self, pullback: Pullback, *, fps: float | None, pullback_id: str | None = None,
                      progress: Callable[[int, int], None] | None = None) -> SendReport:
        """Send every frame of ``pullback`` with START/END flags, paced at ``fps`` (None: as fast
        as the engine takes them).

        Parameters
        ----------
        pullback : Pullback
            Frames and per-frame geometry to send.
        fps : float or None
            Frames per second; frame ``i`` leaves at ``t0 + i / fps``.
        pullback_id : str, optional
            Id on the wire (default: the pullback's).
        progress : callable, optional
            ``progress(sent, total)`` after each frame.
        """
        n = len(pullback)
        report = SendReport()
        period = 1.0 / fps if fps else 0.0
        t0 = time.perf_counter()
        for i in range(n):
            if period:
                due = t0 + i * period
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                lag = time.perf_counter() - due
                report.max_lag_ms = max(report.max_lag_ms, lag * 1e3)
                report.late += lag > period
            frame = pullback.frame(i)
            if pullback_id is not None:
                frame = Frame(pullback_id, frame.index, frame.timestamp_s, frame.pixels,
                              frame.geometry, frame.z_offset_px, frame.seam_index, frame.position_mm)
            flags = (FLAG_START_OF_PULLBACK if i == 0 else 0) | (FLAG_END_OF_PULLBACK if i == n - 1 else 0)
            self.send_frame(frame, frame_rate_hz=pullback.frame_rate_hz,
                            frame_spacing_mm=float(pullback.frame_spacing_mm[i]), n_frames=n, flags=flags)
            report.sent += 1
            if progress is not None:
                progress(i + 1, n)
        report.duration_s = time.perf_counter() - t0
        return report


class ZmqFrameSource(_Endpoint, FrameSource):
    """The frames of one pullback arriving on a PULL socket, as a :class:`FrameSource`.

    Iterating receives (blocking up to ``timeout_s`` per frame) until the END frame and yields
    each valid frame of the first pullback seen; messages that fail to decode, or belong to
    another pullback, are counted in :attr:`rejected` by reason and skipped. :meth:`frame` and
    ``len()`` cover the frames received so far.
    """

    socket_type = zmq.PULL

    def __init__(self, endpoint: str, *, bind: bool = True, limits: Limits | None = None,
                 timeout_s: float = 10.0, hwm: int = 16, curve: CurveClientKeys | None = None,
                 context: zmq.Context | None = None):
        super().__init__(endpoint, bind=bind, curve=curve, context=context)
        self.limits = limits or Limits()
        self.timeout_s = timeout_s
        self.hwm = hwm
        self.pullback_id: str | None = None
        self.geometry = None
        self.rejected: dict[str, int] = {}
        self.frame_rate_hz: float | None = None
        self._frames: dict[int, Frame] = {}
        self._position_mm = 0.0

    def _configure(self, sock: zmq.Socket) -> None:
        sock.rcvhwm = self.hwm
        sock.maxmsgsize = max_part_bytes(self.limits)

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> Frame:
        try:
            return self._frames[index]
        except KeyError:
            raise IndexError(f"frame {index} has not been received") from None

    def __iter__(self) -> Iterator[Frame]:
        sock = self._require()
        while True:
            if not sock.poll(int(self.timeout_s * 1000)):
                raise TransportError(f"{self.endpoint}: no frame within {self.timeout_s} s")
            try:
                parts = recv_frame_parts(sock, self.limits)
                header, pixels = decode_frame(parts, self.limits)
            except ProtocolError as exc:
                self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
                continue
            if self.pullback_id is None and header.start_of_pullback:
                self.pullback_id = header.pullback_id
                self.geometry = header.geometry()
                self.frame_rate_hz = header.frame_rate_hz
            if header.pullback_id != self.pullback_id:
                self.rejected["unknown_pullback"] = self.rejected.get("unknown_pullback", 0) + 1
                continue
            if header.frame_index in self._frames:
                self.rejected["duplicate_frame"] = self.rejected.get("duplicate_frame", 0) + 1
                continue
            if header.frame_index > 0:
                self._position_mm += header.step_mm
            frame = frame_from_header(header, pixels, self.geometry, self._position_mm)
            self._frames[header.frame_index] = frame
            yield frame
            if header.end_of_pullback:
                return


@dataclass
class Message:
    """One message from an engine publisher.

    Attributes
    ----------
    topic : bytes
        First part (``overlay``, ``backfill``, ``image``, ``guidance``, ``heartbeat``, ``event``).
    envelope : dict
        Second part, JSON (docs/protocol.md, "Messages out").
    body : dict or None
        Third part as JSON, when there is one and it is JSON (not for ``image``).
    raw : list
        The remaining parts as ``zmq.Frame`` (the image pixels).
    received_ns : int
        ``time.time_ns()`` at receipt.
    """

    topic: bytes
    envelope: dict
    body: Any = None
    raw: list = field(default_factory=list)
    received_ns: int = 0


class Subscriber(_Endpoint):
    """SUB socket on an engine publisher, subscribed to ``topics``.

    A live display calls :meth:`latest` (drain everything queued, keep the newest: a frame that a
    newer one has overtaken is never shown late); a recorder calls :meth:`recv` for each message.
    """

    socket_type = zmq.SUB

    def __init__(self, endpoint: str, topics: tuple[bytes, ...] = (b"",), *, hwm: int = 1000,
                 curve: CurveClientKeys | None = None, context: zmq.Context | None = None):
        super().__init__(endpoint, curve=curve, context=context)
        self.topics = topics
        self.hwm = hwm

    def _configure(self, sock: zmq.Socket) -> None:
        sock.rcvhwm = self.hwm
        for topic in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic)

    def recv(self, timeout_s: float) -> Message | None:
        """The next message, or None after ``timeout_s``."""
        sock = self._require()
        if not sock.poll(int(timeout_s * 1000)):
            return None
        return self._decode(sock.recv_multipart(copy=False))

    def latest(self, timeout_s: float) -> Message | None:
        """Wait up to ``timeout_s`` for a message, then drain the queue and return the newest."""
        newest = self.recv(timeout_s)
        sock = self._require()
        while newest is not None and sock.poll(0):
            newest = self._decode(sock.recv_multipart(copy=False))
        return newest

    @staticmethod
    def _decode(parts: list) -> Message:
        topic = bytes(parts[0].buffer)
        envelope = loads(parts[1]) if len(parts) > 1 else {}
        raw = topic in (b"image", b"display")  # pixels follow the envelope, no JSON body
        body = loads(parts[2]) if len(parts) > 2 and not raw else None
        rest = parts[2:] if raw else parts[3:]
        return Message(topic, envelope, body, list(rest), time.time_ns())


class ControlError(OctguideError):
    """The engine answered a control request with ``ok: false``."""


class ControlClient(_Endpoint):
    """Requests to the engine's control socket (ROUTER), from a DEALER.

    Every request is ``[b"", JSON]`` (the same envelope a REQ socket sends, so C clients may use
    REQ); the reply is ``[b"", JSON, extra parts...]``. Requests carry an ``id`` that the reply
    echoes, so a late reply to a timed-out request is recognised and dropped.
    """

    socket_type = zmq.DEALER

    def __init__(self, endpoint: str, *, timeout_s: float = 5.0,
                 curve: CurveClientKeys | None = None, context: zmq.Context | None = None):
        super().__init__(endpoint, curve=curve, context=context)
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)

    def request_parts(self, cmd: str, timeout_s: float | None = None, **args: Any) -> tuple[dict, list]:
        """Send ``{"cmd": cmd, **args}``; the reply's JSON and its extra parts (``zmq.Frame``).

        Raises
        ------
        TransportError
            No reply within the timeout.
        ControlError
            The engine replied ``ok: false`` (the message is its ``error``).
        """
        sock = self._require()
        request_id = next(self._ids)
        sock.send_multipart([b"", dumps({"cmd": cmd, "id": request_id, **args})])
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(int(remaining * 1000) + 1):
                raise TransportError(f"{self.endpoint}: no reply to {cmd!r} within "
                                     f"{self.timeout_s if timeout_s is None else timeout_s} s")
            parts = sock.recv_multipart(copy=False)
            if len(parts) < 2 or parts[0].bytes != b"":
                continue
            reply = loads(parts[1])
            if reply.get("id") != request_id:
                continue
            if not reply.get("ok", False):
                raise ControlError(f"{cmd}: {reply.get('error', 'failed')}")
            return reply, list(parts[2:])

    def request(self, cmd: str, timeout_s: float | None = None, **args: Any) -> dict:
        """Like :meth:`request_parts`, the reply's JSON only."""
        return self.request_parts(cmd, timeout_s, **args)[0]
