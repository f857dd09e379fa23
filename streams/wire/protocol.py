"""The octguide wire protocol, version 1: frames in, overlays and guidance out, status and control.

The normative description, with a byte-level example a console vendor can implement in C from,
is ``docs/protocol.md``; this module is its reference implementation and must agree with it.

Frames in (console -> engine, PUSH -> PULL) are two-part ZeroMQ messages:

1. a fixed 176-byte little-endian header (:data:`HEADER_STRUCT`, :class:`FrameHeader`);
2. the raw polar frame: ``n_alines x n_samples`` samples of ``dtype``, A-line major (row ``i`` is
   A-line ``i``, column ``j`` sample ``j``), little-endian, padded A-lines included.

Why a fixed binary header rather than JSON: a C sender fills a packed struct with no JSON library,
the receiver checks one length before touching any field, and there is no number-formatting
ambiguity (``1e-3`` vs ``0.001``, NaN) to specify. Messages the engine *sends* are variable-shaped
(contours, lists of struts, guidance) and go to displays and tools, so they are compact UTF-8 JSON
(never pickle) with any array as a separate raw part described by the JSON.

Everything the engine rejects carries one of :data:`REJECT_REASONS`, which the engine counts and
reports on its status channel.

>>> import numpy as np
>>> from streams.geometry import FrameGeometry
>>> g = FrameGeometry(n_alines=16, n_samples=32, aline_spacing_mm=0.005, refractive_index=1.34)
>>> header = FrameHeader.for_frame("pb-1", 0, 0.0, g, np.dtype("uint16"), frame_spacing_mm=0.1,
...                                frame_rate_hz=180.0, flags=FLAG_START_OF_PULLBACK)
>>> raw = header.pack()
>>> len(raw), raw[:4]
(176, b'OCTF')
>>> pixels = np.arange(16 * 32, dtype="<u2").reshape(16, 32)
>>> decoded, array = decode_frame([raw, pixels.tobytes()], Limits())
>>> decoded.pullback_id, decoded.frame_index, array.shape, bool((array == pixels).all())
('pb-1', 0, (16, 32), True)
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from streams.errors import GeometryError, OctguideError
from streams.geometry import FrameGeometry
from streams.pullback import Frame

PROTOCOL_VERSION = 1
MAGIC = b"OCTF"

#: Header layout: see the table in docs/protocol.md (offsets in bytes).
HEADER_STRUCT = struct.Struct("<4sHHIIdQIIIBBBBddiIdddIIQ64s")
HEADER_SIZE = HEADER_STRUCT.size
assert HEADER_SIZE == 176

FLAG_START_OF_PULLBACK = 1 << 0  #: first frame of a pullback: opens it
FLAG_END_OF_PULLBACK = 1 << 1  #: last frame of a pullback: no higher index follows
FLAG_REFRACTIVE_INDEX_APPLIED = 1 << 2  #: aline_spacing_mm already is tissue mm
KNOWN_FLAGS = FLAG_START_OF_PULLBACK | FLAG_END_OF_PULLBACK | FLAG_REFRACTIVE_INDEX_APPLIED

#: dtype code in the header -> NumPy dtype of the payload (always little-endian)
DTYPES: dict[int, np.dtype] = {1: np.dtype("u1"), 2: np.dtype("<u2"), 3: np.dtype("<f4")}
DTYPE_CODES = {np.dtype("u1"): 1, np.dtype("u2"): 2, np.dtype("f4"): 3}  #: native dtype -> code
INTENSITY_CODES = {"LOG": 0, "LIN": 1}
ROTATION_CODES = {"CW": 0, "CC": 1}

PULLBACK_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Pullback ids are ASCII letters, digits, ``.``, ``_`` and ``-`` (not starting with ``.``,
``_`` or ``-``), so that they are also safe file names (the engine writes one folder per
pullback). DICOM UIDs (digits and dots) fit."""

MAX_FRAME_RATE_HZ = 10_000.0
MAX_FRAME_SPACING_MM = 10.0
MAX_PULLBACK_RATE_MM_S = 1_000.0

REJECT_REASONS = (
    "malformed_header",  # wrong part count, wrong header length, bad magic, reserved bits set
    "unknown_version",  # a protocol version this engine does not speak
    "bad_pullback_id",  # empty or with characters outside PULLBACK_ID_PATTERN
    "absurd_dimensions",  # A-lines, samples or padded A-lines outside what IVOCT systems produce
    "bad_geometry",  # spacing, refractive index, seam, rate or pitch invalid
    "unsupported_dtype",  # dtype code not in DTYPES
    "oversized",  # declared payload above the engine's max_frame_mib
    "payload_size_mismatch",  # payload length differs from the header's, or from n_alines*n_samples*itemsize
    "non_finite_payload",  # NaN or infinity in a float32 payload
    "duplicate_frame",  # this frame index of this pullback was already received
    "unknown_pullback",  # no START frame (or start_pullback command) opened this pullback
    "finished_pullback",  # the pullback has ended (END received, stopped, or timed out)
    "geometry_changed",  # geometry differs from the pullback's first frame
    "frame_after_end",  # index beyond the END frame's index
    "pullback_too_long",  # more frames than max_frames_per_pullback
    "too_many_pullbacks",  # a START frame while max_open_pullbacks pullbacks are open
    "analysis_error",  # the analysis stage raised on this frame
)

#: Topics of the overlay publisher (first part of every message it sends)
TOPIC_OVERLAY = b"overlay"  #: live vector overlay of the newest frame
TOPIC_BACKFILL = b"backfill"  #: the same for frames analysed after a newer one was shown
TOPIC_IMAGE = b"image"  #: Cartesian BGR image with the overlay burned in (optional)
TOPIC_GUIDANCE = b"guidance"  #: pullback guidance once every frame has its fate
TOPIC_DISPLAY = b"display"  #: windowed grey Cartesian image of a live frame, no overlay (viewer)
#: Screen angles (degrees clockwise from 12 o'clock) of the L-mode cuts sent with each overlay
LMODE_ANGLES_DEG = (0.0, 22.5, 45.0, 67.5, 90.0, 112.5, 135.0, 157.5)
#: Topics of the status publisher
TOPIC_HEARTBEAT = b"heartbeat"
TOPIC_EVENT = b"event"


class ProtocolError(OctguideError):
    """A message does not follow the protocol.

    Attributes
    ----------
    reason : str
        One of :data:`REJECT_REASONS`: the counter the engine increments.
    detail : str
        What exactly was wrong, for the status channel and logs.
    """

    def __init__(self, reason: str, detail: str):
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Limits:
    """What a receiver accepts beyond the protocol's own ranges.

    Attributes
    ----------
    max_payload_bytes : int
        Largest frame payload, bytes (the engine's ``server.max_frame_mib``).
    max_n_frames : int
        Largest ``n_frames`` a header may announce (frames per pullback); a display sizes its
        buffers by it, so a larger value is ``absurd_dimensions``.
    """

    max_payload_bytes: int = 64 << 20
    max_n_frames: int = 20_000


@dataclass(frozen=True)
class FrameHeader:
    """The decoded frame header (field meanings and units: docs/protocol.md).

    Attributes
    ----------
    version : int
        Protocol version (1).
    flags : int
        ``FLAG_*`` bits.
    frame_index : int
        0-based acquisition index within the pullback (0 = most distal).
    acquisition_time_s : float
        Acquisition time since the pullback start, s.
    send_time_ns : int
        Sender's UNIX time when sending, ns; 0 if unknown.
    n_alines, n_padded_alines, n_samples : int
        Stored A-lines (padded included), padded A-lines at the end, samples per A-line.
    dtype_code : int
        Key of :data:`DTYPES`.
    intensity, rotation : str
        "LOG"/"LIN", "CW"/"CC".
    aline_spacing_mm, refractive_index : float
        A-line Pixel Spacing (mm/sample) and Effective Refractive Index.
    z_offset_px, seam_index : int
        OCT Z Offset Correction (samples) and Seam Line Index of this frame.
    frame_spacing_mm : float
        Longitudinal distance from the previous frame, mm; 0 means "derive from
        ``pullback_rate_mm_s / frame_rate_hz``".
    pullback_rate_mm_s : float
        Pullback speed, mm/s; 0 if unknown.
    frame_rate_hz : float
        Frames per second.
    n_frames : int
        Frames in the pullback when known in advance, else 0.
    payload_bytes : int
        Length of the second message part, bytes.
    pullback_id : str
        Pullback identifier (:data:`PULLBACK_ID_PATTERN`).
    """

    version: int
    flags: int
    frame_index: int
    acquisition_time_s: float
    send_time_ns: int
    n_alines: int
    n_padded_alines: int
    n_samples: int
    dtype_code: int
    intensity: str
    rotation: str
    aline_spacing_mm: float
    refractive_index: float
    z_offset_px: int
    seam_index: int
    frame_spacing_mm: float
    pullback_rate_mm_s: float
    frame_rate_hz: float
    n_frames: int
    payload_bytes: int
    pullback_id: str

    @classmethod
    def for_frame(
        cls,
        pullback_id: str,
        frame_index: int,
        acquisition_time_s: float,
        geometry: FrameGeometry,
        dtype: np.dtype,
        *,
        frame_spacing_mm: float = 0.0,
        pullback_rate_mm_s: float = 0.0,
        frame_rate_hz: float,
        z_offset_px: int = 0,
        seam_index: int = 0,
        n_frames: int = 0,
        flags: int = 0,
        send_time_ns: int = 0,
    ) -> FrameHeader:
        """The header of one frame with ``geometry`` and samples of ``dtype``."""
        dtype = np.dtype(dtype)
        dtype = dtype if dtype.isnative else dtype.newbyteorder()
        if dtype not in DTYPE_CODES:
            raise ValueError(f"dtype {dtype} cannot travel; use one of "
                             f"{[str(d) for d in DTYPES.values()]}")
        if geometry.refractive_index_applied:
            flags |= FLAG_REFRACTIVE_INDEX_APPLIED
        return cls(
            version=PROTOCOL_VERSION,
            flags=flags,
            frame_index=int(frame_index),
            acquisition_time_s=float(acquisition_time_s),
            send_time_ns=int(send_time_ns),
            n_alines=geometry.n_alines,
            n_padded_alines=geometry.n_padded_alines,
            n_samples=geometry.n_samples,
            dtype_code=DTYPE_CODES[dtype],
            intensity=geometry.intensity,
            rotation=geometry.rotation,
            aline_spacing_mm=float(geometry.aline_spacing_mm),
            refractive_index=float(geometry.refractive_index),
            z_offset_px=int(z_offset_px),
            seam_index=int(seam_index),
            frame_spacing_mm=float(frame_spacing_mm),
            pullback_rate_mm_s=float(pullback_rate_mm_s),
            frame_rate_hz=float(frame_rate_hz),
            n_frames=int(n_frames),
            payload_bytes=geometry.n_alines * geometry.n_samples * dtype.itemsize,
            pullback_id=pullback_id,
        )

    def pack(self) -> bytes:
        """The 176 header bytes."""
        pid = self.pullback_id.encode("ascii")
        if len(pid) > 64:
            raise ValueError(f"pullback_id {self.pullback_id!r} is longer than 64 bytes")
        return HEADER_STRUCT.pack(
            MAGIC, self.version, HEADER_SIZE, self.flags, self.frame_index,
            self.acquisition_time_s, self.send_time_ns, self.n_alines, self.n_padded_alines,
            self.n_samples, self.dtype_code, INTENSITY_CODES[self.intensity],
            ROTATION_CODES[self.rotation], 0, self.aline_spacing_mm, self.refractive_index,
            self.z_offset_px, self.seam_index, self.frame_spacing_mm, self.pullback_rate_mm_s,
            self.frame_rate_hz, self.n_frames, 0, self.payload_bytes, pid,
        )  # fmt: skip

    def replace(self, **changes: Any) -> FrameHeader:
        """A copy with some fields changed (not validated: for building test messages)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return FrameHeader(**values)

    @property
    def start_of_pullback(self) -> bool:
        return bool(self.flags & FLAG_START_OF_PULLBACK)

    @property
    def end_of_pullback(self) -> bool:
        return bool(self.flags & FLAG_END_OF_PULLBACK)

    @property
    def dtype(self) -> np.dtype:
        return DTYPES[self.dtype_code]

    @property
    def step_mm(self) -> float:
        """Distance from the previous frame, mm (the pitch, or rate / frame rate)."""
        if self.frame_spacing_mm > 0:
            return self.frame_spacing_mm
        return self.pullback_rate_mm_s / self.frame_rate_hz

    def geometry(self) -> FrameGeometry:
        """The :class:`FrameGeometry` this header describes (validated)."""
        return FrameGeometry(
            n_alines=self.n_alines,
            n_samples=self.n_samples,
            aline_spacing_mm=self.aline_spacing_mm,
            refractive_index=self.refractive_index,
            refractive_index_applied=bool(self.flags & FLAG_REFRACTIVE_INDEX_APPLIED),
            n_padded_alines=self.n_padded_alines,
            rotation=self.rotation,
            intensity=self.intensity,
        )


def unpack_header(raw: bytes | memoryview, limits: Limits | None = None) -> FrameHeader:
    """Decode and validate a header (everything that does not need the payload).

    Raises
    ------
    ProtocolError
        With the reason: ``malformed_header``, ``unknown_version``, ``bad_pullback_id``,
        ``absurd_dimensions``, ``bad_geometry``, ``unsupported_dtype``.
    """
    if len(raw) < 8:
        raise ProtocolError("malformed_header", f"header is {len(raw)} bytes, expected {HEADER_SIZE}")
    magic, version, declared = struct.unpack_from("<4sHH", raw)
    if magic != MAGIC:
        raise ProtocolError("malformed_header", f"magic {bytes(magic)!r} is not {MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unknown_version",
                            f"protocol version {version}; this engine speaks {PROTOCOL_VERSION}")
    if declared != HEADER_SIZE or len(raw) != HEADER_SIZE:
        raise ProtocolError("malformed_header",
                            f"header is {len(raw)} bytes and declares {declared}, expected {HEADER_SIZE}")
    (_, _, _, flags, index, t_acq, t_send, n_alines, n_padded, n_samples, dtype_code, intensity,
     rotation, reserved0, spacing, index_n, z_offset, seam, pitch, rate, fps, n_frames, reserved1,
     payload_bytes, raw_id) = HEADER_STRUCT.unpack(raw)  # fmt: skip
    if flags & ~KNOWN_FLAGS or reserved0 or reserved1:
        raise ProtocolError("malformed_header",
                            f"reserved bits or bytes are set (flags=0x{flags:08x})")
    pullback_id = _pullback_id(raw_id)
    if dtype_code not in DTYPES:
        raise ProtocolError("unsupported_dtype",
                            f"dtype code {dtype_code}; known: {sorted(DTYPES)}")
    if intensity > 1 or rotation > 1:
        raise ProtocolError("malformed_header",
                            f"intensity code {intensity} / rotation code {rotation} not 0 or 1")
    header = FrameHeader(
        version=version, flags=flags, frame_index=index, acquisition_time_s=t_acq,
        send_time_ns=t_send, n_alines=n_alines, n_padded_alines=n_padded, n_samples=n_samples,
        dtype_code=dtype_code, intensity=("LOG", "LIN")[intensity],
        rotation=("CW", "CC")[rotation], aline_spacing_mm=spacing, refractive_index=index_n,
        z_offset_px=z_offset, seam_index=seam, frame_spacing_mm=pitch, pullback_rate_mm_s=rate,
        frame_rate_hz=fps, n_frames=n_frames, payload_bytes=payload_bytes, pullback_id=pullback_id,
    )  # fmt: skip
    _check_header(header)
    max_n_frames = (limits or Limits()).max_n_frames
    if n_frames > max_n_frames:
        raise ProtocolError("absurd_dimensions", f"n_frames={n_frames} exceeds the limit of {max_n_frames}")
    return header


def _pullback_id(raw_id: bytes) -> str:
    text, _, padding = raw_id.partition(b"\0")
    if padding.strip(b"\0"):
        raise ProtocolError("bad_pullback_id", "bytes after the pullback id's NUL terminator")
    try:
        pullback_id = text.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("bad_pullback_id", "pullback id is not ASCII") from None
    if not PULLBACK_ID_PATTERN.fullmatch(pullback_id):
        raise ProtocolError("bad_pullback_id",
                            f"pullback id {pullback_id!r} must match {PULLBACK_ID_PATTERN.pattern}")
    return pullback_id


def _check_header(h: FrameHeader) -> None:
    if not (16 <= h.n_alines <= 8192 and 16 <= h.n_samples <= 16384 and h.n_padded_alines < h.n_alines):
        raise ProtocolError("absurd_dimensions",
                            f"{h.n_alines} A-lines ({h.n_padded_alines} padded) x {h.n_samples} "
                            "samples; accepted: 16..8192 A-lines, 16..16384 samples")
    try:
        geometry = h.geometry()
    except GeometryError as exc:
        raise ProtocolError("bad_geometry", str(exc)) from None
    numbers = {"acquisition_time_s": h.acquisition_time_s, "frame_spacing_mm": h.frame_spacing_mm,
               "pullback_rate_mm_s": h.pullback_rate_mm_s, "frame_rate_hz": h.frame_rate_hz}
    for name, value in numbers.items():
        if not math.isfinite(value):
            raise ProtocolError("bad_geometry", f"{name}={value} is not finite")
    if not 0 < h.frame_rate_hz <= MAX_FRAME_RATE_HZ:
        raise ProtocolError("bad_geometry", f"frame_rate_hz={h.frame_rate_hz} is outside (0, {MAX_FRAME_RATE_HZ:g}]")
    if not 0 <= h.frame_spacing_mm <= MAX_FRAME_SPACING_MM:
        raise ProtocolError("bad_geometry", f"frame_spacing_mm={h.frame_spacing_mm} is outside 0..{MAX_FRAME_SPACING_MM:g}")
    if not 0 <= h.pullback_rate_mm_s <= MAX_PULLBACK_RATE_MM_S:
        raise ProtocolError("bad_geometry",
                            f"pullback_rate_mm_s={h.pullback_rate_mm_s} is outside 0..{MAX_PULLBACK_RATE_MM_S:g}")
    if h.frame_spacing_mm == 0 and h.pullback_rate_mm_s == 0:
        raise ProtocolError("bad_geometry", "neither frame_spacing_mm nor pullback_rate_mm_s is given")
    if not 0 <= h.seam_index < geometry.n_valid_alines:
        raise ProtocolError("bad_geometry", f"seam_index={h.seam_index} is outside 0..{geometry.n_valid_alines - 1}")
    if abs(h.z_offset_px) > h.n_samples:
        raise ProtocolError("bad_geometry", f"z_offset_px={h.z_offset_px} exceeds the {h.n_samples} samples")


def decode_frame(parts: Sequence[Any], limits: Limits) -> tuple[FrameHeader, np.ndarray]:
    """Decode one frame message without copying the payload.

    Parameters
    ----------
    parts : sequence
        The message parts: ``bytes``, ``memoryview`` or ``zmq.Frame`` (received with
        ``copy=False``; the returned array then shares its memory and keeps it alive).
    limits : Limits
        Receiver limits.

    Returns
    -------
    header : FrameHeader
    pixels : numpy.ndarray
        ``(n_alines, n_samples)`` read-only view of the payload in native byte order.

    Raises
    ------
    ProtocolError
        With one of :data:`REJECT_REASONS` (``malformed_header`` ... ``non_finite_payload``).
    """
    if len(parts) != 2:
        raise ProtocolError("malformed_header", f"{len(parts)} message parts, expected 2 (header, payload)")
    header = unpack_header(_buffer(parts[0]), limits)
    return header, decode_payload(header, parts[1], limits)


def decode_payload(header: FrameHeader, part: Any, limits: Limits) -> np.ndarray:
    """The payload part of a frame whose header decoded, as a read-only zero-copy array.

    Raises
    ------
    ProtocolError
        ``oversized``, ``payload_size_mismatch`` or ``non_finite_payload``.
    """
    if header.payload_bytes > limits.max_payload_bytes:
        raise ProtocolError("oversized", f"payload of {header.payload_bytes} bytes exceeds the "
                            f"limit of {limits.max_payload_bytes}")
    expected = header.n_alines * header.n_samples * header.dtype.itemsize
    if header.payload_bytes != expected:
        raise ProtocolError("payload_size_mismatch",
                            f"header declares {header.payload_bytes} payload bytes but "
                            f"{header.n_alines} x {header.n_samples} {header.dtype} is {expected}")
    payload = _buffer(part)
    if payload.nbytes != expected:
        raise ProtocolError("payload_size_mismatch",
                            f"payload is {payload.nbytes} bytes, header says {expected}")
    pixels = np.frombuffer(payload, dtype=header.dtype).reshape(header.n_alines, header.n_samples)
    if pixels.ctypes.data % pixels.dtype.itemsize:
        pixels = pixels.copy()  # libzmq may hand back an unaligned buffer; kernels need alignment
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder())
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        raise ProtocolError("non_finite_payload", f"{bad} NaN or infinite samples in a float payload")
    pixels.flags.writeable = False
    return pixels


def _buffer(part: Any) -> memoryview:
    """A flat byte memoryview of a message part (bytes, memoryview or zmq.Frame)."""
    buffer = getattr(part, "buffer", part)
    view = memoryview(buffer)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def frame_from_header(header: FrameHeader, pixels: np.ndarray, geometry: FrameGeometry,
                      position_mm: float = 0.0) -> Frame:
    """The :class:`~streams.pullback.Frame` message of a decoded frame."""
    return Frame(
        pullback_id=header.pullback_id,
        index=header.frame_index,
        timestamp_s=header.acquisition_time_s,
        pixels=pixels,
        geometry=geometry,
        z_offset_px=header.z_offset_px,
        seam_index=header.seam_index,
        position_mm=position_mm,
    )


def encode_frame(frame: Frame, *, frame_spacing_mm: float = 0.0, pullback_rate_mm_s: float = 0.0,
                 frame_rate_hz: float, n_frames: int = 0, flags: int = 0,
                 send_time_ns: int = 0) -> list[Any]:
    """The two parts of a frame message: header bytes and the pixel array (sent zero-copy).

    The pixel array is made C-contiguous little-endian if it is not; it must not be modified
    until ZeroMQ has sent it (see docs/protocol.md, "Sending zero-copy").
    """
    pixels = np.ascontiguousarray(frame.pixels)
    pixels = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    header = FrameHeader.for_frame(
        frame.pullback_id, frame.index, frame.timestamp_s, frame.geometry, pixels.dtype,
        frame_spacing_mm=frame_spacing_mm, pullback_rate_mm_s=pullback_rate_mm_s,
        frame_rate_hz=frame_rate_hz, z_offset_px=frame.z_offset_px, seam_index=frame.seam_index,
        n_frames=n_frames, flags=flags, send_time_ns=send_time_ns,
    )
    return [header.pack(), pixels]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of an outgoing message; NaN and infinities become ``null``.

    >>> dumps({"a": float("nan"), "b": [1.5, float("inf")]})
    b'{"a":null,"b":[1.5,null]}'
    """
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_plain)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False, default=_plain)
    return text.encode("utf-8")


def loads(raw: bytes | memoryview | Any) -> Any:
    """Parse a JSON message part (bytes, memoryview or zmq.Frame)."""
    return json.loads(bytes(_buffer(raw)))


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays become plain JSON values (``tolist``)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return _finite(value.tolist())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
