"""The first live frame of a fresh engine is as fast as the rest (issue 13 item 15): the whole
per-frame path is warmed in ``start()`` on live-typed (read-only, wire-decoded), realistic frames
(a phantom cross-section: every measurement branch runs), and a pullback's geometry tables are
built when its START arrives, before its first frame is analysed."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.struts import detect_metal
from engine.realtime.server import Engine
from engine.realtime.warmup import (
    WARM_GEOMETRIES,
    WARM_PULLBACK_ID,
    WIRE_DTYPES,
    forget_warm_frames,
    prepare_geometry,
    warm_frames,
    wire_frame,
)
from tests.engine.realtime.test_server import Harness, SlowMetal, engine_config, small_pullback
from tests.streams.conftest import random_pullback

pytestmark = pytest.mark.timeout(90)


def test_warm_frames_are_typed_as_live_frames():
    frame = wire_frame(WARM_GEOMETRIES[1], np.uint16)
    assert not frame.pixels.flags.writeable and frame.pixels.flags.c_contiguous
    assert frame.pixels.shape == (64, 64) and frame.pixels.dtype == np.uint16
    assert {np.dtype(d).name for d in WIRE_DTYPES} == {"uint8", "uint16", "float32"}


def test_warm_frames_are_realistic_in_every_wire_dtype():
    frames = warm_frames(WARM_GEOMETRIES[0])
    assert [f.pixels.dtype for f in frames] == [*WIRE_DTYPES, np.dtype(np.uint16)]
    assert frames[-1].pixels.max() == 0  # the "nothing found" frame
    for frame in frames[:-1]:
        assert not frame.pixels.flags.writeable
        scaled = frame.pixels.astype(np.float64) / float(frame.pixels.max())
        assert 0.05 < float(np.median(scaled)) < 0.9  # tissue and noise, not a blank frame
        metal = detect_metal(frame)
        assert metal.strut_rows.size >= 4 and metal.guidewire_rows.any()  # struts and a guidewire
    # the README job's geometry as its header states it, so warm-up builds the tables it uses
    assert frames[0].geometry.intensity_scale is not None


def test_forget_warm_frames_clears_the_carried_sheath_and_lumen_area():
    """Through the shipped stage's public reset (no model is loaded: nothing is started)."""
    from engine.analysis.analyse import FrameAnalyser
    from engine.analysis.stages import FullAnalysis
    from engine.compute.scan_convert import CartesianGrid, DisplayOrientation

    analyser = FrameAnalyser()
    stage = FullAnalysis(analyser, CartesianGrid(256, 10.0), DisplayOrientation(), render=False)
    analyser._previous_area = (1_000_000, 6.9)
    analyser.segmenter.sheath._previous = object()
    forget_warm_frames(stage)
    assert analyser.segmenter.sheath._previous is None and analyser._previous_area is None


class TableWatch(SlowMetal):
    """The metal stage, noting for every frame it analyses whether it had to build a table."""

    def __init__(self):
        super().__init__()
        self.built_during: list[int] = []

    def process(self, frame):
        before = self.converter.table_builds
        result = super().process(frame)
        if self.converter.table_builds != before and frame.pullback_id != WARM_PULLBACK_ID:
            self.built_during.append(frame.index)
        return result


def test_a_start_builds_its_geometry_tables_before_its_first_frame_is_analysed(tmp_path):
    stages: list[TableWatch] = []

    def make():
        stages.append(TableWatch())
        return stages[-1]

    h = Harness(Engine(engine_config(tmp_path / "r", workers=2), make))
    try:
        assert h.status_()["warmup"]["geometries_prepared"] == 0
        pullback = random_pullback(n_alines=48, n_samples=80, n_frames=4)  # a geometry never warmed
        assert pullback.geometry not in WARM_GEOMETRIES
        pid = h.send_pullback(pullback, fps=50.0)
        assert h.wait_pullback(pid)["state"] == "complete"
        assert h.status_()["warmup"]["geometries_prepared"] == 1
        assert [s.built_during for s in stages] == [[], []]  # no frame built a table, on any worker
    finally:
        h.close()


def test_prepare_geometry_builds_the_scan_table_before_any_frame():
    stage = SlowMetal()
    stage.start()
    geometry = small_pullback(1).frame(0).geometry
    before = stage.converter.table_builds
    assert prepare_geometry(stage, geometry, np.dtype(np.uint16))
    assert stage.converter.table_builds == before + 1
    stage.process(small_pullback(1).frame(0))
    assert stage.converter.table_builds == before + 1  # the frame reused it


def test_warm_up_covers_every_geometry_and_dtype_and_the_first_frame_goes_live(tmp_path):
    """What the warm-up must have done before the first real frame (its time is not asserted
    here: a timed ratio in a unit test failed under load on a shared machine; the first-live
    ratio is measured by replays, BENCHMARKS.md)."""
    config = engine_config(tmp_path / "r", render_image=True, workers=1)
    h = Harness(Engine(config, lambda: SlowMetal(delay_s=0.01)),
                display_topics=(b"overlay", b"backfill", b"guidance", b"image", b"display"))
    try:
        status = h.status_()
        assert status["warmup"]["frames"] == len(WARM_GEOMETRIES) * (len(WIRE_DTYPES) + 1)
        assert status["warmup"]["failed"] == 0
        pid = h.send_pullback(small_pullback(16), fps=20.0)
        assert h.wait_pullback(pid)["state"] == "complete"
        _, records = h.results(pid)
        assert records[0]["lane"] == "live"
        assert sorted(r["frame"] for r in records) == list(range(16))  # warm frames left no trace
    finally:
        h.close()
