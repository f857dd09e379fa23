"""Domain randomisation of the phantom's imaging system, for training data only.

The named scenarios render with one imaging system (:data:`~engine.synthetic.phantom.render.DEFAULT_DOMAIN`
and the default :class:`~engine.synthetic.phantom.render.Optics`). A network trained on that one
system learns its catheter and its grey levels: on another system's pullbacks it took a sheath
ring at a radius it had never seen for the vessel wall. :func:`draw_domain` and
:func:`draw_optics` draw a different system per training pullback (ranges in docs/phantom.md):

* catheter: 1-4 sheath rings at 0.05-0.5 mm (the outermost is the outer sheath, radius
  0.30-0.50 mm), each 0.1-3x the default brightness; a lens reflection near the centre (half the
  pullbacks) and a ghost line at 0.5-1.6 mm (half the pullbacks), dim;
* noise floor -56..-30 dB re I0 (default -47), signal gain -6..+6 dB;
* storage: the stored range spans 30-70 dB, starting 12 dB below to 4 dB above the noise floor,
  over a full scale of 1023-65535 counts, stated as the frames' intensity scale;
* metal (guidewire, strut) brightness 200-3200 (default 900);
* tissue optics: one attenuation factor shared by all tissue (0.6-1.6x) times one per tissue
  (0.8-1.25x; lipid 0.8-2x, calcium 0.5-1.25x), and a backscatter factor per tissue (-3..+3 dB;
  calcium -9..+1 dB, lipid -3..+4 dB), calcium's border reflection 0.1-3x. Another console's
  wavelength and another lab's tissue read differently: calcium can be far darker against
  fibrous tissue than Xu 2008's means, lipid can decay faster. The ranges keep the classes'
  order (calcium dimmer than fibrous tissue and slower to decay than lipid), so a label still
  means one appearance class;
* optics: PSF FWHM 8-20 um axial, 18-45 um lateral (speckle grain), focus 0.6-1.8 mm, Rayleigh
  range 0.6-1.4 mm, roll-off 2.5-5 mm.

All draws come from the caller's generator, so a training pullback is deterministic in its seed.
"""

from __future__ import annotations

import numpy as np

from engine.synthetic.phantom.render import (
    ADVENTITIA, CALCIUM, FIBROUS, INTIMA, LIPID, MEDIA, OPTICS, OUTSIDE, ImagingDomain, Optics,
)

RING_COUNT = (1, 4)
OUTER_SHEATH_RADIUS_MM = (0.30, 0.50)
INNER_RING_RADIUS_MM = (0.05, 0.50)
RING_BRIGHTNESS_LOG10 = (-1.0, 0.5)
LENS_RADIUS_MM = (0.0, 0.05)
GHOST_RADIUS_MM = (0.5, 1.6)
NOISE_FLOOR_DB = (-56.0, -30.0)
GAIN_DB = (-6.0, 6.0)
STORED_RANGE_DB = (30.0, 70.0)
STORED_LOW_VS_FLOOR_DB = (-12.0, 4.0)
FULL_SCALE = (1023, 65535)
METAL_PEAK_LOG10 = (2.3, 3.5)
SHARED_ATTENUATION = (0.6, 1.6)
ATTENUATION_FACTOR = {"default": (0.8, 1.25), LIPID: (0.8, 2.0), CALCIUM: (0.5, 1.25)}
BACKSCATTER_DB = {"default": (-3.0, 3.0), LIPID: (-3.0, 4.0), CALCIUM: (-9.0, 1.0)}
CALCIUM_EDGE_LOG10 = (-1.0, 0.5)
_TISSUE_CODES = (INTIMA, MEDIA, ADVENTITIA, FIBROUS, LIPID, CALCIUM, OUTSIDE)


def draw_tissue(rng: np.random.Generator) -> tuple[tuple[float, float], ...]:
    """Random (mu_t, mu_b) factors for every row of the optics table (module docstring)."""
    shared = float(np.exp(rng.uniform(*np.log(SHARED_ATTENUATION))))
    factors = [(1.0, 1.0)] * len(OPTICS)
    for code in _TISSUE_CODES:
        lo, hi = ATTENUATION_FACTOR.get(code, ATTENUATION_FACTOR["default"])
        mu_t = shared * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        mu_b = float(10.0 ** (rng.uniform(*BACKSCATTER_DB.get(code, BACKSCATTER_DB["default"])) / 10.0))
        factors[code] = (mu_t, mu_b)
    return tuple(factors)


def draw_domain(rng: np.random.Generator) -> ImagingDomain:
    """A random imaging system (module docstring)."""
    n_rings = int(rng.integers(RING_COUNT[0], RING_COUNT[1] + 1))
    outer = float(rng.uniform(*OUTER_SHEATH_RADIUS_MM))
    radii = [outer] + [float(rng.uniform(INNER_RING_RADIUS_MM[0], outer - 0.02))
                       for _ in range(n_rings - 1)]
    rings = [(r, float(10.0 ** rng.uniform(*RING_BRIGHTNESS_LOG10))) for r in sorted(radii)]
    if rng.random() < 0.5:
        rings.insert(0, (float(rng.uniform(*LENS_RADIUS_MM)), float(10.0 ** rng.uniform(-0.5, 0.7))))
    if rng.random() < 0.5:
        rings.append((float(rng.uniform(*GHOST_RADIUS_MM)), float(10.0 ** rng.uniform(-1.7, -0.7))))
    floor_db = float(rng.uniform(*NOISE_FLOOR_DB))
    low = floor_db + float(rng.uniform(*STORED_LOW_VS_FLOOR_DB))
    span = float(rng.uniform(*STORED_RANGE_DB))
    return ImagingDomain(
        rings=tuple(rings),
        catheter_radius_mm=outer,
        noise_floor=10.0 ** (floor_db / 10.0),
        gain_db=float(rng.uniform(*GAIN_DB)),
        stored_range_db=(round(low, 3), round(low + span, 3)),
        full_scale=int(rng.integers(FULL_SCALE[0], FULL_SCALE[1] + 1)),
        metal_peak=float(10.0 ** rng.uniform(*METAL_PEAK_LOG10)),
        tissue=draw_tissue(rng),
        calcium_edge=float(10.0 ** rng.uniform(*CALCIUM_EDGE_LOG10)),
    )


def draw_optics(rng: np.random.Generator) -> Optics:
    """Random optics: PSF (speckle grain), focus, Rayleigh range and roll-off."""
    return Optics(
        focus_mm=float(rng.uniform(0.6, 1.8)),
        rayleigh_mm=float(rng.uniform(0.6, 1.4)),
        rolloff_mm=float(rng.uniform(2.5, 5.0)),
        psf_axial_mm=float(rng.uniform(0.008, 0.020)),
        psf_lateral_mm=float(rng.uniform(0.018, 0.045)),
    )


__all__ = ["draw_domain", "draw_optics", "draw_tissue"]
