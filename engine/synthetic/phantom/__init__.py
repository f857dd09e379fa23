"""Synthetic IVOCT pullbacks with exact ground truth (``octguide phantom``).

>>> from engine.synthetic.phantom import generate_pullback
>>> pb = generate_pullback("normal", seed=1, n_frames=2, n_alines=256, n_samples=512)
>>> pb.frames.shape, pb.frames.dtype.name, len(pb.truth.frames)
((2, 256, 512), 'uint16', 2)
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from engine.clinical.guidance import pullback_guidance
from engine.config import GuidanceConfig
from engine.synthetic.phantom.model import VesselModel
from engine.synthetic.phantom.render import DEFAULT_DOMAIN, ImagingDomain, Optics, render_frame
from engine.synthetic.phantom.scenarios import SCENARIOS, Scenario
from engine.synthetic.phantom.truth import frame_truth
from streams.geometry import FrameGeometry
from streams.pullback import Pullback
from streams.truth import PullbackTruth

__all__ = ["SCENARIOS", "Scenario", "generate_pullback"]

DEFAULT_RANGING_DEPTH_MM = 6.5  #: mm in air, typical of commercial FD-OCT (~5 mm tissue radius)


def generate_pullback(
    scenario: str | Scenario,
    seed: int = 0,
    *,
    n_frames: int | None = None,
    n_alines: int = 500,
    n_samples: int = 1000,
    ranging_depth_mm: float = DEFAULT_RANGING_DEPTH_MM,
    aline_spacing_mm: float | None = None,
    refractive_index: float = 1.34,
    refractive_index_applied: bool = False,
    z_offset_px: int = 12,
    seam_index: int | None = None,
    n_padded_alines: int = 0,
    frame_rate_hz: float = 180.0,
    frame_pitch_mm: float | None = None,
    rotation: str = "CW",
    intensity: str = "LOG",
    optics: Optics = Optics(),
    domain: ImagingDomain = DEFAULT_DOMAIN,
    config: GuidanceConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Pullback:
    """Generate a phantom pullback with ground truth, deterministic in ``(scenario, seed, ...)``.

    Parameters
    ----------
    scenario : str or Scenario
        A name from :data:`SCENARIOS` or a custom :class:`Scenario`.
    seed : int
        Seed for the vessel shape, catheter path, struts, speckle and noise.
    n_frames : int, optional
        Frames (default: the scenario's); positions beyond the scenario's length continue it.
    n_alines, n_samples : int
        Valid A-lines per frame and samples per A-line.
    ranging_depth_mm : float
        Depth covered by one A-line in air, mm; sets the A-line pixel spacing unless
        ``aline_spacing_mm`` is given.
    aline_spacing_mm : float, optional
        A-line Pixel Spacing, mm per sample (in air unless ``refractive_index_applied``).
    refractive_index, refractive_index_applied : float, bool
        Effective Refractive Index and whether the spacing already includes it.
    z_offset_px : int
        Base OCT Z Offset Correction (samples); the ``artefacts`` drift adds to it per frame.
    seam_index : int, optional
        Seam Line Index (default: drawn from the seed).
    n_padded_alines : int
        Padded A-lines appended to every frame.
    frame_rate_hz, frame_pitch_mm : float
        Frames per second and mm between frames (default: the scenario's pitch).
    rotation, intensity : str
        Catheter Direction of Rotation ("CW"/"CC") and Pixel Intensity Relationship ("LOG"/"LIN").
    optics : Optics
        Confocal, roll-off, PSF and EEL-visibility parameters.
    domain : ImagingDomain
        Catheter rings, noise floor, gain and stored range (default: the phantom's own system;
        :func:`engine.synthetic.phantom.domain.draw_domain` draws random ones for training).
        The frames state its scale (``geometry.intensity_scale``, source ``"header"``).
    config : GuidanceConfig, optional
        Thresholds for the truth (malapposition, TCFA, MLD MAX); defaults to the standard ones.
    progress : callable, optional
        Called as ``progress(done, total)`` after each frame.
    """
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    if isinstance(scenario, str) and scenario not in SCENARIOS:
        raise KeyError(f"unknown scenario {scenario!r}; choose from {sorted(SCENARIOS)}")
    n = sc.n_frames if n_frames is None else int(n_frames)
    pitch = sc.frame_pitch_mm if frame_pitch_mm is None else float(frame_pitch_mm)
    cfg = config or GuidanceConfig()
    spacing = aline_spacing_mm if aline_spacing_mm is not None else ranging_depth_mm / n_samples
    if aline_spacing_mm is None and refractive_index_applied:
        spacing /= refractive_index
    geometry = FrameGeometry(
        n_alines=n_alines + n_padded_alines,
        n_samples=n_samples,
        aline_spacing_mm=spacing,
        refractive_index=refractive_index,
        refractive_index_applied=refractive_index_applied,
        n_padded_alines=n_padded_alines,
        rotation=rotation,
        intensity=intensity,
        intensity_scale=domain.intensity_scale(intensity),
    )
    rng = np.random.default_rng(seed)
    model = VesselModel(sc, int(rng.integers(0, 2**31)))
    image_rng = np.random.default_rng(int(rng.integers(0, 2**31)))
    seam = int(rng.integers(0, n_alines)) if seam_index is None else int(seam_index)
    drift_phase = rng.uniform(0, 2 * np.pi)
    positions = np.arange(n) * pitch
    drift = 0.5 * sc.artefacts.z_offset_drift_px * np.sin(2 * np.pi * positions / 25.0 + drift_phase)
    z_offsets = np.round(z_offset_px + drift).astype(np.int32)

    frames = np.empty((n, geometry.n_alines, n_samples), dtype=np.uint16)
    truths = []
    for i in range(n):
        section = model.cross_section(float(positions[i]))
        rendered = render_frame(section, geometry, int(z_offsets[i]), seam, image_rng, optics, domain)
        frames[i] = rendered.pixels
        truths.append(frame_truth(i, section, rendered, geometry, int(z_offsets[i]), cfg))
        if progress is not None:
            progress(i + 1, n)
    spacing_mm = np.full(n, pitch)
    truth = PullbackTruth(
        frames=truths,
        guidance=pullback_guidance([t.record for t in truths], pitch, cfg=cfg),
        scenario={"name": sc.name, "seed": int(seed), "spec": json.loads(json.dumps(sc.to_dict()))},
    )
    return Pullback(
        frames=frames,
        geometry=geometry,
        z_offset_px=z_offsets,
        seam_index=np.full(n, seam, dtype=np.int32),
        frame_spacing_mm=spacing_mm,
        frame_rate_hz=frame_rate_hz,
        pullback_id=f"phantom-{sc.name}-{seed}",
        truth=truth,
        attributes={"source": "phantom", "scenario": sc.name, "seed": int(seed)},
    )
