"""The first live frame of a fresh engine is as fast as the rest (issue 13 item 15): the whole
per-frame path is warmed in ``start()`` on live-typed (read-only, wire-decoded) frames, and a
pullback's geometry is prepared when its START arrives."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from engine.realtime.server import Engine
from engine.realtime.warmup import WARM_GEOMETRIES, WIRE_DTYPES, prepare_geometry, wire_frame
from tests.engine.realtime.test_server import Harness, SlowMetal, engine_config, small_pullback

pytestmark = pytest.mark.timeout(90)


def test_warm_frames_are_typed_as_live_frames():
    frame = wire_frame(WARM_GEOMETRIES[1], np.uint16)
    assert not frame.pixels.flags.writeable and frame.pixels.flags.c_contiguous
    assert frame.pixels.shape == (64, 64) and frame.pixels.dtype == np.uint16
    assert {np.dtype(d).name for d in WIRE_DTYPES} == {"uint8", "uint16", "float32"}


def test_prepare_geometry_builds_the_scan_table_before_any_frame():
    stage = SlowMetal()
    stage.start()
    geometry = small_pullback(1).frame(0).geometry
    before = stage.converter.table_builds
    assert prepare_geometry(stage, geometry, np.dtype(np.uint16))
    assert stage.converter.table_builds == before + 1
    stage.process(small_pullback(1).frame(0))
    assert stage.converter.table_builds == before + 1  # the frame reused it


def test_the_first_live_frame_is_within_1_5x_of_the_median(tmp_path):
    """A ratio on one machine in one run, not an absolute time. The stage's fixed 10 ms per
    frame keeps the median above scheduling noise; before the warm-up the first frame spent
    tens of ms compiling read-only kernel variants and building its tables."""
    config = engine_config(tmp_path / "r", render_image=True, workers=1)
    h = Harness(Engine(config, lambda: SlowMetal(delay_s=0.01)),
                display_topics=(b"overlay", b"backfill", b"guidance", b"image", b"display"))
    try:
        status = h.status_()
        assert status["warmup"]["frames"] == len(WARM_GEOMETRIES) * len(WIRE_DTYPES)
        assert status["warmup"]["failed"] == 0
        pid = h.send_pullback(small_pullback(16), fps=20.0)
        assert h.wait_pullback(pid)["state"] == "complete"
        _, records = h.results(pid)
        live = [r["latency_ms"]["end_to_end"] for r in records if r["lane"] == "live"]
        assert records[0]["lane"] == "live" and len(live) >= 10
        first, median = live[0], statistics.median(live[1:])
        assert first <= 1.5 * median, f"first live frame {first:.1f} ms, median {median:.1f} ms"
    finally:
        h.close()
