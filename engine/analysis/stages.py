"""The analysis stages the engine can run per frame, and the factory that picks one from config.

* :class:`MetalAnalysis` (``server.analysis = "metal"``): scan conversion plus classical metal
  detection; no model.
* :class:`FullAnalysis` (``"full"``): :class:`engine.analysis.analyse.FrameAnalyser` (preprocess,
  segment, metal detection, measurement) plus the display image when the engine renders.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from engine.analysis.stage import AnalysisStage, FrameResult
from engine.analysis.struts import detect_metal
from engine.clinical import contours
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.config import Config, ConfigError
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
    """

    def __init__(self, grid: CartesianGrid, orientation: DisplayOrientation | None = None,
                 backend: str | None = None):
        self.grid = grid
        self.orientation = orientation or DisplayOrientation()
        self.converter = ScanConverter(grid, self.orientation, backend)

    def start(self) -> None:
        self.converter.start()

    def process(self, frame: Frame) -> FrameResult:
        t0 = time.perf_counter()
        image = self.converter.process(frame)
        t1 = time.perf_counter()
        metal = detect_metal(frame)
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
    """

    def __init__(self, analyser: Any, grid: CartesianGrid, orientation: DisplayOrientation,
                 render: bool):
        self.analyser = analyser
        self.orientation = orientation
        self.converter = ScanConverter(grid, orientation) if render else None

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

    def stop(self) -> None:
        self.analyser.stop()
        if self.converter is not None:
            self.converter.stop()

    def status(self) -> dict:
        segment = self.analyser.status().get("segment", {})
        backends = {"segment": segment.get("runtime"), "preprocess": segment.get("preprocess")}
        if self.converter is not None:
            backends["scan_convert"] = self.converter.status()
        fallback = (f"segment: {segment.get('requested_runtime')} unavailable, using "
                    f"{segment.get('runtime')}")
        fallbacks = [fallback] if segment.get("fallback_used") else []
        return {"stage": "full",
                "model": {k: segment.get(key) for k, key in (("name", "model"), ("version", "version"),
                                                             ("sha256", "sha256"))},
                "backends": backends, "fallbacks": fallbacks}


def stage_factory(config: Config) -> Callable[[], AnalysisStage]:
    """The constructor of the analysis stage ``config.server.analysis`` names ("full" or
    "metal"), building the display grid from ``config.server``."""
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    orientation = DisplayOrientation()
    if config.server.analysis == "metal":
        return lambda: MetalAnalysis(grid, orientation)
    try:
        analyse = importlib.import_module("engine.analysis.analyse")
    except ImportError as exc:
        raise ConfigError(f"server.analysis='full' needs engine.analysis.analyse: {exc}") from exc
    return lambda: FullAnalysis(analyse.FrameAnalyser(guidance=config.guidance), grid, orientation,
                                config.server.render_image)
