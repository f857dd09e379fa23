"""A worker's image buffers are reused, but never while ZeroMQ may still be sending one
(engine/realtime/frame_path.py, BufferPool)."""

from __future__ import annotations

import numpy as np

from engine.realtime.frame_path import BufferPool


class Tracker:
    """A stand-in for zmq.MessageTracker."""

    def __init__(self, done: bool = False):
        self.done = done


def test_a_buffer_is_reused_only_once_its_send_is_done():
    pool = BufferPool(max_buffers=2)
    a = pool.take((8, 8))
    sending = Tracker(done=False)
    pool.give_back(a, sending)
    b = pool.take((8, 8))
    assert b is not a  # a is still being sent: never handed out again yet
    pool.give_back(b, None)  # not sent at all: free at once
    assert pool.take((8, 8)) is b
    sending.done = True
    assert pool.take((8, 8)) is a
    assert (pool.pooled, pool.reused, pool.unpooled) == (2, 2, 0)


def test_the_pool_is_bounded_and_an_unpooled_array_is_never_pooled():
    pool = BufferPool(max_buffers=1)
    a = pool.take((4, 4, 3))
    extra = pool.take((4, 4, 3))
    assert extra is not a and pool.unpooled == 1 and extra.dtype == np.uint8
    pool.give_back(extra, None)
    pool.give_back(a, None)
    assert pool.take((4, 4, 3)) is a
    assert pool.take((4, 4, 3)) is not extra  # dropped when given back, not pooled


def test_a_new_shape_replaces_a_free_buffer_of_another():
    pool = BufferPool(max_buffers=1)
    pool.give_back(pool.take((4, 4)), None)
    bigger = pool.take((6, 6))
    assert bigger.shape == (6, 6) and pool.unpooled == 0
    pool.give_back(bigger, None)
    assert pool.take((6, 6)) is bigger


def test_every_published_image_is_its_own_frame_while_buffers_are_reused(tmp_path):
    """Burned-in and grey images come from reused buffers; each one a display receives must
    still be exactly its frame's (a buffer reused before ZeroMQ sent it would show a later
    frame's pixels). The display reads only after the pullback, with images large enough
    (512 px) that the socket buffers fill and ZeroMQ holds the later messages zero-copy."""
    from engine.analysis.stages import MetalAnalysis
    from engine.compute.scan_convert import CartesianGrid
    from engine.display.overlay import burn_overlay, display_grey
    from engine.realtime.server import Engine
    from tests.engine.realtime.test_server import Harness, engine_config, small_pullback

    grid = CartesianGrid(512, 4.0)
    config = engine_config(tmp_path / "r", render_image=True, image_size_px=512)
    h = Harness(Engine(config, lambda: MetalAnalysis(grid)), display_topics=(b"overlay", b"backfill", b"image", b"display"))
    try:
        pullback = small_pullback(12)
        pid = h.send_pullback(pullback, fps=200.0)
        assert h.wait_pullback(pid)["state"] == "complete"
        messages = h.display_messages()
    finally:
        h.close()
    overlays = {m.envelope["frame"]: m.body for m in messages if m.topic in (b"overlay", b"backfill")}
    reference = MetalAnalysis(grid)
    reference.start()
    checked = 0
    for m in messages:
        if m.topic not in (b"image", b"display") or m.envelope["frame"] not in overlays:
            continue
        frame = pullback.frame(m.envelope["frame"])
        grey = display_grey(reference.process(frame).image)
        expected = burn_overlay(grey, overlays[m.envelope["frame"]]) if m.topic == b"image" else grey
        pixels = np.frombuffer(m.raw[0].buffer, np.uint8).reshape(expected.shape)
        assert np.array_equal(pixels, expected), f"{m.topic} of frame {m.envelope['frame']}"
        checked += 1
    assert checked >= 12
