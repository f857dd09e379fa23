"""Runtime selection through the backend registry, and TensorRT where it is usable."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from engine.analysis.segment import DEFAULT_MODEL, Segmenter, SegmenterConfig
from engine.compute.backends import PROBES, BackendRegistry, BackendUnavailableError, registry
from models.manifest import load_manifest
from models.runtime import (
    EngineNotBuiltError,
    OnnxRuntime,
    TensorRTRuntime,
    build_engine,
    select_runtime,
)
from tests.models.conftest import needs_onnxruntime


def _no_tensorrt():
    raise ImportError("No module named 'tensorrt'")


def _registry_without_tensorrt() -> BackendRegistry:
    return BackendRegistry(probes={**PROBES, "tensorrt": _no_tensorrt})


def test_tensorrt_without_tensorrt_is_a_clear_error():
    with pytest.raises(
        BackendUnavailableError, match="'tensorrt' is not usable: tensorrt: ImportError"
    ):
        select_runtime(_registry_without_tensorrt(), "tensorrt")


@needs_onnxruntime
def test_fallback_happens_only_when_configured_and_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="models.runtime"):
        chosen = select_runtime(_registry_without_tensorrt(), "tensorrt", fallback="onnxruntime")
    assert chosen.name == "onnxruntime"
    assert "falling back to 'onnxruntime' as configured" in caplog.text


@needs_onnxruntime
def test_segmenter_reports_the_fallback_it_took():
    seg = Segmenter(
        SegmenterConfig(runtime="tensorrt", fallback="onnxruntime", warmup_frames=1),
        backends=_registry_without_tensorrt(),
    )
    seg.start()
    status = seg.status()
    seg.stop()
    assert status["fallback_used"] is True and status["runtime"]["runtime"] == "onnxruntime"
    with pytest.raises(BackendUnavailableError):
        Segmenter(
            SegmenterConfig(runtime="tensorrt"), backends=_registry_without_tensorrt()
        ).start()


@pytest.mark.gpu("tensorrt")
@pytest.mark.gpu("cupy")
def test_tensorrt_fp16_engine_is_built_cached_and_agrees_with_onnxruntime(tmp_path):
    manifest = load_manifest(DEFAULT_MODEL)
    backends = registry()
    with pytest.raises(EngineNotBuiltError, match="octguide build-engine"):
        TensorRTRuntime(manifest, backends, {"cache_dir": str(tmp_path)})
    path = build_engine(manifest, backends, "fp16", tmp_path)
    assert manifest.sha256[:16] in path.name and "fp16" in path.name
    trt = TensorRTRuntime(manifest, backends, {"cache_dir": str(tmp_path)})
    ort = OnnxRuntime(manifest, backends, {})
    x = np.random.default_rng(0).random(
        (1, 1, manifest.grid.n_alines, manifest.grid.n_depth), dtype=np.float32
    )
    got, want = trt.run(x), ort.run(x)
    trt.close()
    ort.close()
    np.testing.assert_allclose(got.class_prob, want.class_prob, atol=2e-2)
    np.testing.assert_allclose(got.aline_prob, want.aline_prob, atol=2e-2)
    assert np.mean(got.class_prob.argmax(1) == want.class_prob.argmax(1)) > 0.995
