"""Inference runtimes for the shipped segmentation model: ONNX Runtime (CPU) and TensorRT (GPU).

Both take a model that passed :func:`models.manifest.load_manifest` (sha256 checked), check the
I/O they see against the manifest (:func:`models.manifest.check_signature`) when they open it,
and run ``(B, 1, K, J)`` float32 batches to :class:`ModelOutputs`.

Backends are found through the one backend registry (:mod:`engine.compute.backends`): the
:data:`RUNTIMES` entries name the registry probes they require, :func:`select_runtime` asks the
registry why an entry is not usable and either raises :class:`BackendUnavailableError` or, only
when the caller's config names a fallback, logs the fallback as a warning.

TensorRT engines are build artefacts (:func:`build_engine`, ``octguide build-engine``), cached
under a key of model sha256, precision, GPU name and compute capability, and TensorRT version
(:func:`engine_cache_path`); :class:`TensorRTRuntime` only loads a cached engine and raises
:class:`EngineNotBuiltError` when there is none, so no engine is ever built on the first frame.
"""

from __future__ import annotations

import abc
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.compute.backends import (
    IMPLEMENTATIONS,
    BackendRegistry,
    BackendUnavailableError,
    Implementation,
)
from models.manifest import Manifest, TensorSpec, check_signature
from streams.errors import OctguideError

log = logging.getLogger(__name__)

DEFAULT_ENGINE_CACHE = Path.home() / ".cache" / "octguide" / "engines"
TRT_MAX_BATCH = 4


class EngineNotBuiltError(OctguideError):
    """No cached TensorRT engine matches this model, precision, GPU and TensorRT version."""


class EngineBuildError(OctguideError):
    """TensorRT could not parse the model or build an engine from it."""


@dataclass(frozen=True)
class ModelOutputs:
    """One batch of model outputs (host arrays, float32).

    Attributes
    ----------
    class_prob : numpy.ndarray
        ``(B, N_CLASSES, K, J)`` per-pixel class probabilities (softmax).
    aline_prob : numpy.ndarray
        ``(B, N_ALINE_OUTPUTS, K)`` per-A-line probabilities (sigmoids).
    confidence : numpy.ndarray
        ``(B, 1)`` probability that each frame is fit for measurement.
    """

    class_prob: np.ndarray
    aline_prob: np.ndarray
    confidence: np.ndarray


class Runtime(abc.ABC):
    """One backend executing the verified model. Open in the constructor, release in :meth:`close`.

    Parameters
    ----------
    manifest : Manifest
        The verified model.
    backends : BackendRegistry
        Registry to take library modules from.
    options : dict
        Backend options (see each subclass).
    """

    name = ""
    device = "cpu"

    def __init__(self, manifest: Manifest, backends: BackendRegistry, options: dict):
        self.manifest = manifest
        self.backends = backends
        self.options = dict(options)

    @abc.abstractmethod
    def run(self, x: Any) -> ModelOutputs:
        """``(B, 1, K, J)`` float32 input (host, or device array for GPU runtimes) -> outputs."""

    def close(self) -> None:
        """Release sessions, engines and buffers."""

    def describe(self) -> dict:
        """What runs the model, for the status channel."""
        return {"runtime": self.name, "device": self.device, **self.options}


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU.

    Options: ``threads`` (intra-op threads, default 2), ``optimization`` ("all", "extended",
    "basic" or "disabled"; default "all"), ``spinning`` (let idle intra-op threads spin; default
    False: spinning threads took the cores from the Numba preprocessing of the same stage and
    raised its p99 from ~10 ms to ~37 ms on two cores). It runs the manifest's own (checksummed)
    file only; a variant such as the int8 model has its own manifest.
    """

    name = "onnxruntime"
    device = "cpu"
    LEVELS = ("disabled", "basic", "extended", "all")

    def __init__(self, manifest, backends, options):
        super().__init__(manifest, backends, options)
        ort = backends.module("onnxruntime")
        level = self.options.setdefault("optimization", "all")
        if level not in self.LEVELS:
            raise ValueError(f"optimization={level!r} is not one of {self.LEVELS}")
        threads = int(self.options.setdefault("threads", 2))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        spinning = bool(self.options.setdefault("spinning", False))
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        path = manifest.model_path
        self.options["model"] = str(path)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        check_signature(
            manifest,
            [_ort_spec(i) for i in self.session.get_inputs()],
            [_ort_spec(o) for o in self.session.get_outputs()],
            str(path),
        )
        self.input_name = manifest.inputs[0].name
        self.output_names = [o.name for o in manifest.outputs]

    def run(self, x):
        class_prob, aline_prob, confidence = self.session.run(
            self.output_names, {self.input_name: x}
        )
        return ModelOutputs(class_prob, aline_prob, confidence)

    def close(self):
        self.session = None


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def _ort_spec(node: Any) -> TensorSpec:
    return TensorSpec(node.name, tuple(node.shape), _ORT_TYPES.get(node.type, node.type))


def gpu_identity(backends: BackendRegistry) -> dict:
    """Name and compute capability of the current CUDA device (via CuPy)."""
    cp = backends.module("cupy")
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"name": name, "compute_capability": f"{props['major']}.{props['minor']}"}


def engine_cache_path(
    manifest: Manifest,
    precision: str,
    gpu: dict,
    trt_version: str,
    cache_dir: Path = DEFAULT_ENGINE_CACHE,
) -> Path:
    """Where the engine for this model, precision, GPU and TensorRT version is cached.

    >>> from types import SimpleNamespace
    >>> m = SimpleNamespace(name="octseg", sha256="ab" * 32)
    >>> engine_cache_path(m, "fp16", {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
    ...                   "10.9.0", Path("/c")).name
    'octseg-abababababababab-fp16-NVIDIA_H100_80GB_HBM3-sm90-trt10.9.0.engine'
    """
    gpu_name = re.sub(r"[^A-Za-z0-9.]+", "_", gpu["name"]).strip("_")
    sm = "sm" + gpu["compute_capability"].replace(".", "")
    return (
        Path(cache_dir)
        / f"{manifest.name}-{manifest.sha256[:16]}-{precision}-{gpu_name}-{sm}-trt{trt_version}.engine"
    )


PRECISIONS = ("fp16", "fp32")


def build_engine(
    manifest: Manifest,
    backends: BackendRegistry,
    precision: str = "fp16",
    cache_dir: Path = DEFAULT_ENGINE_CACHE,
    max_batch: int = TRT_MAX_BATCH,
    workspace_mib: int = 1024,
) -> Path:
    """Build (or rebuild) the TensorRT engine for ``manifest`` and write it to the cache.

    fp16 engines are built strongly typed from a float16 copy of the graph
    (:func:`models.fp16.to_float16`), which TensorRT 10.x and 11.x both accept; fp32 engines from
    the shipped graph. The optimisation profile covers batch 1 (optimal) to ``max_batch``.

    Returns
    -------
    pathlib.Path
        The cached engine; a JSON sidecar (``.json``) records the key and the build settings.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    trt = backends.module("tensorrt")
    gpu = gpu_identity(backends)
    path = engine_cache_path(manifest, precision, gpu, trt.__version__, cache_dir)
    onnx_bytes = manifest.model_path.read_bytes()
    if precision == "fp16":
        import onnx

        from models.fp16 import to_float16

        onnx_bytes = to_float16(onnx.load_from_string(onnx_bytes)).SerializeToString()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(
            f"{manifest.model_path}: TensorRT could not parse the model: {errors}"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile = builder.create_optimization_profile()
    spec = manifest.inputs[0]
    fixed = tuple(int(d) for d in spec.shape[1:])
    profile.set_shape(spec.name, (1, *fixed), (1, *fixed), (max_batch, *fixed))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"{manifest.model_path}: TensorRT failed to build a {precision} engine"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(serialized)
    tmp.replace(path)
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "model": manifest.name,
                "version": manifest.version,
                "sha256": manifest.sha256,
                "precision": precision,
                "gpu": gpu,
                "tensorrt": trt.__version__,
                "max_batch": max_batch,
            },
            indent=2,
        )
    )
    log.info("built TensorRT %s engine %s", precision, path)
    return path


_TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT32": "int32",
    "INT64": "int64",
    "INT8": "int8",
}


class TensorRTRuntime(Runtime):
    """TensorRT on the GPU, from an engine cached by :func:`build_engine`.

    Options: ``precision`` ("fp16" default, or "fp32"), ``cache_dir`` (engine cache). Inputs may
    be host NumPy arrays or CuPy device arrays (e.g. the CuPy preprocessor's output).
    """

    name = "tensorrt"
    device = "gpu"

    def __init__(self, manifest, backends, options):
        super().__init__(manifest, backends, options)
        trt = backends.module("tensorrt")
        self.cp = backends.module("cupy")
        precision = self.options.setdefault("precision", "fp16")
        cache_dir = Path(self.options.setdefault("cache_dir", str(DEFAULT_ENGINE_CACHE)))
        gpu = gpu_identity(backends)
        path = engine_cache_path(manifest, precision, gpu, trt.__version__, cache_dir)
        if not path.is_file():
            raise EngineNotBuiltError(
                f"no {precision} TensorRT engine for {manifest.name} (sha256 {manifest.sha256[:16]}...) on "
                f"{gpu['name']} with TensorRT {trt.__version__} in {cache_dir}; run "
                f"`octguide build-engine --precision {precision}` first"
            )
        self.options["engine"] = str(path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineBuildError(f"{path}: TensorRT could not deserialize the engine; rebuild it")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        specs = {
            n: TensorSpec(
                n,
                tuple(-1 if d < 0 else d for d in self.engine.get_tensor_shape(n)),
                _TRT_DTYPES.get(
                    self.engine.get_tensor_dtype(n).name, str(self.engine.get_tensor_dtype(n))
                ),
            )
            for n in names
        }
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        check_signature(
            manifest,
            [specs[n] for n in names if is_input[n]],
            [specs[n] for n in names if not is_input[n]],
            str(path),
        )
        self.context = self.engine.create_execution_context()
        self.stream = self.cp.cuda.Stream(non_blocking=True)
        self.input_name = manifest.inputs[0].name
        self.outputs: dict[str, Any] = {}
        self.batch = 0

    def _bind(self, batch: int) -> None:
        """(Re)allocate output buffers and bind addresses for a batch size (outside the hot path
        after the first frame: the batch size of a live stream does not change)."""
        cp = self.cp
        self.context.set_input_shape(self.input_name, (batch, *self.manifest.inputs[0].shape[1:]))
        self.outputs = {}
        for spec in self.manifest.outputs:
            buffer = cp.empty((batch, *spec.shape[1:]), dtype=np.float32)
            self.context.set_tensor_address(spec.name, buffer.data.ptr)
            self.outputs[spec.name] = buffer
        self.batch = batch

    def run(self, x):
        cp = self.cp
        with self.stream:
            x = cp.ascontiguousarray(cp.asarray(x, dtype=cp.float32))
            if x.shape[0] != self.batch:
                self._bind(int(x.shape[0]))
            self.context.set_tensor_address(self.input_name, x.data.ptr)
            if not self.context.execute_async_v3(self.stream.ptr):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            host = [
                cp.asnumpy(self.outputs[s.name], stream=self.stream) for s in self.manifest.outputs
            ]
        self.stream.synchronize()
        return ModelOutputs(*host)

    def close(self):
        self.context = None
        self.engine = None
        self.runtime = None
        self.outputs = {}


RUNTIMES: dict[str, Implementation] = {i.name: i for i in IMPLEMENTATIONS["segment"]}
"""Segmentation runtimes by name, with the registry probes each requires (the registry's
``"segment"`` implementations; :meth:`BackendRegistry.register` adds more to one registry)."""

RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32", "int8"),
    "tensorrt": ("fp16", "fp32"),
    "torch-cuda": ("fp16", "fp32"),
}
"""Precisions each runtime runs, its own (``"auto"``) first. ONNX Runtime's int8 is the
statically quantised variant of the model (``octseg.int8-static``); TensorRT engines are built
fp16 or fp32 (:data:`PRECISIONS`)."""


def resolve_precision(runtime: str, precision: str) -> str:
    """The concrete precision ``runtime`` runs for the configured ``precision``.

    >>> resolve_precision("tensorrt", "auto"), resolve_precision("onnxruntime", "int8")
    ('fp16', 'int8')
    >>> resolve_precision("onnxruntime", "fp16")
    Traceback (most recent call last):
    ...
    ValueError: segment.precision='fp16' is not available with runtime 'onnxruntime' (it runs fp32, int8)
    """
    choices = RUNTIME_PRECISIONS.get(runtime, ("fp32",))
    if precision == "auto":
        return choices[0]
    if precision not in choices:
        raise ValueError(f"segment.precision={precision!r} is not available with runtime "
                         f"{runtime!r} (it runs {', '.join(choices)})")
    return precision


def variant_model(model: Path, precision: str) -> Path:
    """The shipped model file for ``precision``: ``model`` itself, or for "int8" its statically
    quantised variant beside it (``octseg.int8-static.onnx``, ``models.training.quantize``).

    >>> variant_model(Path("w/octseg.onnx"), "int8").name, variant_model(Path("w/octseg.onnx"), "fp16").name
    ('octseg.int8-static.onnx', 'octseg.onnx')
    """
    return model.with_name(f"{model.stem}.int8-static{model.suffix}") if precision == "int8" else model


def select_runtime(
    backends: BackendRegistry, preferred: str, fallback: str | None = None
) -> Implementation:
    """Choose the runtime: ``preferred`` when usable, else ``fallback`` (logged), else an error.

    The candidates are the registry's ``"segment"`` implementations, so a runtime registered
    with :meth:`BackendRegistry.register` (a plugin, or a test's fake) is selectable by name.

    Parameters
    ----------
    backends : BackendRegistry
        The registry that probes the libraries.
    preferred : str
        A runtime name, e.g. "onnxruntime", "tensorrt" or "torch-cuda".
    fallback : str, optional
        Runtime to use when ``preferred`` is not usable; None (or "") makes that an error.

    Raises
    ------
    BackendUnavailableError
        ``preferred`` is unknown, or not usable and there is no usable ``fallback``; the one-line
        message gives the registry's reason.
    """
    known = {i.name: i for i in backends.implementations("segment")}
    for name in (preferred, fallback):
        if name and name not in known:
            raise BackendUnavailableError(
                f"unknown segmentation runtime {name!r}; known: {', '.join(sorted(known))}")
    reason = backends.why_not(known[preferred])
    if reason is None:
        log.info("segment: using runtime %r (%s)", preferred, known[preferred].device)
        return known[preferred]
    if not fallback:
        raise BackendUnavailableError(
            f"segmentation runtime {preferred!r} is not usable: {reason} "
            "(set segment.fallback to allow another)"
        )
    fallback_reason = backends.why_not(known[fallback])
    if fallback_reason is not None:
        raise BackendUnavailableError(
            f"segmentation runtime {preferred!r} is not usable ({reason}) and neither is the fallback "
            f"{fallback!r} ({fallback_reason})"
        )
    log.warning(
        "segment: runtime %r is not usable (%s); falling back to %r as configured",
        preferred,
        reason,
        fallback,
    )
    return known[fallback]
