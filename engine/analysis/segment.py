"""Pipeline stage: polar frame -> tissue segmentation, boundaries and guidewire (the model stage).

:class:`Segmenter` follows the stage lifecycle: :meth:`~Segmenter.start` loads the model,
verifies it against its manifest (sha256 and I/O), opens the runtime chosen through the backend
registry and warms it up; :meth:`~Segmenter.process` preprocesses one
:class:`~streams.pullback.Frame` onto the model grid (:class:`engine.compute.preprocess.Preprocessor`),
runs the network and post-processes its outputs (vectorised NumPy) into a frozen
:class:`Segmentation`; :meth:`~Segmenter.stop` releases everything.

Read-out of the network's outputs (:mod:`models.classes` for the classes):

* class map: argmax of the class probabilities on the model grid;
* lumen radius per model A-line: where the LUMEN probability first falls below 0.5 going
  outward, refined to sub-sample precision by the local area under the probability
  (``r = a - 1/2 + sum_{j=a..b} p_j`` over a window ``[a, b]`` around the crossing, which is
  exact for the soft targets the network is trained on, :mod:`models.training.targets`);
* EEL radius per model A-line: likewise where the BEYOND_EEL probability first reaches 0.5
  outside the lumen (``r = b + 1/2 - sum p_j``);
* both mapped onto the stored valid A-line rows (:func:`engine.compute.preprocess.model_alines_to_stored`);
  rows whose guidewire probability is >= 0.5 are guidewire shadow and get NaN radii (the wall
  there is not seen); rows whose EEL-visible probability is < 0.5 get a NaN EEL radius.

Radii are in mm from the catheter centre, the origin of the model grid's depth axis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.sheath import SheathConfig, SheathDetector, SheathResult
from engine.compute.backends import BackendRegistry
from engine.compute.backends import registry as default_registry
from engine.compute.preprocess import Preprocessor, model_alines_to_stored
from engine.config import ConfigError
from models.classes import ALineOutput, TissueClass
from models.grid import ModelGrid
from models.manifest import Manifest, load_manifest
from models.runtime import Runtime, select_runtime
from streams.geometry import FrameGeometry
from streams.pullback import Frame

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "weights" / "octseg.onnx"
CROSSING_WINDOW = 3  #: samples each side of a crossing summed for the sub-sample radius
#: Non-lumen depth (mm) that makes a wall: sheath rings and ghost lines are ~10-30 um thick, the
#: thinnest wall the network labels is far thicker than this.
MIN_WALL_MM = 0.06


@dataclass(frozen=True)
class SegmenterConfig:
    """How the segmentation stage runs.

    Attributes
    ----------
    model : str
        Path of the ``.onnx`` model (or its manifest); default: the shipped model.
    runtime : str
        "onnxruntime" (CPU) or "tensorrt" (GPU, needs an engine from ``octguide build-engine``).
    fallback : str or None
        Runtime to use when ``runtime`` is not usable; None (default) makes that an error. A
        fallback is logged as a warning and reported by :meth:`Segmenter.status`.
    threads : int
        ONNX Runtime intra-op threads (1..64).
    precision : str
        TensorRT precision: "fp16" or "fp32".
    engine_cache : str or None
        TensorRT engine cache folder (None: the default, ``~/.cache/octguide/engines``).
    preprocess_backend : str or None
        Preferred preprocessing backend ("numba", "cupy", "numpy"); None: the first usable.
    warmup_frames : int
        Inference runs in :meth:`Segmenter.start` before the first frame (0..100).
    """

    model: str = str(DEFAULT_MODEL)
    runtime: str = "onnxruntime"
    fallback: str | None = None
    threads: int = 2
    precision: str = "fp16"
    engine_cache: str | None = None
    preprocess_backend: str | None = None
    warmup_frames: int = 3

    def __post_init__(self) -> None:
        runtimes = ("onnxruntime", "tensorrt")
        if self.runtime not in runtimes:
            raise ConfigError(f"segment.runtime={self.runtime!r} is not one of {runtimes}")
        if self.fallback is not None and self.fallback not in runtimes:
            raise ConfigError(
                f"segment.fallback={self.fallback!r} is not one of {runtimes} or None"
            )
        if not 1 <= int(self.threads) <= 64:
            raise ConfigError(f"segment.threads={self.threads} is outside 1..64")
        if self.precision not in ("fp16", "fp32"):
            raise ConfigError(f"segment.precision={self.precision!r} is not 'fp16' or 'fp32'")
        if not 0 <= int(self.warmup_frames) <= 100:
            raise ConfigError(f"segment.warmup_frames={self.warmup_frames} is outside 0..100")

    @classmethod
    def from_dict(cls, data: dict) -> SegmenterConfig:
        """Build from a mapping; unknown keys are rejected with the list of valid ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown segment key(s) {unknown}; valid keys: {', '.join(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Segmentation:
    """One frame's segmentation, as the measurement stage consumes it.

    Attributes
    ----------
    pullback_id : str
        Pullback of the frame.
    frame_index : int
        0-based acquisition index.
    timestamp_s : float
        Acquisition time of the frame, s.
    grid : ModelGrid
        The model grid of ``class_map`` and ``probabilities``: ``K`` A-lines at angles
        ``2*pi*k/K`` (stored-row convention), ``J`` samples at radius ``j * grid.depth_step_mm``.
    class_map : numpy.ndarray
        ``(K, J)`` uint8 :class:`models.classes.TissueClass` (0 lumen, 1 wall, 2 fibrous,
        3 lipid, 4 calcium, 5 beyond EEL).
    probabilities : numpy.ndarray
        ``(N_CLASSES, K, J)`` float32 class probabilities (read-only).
    lumen_radius_mm : numpy.ndarray
        ``(A,)`` float64 lumen radius per stored valid A-line, mm from the catheter centre;
        NaN in the guidewire shadow and where no lumen boundary lies on the grid.
    eel_radius_mm : numpy.ndarray
        ``(A,)`` float64 EEL radius per stored valid A-line, mm; NaN where the EEL is not visible.
    guidewire : numpy.ndarray
        ``(A,)`` bool, stored rows in the guidewire's shadow sector.
    strut_shadow : numpy.ndarray
        ``(A,)`` bool, stored rows in a stent strut's shadow (outside the guidewire sector).
    confidence : float
        Probability in [0, 1] that the frame is fit for measurement (low: residual blood).
    inference_ms : float
        Preprocessing + inference + read-out time of this frame, ms.
    sheath : SheathResult or None
        The catheter found on the stored frame (:mod:`engine.analysis.sheath`); the lumen boundary
        is read outside its exclusion radius.
    """

    pullback_id: str
    frame_index: int
    timestamp_s: float
    grid: ModelGrid
    class_map: np.ndarray
    probabilities: np.ndarray
    lumen_radius_mm: np.ndarray
    eel_radius_mm: np.ndarray
    guidewire: np.ndarray
    strut_shadow: np.ndarray
    confidence: float
    inference_ms: float = field(default=0.0, compare=False)
    sheath: SheathResult | None = None


def _first_index(condition: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Per row, the first column where ``condition`` holds (at or after ``start``); -1 if none."""
    if start is not None:
        condition = condition & (np.arange(condition.shape[1])[None, :] >= start[:, None])
    found = condition.any(axis=1)
    return np.where(found, condition.argmax(axis=1), -1)


def _window_sum(cumulative: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Per row, the sum of the summed-over array from column ``first`` to ``last`` inclusive."""
    rows = np.arange(cumulative.shape[0])
    before = np.where(first > 0, cumulative[rows, np.maximum(first - 1, 0)], 0.0)
    return cumulative[rows, last] - before


def boundary_radii_px(
    lumen_prob: np.ndarray,
    beyond_prob: np.ndarray,
    start_px: float = 0.0,
    min_wall_px: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-sample lumen and EEL radii per model A-line, in model samples (module docstring).

    Ring-proof: samples inside ``start_px`` (the detected catheter, :mod:`engine.analysis.sheath`)
    count as lumen, and the lumen boundary is the first lumen-to-wall transition outside it that
    is followed by at least ``min_wall_px`` non-lumen samples, so a thin bright ring (sheath, lens,
    ghost line) the network calls non-lumen is not taken for the wall.

    Parameters
    ----------
    lumen_prob, beyond_prob : numpy.ndarray
        ``(K, J)`` LUMEN and BEYOND_EEL probabilities.
    start_px : float, optional
        Radius of the catheter's exclusion zone, model samples (0: none).
    min_wall_px : int, optional
        Consecutive non-lumen samples that make a wall (1: the first crossing).

    Returns
    -------
    lumen_px, eel_px : numpy.ndarray
        ``(K,)`` float64; NaN where the probability never crosses 0.5.

    >>> j = np.arange(12, dtype=np.float64)
    >>> lumen = np.clip(4.3 - (j - 0.5), 0, 1)[None, :]    # soft target of a lumen at 4.3
    >>> beyond = np.clip(j + 0.5 - 8.6, 0, 1)[None, :]     # and of an EEL at 8.6
    >>> [np.round(r, 6) for r in boundary_radii_px(lumen, beyond)]
    [array([4.3]), array([8.6])]
    """
    j = lumen_prob.shape[1]
    w = CROSSING_WINDOW
    inside = int(np.clip(np.ceil(start_px), 0, j))
    if inside > 0:
        lumen_prob = lumen_prob.copy()
        lumen_prob[:, :inside] = 1.0
    non_lumen = lumen_prob < 0.5
    m = max(int(min_wall_px), 1)
    if m > 1:
        # sustained[:, c]: non-lumen at every sample c..c+m-1 (the frame's edge ends a run).
        padded = np.concatenate([non_lumen, np.ones((non_lumen.shape[0], m), bool)], axis=1)
        count = np.cumsum(padded, axis=1, dtype=np.int32)
        count = np.concatenate([np.zeros((count.shape[0], 1), np.int32), count], axis=1)
        sustained = (count[:, m : m + j] - count[:, :j]) == m
    else:
        sustained = non_lumen
    lumen_cross = _first_index(sustained)
    lumen_cross = np.where(lumen_cross == 0, -1, lumen_cross)
    first = np.clip(np.maximum(lumen_cross - w, inside), 0, j - 1)
    last = np.clip(lumen_cross + w - 1, 0, j - 1)
    lumen_px = first - 0.5 + _window_sum(np.cumsum(lumen_prob, axis=1), first, last)
    lumen_px = np.where(lumen_cross > 0, lumen_px, np.nan)

    start = np.where(lumen_cross > 0, lumen_cross, 0)
    eel_cross = _first_index(beyond_prob >= 0.5, start)
    first = np.clip(np.maximum(eel_cross - w, start), 0, j - 1)
    last = np.clip(eel_cross + w - 1, 0, j - 1)
    eel_px = last + 0.5 - _window_sum(np.cumsum(beyond_prob, axis=1), first, last)
    eel_px = np.where((eel_cross > 0) & (lumen_cross > 0), eel_px, np.nan)
    return lumen_px, eel_px


def read_out(
    class_prob: np.ndarray,
    aline_prob: np.ndarray,
    grid: ModelGrid,
    n_valid_alines: int,
    exclusion_radius_mm: float = 0.0,
    min_wall_mm: float = MIN_WALL_MM,
) -> dict[str, np.ndarray]:
    """Turn one frame's model outputs into per-stored-row radii and flags (module docstring).

    Parameters
    ----------
    class_prob : numpy.ndarray
        ``(N_CLASSES, K, J)`` float32 class probabilities.
    aline_prob : numpy.ndarray
        ``(N_ALINE_OUTPUTS, K)`` float32 per-A-line probabilities.
    grid : ModelGrid
        The model grid.
    n_valid_alines : int
        Stored valid A-lines ``A``.
    exclusion_radius_mm : float, optional
        The detected catheter's exclusion radius, mm: no lumen boundary inside it.
    min_wall_mm : float, optional
        Non-lumen depth that makes a wall (thinner non-lumen bands are rings), mm.

    Returns
    -------
    dict
        ``class_map`` (K, J) uint8, ``lumen_radius_mm``, ``eel_radius_mm`` (A,) float64,
        ``guidewire``, ``strut_shadow`` (A,) bool.
    """
    lumen_px, eel_px = boundary_radii_px(
        class_prob[TissueClass.LUMEN],
        class_prob[TissueClass.BEYOND_EEL],
        start_px=exclusion_radius_mm / grid.depth_step_mm,
        min_wall_px=int(round(min_wall_mm / grid.depth_step_mm)),
    )
    per_row = model_alines_to_stored(
        np.stack(
            [
                lumen_px * grid.depth_step_mm,
                eel_px * grid.depth_step_mm,
                *aline_prob.astype(np.float64),
            ],
            axis=1,
        ),
        n_valid_alines,
    )
    guidewire = per_row[:, 2 + ALineOutput.GUIDEWIRE] >= 0.5
    strut = (per_row[:, 2 + ALineOutput.STRUT] >= 0.5) & ~guidewire
    eel_visible = (per_row[:, 2 + ALineOutput.EEL_VISIBLE] >= 0.5) & ~guidewire
    return {
        "class_map": class_prob.argmax(axis=0).astype(np.uint8),
        "lumen_radius_mm": np.where(guidewire, np.nan, per_row[:, 0]),
        "eel_radius_mm": np.where(eel_visible, per_row[:, 1], np.nan),
        "guidewire": guidewire,
        "strut_shadow": strut,
    }


class Segmenter:
    """The segmentation stage (module docstring).

    Parameters
    ----------
    config : SegmenterConfig
        Model, runtime and its options.
    backends : BackendRegistry, optional
        Registry (default: the process-wide one).
    """

    def __init__(
        self,
        config: SegmenterConfig = SegmenterConfig(),
        backends: BackendRegistry | None = None,
        sheath: SheathConfig = SheathConfig(),
    ):
        self.config = config
        self.backends = backends or default_registry()
        self.manifest: Manifest | None = None
        self.runtime: Runtime | None = None
        self.preprocessor: Preprocessor | None = None
        self._status: dict[str, Any] = {}
        self.sheath = SheathDetector(sheath)

    @property
    def grid(self) -> ModelGrid:
        if self.manifest is None:
            raise RuntimeError("Segmenter.start() has not been called")
        return self.manifest.grid

    def start(self, geometry: FrameGeometry | None = None) -> None:
        """Verify and load the model, open the runtime, prepare preprocessing, warm up.

        Raises
        ------
        models.manifest.ModelManifestError
            The model or manifest is missing, tampered with or has other I/O.
        engine.compute.backends.BackendUnavailableError
            The configured runtime is not usable and no fallback is configured.
        models.runtime.EngineNotBuiltError
            TensorRT was chosen but no engine was built for this model, GPU and version.
        """
        cfg = self.config
        self.manifest = load_manifest(Path(cfg.model))
        chosen = select_runtime(self.backends, cfg.runtime, cfg.fallback)
        options: dict[str, Any] = (
            {"threads": cfg.threads}
            if chosen.name == "onnxruntime"
            else {"precision": cfg.precision}
        )
        if chosen.name == "tensorrt" and cfg.engine_cache is not None:
            options["cache_dir"] = cfg.engine_cache
        self.runtime = chosen.load()(self.manifest, self.backends, options)
        self.preprocessor = Preprocessor(
            self.manifest.grid, self.manifest.mapping, backend=cfg.preprocess_backend
        )
        self.preprocessor.start(geometry)
        grid = self.manifest.grid
        warm = np.zeros((1, 1, grid.n_alines, grid.n_depth), np.float32)
        for _ in range(cfg.warmup_frames):
            self.runtime.run(warm)
        self._status = {
            "model": self.manifest.name,
            "version": self.manifest.version,
            "sha256": self.manifest.sha256,
            "runtime": self.runtime.describe(),
            "requested_runtime": cfg.runtime,
            "fallback_used": chosen.name != cfg.runtime,
            "preprocess": self.preprocessor.implementation.name,
        }
        log.info("segmenter ready: %s", self._status)

    def process(self, frame: Frame) -> Segmentation:
        """Segment one frame (see :class:`Segmentation`)."""
        if self.runtime is None or self.preprocessor is None:
            raise RuntimeError("Segmenter.start() has not been called")
        start = time.perf_counter()
        sheath = self.sheath.detect(frame.pixels, frame.geometry, frame.z_offset_px)
        x = self.preprocessor.process(frame)
        outputs = self.runtime.run(x[None, None])
        class_prob = outputs.class_prob[0]
        result = read_out(
            class_prob,
            outputs.aline_prob[0],
            self.manifest.grid,
            frame.geometry.n_valid_alines,
            exclusion_radius_mm=sheath.exclusion_radius_mm,
        )
        class_prob.flags.writeable = False
        return Segmentation(
            pullback_id=frame.pullback_id,
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            grid=self.manifest.grid,
            probabilities=class_prob,
            confidence=float(outputs.confidence[0, 0]),
            inference_ms=(time.perf_counter() - start) * 1e3,
            sheath=sheath,
            **result,
        )

    def status(self) -> dict:
        """Model identity, runtime in use and whether a fallback was taken (status channel)."""
        return dict(self._status)

    def stop(self) -> None:
        """Close the runtime and the preprocessor."""
        if self.runtime is not None:
            self.runtime.close()
        if self.preprocessor is not None:
            self.preprocessor.stop()
        self.runtime = None
        self.preprocessor = None
