"""The analysis stages the engine can run per frame, and the factory that builds one from config.

* :class:`MetalAnalysis` (``server.analysis = "metal"``): scan conversion plus classical metal
  detection; no model.
* :class:`FullAnalysis` (``"full"``): :class:`engine.analysis.analyse.FrameAnalyser` (preprocess,
  segment, metal detection, measurement) plus the display image when the engine renders.

:func:`stage_factory` takes the whole :class:`~engine.config.Config`: ``[segment]`` (model,
runtime, precision, fallback, threads), ``[metal]``, ``[analysis]``, ``[scan]`` and
``[display]`` reach the stage, so ``octguide serve --set segment.runtime=tensorrt`` runs
TensorRT. The runtime is chosen when the factory is built, before any socket is bound: where
it is not usable and ``segment.fallback`` names none, that is a one-line
:class:`~engine.compute.backends.BackendUnavailableError`.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.analysis.stage import AnalysisStage, FrameResult
from engine.analysis.struts import MetalDetectorConfig, detect_metal
from engine.clinical import contours
from engine.compute.backends import BackendRegistry, registry
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.config import Config, ConfigError, MetalConfig, ScanConfig, SegmentConfig
from models.manifest import MANIFEST_SUFFIX, ModelLookupError, find_installed
from models.runtime import resolve_precision, select_runtime, variant_model
from streams.pullback import Frame


class MetalAnalysis:
    """A real, cheap analysis stage: scan conversion plus classical metal detection.

    It measures what needs no model - guidewire shadow rows and stent struts (rows and radii)
    from :func:`engine.analysis.struts.detect_metal` - and leaves lumen, EEL and plaque ``null``
    ("unknown", docs/results.md), so the guidance it leads to says it is unavailable. It is
    ``server.analysis = "metal"``: for engine tests that must not depend on a model, and for
    running the engine where no model is installed.

    Parameters
    ----------
    grid : CartesianGrid
        Display grid of the scan-converted image.
    orientation : DisplayOrientation
        Angular placement on screen.
    backend : str, optional
        Scan-conversion backend (None: the registry's first usable).
    metal : MetalDetectorConfig, optional
        Detector thresholds (``[metal]``).
    scan : ScanConfig, optional
        Scan-conversion strictness and table cache (``[scan]``; its backend is ``backend``).
    """

    def __init__(self, grid: CartesianGrid, orientation: DisplayOrientation | None = None,
                 backend: str | None = None, metal: MetalDetectorConfig | None = None,
                 scan: ScanConfig | None = None):
        self.grid = grid
        self.orientation = orientation or DisplayOrientation()
        self.metal = metal or MetalDetectorConfig()
        scan = scan or ScanConfig()
        self.converter = ScanConverter(grid, self.orientation, backend, strict=scan.strict,
                                       cache_size=scan.cache_size)

    def start(self) -> None:
        self.converter.start()

    def process(self, frame: Frame) -> FrameResult:
        t0 = time.perf_counter()
        image = self.converter.process(frame)
        t1 = time.perf_counter()
        metal = detect_metal(frame, self.metal)
        t2 = time.perf_counter()
        runs = contours.circular_runs(metal.guidewire_rows)
        widest = max(runs, key=lambda r: (r[1] - r[0]) % len(metal.guidewire_rows), default=None)
        record = {
            "frame": frame.index,
            "status": "ok",
            "confidence": None,
            "lumen": None,
            "eel": None,
            "plaque": None,
            "plaque_free_arc_deg": None,
            "calcium": None,
            "lipid": None,
            "guidewire": {"alines": [int(widest[0]), int(widest[1])]} if widest else None,
            "struts": [
                {"aline": int(row), "radius_mm": round(float(radius), 4),
                 "distance_to_lumen_um": None, "malapposed": None}
                for row, radius in sorted(zip(metal.strut_rows, metal.strut_radius_mm))
            ],
            "stent": None,
        }
        return FrameResult(frame.pullback_id, frame.index, frame.timestamp_s, record,
                           {"scan_convert": (t1 - t0) * 1e3, "metal": (t2 - t1) * 1e3}, image)

    def stop(self) -> None:
        self.converter.stop()

    def status(self) -> dict:
        scan = self.converter.status()
        return {
            "stage": "metal",
            "model": {"name": "none (classical metal detection only)", "version": None, "sha256": None},
            "backends": {"scan_convert": scan},
            "fallbacks": [],
        }


class FullAnalysis:
    """The full per-frame analysis: :class:`engine.analysis.analyse.FrameAnalyser` (preprocess, segment,
    metal detection, measurement) plus, when the engine renders images, the scan-converted
    display image.

    Parameters
    ----------
    analyser : object
        A started-on-``start()`` ``FrameAnalyser``: ``process(frame)`` returns an object with
        ``record`` and ``latency_ms``; ``status()["segment"]`` names the model.
    grid, orientation :
        Display grid and orientation.
    render : bool
        Scan-convert each frame for the rendered overlay.
    scan : ScanConfig, optional
        Scan-conversion backend, strictness and table cache (``[scan]``).
    segment : dict, optional
        The runtime configured and chosen (``requested``, ``fallback``, ``precision``), shown on
        status (``stage.segment``) beside what runs.
    """

    def __init__(self, analyser: Any, grid: CartesianGrid, orientation: DisplayOrientation,
                 render: bool, scan: ScanConfig | None = None, segment: dict | None = None):
        scan = scan or ScanConfig()
        self.analyser = analyser
        self.orientation = orientation
        self.segment = dict(segment or {})
        self.converter = ScanConverter(
            grid, orientation, _backend(scan.backend), strict=scan.strict,
            cache_size=scan.cache_size) if render else None

    def start(self) -> None:
        self.analyser.start()
        if self.converter is not None:
            self.converter.start()

    def process(self, frame: Frame) -> FrameResult:
        result = self.analyser.process(frame)
        record = dict(result.record)
        latency = dict(record.pop("latency_ms", None) or result.latency_ms)
        image = None
        if self.converter is not None:
            t = time.perf_counter()
            image = self.converter.process(frame)
            latency["scan_convert"] = (time.perf_counter() - t) * 1e3
        return FrameResult(frame.pullback_id, frame.index, frame.timestamp_s, record, latency, image)

    def reset(self) -> None:
        """Forget cross-frame state (:meth:`engine.analysis.analyse.FrameAnalyser.reset`)."""
        reset = getattr(self.analyser, "reset", None)
        if callable(reset):
            reset()

    def stop(self) -> None:
        self.analyser.stop()
        if self.converter is not None:
            self.converter.stop()

    def status(self) -> dict:
        segment = self.analyser.status().get("segment", {})
        backends = {"segment": segment.get("runtime"), "preprocess": segment.get("preprocess")}
        if self.converter is not None:
            backends["scan_convert"] = self.converter.status()
        runtime = segment.get("runtime") or {}
        fallback = (f"segment: {segment.get('requested_runtime')} unavailable, using "
                    f"{runtime.get('runtime')}")
        fallbacks = [fallback] if segment.get("fallback_used") else []
        choice = {"requested": self.segment.get("requested", segment.get("requested_runtime")),
                  "fallback": self.segment.get("fallback"), "selected": runtime.get("runtime"),
                  "device": runtime.get("device"), "precision": self.segment.get("precision"),
                  "fallback_used": bool(segment.get("fallback_used"))}
        return {"stage": "full",
                "model": {k: segment.get(key) for k, key in (("name", "model"), ("version", "version"),
                                                             ("sha256", "sha256"))},
                "segment": choice, "backends": backends, "fallbacks": fallbacks}


def _backend(name: str) -> str | None:
    """A ``[scan]``/``[segment]`` backend name as the registry takes it ("auto": None)."""
    return None if name == "auto" else name


def installed_model(spec: str, weights_dir: Path) -> Path:
    """The model file of the installed model named ``spec`` in ``weights_dir``: a manifest's key
    (its file stem, ``octseg-2.0.0``), ``NAME@VERSION`` (``octseg@2.0.0``) or a bare version, as
    ``[segment] model_version`` and ``octguide model`` name them (one lookup for both,
    :func:`models.manifest.find_installed`). The model's checksum is verified when the segmenter loads it.

    Raises
    ------
    ConfigError
        No installed model, or more than one, answers to ``spec`` (one line, with the keys).
    """
    try:
        manifest = find_installed(spec, weights_dir)
    except ModelLookupError as exc:
        raise ConfigError(f"segment.model_version={spec!r}: {exc}") from None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"segment.model_version={spec!r}: {manifest} is not readable ({exc})") from None
    default = manifest.name[: -len(MANIFEST_SUFFIX)] + ".onnx"
    return manifest.parent / str(data.get("file", default) if isinstance(data, dict) else default)


def segmenter_settings(segment: SegmentConfig, backends: BackendRegistry | None = None
                       ) -> tuple[Any, dict]:
    """The :class:`engine.analysis.segment.SegmenterConfig` for ``[segment]``, its runtime
    chosen, and the choice for status (``requested``, ``fallback``, ``selected``, ``precision``).

    Raises
    ------
    ConfigError
        The precision is not one the runtime runs (``models.runtime.RUNTIME_PRECISIONS``).
    engine.compute.backends.BackendUnavailableError
        The runtime is not usable here and ``segment.fallback`` names no usable one (one line
        with the registry's reason).
    """
    try:
        precision = resolve_precision(segment.runtime, segment.precision)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    chosen = select_runtime(backends or registry(), segment.runtime, segment.fallback or None)
    if chosen.name != segment.runtime:  # the fallback runs at the configured precision if it can
        try:
            precision = resolve_precision(chosen.name, segment.precision)
        except ValueError:
            precision = resolve_precision(chosen.name, "auto")
    segment_module = importlib.import_module("engine.analysis.segment")
    if segment.model_version:
        model = str(installed_model(segment.model_version, Path(segment_module.DEFAULT_MODEL).parent))
    else:
        model = segment.model or str(variant_model(segment_module.DEFAULT_MODEL, precision))
    choice = {"requested": segment.runtime, "fallback": segment.fallback or None,
              "selected": chosen.name, "precision": precision}
    try:
        return segment_module.SegmenterConfig(
            model=model, runtime=segment.runtime, fallback=segment.fallback or None,
            threads=segment.threads, precision=precision if precision in ("fp16", "fp32") else "fp16",
            engine_cache=segment.engine_cache or None,
            preprocess_backend=_backend(segment.preprocess_backend),
            warmup_frames=segment.warmup_frames), choice
    except ConfigError as exc:
        raise ConfigError(f"[segment] is not supported by the segmentation stage: {exc}") from None


def metal_settings(metal: MetalConfig) -> MetalDetectorConfig:
    """The detector's thresholds from ``[metal]`` (the same names, the same units)."""
    return MetalDetectorConfig(**metal.to_dict())


def stage_factory(config: Config, backends: BackendRegistry | None = None
                  ) -> Callable[[], AnalysisStage]:
    """The constructor of the analysis stage ``config.server.analysis`` names ("full" or
    "metal"), configured from the whole ``config`` (module docstring).

    Raises
    ------
    ConfigError, engine.compute.backends.BackendUnavailableError
        See :func:`segmenter_settings`; raised here, before the engine binds anything.
    """
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    display = config.display
    orientation = DisplayOrientation(display.first_aline_deg, display.seam_mode,
                                     display.seam_line_deg)
    metal = metal_settings(config.metal)
    if config.server.analysis == "metal":
        return lambda: MetalAnalysis(grid, orientation, _backend(config.scan.backend), metal,
                                     config.scan)
    try:
        analyse = importlib.import_module("engine.analysis.analyse")
    except ImportError as exc:
        raise ConfigError(f"server.analysis='full' needs engine.analysis.analyse: {exc}") from exc
    segmenter, choice = segmenter_settings(config.segment, backends)
    analysis = analyse.AnalysisConfig(min_confidence=config.analysis.min_confidence,
                                      min_stent_struts=config.analysis.min_stent_struts)
    sheath = importlib.import_module("engine.analysis.sheath").SheathConfig(
        catheter_outer_diameter_mm=config.analysis.catheter_outer_diameter_mm,
        source="[analysis] catheter_outer_diameter_mm")
    return lambda: FullAnalysis(
        analyse.FrameAnalyser(guidance=config.guidance, segmenter=segmenter, metal=metal,
                              analysis=analysis, sheath=sheath),
        grid, orientation, config.server.render_image, config.scan, choice)
