"""The one backend registry: what compute libraries this process can use, and why not.

Every optional compute library (Numba, Numba CUDA, CuPy, OpenCV, ONNX Runtime, TensorRT) is
probed here, once, lazily, and nowhere else: other modules ask the registry for a module
(:meth:`BackendRegistry.module`) or for an implementation of a pipeline kernel
(:meth:`BackendRegistry.select`) instead of writing their own ``try: import ... except``.

A probe records whether the library is usable, its version, and the reason when it is not (the
import error or the driver error, as text). Choosing a kernel implementation is an explicit
decision: when the preferred backend is not usable the registry logs a warning naming the
fallback and the reason, and :meth:`BackendRegistry.report` carries it to the status channel.

>>> registry = BackendRegistry()
>>> registry.probe("numpy").available
True
>>> registry.select("scan_convert", preferred="numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from streams.errors import OctguideError

log = logging.getLogger(__name__)


class BackendUnavailableError(OctguideError):
    """A backend was required explicitly (no fallback allowed) but is not usable here."""


@dataclass(frozen=True)
class Probe:
    """What one probe found.

    Attributes
    ----------
    name : str
        Registry name of the library ("numba", "numba_cuda", "cupy", ...).
    available : bool
        True when the library imports and, for GPU libraries, a device answers.
    version : str or None
        Library version when it imported.
    reason : str or None
        Why it is not available (exception type and message), None when available.
    detail : dict
        Extra facts (device name, compute capability, providers, thread count).
    probe_ms : float
        Time the probe took, milliseconds.
    """

    name: str
    available: bool
    version: str | None = None
    reason: str | None = None
    detail: dict = field(default_factory=dict)
    probe_ms: float = 0.0

    def as_dict(self) -> dict:
        return {
            "available": self.available,
            "version": self.version,
            "reason": self.reason,
            "detail": dict(self.detail),
            "probe_ms": round(self.probe_ms, 3),
        }


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()}".splitlines()[0][:300]


def _import(name: str) -> ModuleType:
    # A library that warns on import (deprecations) must not break the probe when warnings are
    # turned into errors (pytest's filterwarnings=error): record it as usable, not failed.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _probe_numpy() -> tuple[ModuleType, str, dict]:
    np = _import("numpy")
    return np, np.__version__, {}


OMP_WAIT_POLICY_DEFAULT = "PASSIVE"
"""OpenMP wait policy set (unless the environment already sets one) before Numba's OpenMP pool
starts. Frames share the CPU with other stages and processes; with GNU OpenMP's default active
wait, a parallel region whose second thread sits on a busy core waits a scheduler time slice:
measured on the 2-core development VM with one core busy, the scan kernel's median went from
0.6 ms to 24 ms (p99 16-42 ms); passive waiting kept it at ~0.9-1.3 ms (p99 ~6 ms), for ~5% more
when the CPU is idle."""


def _probe_numba() -> tuple[ModuleType, str, dict]:
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY_DEFAULT)
    numba = _import("numba")
    return numba, numba.__version__, {
        "threads": int(numba.config.NUMBA_NUM_THREADS),
        "threading_layer_config": str(numba.config.THREADING_LAYER),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def _probe_numba_cuda() -> tuple[ModuleType, str, dict]:
    numba = _import("numba")
    cuda = _import("numba.cuda")
    if numba.config.ENABLE_CUDASIM:
        # NUMBA_ENABLE_CUDASIM=1: kernels run on the CPU simulator; only tests enable it.
        return cuda, numba.__version__, {"device": "numba CUDA simulator (CPU)", "simulator": True}
    if not cuda.is_available():
        driver = getattr(getattr(cuda, "cudadrv", None), "driver", None)
        error = getattr(getattr(driver, "driver", None), "initialization_error", None)
        raise RuntimeError(str(error or "numba.cuda.is_available() is False").strip())
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    return cuda, numba.__version__, {
        "device": name,
        "compute_capability": ".".join(map(str, device.compute_capability)),
    }


def _probe_cupy() -> tuple[ModuleType, str, dict]:
    cupy = _import("cupy")
    count = cupy.cuda.runtime.getDeviceCount()
    if count < 1:
        raise RuntimeError("no CUDA device found")
    # A real launch proves the driver, the runtime and NVRTC all work, not just the import.
    if int(cupy.arange(4, dtype=cupy.int32).sum()) != 6:
        raise RuntimeError("a test kernel returned a wrong result")
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return cupy, cupy.__version__, {
        "device": name,
        "compute_capability": f"{props['major']}.{props['minor']}",
        "devices": count,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
    }


def _probe_opencv() -> tuple[ModuleType, str, dict]:
    cv2 = _import("cv2")
    return cv2, cv2.__version__, {"threads": int(cv2.getNumThreads())}


def _probe_scipy() -> tuple[ModuleType, str, dict]:
    scipy = _import("scipy")
    return scipy, scipy.__version__, {}


def _probe_onnxruntime() -> tuple[ModuleType, str, dict]:
    ort = _import("onnxruntime")
    return ort, ort.__version__, {"providers": list(ort.get_available_providers())}


def _probe_tensorrt() -> tuple[ModuleType, str, dict]:
    trt = _import("tensorrt")
    return trt, trt.__version__, {}


def _probe_torch_cuda() -> tuple[ModuleType, str, dict]:
    torch = _import("torch")
    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA device")
    return torch, torch.__version__, {"device": torch.cuda.get_device_name(0)}


PROBES: dict[str, Callable[[], tuple[ModuleType, str, dict]]] = {
    "numpy": _probe_numpy,
    "numba": _probe_numba,
    "numba_cuda": _probe_numba_cuda,
    "cupy": _probe_cupy,
    "opencv": _probe_opencv,
    "scipy": _probe_scipy,
    "onnxruntime": _probe_onnxruntime,
    "tensorrt": _probe_tensorrt,
    "torch_cuda": _probe_torch_cuda,
}
"""Registry name -> probe. A probe returns (module, version, detail) or raises why not."""

ON_DEMAND_PROBES = frozenset({"torch_cuda"})
"""Probes :meth:`BackendRegistry.report` runs only once something asked for them: importing
torch costs ~1-2 s and hundreds of MiB, which an engine that never uses it should not pay."""


@dataclass(frozen=True)
class Implementation:
    """One implementation of a pipeline kernel on one backend.

    Attributes
    ----------
    kind : str
        What it computes ("scan_convert", "preprocess").
    name : str
        Backend name as users and configs spell it ("numba", "cupy", ...).
    device : str
        "cpu" or "gpu".
    requires : tuple of str
        Registry probes that must all be available.
    target : str
        ``"module:attribute"`` of the implementation class, imported only when selected; empty
        when this build has no implementation (:meth:`BackendRegistry.why_not` says so).
    """

    kind: str
    name: str
    device: str
    requires: tuple[str, ...]
    target: str

    def load(self) -> Any:
        if not self.target:
            raise BackendUnavailableError(f"{self.kind} {self.name!r} has no implementation")
        module_name, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)


def _impls(kind: str, module: str, prefix: str) -> list[Implementation]:
    return [
        Implementation(kind, "cupy", "gpu", ("cupy",), f"{module}:Cupy{prefix}"),
        Implementation(kind, "numba_cuda", "gpu", ("numba_cuda",), f"{module}:NumbaCuda{prefix}"),
        Implementation(kind, "numba", "cpu", ("numba",), f"{module}:Numba{prefix}"),
        Implementation(kind, "numpy", "cpu", ("numpy",), f"{module}:Reference{prefix}"),
    ]


IMPLEMENTATIONS: dict[str, list[Implementation]] = {
    "scan_convert": _impls("scan_convert", "engine.compute.scan_convert", "ScanKernel"),
    "preprocess": [
        i for i in _impls("preprocess", "engine.compute.preprocess", "PreprocessKernel")
        if i.name != "numba_cuda"
    ],
    # Segmentation runtimes, by the names ``[segment] runtime`` takes (engine.config). Targets are
    # strings, so this layer imports nothing of models/ (models.runtime selects among them).
    "segment": [
        Implementation("segment", "onnxruntime", "cpu", ("onnxruntime",),
                       "models.runtime:OnnxRuntime"),
        Implementation("segment", "tensorrt", "gpu", ("tensorrt", "cupy"),
                       "models.runtime:TensorRTRuntime"),
        # Probed, so the config can name it and a fallback applies; no runtime class yet (it
        # needs a checksummed PyTorch checkpoint in the model manifest).
        Implementation("segment", "torch-cuda", "gpu", ("torch_cuda",), ""),
    ],
}
"""Every implementation, in default preference order (fastest usable first; for "segment" the
order is not a preference: the config names the runtime)."""


class BackendRegistry:
    """Probes libraries once (lazily, thread-safe) and chooses kernel implementations.

    Parameters
    ----------
    probes : dict, optional
        Name -> probe function; defaults to :data:`PROBES`. Tests pass fakes here.
    implementations : dict, optional
        Kind -> implementations in preference order; defaults to :data:`IMPLEMENTATIONS`.
    """

    def __init__(
        self,
        probes: dict[str, Callable[[], tuple[ModuleType, str, dict]]] | None = None,
        implementations: dict[str, list[Implementation]] | None = None,
    ):
        self._probe_functions = dict(PROBES if probes is None else probes)
        self._implementations = dict(IMPLEMENTATIONS if implementations is None else implementations)
        self._results: dict[str, Probe] = {}
        self._modules: dict[str, ModuleType] = {}
        self._decisions: dict[str, dict] = {}
        self._lock = threading.RLock()

    def probe(self, name: str) -> Probe:
        """Probe one library (first call only; later calls return the recorded result)."""
        with self._lock:
            if name in self._results:
                return self._results[name]
            if name not in self._probe_functions:
                raise KeyError(f"unknown backend {name!r}; known: {sorted(self._probe_functions)}")
            start = time.perf_counter()
            try:
                module, version, detail = self._probe_functions[name]()
            except Exception as exc:  # any import or driver failure means "not usable here"
                result = Probe(name, False, reason=_error_text(exc),
                               probe_ms=(time.perf_counter() - start) * 1e3)
            else:
                self._modules[name] = module
                result = Probe(name, True, version=str(version), detail=detail,
                               probe_ms=(time.perf_counter() - start) * 1e3)
            self._results[name] = result
            log.debug("backend probe %s: %s", name, result.as_dict())
            return result

    def available(self, name: str) -> bool:
        """True when :meth:`probe` found the library usable."""
        return self.probe(name).available

    def module(self, name: str) -> ModuleType:
        """The imported module of a usable library; :class:`BackendUnavailableError` if not."""
        result = self.probe(name)
        if not result.available:
            raise BackendUnavailableError(f"backend {name!r} is not usable: {result.reason}")
        return self._modules[name]

    def implementations(self, kind: str) -> list[Implementation]:
        """Every implementation of ``kind`` (usable or not), in default preference order."""
        if kind not in self._implementations:
            raise KeyError(f"unknown kernel kind {kind!r}; known: {sorted(self._implementations)}")
        return list(self._implementations[kind])

    def register(self, implementation: Implementation,
                 probes: dict[str, Callable[[], tuple[ModuleType, str, dict]]] | None = None) -> None:
        """Add (or replace, by kind and name) an implementation, with any probes it requires.

        For plugins and for tests: a fake TensorRT runtime registered on a CPU machine lets the
        whole ``[segment] runtime = "tensorrt"`` path run without a GPU.

        >>> r = BackendRegistry()
        >>> r.register(Implementation("segment", "fake", "cpu", ("fake_lib",), "x:Y"),
        ...            {"fake_lib": lambda: (None, "1.0", {})})
        >>> r.why_not(r.implementations("segment")[-1]) is None
        True
        """
        with self._lock:
            for name, probe in (probes or {}).items():
                self._probe_functions[name] = probe
                self._results.pop(name, None)
            existing = [i for i in self._implementations.get(implementation.kind, [])
                        if i.name != implementation.name]
            self._implementations[implementation.kind] = [*existing, implementation]

    def why_not(self, implementation: Implementation) -> str | None:
        """None when usable, else the first failing requirement and its reason."""
        if not implementation.target:
            return f"{implementation.kind} {implementation.name!r} has no implementation in this build"
        for requirement in implementation.requires:
            result = self.probe(requirement)
            if not result.available:
                return f"{requirement}: {result.reason}"
        return None

    def select(self, kind: str, preferred: str | None = None, *, strict: bool = False) -> Implementation:
        """Choose the implementation of ``kind`` to use.

        Parameters
        ----------
        kind : str
            Kernel kind, e.g. "scan_convert".
        preferred : str, optional
            Backend name to use when usable. None: the first usable one in preference order.
        strict : bool
            Raise :class:`BackendUnavailableError` instead of falling back.

        Returns
        -------
        Implementation
            The chosen implementation; a fallback from ``preferred`` is logged as a warning and
            recorded in :meth:`report`.
        """
        candidates = self.implementations(kind)
        names = [c.name for c in candidates]
        fallback_reason = None
        if preferred is not None:
            if preferred not in names:
                raise KeyError(f"no {kind} implementation named {preferred!r}; known: {names}")
            chosen = candidates[names.index(preferred)]
            fallback_reason = self.why_not(chosen)
            if fallback_reason is None:
                return self._record(kind, chosen, preferred, None)
            if strict:
                raise BackendUnavailableError(
                    f"{kind} backend {preferred!r} is not usable: {fallback_reason}")
        for candidate in candidates:
            if self.why_not(candidate) is None:
                return self._record(kind, candidate, preferred, fallback_reason)
        raise BackendUnavailableError(f"no usable {kind} implementation among {names}")

    def _record(self, kind: str, chosen: Implementation, preferred: str | None,
                fallback_reason: str | None) -> Implementation:
        with self._lock:
            self._decisions[kind] = {
                "selected": chosen.name,
                "device": chosen.device,
                "preferred": preferred,
                "fallback_reason": fallback_reason,
            }
        if fallback_reason is not None:
            log.warning("%s: preferred backend %r is not usable (%s); falling back to %r (%s)",
                        kind, preferred, fallback_reason, chosen.name, chosen.device)
        else:
            log.info("%s: using backend %r (%s)", kind, chosen.name, chosen.device)
        return chosen

    def report(self) -> dict:
        """Probes and decisions as a JSON-serialisable dict for the status channel (an
        :data:`ON_DEMAND_PROBES` probe that nothing asked for is reported as not probed)."""
        for name in self._probe_functions:
            if name not in ON_DEMAND_PROBES:
                self.probe(name)
        not_probed = Probe("", False, reason="not probed (nothing configured needs it)").as_dict()
        with self._lock:
            return {
                "backends": {name: self._results[name].as_dict() if name in self._results
                             else dict(not_probed) for name in self._probe_functions},
                "selected": {kind: dict(d) for kind, d in self._decisions.items()},
            }

    def gpu_usable(self, names: tuple[str, ...] = ("cupy", "numba_cuda")) -> bool:
        """True when any of the named GPU libraries is usable."""
        return any(self.available(n) for n in names)


_default: BackendRegistry | None = None
_default_lock = threading.Lock()


def registry() -> BackendRegistry:
    """The process-wide registry (created on first use; probes still run lazily)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BackendRegistry()
        return _default


def to_numpy(array: Any) -> Any:
    """A host NumPy array from a NumPy, CuPy or Numba device array (copies device data)."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    if hasattr(array, "copy_to_host"):
        return array.copy_to_host()
    return array
