"""The backend registry: probes once, says why not, falls back loudly; CUDA sources are found."""

from __future__ import annotations

import json
import logging
import re
import sys
import textwrap

import numpy as np
import pytest

from engine.compute import cuda_sources
from engine.compute.backends import (
    BackendRegistry,
    BackendUnavailableError,
    Implementation,
    registry,
)


def _fake_registry(calls: list[str]) -> BackendRegistry:
    def ok(name):
        def probe():
            calls.append(name)
            return np, "1.0", {"device": name}
        return probe

    def broken():
        calls.append("gpu")
        raise OSError("libcuda.so.1: cannot open shared object file")

    impls = {"k": [
        Implementation("k", "gpu", "gpu", ("gpu",), "engine.compute.scan_convert:CupyScanKernel"),
        Implementation("k", "fast", "cpu", ("fast",), "engine.compute.scan_convert:NumbaScanKernel"),
        Implementation("k", "ref", "cpu", ("ref",), "engine.compute.scan_convert:ReferenceScanKernel"),
    ]}
    return BackendRegistry(probes={"gpu": broken, "fast": ok("fast"), "ref": ok("ref")},
                           implementations=impls)


def test_probes_run_once_and_record_why_not():
    calls: list[str] = []
    reg = _fake_registry(calls)
    first = reg.probe("gpu")
    again = reg.probe("gpu")
    assert first is again and calls == ["gpu"]
    assert not first.available and first.version is None
    assert first.reason == "OSError: libcuda.so.1: cannot open shared object file"
    assert reg.probe("fast").available and reg.probe("fast").version == "1.0"
    with pytest.raises(BackendUnavailableError, match="libcuda"):
        reg.module("gpu")
    with pytest.raises(KeyError, match="unknown backend"):
        reg.probe("nope")


def test_select_prefers_the_first_usable_and_logs_fallbacks(caplog):
    reg = _fake_registry([])
    assert reg.select("k").name == "fast"  # the GPU is first in order but not usable
    with caplog.at_level(logging.WARNING, logger="engine.compute.backends"):
        chosen = reg.select("k", preferred="gpu")
    assert chosen.name == "fast"
    assert "preferred backend 'gpu' is not usable" in caplog.text
    assert reg.report()["selected"]["k"] == {
        "selected": "fast", "device": "cpu", "preferred": "gpu",
        "fallback_reason": "gpu: OSError: libcuda.so.1: cannot open shared object file",
    }
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="engine.compute.backends"):
        assert reg.select("k", preferred="ref").name == "ref"
    assert caplog.text == ""
    with pytest.raises(BackendUnavailableError, match="'gpu' is not usable"):
        reg.select("k", preferred="gpu", strict=True)
    with pytest.raises(KeyError, match="no k implementation named 'cuda'"):
        reg.select("k", preferred="cuda")
    with pytest.raises(KeyError, match="unknown kernel kind"):
        reg.select("nothing")


def test_no_usable_implementation_is_an_error():
    reg = BackendRegistry(probes={"gpu": lambda: (_ for _ in ()).throw(ImportError("x"))},
                          implementations={"k": [Implementation("k", "gpu", "gpu", ("gpu",), "a:b")]})
    with pytest.raises(BackendUnavailableError, match="no usable k implementation"):
        reg.select("k")


def test_real_report_covers_every_library_and_is_json():
    report = registry().report()
    assert set(report["backends"]) == {"numpy", "numba", "numba_cuda", "cupy", "opencv", "scipy",
                                       "onnxruntime", "tensorrt", "torch_cuda"}
    for name, entry in report["backends"].items():
        assert isinstance(entry["available"], bool)
        assert (entry["reason"] is None) == entry["available"], name
    assert report["backends"]["numpy"]["available"] and report["backends"]["numba"]["available"]
    json.dumps(report)


def test_report_leaves_on_demand_probes_alone_until_asked():
    calls = []

    def torch_probe():
        calls.append(1)
        raise RuntimeError("torch sees no CUDA device")

    r = BackendRegistry(probes={"torch_cuda": torch_probe})
    assert r.report()["backends"]["torch_cuda"]["reason"].startswith("not probed")
    assert not calls  # importing torch costs seconds: only a config that names it pays
    assert not r.available("torch_cuda") and calls == [1]
    assert r.report()["backends"]["torch_cuda"]["reason"] == "RuntimeError: torch sees no CUDA device"


def test_a_library_that_warns_on_import_is_still_usable(tmp_path, monkeypatch):
    (tmp_path / "noisy_lib.py").write_text(textwrap.dedent("""
        import warnings
        warnings.warn("this API is deprecated", DeprecationWarning)
        __version__ = "0.1"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from engine.compute.backends import _import

    def probe():
        module = _import("noisy_lib")
        return module, module.__version__, {}

    try:
        assert BackendRegistry(probes={"noisy": probe}).probe("noisy").available
    finally:
        sys.modules.pop("noisy_lib", None)


def test_every_implementation_target_exists():
    for kind in ("scan_convert", "preprocess"):
        for impl in registry().implementations(kind):
            cls = impl.load()
            assert cls.name == impl.name and cls.device == impl.device


def test_cuda_sources_are_found_and_define_what_python_launches():
    from engine.compute.preprocess import CupyPreprocessKernel  # noqa: F401 (names checked below)
    from engine.compute.scan_convert import CupyScanKernel

    scan = cuda_sources.source_text("scan_convert.cu")
    pre = cuda_sources.source_text("preprocess.cu")
    defined = set(re.findall(r'extern "C" __global__ void (\w+)', scan + pre))
    assert set(CupyScanKernel.FUNCTIONS.values()) <= defined
    assert {"normalise_lut_u8", "normalise_lut_u16", "normalise_f32", "resample_radial",
            "resample_angular"} <= defined
    folder = cuda_sources.source_path("scan_convert.cu").parent
    assert not (folder / "__init__.py").exists()  # must never shadow NVIDIA's `cuda` package
    with pytest.raises(FileNotFoundError, match="nothing.cu"):
        cuda_sources.source_path("nothing.cu")


@pytest.mark.gpu("cupy")
def test_cupy_modules_compile_once_per_device():
    first = cuda_sources.cupy_module("scan_convert.cu")
    assert cuda_sources.cupy_module("scan_convert.cu") is first
    cuda_sources.cupy_kernel("preprocess.cu", "resample_radial")
    assert registry().report()["backends"]["cupy"]["detail"]["device"]
