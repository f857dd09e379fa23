"""The phantom's geometric vessel model: one cross-section per frame.

Each cross-section is tabulated on a fine grid of angles ``phi`` about the vessel centre: the
lumen surface, the fibrous layer (fibrous plaque, lipid cap or calcium cover), the core (lipid
pool or calcium), IEL, EEL and adventitia radii. The catheter, the guidewire and the stent struts
are placed in the same vessel-centred frame (mm). Ground truth and image are both computed
from these tables, so the truth never depends on the rendered image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.clinical.contours import polygon_centroid
from engine.synthetic.phantom.scenarios import PlaqueSpec, Scenario

N_PHI = 2048  #: angular samples of the contour tables (0.18 degree)
CATHETER_RADIUS_MM = 0.45  #: outer sheath radius (2.7 F imaging catheter, ~0.9 mm)
SHEATH_INNER_RADIUS_MM = 0.39
GUIDEWIRE_RADIUS_MM = 0.1778  #: 0.014 inch wire
MIN_LUMEN_RADIUS_MM = 0.62

# Rows of CrossSection.layers
LUMEN, FIBROUS_T, CORE_T, CORE_KIND, IEL, EEL, ADVENTITIA = range(7)
CORE_NONE, CORE_LIPID, CORE_CALCIUM = 0.0, 1.0, 2.0


@dataclass(frozen=True)
class CrossSection:
    """Geometry of one frame in the vessel-centred frame (mm, radians).

    Attributes
    ----------
    phi : numpy.ndarray
        ``(N_PHI,)`` table angles, ``2*pi*k/N_PHI``.
    layers : numpy.ndarray
        ``(7, N_PHI)``: lumen radius, fibrous layer thickness, core thickness, core kind
        (0 none, 1 lipid, 2 calcium), IEL radius, EEL radius, adventitia outer radius.
    catheter_xy : numpy.ndarray
        ``(2,)`` catheter centre.
    guidewire_xy : numpy.ndarray or None
        ``(2,)`` guidewire centre.
    struts : numpy.ndarray
        ``(n, 4)``: centre angle, front (luminal) surface radius, half width (rad), thickness (mm).
    stent_radius_mm : numpy.ndarray or None
        ``(N_PHI,)`` stent contour at the strut reflection surface.
    blood_mu_t : float
        Attenuation of residual blood in the lumen, 1/mm (0: well flushed).
    nurd_rad : float
        Amplitude of the angular stretch of the A-lines, radians.
    seam_shift_mm : numpy.ndarray
        ``(2,)`` catheter displacement during one rotation (seam discontinuity).
    """

    phi: np.ndarray
    layers: np.ndarray
    catheter_xy: np.ndarray
    guidewire_xy: np.ndarray | None
    struts: np.ndarray
    stent_radius_mm: np.ndarray | None
    blood_mu_t: float
    nurd_rad: float
    seam_shift_mm: np.ndarray


class _Smooth:
    """A smooth random function of position along the pullback, values in about -1..1."""

    def __init__(self, rng: np.random.Generator, n_terms: int = 3, shortest_mm: float = 6.0):
        self.freq = rng.uniform(1.0 / 40.0, 1.0 / shortest_mm, n_terms)
        self.phase = rng.uniform(0, 2 * np.pi, n_terms)
        self.amp = rng.uniform(0.5, 1.0, n_terms)
        self.amp /= self.amp.sum()

    def __call__(self, z: float) -> float:
        return float(np.sum(self.amp * np.sin(2 * np.pi * self.freq * z + self.phase)))


def _flat_top(x: np.ndarray, half_width: float, taper: float) -> np.ndarray:
    """1 for |x| <= half_width*(1-taper), cosine taper to 0 at |x| = half_width."""
    ax = np.abs(x)
    inner = half_width * (1.0 - taper)
    w = np.zeros_like(ax, dtype=np.float64)
    w[ax <= inner] = 1.0
    edge = (ax > inner) & (ax < half_width)
    if taper > 0:
        w[edge] = 0.5 * (1.0 + np.cos(np.pi * (ax[edge] - inner) / (half_width - inner)))
    return w


def _wrap(a: np.ndarray | float) -> np.ndarray:
    """Angle difference wrapped to (-pi, pi]."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _plaque_profiles(p: PlaqueSpec, phi: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Total plaque thickness (smooth, shapes the lumen) and core thickness (lipid/calcium), mm.

    The lumen follows the smooth total; the core inside it has its own, sharper edges (calcium's
    are sharp, a lipid pool's diffuse), and fibrous tissue fills the rest, so a calcium border
    is sharp in the image without putting corners in the lumen.
    """
    dphi = _wrap(phi - np.deg2rad(p.angle_deg))
    dz = np.array([z - p.z_mm])
    if p.kind == "fibrous":
        w = _flat_top(dphi, np.deg2rad(p.arc_deg) / 2, 0.6) * _flat_top(dz, p.length_mm / 2, 0.5)[0]
        return p.thickness_mm * w, np.zeros_like(phi)
    total_w = _flat_top(dphi, 1.25 * np.deg2rad(p.arc_deg) / 2, 0.6)
    total_w = total_w * _flat_top(dz, 1.2 * p.length_mm / 2, 0.5)[0]
    total = (p.thickness_mm + p.cover_mm) * total_w
    sharp = 0.08 if p.kind == "calcium" else 0.35
    core_w = _flat_top(dphi, np.deg2rad(p.arc_deg) / 2, sharp) * _flat_top(dz, p.length_mm / 2, sharp)[0]
    core = np.clip(np.minimum(p.thickness_mm * core_w, total - p.cover_mm), 0.0, None)
    return total, core


class VesselModel:
    """Deterministic geometric model of one scenario's vessel along the pullback."""

    def __init__(self, scenario: Scenario, seed: int):
        self.scenario = scenario
        rng = np.random.default_rng(seed)
        self.phi = 2 * np.pi * np.arange(N_PHI) / N_PHI
        self._radius_wobble = _Smooth(rng)
        self._harmonics = [
            (k, _Smooth(rng), _Smooth(rng), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)
        ]
        self._ecc = _Smooth(rng)
        self._cath_dir = _Smooth(rng)
        self._cath_dir0 = rng.uniform(0, 2 * np.pi)
        self._gw_dir = _Smooth(rng)
        self._gw_dir0 = rng.uniform(0, 2 * np.pi)
        self._gw_gap = _Smooth(rng)
        self._stent_phase = rng.uniform(0, 2 * np.pi)
        self._strut_seed = int(rng.integers(0, 2**31))
        self._seam_dir = rng.uniform(0, 2 * np.pi)

    def cross_section(self, z: float) -> CrossSection:
        """The cross-section at ``z`` mm from frame 0."""
        sc, v, phi = self.scenario, self.scenario.vessel, self.phi
        frac = np.clip(z / max(sc.length_mm, 1e-9), 0.0, 1.0)
        mean_eel = (1 - frac) * v.eel_radius_distal_mm + frac * v.eel_radius_proximal_mm
        mean_eel *= 1.0 + 0.03 * self._radius_wobble(z)
        shape = np.ones_like(phi)
        for k, amp, ph, ph0 in self._harmonics:
            a = v.shape_amplitude * (0.7 + 0.3 * amp(z)) / (k - 1)
            shape += a * np.cos(k * phi + ph0 + 0.6 * ph(z))
        eel = mean_eel * shape

        plaque = np.zeros_like(phi)
        core = np.zeros_like(phi)
        core_kind = np.full_like(phi, CORE_NONE)
        for p in sc.plaques:
            total, thickness = _plaque_profiles(p, phi, z)
            plaque += total
            if p.kind != "fibrous":
                wins = thickness > core
                core = np.where(wins, thickness, core)
                core_kind = np.where(wins & (thickness > 0), CORE_LIPID if p.kind == "lipid" else CORE_CALCIUM, core_kind)
        fibrous = plaque - core
        media = v.media_mm * (1.0 - 0.4 * np.clip(plaque / 0.5, 0.0, 1.0))
        iel = eel - media
        intima = v.intima_mm + v.intima_distal_extra_mm * max(0.0, 1.0 - 2.0 * frac)
        lumen = iel - intima - plaque
        # Keep a lumen the catheter fits through: thin the plaque, never the wall layers.
        short = np.clip(MIN_LUMEN_RADIUS_MM - lumen, 0.0, None)
        if np.any(short > 0):
            scale = np.where(plaque > 0, np.clip(1.0 - short / np.maximum(plaque, 1e-9), 0.0, 1.0), 1.0)
            fibrous, core = fibrous * scale, core * scale
            lumen = iel - intima - fibrous - core

        stent_radius = None
        struts = np.zeros((0, 4))
        if sc.stent is not None and sc.stent.z_start_mm <= z <= sc.stent.z_end_mm:
            lumen, eel, iel, stent_radius, struts = self._implant(z, lumen, eel, iel)
        adventitia = eel + v.adventitia_mm

        layers = np.stack([lumen, fibrous, core, core_kind, iel, eel, adventitia])
        catheter = self._place_catheter(z, lumen)
        guidewire = self._place_guidewire(z, lumen, catheter) if sc.artefacts.guidewire else None
        blood = 0.0
        for z0, z1, mu in sc.artefacts.blood:
            blood = max(blood, mu * float(_flat_top(np.array([z - 0.5 * (z0 + z1)]), 0.5 * (z1 - z0), 0.3)[0]))
        nurd = 0.0
        for z0, z1, amp in sc.artefacts.nurd:
            nurd = max(nurd, np.deg2rad(amp) * float(_flat_top(np.array([z - 0.5 * (z0 + z1)]), 0.5 * (z1 - z0), 0.4)[0]))
        seam_shift = (
            0.06 * np.array([np.cos(self._seam_dir + z), np.sin(self._seam_dir + z)])
            if sc.artefacts.seam
            else np.zeros(2)
        )
        return CrossSection(
            phi=phi,
            layers=layers,
            catheter_xy=catheter,
            guidewire_xy=guidewire,
            struts=struts,
            stent_radius_mm=stent_radius,
            blood_mu_t=blood,
            nurd_rad=nurd,
            seam_shift_mm=seam_shift,
        )

    def _implant(self, z: float, lumen, eel, iel):
        st, phi = self.scenario.stent, self.phi
        nominal = 0.5 * st.diameter_mm + st.strut_thickness_mm
        if st.underexpansion > 0:
            w = _flat_top(np.array([z - st.underexpansion_z_mm]), 3.0, 0.6)[0]
            nominal *= 1.0 - st.underexpansion * w
        outer = nominal * (1.0 + 0.025 * np.cos(2 * phi + self._stent_phase + 0.1 * z))
        # A stent expands until the wall stops it; where the native lumen is larger it conforms.
        outer = np.maximum(outer, lumen)
        gap = np.zeros_like(phi)
        for m in st.malapposition:
            if m.z_start_mm <= z <= m.z_end_mm:
                w_z = _flat_top(np.array([z - 0.5 * (m.z_start_mm + m.z_end_mm)]), 0.5 * (m.z_end_mm - m.z_start_mm), 0.2)[0]
                w_phi = _flat_top(_wrap(phi - np.deg2rad(m.angle_deg)), np.deg2rad(m.arc_deg) / 2, 0.35)
                gap = np.maximum(gap, m.gap_mm * w_z * w_phi)
        new_lumen = outer + gap
        shift = new_lumen - lumen
        front = outer - st.strut_thickness_mm

        rng = np.random.default_rng(self._strut_seed + int(round(z * 1000)))
        n = max(6, int(rng.poisson(st.struts_per_frame)))
        spacing = 2 * np.pi / n
        angles = (rng.uniform(0, 2 * np.pi) + spacing * np.arange(n) + rng.uniform(-0.25, 0.25, n) * spacing) % (2 * np.pi)
        idx = np.round(angles / (2 * np.pi) * N_PHI).astype(int) % N_PHI
        embed = rng.uniform(0.0, 0.035, n) * (gap[idx] <= 0)
        half_width = 0.5 * st.strut_width_mm / front[idx]
        struts = np.column_stack(
            [angles, front[idx] + embed, half_width, np.full(n, st.strut_thickness_mm)]
        )
        return new_lumen, eel + shift, iel + shift, front, struts

    def _place_catheter(self, z: float, lumen: np.ndarray) -> np.ndarray:
        x, y = lumen * np.cos(self.phi), lumen * np.sin(self.phi)
        cx, cy = polygon_centroid(x, y)
        room = np.min(np.hypot(x - cx, y - cy)) - CATHETER_RADIUS_MM - 0.06
        ecc = np.clip(self.scenario.vessel.catheter_eccentricity * (1.0 + 0.5 * self._ecc(z)), 0.0, 0.95)
        direction = self._cath_dir0 + 1.2 * self._cath_dir(z)
        offset = ecc * max(room, 0.0)
        return np.array([cx + offset * np.cos(direction), cy + offset * np.sin(direction)])

    def _place_guidewire(self, z: float, lumen: np.ndarray, catheter: np.ndarray) -> np.ndarray:
        x, y = lumen * np.cos(self.phi), lumen * np.sin(self.phi)
        base = self._gw_dir0 + 1.5 * self._gw_dir(z)
        wanted_gap = 0.02 + 0.18 * (1.0 + self._gw_gap(z))
        for turn in np.linspace(0, 2 * np.pi, 24, endpoint=False):
            for gap in (wanted_gap, 0.5 * wanted_gap, 0.01):
                d = CATHETER_RADIUS_MM + GUIDEWIRE_RADIUS_MM + gap
                g = catheter + d * np.array([np.cos(base + turn), np.sin(base + turn)])
                if np.min(np.hypot(x - g[0], y - g[1])) >= GUIDEWIRE_RADIUS_MM + 0.03:
                    return g
        return None

