"""Wire protocol v1: header layout, the documented byte example, every reject reason, zero-copy
receive, a hypothesis fuzz of the decoder, and the ZeroMQ frame source."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.geometry import FrameGeometry
from streams.pullback import Frame
from streams.wire.protocol import (
    FLAG_END_OF_PULLBACK,
    FLAG_REFRACTIVE_INDEX_APPLIED,
    FLAG_START_OF_PULLBACK,
    HEADER_SIZE,
    REJECT_REASONS,
    FrameHeader,
    Limits,
    ProtocolError,
    decode_frame,
    dumps,
    encode_frame,
    loads,
    unpack_header,
)
from streams.wire.zmq_io import FrameSender, ZmqFrameSource, max_part_bytes, recv_frame_parts
from tests.streams.conftest import random_pullback

pytestmark = pytest.mark.timeout(60)

GEOMETRY = FrameGeometry(n_alines=32, n_samples=48, aline_spacing_mm=0.005, refractive_index=1.34,
                         n_padded_alines=2, rotation="CC", intensity="LIN")

#: docs/protocol.md, "Worked example": the header of frame 7 of pullback "pb-0001".
DOC_EXAMPLE = bytes.fromhex("""
4f 43 54 46 01 00 b0 00 01 00 00 00 07 00 00 00
94 3e e9 93 3e e9 a3 3f 00 00 2a 36 fe 9c 97 17
f4 01 00 00 00 00 00 00 e8 03 00 00 02 00 00 00
39 b4 c8 76 be 9f 7a 3f 71 3d 0a d7 a3 70 f5 3f
0c 00 00 00 2a 00 00 00 9a 99 99 99 99 99 b9 3f
00 00 00 00 00 00 32 40 00 00 00 00 00 80 66 40
1c 02 00 00 00 00 00 00 40 42 0f 00 00 00 00 00
70 62 2d 30 30 30 31 00 00 00 00 00 00 00 00 00
""") + bytes(48)


def example_header() -> FrameHeader:
    g = FrameGeometry(n_alines=500, n_samples=1000, aline_spacing_mm=0.0065, refractive_index=1.34)
    return FrameHeader.for_frame(
        "pb-0001", 7, 7 / 180, g, np.dtype("<u2"), frame_spacing_mm=0.1, pullback_rate_mm_s=18.0,
        frame_rate_hz=180.0, z_offset_px=12, seam_index=42, n_frames=540,
        flags=FLAG_START_OF_PULLBACK, send_time_ns=1_700_000_000_000_000_000)


def header_for(pixels: np.ndarray, geometry: FrameGeometry = GEOMETRY, **changes) -> FrameHeader:
    base = FrameHeader.for_frame("pb-1", 3, 0.5, geometry, pixels.dtype, frame_spacing_mm=0.1,
                                 frame_rate_hz=180.0, z_offset_px=-5, seam_index=4)
    return base.replace(**changes) if changes else base


def pixels_of(dtype: str = "<u2", geometry: FrameGeometry = GEOMETRY) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 200, (geometry.n_alines, geometry.n_samples)).astype(dtype)


def test_documented_example_bytes():
    raw = example_header().pack()
    assert len(raw) == HEADER_SIZE == 176
    assert raw == DOC_EXAMPLE
    header = unpack_header(raw)
    assert header == example_header()
    assert header.payload_bytes == 500 * 1000 * 2
    assert header.start_of_pullback and not header.end_of_pullback


@pytest.mark.parametrize("dtype", ["u1", "<u2", "<f4"])
def test_round_trip_every_dtype_and_geometry_field(dtype):
    pixels = pixels_of(dtype)
    frame = Frame("pb-1", 3, 0.5, pixels, GEOMETRY, z_offset_px=-5, seam_index=4)
    parts = encode_frame(frame, frame_spacing_mm=0.0, pullback_rate_mm_s=18.0, frame_rate_hz=180.0,
                         n_frames=9, flags=FLAG_END_OF_PULLBACK)
    header, decoded = decode_frame([bytes(parts[0]), parts[1].tobytes()], Limits())
    assert header.geometry() == GEOMETRY
    assert (header.frame_index, header.z_offset_px, header.seam_index, header.n_frames) == (3, -5, 4, 9)
    assert header.end_of_pullback and not header.start_of_pullback
    assert header.step_mm == pytest.approx(0.1)  # 18 mm/s at 180 frames/s
    assert decoded.dtype == np.dtype(dtype) and not decoded.flags.writeable
    np.testing.assert_array_equal(decoded, pixels)


def test_refractive_index_applied_travels_as_a_flag():
    g = GEOMETRY.with_(refractive_index_applied=True)
    header = header_for(pixels_of(), g)
    assert header.flags & FLAG_REFRACTIVE_INDEX_APPLIED
    assert unpack_header(header.pack()).geometry().refractive_index_applied


def _reason(parts) -> str:
    with pytest.raises(ProtocolError) as info:
        decode_frame(parts, Limits(max_payload_bytes=1 << 20))
    assert info.value.reason in REJECT_REASONS and info.value.detail
    return info.value.reason


def _raw(header: FrameHeader, **fields) -> bytes:
    """Pack with raw field values (bypassing the dataclass), to build invalid headers."""
    raw = bytearray(header.pack())
    offsets = {"version": (4, "<H"), "header_size": (6, "<H"), "flags": (8, "<I"),
               "n_alines": (32, "<I"), "n_padded": (36, "<I"), "n_samples": (40, "<I"),
               "dtype": (44, "<B"), "intensity": (45, "<B"), "reserved0": (47, "<B"),
               "spacing": (48, "<d"), "index": (56, "<d"), "seam": (68, "<I"), "pitch": (72, "<d"),
               "rate": (80, "<d"), "fps": (88, "<d"), "reserved1": (100, "<I"),
               "payload": (104, "<Q")}
    for name, value in fields.items():
        offset, fmt = offsets[name]
        struct.pack_into(fmt, raw, offset, value)
    return bytes(raw)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda h, p: [h.pack()], "malformed_header"),  # one part
        (lambda h, p: [h.pack(), p, b""], "malformed_header"),  # three parts
        (lambda h, p: [h.pack()[:100], p], "malformed_header"),  # truncated header
        (lambda h, p: [b"", p], "malformed_header"),
        (lambda h, p: [b"XXXX" + h.pack()[4:], p], "malformed_header"),
        (lambda h, p: [h.pack() + b"\0", p], "malformed_header"),
        (lambda h, p: [_raw(h, header_size=200), p], "malformed_header"),
        (lambda h, p: [_raw(h, flags=1 << 7), p], "malformed_header"),
        (lambda h, p: [_raw(h, reserved0=1), p], "malformed_header"),
        (lambda h, p: [_raw(h, reserved1=1), p], "malformed_header"),
        (lambda h, p: [_raw(h, intensity=7), p], "malformed_header"),
        (lambda h, p: [_raw(h, version=2), p], "unknown_version"),
        (lambda h, p: [_raw(h, version=0), p], "unknown_version"),
        (lambda h, p: [h.replace(pullback_id="").pack(), p], "bad_pullback_id"),
        (lambda h, p: [h.replace(pullback_id="../etc").pack(), p], "bad_pullback_id"),
        (lambda h, p: [h.pack()[:112] + b"ab\0cd" + b"\0" * 59, p], "bad_pullback_id"),
        (lambda h, p: [h.pack()[:112] + b"\xff" * 64, p], "bad_pullback_id"),
        (lambda h, p: [_raw(h, n_alines=10**6), p], "absurd_dimensions"),
        (lambda h, p: [_raw(h, n_samples=3), p], "absurd_dimensions"),
        (lambda h, p: [_raw(h, n_padded=32), p], "absurd_dimensions"),
        (lambda h, p: [_raw(h, spacing=0.0), p], "bad_geometry"),
        (lambda h, p: [_raw(h, spacing=float("nan")), p], "bad_geometry"),
        (lambda h, p: [_raw(h, index=0.5), p], "bad_geometry"),
        (lambda h, p: [_raw(h, fps=0.0), p], "bad_geometry"),
        (lambda h, p: [_raw(h, fps=float("inf")), p], "bad_geometry"),
        (lambda h, p: [_raw(h, pitch=0.0, rate=0.0), p], "bad_geometry"),
        (lambda h, p: [_raw(h, pitch=-1.0), p], "bad_geometry"),
        (lambda h, p: [_raw(h, seam=30), p], "bad_geometry"),  # 30 valid A-lines
        (lambda h, p: [_raw(h, dtype=9), p], "unsupported_dtype"),
        (lambda h, p: [_raw(h, payload=3000), p], "payload_size_mismatch"),
        (lambda h, p: [h.pack(), p[:-2]], "payload_size_mismatch"),
        (lambda h, p: [h.pack(), p + b"\0\0"], "payload_size_mismatch"),
        (lambda h, p: [_raw(h, payload=1 << 40), p], "oversized"),
    ],
)
def test_every_malformed_message_is_rejected_with_its_reason(mutate, reason):
    pixels = pixels_of()
    assert _reason(mutate(header_for(pixels), pixels.tobytes())) == reason


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_payload_is_rejected(bad):
    pixels = pixels_of("<f4")
    pixels[5, 7] = bad
    assert _reason([header_for(pixels).pack(), pixels.tobytes()]) == "non_finite_payload"


def test_oversized_against_the_receiver_limit():
    pixels = pixels_of()
    with pytest.raises(ProtocolError, match="oversized"):
        decode_frame([header_for(pixels).pack(), pixels.tobytes()], Limits(max_payload_bytes=1000))


def test_reject_reasons_are_a_closed_set():
    with pytest.raises(ValueError, match="unknown reject reason"):
        ProtocolError("because", "no")


VALID_HEADER = header_for(pixels_of()).pack()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.binary(min_size=0, max_size=200), payload=st.binary(max_size=4096),
       n_parts=st.integers(0, 4))
def test_fuzz_arbitrary_bytes_decode_or_raise_protocol_error(header, payload, n_parts):
    parts = [header, payload, b"x", b"y"][:n_parts]
    try:
        decode_frame(parts, Limits(max_payload_bytes=1 << 16))
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, HEADER_SIZE - 1), st.integers(0, 255)), min_size=1,
                      max_size=8),
       cut=st.integers(0, 4000))
def test_fuzz_mutated_valid_headers(edits, cut):
    raw = bytearray(VALID_HEADER)
    for offset, value in edits:
        raw[offset] = value
    payload = pixels_of().tobytes()[: len(pixels_of().tobytes()) - cut]
    try:
        header, pixels = decode_frame([bytes(raw), payload], Limits(max_payload_bytes=1 << 20))
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS
    else:  # whatever decodes is self-consistent
        assert pixels.shape == (header.n_alines, header.n_samples)
        assert pixels.nbytes == header.payload_bytes
        header.geometry()


def test_receive_is_zero_copy_over_tcp():
    ctx = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    try:
        for s in (pull, push):
            s.linger = 0
        pull.bind("tcp://127.0.0.1:*")
        push.connect(pull.getsockopt_string(zmq.LAST_ENDPOINT))
        g = FrameGeometry(n_alines=512, n_samples=1024, aline_spacing_mm=0.005)
        pixels = np.arange(512 * 1024, dtype=np.uint16).reshape(512, 1024)
        push.send_multipart(encode_frame(Frame("pb", 0, 0.0, pixels, g), frame_spacing_mm=0.1,
                                         frame_rate_hz=180.0), copy=False)
        assert pull.poll(5000)
        parts = pull.recv_multipart(copy=False)
        _, decoded = decode_frame(parts, Limits())
        message = np.frombuffer(parts[1].buffer, np.uint8)
        assert decoded.ctypes.data == message.ctypes.data  # the array is the message's memory
        np.testing.assert_array_equal(decoded, pixels)
        del parts, message
        assert int(decoded[3, 5]) == 3 * 1024 + 5  # kept alive by the array alone
    finally:
        pull.close()
        push.close()


def test_json_messages_have_no_nan_and_accept_numpy_values():
    raw = dumps({"a": np.float32(np.nan), "b": np.arange(3), "c": np.int64(4), "d": [1.5, np.inf]})
    assert loads(raw) == {"a": None, "b": [0, 1, 2], "c": 4, "d": [1.5, None]}
    assert b"NaN" not in raw and b"Infinity" not in raw


def test_frame_source_receives_a_pullback_from_the_sender():
    pullback = random_pullback(n_alines=64, n_samples=96, n_frames=5, dtype=np.uint16)
    source = ZmqFrameSource("tcp://127.0.0.1:*", timeout_s=10.0)
    endpoint = source.start()
    try:
        with FrameSender(endpoint, linger_ms=2000) as sender:
            sender.send_raw([b"not a header", b""])  # counted, skipped
            thread = threading.Thread(target=sender.send_pullback, args=(pullback,),
                                      kwargs={"fps": None})
            thread.start()
            frames = list(source)
            thread.join()
        assert source.pullback_id == pullback.pullback_id
        assert source.geometry == pullback.geometry
        assert source.rejected == {"malformed_header": 1}
        assert [f.index for f in frames] == list(range(5)) and len(source) == 5
        for f in frames:
            np.testing.assert_array_equal(f.pixels, pullback.frames[f.index])
            assert f.z_offset_px == pullback.z_offset_px[f.index]
            assert f.seam_index == pullback.seam_index[f.index]
            assert f.position_mm == pytest.approx(pullback.positions_mm[f.index])
        assert source.frame(4).index == 4
        with pytest.raises(IndexError):
            source.frame(5)
    finally:
        source.stop()


def _pull_push(limits: Limits):
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.linger = 0
    pull.maxmsgsize = max_part_bytes(limits)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = ctx.socket(zmq.PUSH)
    push.linger = 0
    push.connect(f"tcp://127.0.0.1:{port}")
    return pull, push


def test_many_part_message_is_a_counted_rejection_and_drained():
    limits = Limits(max_payload_bytes=1 << 20)
    pull, push = _pull_push(limits)
    try:
        part = np.zeros(1 << 20, np.uint8)  # each part within the per-part bound
        push.send_multipart([part] * 12, copy=False)
        assert pull.poll(5000)
        with pytest.raises(ProtocolError) as info:
            recv_frame_parts(pull, limits)
        assert info.value.reason == "malformed_header" and "12 message parts" in info.value.detail
        assert not pull.poll(100)  # the whole message was drained
        pixels = pixels_of()
        push.send_multipart([header_for(pixels).pack(), pixels], copy=False)
        assert pull.poll(5000)
        assert len(recv_frame_parts(pull, limits)) == 2
    finally:
        push.close()
        pull.close()


def test_part_above_the_bound_is_dropped_by_libzmq_before_buffering():
    limits = Limits(max_payload_bytes=1 << 16)
    pull, push = _pull_push(limits)
    try:
        push.send_multipart([b"x" * HEADER_SIZE] + [np.zeros(1 << 20, np.uint8)] * 12, copy=False)
        assert not pull.poll(500)  # libzmq closed that connection; nothing was queued
    finally:
        push.close()
        pull.close()


def test_n_frames_above_the_limit_is_absurd():
    pixels = pixels_of()
    raw = header_for(pixels, n_frames=4_294_967_295).pack()
    with pytest.raises(ProtocolError) as info:
        unpack_header(raw)
    assert info.value.reason == "absurd_dimensions"
    assert unpack_header(header_for(pixels, n_frames=20_000).pack()).n_frames == 20_000
    with pytest.raises(ProtocolError):
        decode_frame([header_for(pixels, n_frames=101).pack(), pixels], Limits(max_n_frames=100))
