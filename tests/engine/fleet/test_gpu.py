"""GPU analysis actors: the request Ray gets (``num_gpus=1`` and the registry's GPU runtime where
the cluster has a GPU; CPU actors otherwise), and a run on a GPU that agrees with the CPU run
(skipped, with the reason, where no GPU runtime is usable)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.compute.backends import registry
from engine.config import Config, SegmentConfig
from engine.fleet.reanalyse import (
    ActorRequest,
    ReanalysisError,
    ReanalysisOptions,
    actor_config,
    actor_request,
    reanalyse,
)
from tests.engine.fleet.conftest import RAY_WARNINGS, ray

GPU_NODE = {"CPU": 16.0, "GPU": 2.0, "memory": 1e11}
CPU_NODE = {"CPU": 2.0, "memory": 1e10}


def test_a_gpu_cluster_gets_one_gpu_per_actor_and_the_gpu_runtime():
    request = actor_request(SegmentConfig(), GPU_NODE, workers=2)
    assert (request.num_gpus, request.runtime, request.fallback) == (1, "tensorrt", "")
    assert request.ray_kwargs() == {"num_cpus": request.num_cpus, "num_gpus": 1}
    assert 0 < request.num_cpus * 2 <= GPU_NODE["CPU"] and "GPU" in request.why
    kept = actor_request(SegmentConfig(runtime="torch-cuda", fallback="onnxruntime"), GPU_NODE, workers=1)
    assert (kept.runtime, kept.fallback) == ("torch-cuda", "onnxruntime")  # the config's GPU runtime


def test_a_cpu_cluster_gets_cpu_actors_and_no_gpu_request():
    request = actor_request(SegmentConfig(), CPU_NODE, workers=2)
    assert (request.num_gpus, request.runtime) == (0, "onnxruntime")
    assert "num_gpus" not in request.ray_kwargs() and request.threads == 1
    assert actor_request(SegmentConfig(), GPU_NODE, workers=1, gpu=False).num_gpus == 0  # --no-gpu
    fallback = actor_request(SegmentConfig(runtime="tensorrt", fallback="onnxruntime"), CPU_NODE, 1)
    assert (fallback.runtime, fallback.num_gpus) == ("onnxruntime", 0) and "fallback" in fallback.why


@pytest.mark.parametrize(("segment", "cluster", "workers", "gpu", "message"), [
    (SegmentConfig(), CPU_NODE, 1, True, "need 1 GPU"),
    (SegmentConfig(), GPU_NODE, 3, None, "need 3 GPU"),
    (SegmentConfig(runtime="tensorrt"), CPU_NODE, 1, None, "needs a GPU"),
])
def test_an_impossible_request_is_one_line(segment, cluster, workers, gpu, message):
    with pytest.raises(ReanalysisError, match=message):
        actor_request(segment, cluster, workers, gpu)


def test_the_actor_config_runs_the_request_and_keeps_the_users_hash():
    user = Config.from_dict({"segment": {"model_version": "octseg"}, "guidance": {"malapposition_threshold_um": 250}})
    request = ActorRequest(4.0, 1, "tensorrt", "", 4, "")
    config = actor_config(user, "/models/octseg.onnx", request)
    assert (config.segment.model, config.segment.model_version, config.segment.runtime) == (
        "/models/octseg.onnx", "", "tensorrt")
    assert config.segment.threads == 4 and config.server.render_image is False
    assert config.guidance == user.guidance


@pytest.mark.gpu("tensorrt")
@pytest.mark.slow
@pytest.mark.timeout(900)
@RAY_WARNINGS
def test_gpu_actors_agree_with_the_cpu_run(archive, tmp_path):
    if not registry().gpu_usable(("cupy",)):
        pytest.skip(f"TensorRT runs with CuPy buffers: {registry().probe('cupy').reason}")
    from engine.analysis.segment import DEFAULT_MODEL
    from models.manifest import load_manifest
    from models.runtime import build_engine, engine_cache_path, gpu_identity

    backends = registry()
    manifest = load_manifest(DEFAULT_MODEL)
    trt = backends.probe("tensorrt").version
    if not engine_cache_path(manifest, "fp16", gpu_identity(backends), trt).exists():
        build_engine(manifest, backends, "fp16")  # octguide build-engine: the stage never builds one
    ray.init(num_cpus=4, num_gpus=1, object_store_memory=200 * (1 << 20), include_dashboard=False,
             log_to_driver=False)
    try:
        cpu = reanalyse(archive, tmp_path / "cpu", ReanalysisOptions(gpu=False, show_progress=False, sr=False))
        gpu = reanalyse(archive, tmp_path / "gpu", ReanalysisOptions(gpu=True, show_progress=False, sr=False))
    finally:
        ray.shutdown()
    assert gpu["actors"]["num_gpus"] == 1 and gpu["actors"]["runtimes"] == ["tensorrt (gpu)"], gpu["actors"]
    assert cpu["actors"]["num_gpus"] == 0 and gpu["analysed"] == cpu["analysed"] == 3
    ours = pq.read_table(tmp_path / "gpu" / "measurements.parquet").to_pandas()
    theirs = pq.read_table(tmp_path / "cpu" / "measurements.parquet").to_pandas()
    both = ours["lumen_area_mm2"].notna() & theirs["lumen_area_mm2"].notna()
    assert both.mean() > 0.9
    difference = np.abs(ours["lumen_area_mm2"][both] - theirs["lumen_area_mm2"][both]) / theirs["lumen_area_mm2"][both]
    assert float(np.median(difference)) < 0.02  # fp16 TensorRT against fp32 ONNX Runtime


@RAY_WARNINGS
@pytest.mark.timeout(300)
def test_asking_for_gpu_actors_on_this_cpu_cluster_stops_before_any_work(archive, tmp_path, ray_local):
    if ray.cluster_resources().get("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ReanalysisError, match="need 1 GPU"):
        reanalyse(archive, tmp_path / "out", ReanalysisOptions(gpu=True, show_progress=False, sr=False))
    assert not (tmp_path / "out" / "pullbacks").exists()
