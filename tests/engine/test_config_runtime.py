"""The whole config reaches the analysis stage: ``--set segment.runtime=tensorrt`` selects TensorRT
(a fake one registered in the backend registry, so this runs on a CPU), fails in one line where
TensorRT is missing, falls back only when configured, and the choice shows on the stage status."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import stages
from engine.commands.serve import build_config
from engine.compute import backends as backends_module
from engine.compute.backends import (
    IMPLEMENTATIONS,
    PROBES,
    BackendRegistry,
    BackendUnavailableError,
    Implementation,
)
from engine.config import SEGMENT_RUNTIMES, ConfigError
from models.runtime import OnnxRuntime
from streams.geometry import FrameGeometry
from streams.pullback import Frame
from tests.models.conftest import needs_onnxruntime

OPENED: list[dict] = []  # options each FakeTensorRT was opened with (one test at a time)


class FakeTensorRT(OnnxRuntime):
    """Stands in for TensorRT on a CPU: ONNX Runtime underneath, registered as "tensorrt"."""

    name = "tensorrt"
    device = "gpu (fake: ONNX Runtime on the CPU)"

    def __init__(self, manifest, backends, options):
        OPENED.append(dict(options))
        super().__init__(manifest, backends, {k: v for k, v in options.items() if k != "precision"})


def _no_tensorrt():
    raise ImportError("No module named 'tensorrt'")


@pytest.fixture
def without_tensorrt(monkeypatch) -> BackendRegistry:
    """The process-wide registry replaced by one in which TensorRT does not import."""
    registry = BackendRegistry(probes={**PROBES, "tensorrt": _no_tensorrt})
    monkeypatch.setattr(backends_module, "_default", registry)
    return registry


@pytest.fixture
def fake_tensorrt(without_tensorrt) -> BackendRegistry:
    """The process-wide registry with the fake TensorRT runtime registered (and usable)."""
    without_tensorrt.register(
        Implementation("segment", "tensorrt", "gpu", ("fake_tensorrt",),
                       f"{__name__}:FakeTensorRT"),
        {"fake_tensorrt": lambda: (None, "0.0-fake", {})},
    )
    OPENED.clear()
    return without_tensorrt


def _frame() -> Frame:
    geometry = FrameGeometry(n_alines=256, n_samples=384, aline_spacing_mm=0.013, intensity="LOG")
    pixels = np.random.default_rng(0).integers(0, 40000, (256, 384)).astype(np.uint16)
    return Frame("p", 0, 0.0, pixels, geometry)


@needs_onnxruntime
def test_set_segment_runtime_tensorrt_reaches_the_segmenter(fake_tensorrt):
    config = build_config(None, ["segment.runtime=tensorrt", "segment.warmup_frames=1"])
    stage = stages.stage_factory(config)()
    stage.start()
    try:
        result = stage.process(_frame())
        status = stage.status()
    finally:
        stage.stop()
    assert OPENED == [{"precision": "fp16"}]  # 'auto' is TensorRT's own fp16
    assert status["segment"] == {"requested": "tensorrt", "fallback": None, "selected": "tensorrt",
                                 "device": FakeTensorRT.device, "precision": "fp16",
                                 "fallback_used": False}
    assert status["fallbacks"] == []
    assert result.record["frame"] == 0 and "segment" in result.latency_ms


def test_tensorrt_where_there_is_none_fails_in_one_line(without_tensorrt):
    config = build_config(None, ["segment.runtime=tensorrt"])
    with pytest.raises(BackendUnavailableError) as err:
        stages.stage_factory(config)
    message = str(err.value)
    assert "\n" not in message
    assert "'tensorrt' is not usable: tensorrt: ImportError" in message
    assert "segment.fallback" in message


@needs_onnxruntime
def test_a_configured_fallback_runs_and_shows_on_status(without_tensorrt):
    config = build_config(None, ["segment.runtime=tensorrt", "segment.fallback=onnxruntime",
                                 "segment.warmup_frames=0"])
    stage = stages.stage_factory(config)()
    stage.start()
    status = stage.status()
    stage.stop()
    assert status["segment"]["selected"] == "onnxruntime" and status["segment"]["fallback_used"]
    assert status["segment"]["precision"] == "fp32"  # the fallback's own precision
    assert status["fallbacks"] == ["segment: tensorrt unavailable, using onnxruntime"]


def test_a_precision_the_runtime_does_not_run_is_a_config_error(without_tensorrt):
    with pytest.raises(ConfigError, match="segment.precision='fp16' is not available with runtime "
                                          "'onnxruntime'"):
        stages.stage_factory(build_config(None, ["segment.precision=fp16"]))


def test_int8_runs_the_quantised_variant():
    settings, choice = stages.segmenter_settings(
        build_config(None, ["segment.precision=int8"]).segment)
    assert settings.model.endswith("octseg.int8-static.onnx") and choice["precision"] == "int8"
    settings, _ = stages.segmenter_settings(build_config(None, []).segment)
    assert settings.model.endswith("octseg.onnx")


def test_model_version_names_an_installed_model_for_the_engine():
    """`--set segment.model_version=...` reaches the segmenter by key or NAME@VERSION; an
    unknown or ambiguous one is a one-line config error naming what is installed."""
    for spec in ("octseg-2.0.0", "octseg@2.0.0"):
        settings, _ = stages.segmenter_settings(build_config(None, [f"segment.model_version={spec}"]).segment)
        assert settings.model.endswith("octseg-2.0.0.onnx"), (spec, settings.model)
    settings, _ = stages.segmenter_settings(build_config(None, ["segment.model_version=octseg@1.0.1"]).segment)
    assert settings.model.endswith("/octseg.onnx")
    with pytest.raises(ConfigError, match=r"no installed model answers to .*installed: .*octseg-2\.0\.0"):
        stages.segmenter_settings(build_config(None, ["segment.model_version=octseg@9.9.9"]).segment)


def test_torch_cuda_is_named_by_config_and_registry_and_fails_clearly():
    assert set(SEGMENT_RUNTIMES) == {i.name for i in IMPLEMENTATIONS["segment"]}
    config = build_config(None, ["segment.runtime=torch-cuda"])
    with pytest.raises(BackendUnavailableError, match="'torch-cuda' is not usable"):
        stages.stage_factory(config)


def test_metal_scan_and_display_sections_reach_the_stage():
    config = build_config(None, ["server.analysis=metal", "metal.peak_margin=0.5",
                                 "scan.backend=numpy", "scan.cache_size=2",
                                 "display.first_aline_deg=90"])
    stage = stages.stage_factory(config)()
    assert stage.metal.peak_margin == 0.5
    assert stage.orientation.first_aline_deg == 90.0
    assert stage.converter.cache_size == 2
