"""Phantom data for training and evaluation: geometry draws, scenario variants, caching.

Training data are phantom pullbacks generated on the fly (or loaded from a cache keyed by the
recipe), each with its own random acquisition geometry and a randomised variant of one of the
named scenarios, preprocessed onto the model grid exactly as the live engine does
(:class:`engine.compute.preprocess.Preprocessor`), with targets from :mod:`models.training.targets`.

Seeds and geometries are partitioned so that evaluation never sees what training saw:

* training pullback ``i`` of a recipe uses phantom seed ``TRAIN_SEED_BASE + i`` (10_000 ...);
* the validation split drawn during training uses ``VALIDATION_SEED_BASE + i`` (500_000 ...);
* held-out evaluation (:mod:`models.training.evaluate`) uses ``EVAL_SEED_BASE + i`` (900_000 ...), the
  named scenarios unmodified, and the geometries in :data:`EVAL_GEOMETRIES`, of which the first
  lies in a band of A-line and sample counts that training never draws
  (:data:`HELD_OUT_ALINES`, :data:`HELD_OUT_SAMPLES`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from engine.compute.preprocess import Preprocessor
from engine.synthetic.phantom import SCENARIOS, generate_pullback
from engine.synthetic.phantom.domain import draw_domain, draw_optics
from engine.synthetic.phantom.scenarios import ArtefactSpec, Scenario
from models.grid import NOISE_FLOOR_MAPPING, IntensityMapping, ModelGrid
from models.training.targets import FrameTargets, frame_targets
from streams.pullback import Pullback

log = logging.getLogger(__name__)

TRAIN_SEED_BASE = 10_000
VALIDATION_SEED_BASE = 500_000
EVAL_SEED_BASE = 900_000

ALINE_RANGE = (256, 1024)  #: valid A-lines per frame drawn for training
SAMPLE_RANGE = (500, 1200)  #: samples per A-line drawn for training
SPACING_RANGE_UM = (4.0, 10.0)  #: sample spacing in air drawn for training, um
MIN_RANGING_DEPTH_MM = 3.0  #: the spacing is drawn so that an A-line covers at least this (air)
REFRACTIVE_INDEX_RANGE = (1.30, 1.40)
Z_OFFSET_RANGE_PX = (-20, 40)
HELD_OUT_ALINES = (460, 540)  #: A-line counts training never draws (inclusive)
HELD_OUT_SAMPLES = (940, 1000)  #: sample counts training never draws (inclusive)
_ROOT = Path(__file__).resolve().parents[2]
GENERATOR_SOURCES = (
    *sorted((_ROOT / "engine" / "synthetic" / "phantom").glob("*.py")),
    _ROOT / "streams" / "truth.py",
    _ROOT / "engine" / "compute" / "preprocess.py",
    _ROOT / "engine" / "compute" / "numba_kernels.py",
    _ROOT / "models" / "training" / "targets.py",
    Path(__file__).resolve(),
)
"""Source files whose content determines the generated frames (part of the cache key)."""
DEFAULT_GRID = ModelGrid(n_alines=256, n_depth=384, depth_mm=5.0)
"""The shipped model's grid: 1.41 degrees per A-line, 13.0 um per depth sample, 5 mm radius."""


@dataclass(frozen=True)
class AcquisitionGeometry:
    """What a phantom pullback is acquired with (arguments of :func:`generate_pullback`).

    Attributes
    ----------
    n_alines : int
        Valid A-lines per frame.
    n_samples : int
        Samples per A-line.
    ranging_depth_mm : float
        Ranging depth in air, mm.
    refractive_index : float
        Effective refractive index.
    z_offset_px : int
        OCT Z Offset Correction, samples.
    n_padded_alines : int
        Padded A-lines stored after the valid ones.
    """

    n_alines: int
    n_samples: int
    ranging_depth_mm: float
    refractive_index: float
    z_offset_px: int
    n_padded_alines: int = 0

    def kwargs(self) -> dict:
        return asdict(self)


EVAL_GEOMETRIES = (
    AcquisitionGeometry(504, 968, 6.2, 1.36, 9, n_padded_alines=4),
    AcquisitionGeometry(1024, 1200, 7.5, 1.30, 40),
    AcquisitionGeometry(256, 512, 5.0, 1.40, -20),
)
"""Held-out geometries: the first lies in the band training never draws, the others at opposite
corners of the training ranges."""


def draw_geometry(rng: np.random.Generator) -> AcquisitionGeometry:
    """A random training geometry (never in the held-out band of A-line or sample counts)."""
    while True:
        a = int(rng.integers(ALINE_RANGE[0], ALINE_RANGE[1] + 1))
        if not HELD_OUT_ALINES[0] <= a <= HELD_OUT_ALINES[1]:
            break
    while True:
        s = int(rng.integers(SAMPLE_RANGE[0], SAMPLE_RANGE[1] + 1))
        if not HELD_OUT_SAMPLES[0] <= s <= HELD_OUT_SAMPLES[1]:
            break
    spacing_um = float(rng.uniform(max(SPACING_RANGE_UM[0], 1e3 * MIN_RANGING_DEPTH_MM / s),
                                   SPACING_RANGE_UM[1]))
    return AcquisitionGeometry(
        n_alines=a,
        n_samples=s,
        ranging_depth_mm=round(spacing_um * s / 1e3, 3),
        refractive_index=round(float(rng.uniform(*REFRACTIVE_INDEX_RANGE)), 3),
        z_offset_px=int(rng.integers(Z_OFFSET_RANGE_PX[0], Z_OFFSET_RANGE_PX[1] + 1)),
        n_padded_alines=int(rng.integers(0, 9)) if rng.random() < 0.2 else 0,
    )


def vary_scenario(scenario: Scenario, rng: np.random.Generator) -> Scenario:
    """A randomised variant of a named scenario for training.

    The lesion moves along the pullback and around the vessel, plaques change arc, length,
    thickness and cover, the vessel changes size, shape and catheter eccentricity, and artefacts
    (residual blood of any density, NURD, seam, z-offset drift, no guidewire) are added at random.
    Evaluation uses the named scenarios unmodified.
    """
    dz = float(rng.uniform(-10.0, 8.0))
    turn = float(rng.uniform(0.0, 360.0))
    size = float(rng.uniform(0.85, 1.2))
    plaques = tuple(
        replace(
            p,
            angle_deg=(p.angle_deg + turn + rng.uniform(-30.0, 30.0)) % 360.0,
            arc_deg=float(np.clip(p.arc_deg * rng.uniform(0.6, 1.3), 20.0, 340.0)),
            z_mm=p.z_mm + dz,
            length_mm=p.length_mm * rng.uniform(0.7, 1.3),
            thickness_mm=p.thickness_mm * rng.uniform(0.7, 1.3),
            cover_mm=max(0.03, p.cover_mm * rng.uniform(0.7, 1.6)) if p.kind != "fibrous" else 0.0,
        )
        for p in scenario.plaques
    )
    v = scenario.vessel
    vessel = replace(
        v,
        eel_radius_distal_mm=v.eel_radius_distal_mm * size,
        eel_radius_proximal_mm=v.eel_radius_proximal_mm * size,
        shape_amplitude=float(rng.uniform(0.02, 0.07)),
        intima_distal_extra_mm=v.intima_distal_extra_mm * rng.uniform(0.0, 1.5),
        catheter_eccentricity=float(rng.uniform(0.1, 0.9)),
    )
    stent = scenario.stent
    if stent is not None:
        stent = replace(
            stent,
            strut_thickness_mm=stent.strut_thickness_mm * float(rng.uniform(0.6, 1.5)),
            strut_width_mm=stent.strut_width_mm * float(rng.uniform(0.6, 1.6)),
            z_start_mm=stent.z_start_mm + dz,
            z_end_mm=stent.z_end_mm + dz,
            underexpansion_z_mm=stent.underexpansion_z_mm + dz,
            diameter_mm=stent.diameter_mm * size,
            malapposition=tuple(
                replace(
                    m,
                    z_start_mm=m.z_start_mm + dz,
                    z_end_mm=m.z_end_mm + dz,
                    angle_deg=(m.angle_deg + turn) % 360.0,
                )
                for m in stent.malapposition
            ),
        )
    art = scenario.artefacts
    blood = art.blood
    if rng.random() < 0.3:
        z0 = float(rng.uniform(0.0, 35.0))
        blood = blood + ((z0, z0 + float(rng.uniform(1.0, 4.0)), float(rng.uniform(0.5, 14.0))),)
    nurd = art.nurd
    if rng.random() < 0.2:
        z0 = float(rng.uniform(0.0, 32.0))
        nurd = nurd + ((z0, z0 + float(rng.uniform(2.0, 8.0)), float(rng.uniform(3.0, 15.0))),)
    artefacts = ArtefactSpec(
        blood=blood,
        nurd=nurd,
        seam=art.seam or bool(rng.random() < 0.3),
        z_offset_drift_px=art.z_offset_drift_px
        if rng.random() < 0.7
        else float(rng.uniform(0.0, 30.0)),
        guidewire=bool(rng.random() < 0.92),
    )
    return replace(scenario, plaques=plaques, vessel=vessel, stent=stent, artefacts=artefacts)


@dataclass(frozen=True)
class DataRecipe:
    """How a training or validation frame set is made (recorded in the model manifest).

    Attributes
    ----------
    seed_base : int
        Phantom seed of pullback ``i`` is ``seed_base + i``; geometry, scenario variant and
        frame spacing are drawn from ``numpy.random.default_rng([seed_base, i])``.
    n_pullbacks : int
        Pullbacks; pullback ``i`` uses scenario ``scenarios[i % len(scenarios)]``.
    scenarios : tuple of str
        Named scenarios.
    vary : bool
        Randomise each scenario (:func:`vary_scenario`).
    pitch_range_mm : tuple of float
        Frame pitch drawn per pullback, mm.
    length_mm : float
        Pullback length covered, mm (frames at ``0, pitch, 2*pitch, ...``).
    grid : ModelGrid
        Model grid.
    mapping : IntensityMapping
        Intensity mapping of the model input (:data:`models.grid.NOISE_FLOOR_MAPPING`).
    randomise_domain : bool
        Draw a random imaging system per pullback (catheter rings, noise floor, gain, stored
        range and full scale, metal brightness, optics: :mod:`engine.synthetic.phantom.domain`).
    """

    seed_base: int = TRAIN_SEED_BASE
    n_pullbacks: int = 240
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    vary: bool = True
    pitch_range_mm: tuple[float, float] = (1.6, 3.2)
    length_mm: float = 38.0
    grid: ModelGrid = DEFAULT_GRID
    mapping: IntensityMapping = NOISE_FLOOR_MAPPING
    randomise_domain: bool = True

    def as_dict(self) -> dict:
        d = asdict(self)
        d["scenarios"] = list(self.scenarios)
        d["pitch_range_mm"] = list(self.pitch_range_mm)
        return d

    def key(self) -> str:
        """Short hash of the recipe, the scenarios it uses and the code that renders, preprocesses
        and labels its frames (the cache file name): a change to any of them is a new data set."""
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode())
        digest.update(
            json.dumps([SCENARIOS[n].to_dict() for n in self.scenarios], sort_keys=True).encode()
        )
        for path in sorted(GENERATOR_SOURCES):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def pullback(self, index: int) -> Pullback:
        """Generate pullback ``index`` of the recipe."""
        rng = np.random.default_rng([self.seed_base, index])
        geometry = draw_geometry(rng)
        scenario = SCENARIOS[self.scenarios[index % len(self.scenarios)]]
        if self.vary:
            scenario = vary_scenario(scenario, rng)
        pitch = float(rng.uniform(*self.pitch_range_mm))
        system = {}
        if self.randomise_domain:
            system = {"domain": draw_domain(rng), "optics": draw_optics(rng)}
        return generate_pullback(
            scenario,
            seed=self.seed_base + index,
            n_frames=int(self.length_mm // pitch) + 1,
            frame_pitch_mm=pitch,
            **geometry.kwargs(),
            **system,
        )


@dataclass
class FrameSet:
    """Preprocessed frames and their targets, stacked (N frames on a ``K x J`` grid).

    Attributes
    ----------
    inputs : numpy.ndarray
        ``(N, K, J)`` float16 model input in [0, 1].
    tissue : numpy.ndarray
        ``(N, K, J)`` uint8 wall tissue class (:class:`models.training.targets.FrameTargets`).
    lumen_px, eel_px : numpy.ndarray
        ``(N, K)`` float32 radii in model samples.
    aline : numpy.ndarray
        ``(N, N_ALINE_OUTPUTS, K)`` float32 per-A-line targets.
    confidence : numpy.ndarray
        ``(N,)`` float32, 1 = frame fit for measurement.
    depth_limit_px : numpy.ndarray
        ``(N,)`` float32, radius of the last stored sample in model samples.
    pullback : numpy.ndarray
        ``(N,)`` int32 index of the pullback in the recipe.
    """

    inputs: np.ndarray
    tissue: np.ndarray
    lumen_px: np.ndarray
    eel_px: np.ndarray
    aline: np.ndarray
    confidence: np.ndarray
    depth_limit_px: np.ndarray
    pullback: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{k: getattr(self, k) for k in self.__dataclass_fields__})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FrameSet:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    @classmethod
    def stack(
        cls, inputs: list[np.ndarray], targets: list[FrameTargets], pullback: list[int]
    ) -> FrameSet:
        return cls(
            inputs=np.stack(inputs).astype(np.float16),
            tissue=np.stack([t.tissue for t in targets]),
            lumen_px=np.stack([t.lumen_px for t in targets]),
            eel_px=np.stack([t.eel_px for t in targets]),
            aline=np.stack([t.aline for t in targets]),
            confidence=np.array([t.confidence for t in targets], dtype=np.float32),
            depth_limit_px=np.array([t.depth_limit_px for t in targets], dtype=np.float32),
            pullback=np.array(pullback, dtype=np.int32),
        )


def preprocessed_frames(
    pullback: Pullback, stage: Preprocessor
) -> Iterator[tuple[np.ndarray, FrameTargets]]:
    """Model input and targets of each frame of a phantom pullback."""
    for frame, truth in zip(pullback, pullback.truth.frames):
        yield (
            stage.process(frame),
            frame_targets(truth, frame.geometry, frame.z_offset_px, stage.grid),
        )


def build_frame_set(
    recipe: DataRecipe, progress: Callable[[int, int, int], None] | None = None
) -> FrameSet:
    """Generate every pullback of ``recipe`` in order and stack its frames (deterministic).

    ``progress(pullbacks_done, n_pullbacks, frames_so_far)`` is called after each pullback.
    """
    stage = Preprocessor(recipe.grid, recipe.mapping, backend="numba")
    stage.start()
    inputs, targets, owner = [], [], []
    try:
        for i in range(recipe.n_pullbacks):
            for x, t in preprocessed_frames(recipe.pullback(i), stage):
                inputs.append(x)
                targets.append(t)
                owner.append(i)
            if progress is not None:
                progress(i + 1, recipe.n_pullbacks, len(inputs))
    finally:
        stage.stop()
    return FrameSet.stack(inputs, targets, owner)


def load_or_build(recipe: DataRecipe, cache_dir: Path | None) -> FrameSet:
    """The recipe's frame set from ``cache_dir`` (keyed by the recipe hash) or built and cached."""
    path = None if cache_dir is None else Path(cache_dir) / f"frames-{recipe.key()}.npz"
    if path is not None and path.exists():
        log.info("loading cached frames %s", path)
        return FrameSet.load(path)
    start = time.perf_counter()

    def progress(done: int, total: int, frames: int) -> None:
        log.info(
            "phantom data: pullback %d/%d, %d frames, %.0f s",
            done,
            total,
            frames,
            time.perf_counter() - start,
        )

    frames = build_frame_set(recipe, progress)
    if path is not None:
        frames.save(path)
        log.info("cached %d frames in %s", len(frames), path)
    return frames
