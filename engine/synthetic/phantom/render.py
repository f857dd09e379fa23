"""Image formation for the phantom: single-scattering OCT A-lines with speckle.

Along each A-line (DOMAIN.md section 3)::

    I(r) = I0 * mu_b(r) * h(r) * S(r) * exp(-2 * integral_0^r mu_t dr') * speckle + noise

with tissue optics from Xu et al. (J Biomed Opt 2008), a confocal term ``h``, a depth roll-off
``S``, speckle from a complex Gaussian field blurred by an anisotropic PSF, an exponential noise
floor, and log compression to uint16. Metal (guidewire, struts) reflects a bright blooming peak
and shadows everything behind it. The same kernel also returns the exact per-A-line ray
crossings of the lumen and EEL used as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np

from engine.synthetic.phantom import model as m
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale
from streams.truth import Label

# Optical codes: row = code, columns = (mu_t 1/mm, mu_b 1/mm, label)
CATHETER, FLUSH, INTIMA, MEDIA, ADVENTITIA, FIBROUS, LIPID, CALCIUM, OUTSIDE = range(9)
OPTICS = np.array(
    [
        [0.0, 0.0, Label.CATHETER],
        [0.02, 0.0, Label.LUMEN],  # contrast flush: transparent (blood handled per frame)
        [5.5, 15.0, Label.WALL],  # intima: bright, homogeneous
        [4.5, 3.5, Label.WALL],  # media: dark band
        [5.5, 13.0, Label.WALL],  # adventitia: bright, heterogeneous
        [6.4, 18.4, Label.FIBROUS],  # Xu 2008: fibrous 6.4 / 18.4
        [13.7, 28.1, Label.LIPID],  # Xu 2008: lipid 13.7 / 28.1
        [5.7, 4.9, Label.CALCIUM],  # Xu 2008: calcium 5.7 / 4.9
        [4.0, 4.0, Label.OUTSIDE],  # perivascular fat
    ],
    dtype=np.float64,
)
BLOOD_MU_B_PER_MU_T = 1.6  #: residual diluted blood scatters strongly
LINE_MU_B = 30.0  #: peak extra backscatter of the thin IEL/EEL lines
SHEATH_MU_B = 60.0
CALCIUM_EDGE_MU_B = 20.0
METAL_PEAK = 900.0  #: reflection of guidewire/strut surfaces (saturates)
NOISE_FLOOR = 2e-5  #: mean noise intensity relative to I0 = 1 (about 47 dB below a bright intima)
DISPLAY_RANGE_DB = (-52.0, 18.0)  #: log-compression window, dB re I0 (maps to 0..65535)


@dataclass(frozen=True)
class ImagingDomain:
    """The imaging system around the optics: catheter reflections, noise, gain and storage.

    The defaults are the phantom's own system (every named scenario renders with them, byte for
    byte as before this type existed); :func:`engine.synthetic.phantom.domain.draw_domain` draws
    random ones for training.

    Attributes
    ----------
    rings : tuple of (float, float)
        Specular rings (sheath surfaces, lens reflection, ghost lines) in every A-line: radius
        from the catheter centre (mm) and brightness relative to ``SHEATH_MU_B``.
    catheter_radius_mm : float
        Outer sheath radius: samples inside it are catheter (no tissue signal).
    noise_floor : float
        Mean noise intensity relative to I0 = 1.
    gain_db : float
        System gain applied to the signal (not the noise), dB.
    stored_range_db : (float, float)
        dB (re I0) mapped to stored 0 and to ``full_scale`` (LOG); LIN stores intensity with
        the upper value at ``full_scale``.
    full_scale : int
        Largest stored value (uint16 frames; 65535 or less).
    metal_peak : float
        Backscatter of metal surfaces (guidewire, struts).
    tissue : tuple of (float, float)
        Per optical code (rows of :data:`OPTICS`), factors on its attenuation and backscatter:
        another console's wavelength and another lab's tissue read differently (calcium darker
        against fibrous tissue, lipid decaying faster). Empty: the phantom's own table.
    calcium_edge : float
        Factor on the reflection at calcium's sharp borders (:data:`CALCIUM_EDGE_MU_B`).
    """

    rings: tuple[tuple[float, float], ...] = ((m.SHEATH_INNER_RADIUS_MM, 1.0), (m.CATHETER_RADIUS_MM, 1.0))
    catheter_radius_mm: float = m.CATHETER_RADIUS_MM
    noise_floor: float = NOISE_FLOOR
    gain_db: float = 0.0
    stored_range_db: tuple[float, float] = DISPLAY_RANGE_DB
    full_scale: int = 65535
    metal_peak: float = METAL_PEAK
    tissue: tuple[tuple[float, float], ...] = ()
    calcium_edge: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.stored_range_db
        if not (1.0 <= hi - lo <= 200.0):
            raise ValueError(f"stored range {self.stored_range_db} dB must span 1..200 dB")
        if not (1 <= int(self.full_scale) <= 65535):
            raise ValueError(f"full_scale={self.full_scale} must be in 1..65535")
        if not (self.noise_floor > 0.0 and self.catheter_radius_mm > 0.0):
            raise ValueError("noise_floor and catheter_radius_mm must be positive")
        if self.tissue and (len(self.tissue) != len(OPTICS) or min(min(f) for f in self.tissue) <= 0.0):
            raise ValueError(f"tissue needs {len(OPTICS)} positive (mu_t, mu_b) factors")
        if self.calcium_edge < 0.0:
            raise ValueError(f"calcium_edge={self.calcium_edge} must be >= 0")

    def optics_table(self) -> np.ndarray:
        """:data:`OPTICS` with this system's tissue factors applied (the table itself when none)."""
        if not self.tissue:
            return OPTICS
        table = OPTICS.copy()
        table[:, :2] *= np.asarray(self.tissue, dtype=np.float64)
        return table

    def intensity_scale(self, intensity: str) -> IntensityScale:
        """What the stored values mean in dB re I0 (the scale the phantom's frames state)."""
        lo, hi = self.stored_range_db
        if intensity == "LIN":
            return IntensityScale(1.0, hi - 10.0 * np.log10(float(self.full_scale)), "header")
        return IntensityScale.log_range(hi - lo, float(self.full_scale), "header", offset_db=lo)


DEFAULT_DOMAIN = ImagingDomain()


@dataclass(frozen=True)
class Optics:
    """System optics (all mm).

    Attributes
    ----------
    focus_mm, rayleigh_mm : float
        Confocal function ``h(r) = 1 / (1 + ((r - focus) / rayleigh)^2)``.
    rolloff_mm : float
        Depth roll-off ``S(r) = exp(-(r / rolloff)^2)``.
    psf_axial_mm, psf_lateral_mm : float
        FWHM of the speckle PSF along and across the A-line.
    eel_visible_snr_db : float
        The EEL counts as visible where its line's expected signal is this far above the noise.
    """

    focus_mm: float = 1.1
    rayleigh_mm: float = 0.9
    rolloff_mm: float = 3.6
    psf_axial_mm: float = 0.012
    psf_lateral_mm: float = 0.030
    eel_visible_snr_db: float = 20.0


@numba.njit(cache=True, inline="always")
def _lookup(table, k0, f, row):
    n = table.shape[1]
    return table[row, k0] * (1.0 - f) + table[row, (k0 + 1) % n] * f


@numba.njit(cache=True, inline="always")
def _index(x, y, n):
    phi = np.arctan2(y, x)
    if phi < 0.0:
        phi += 2.0 * np.pi
    pos = phi * n / (2.0 * np.pi)
    k0 = int(pos)
    return k0 % n, pos - k0, np.sqrt(x * x + y * y)


@numba.njit(cache=True, inline="always")
def _line(d):
    """Gaussian line profile exp(-d^2), zero beyond 4 widths (saves the exp on most samples)."""
    return np.exp(-d * d) if -4.0 < d < 4.0 else 0.0


@numba.njit(cache=True)
def _crossing(table, row, cx, cy, ux, uy, r_start, r_stop, step):
    """First radius along the ray where rho crosses the tabulated contour ``row`` outward."""
    n = table.shape[1]
    r_prev = r_start
    k0, f, rho = _index(cx + r_prev * ux, cy + r_prev * uy, n)
    prev = rho - _lookup(table, k0, f, row)
    if prev >= 0.0:
        return r_start
    r = r_start
    while r < r_stop:
        r = r + step
        k0, f, rho = _index(cx + r * ux, cy + r * uy, n)
        cur = rho - _lookup(table, k0, f, row)
        if cur >= 0.0:
            lo, hi = r - step, r
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                k0, f, rho = _index(cx + mid * ux, cy + mid * uy, n)
                if rho - _lookup(table, k0, f, row) >= 0.0:
                    hi = mid
                else:
                    lo = mid
            return 0.5 * (lo + hi)
    return np.nan


@numba.njit(parallel=True, cache=True)
def _render_rows(
    layers, cat_xy, angles, radii, texture, blocker_front, blocker_back, blocker_label,
    optics, blood_mu_t, line_sigma, system_gain, eel_snr_min,
    signal, specular, labels, shadow, lumen_r, eel_r, eel_visible,
    rings, catheter_r, metal_peak, noise_floor, calcium_edge_mu_b,
):
    n_rows = angles.shape[0]
    n_cols = radii.shape[0]
    n_phi = layers.shape[1]
    step = radii[1] - radii[0]
    for i in numba.prange(n_rows):
        cx, cy = cat_xy[i, 0], cat_xy[i, 1]
        ux, uy = np.cos(angles[i]), np.sin(angles[i])
        front, back = blocker_front[i], blocker_back[i]
        eel_cross = _crossing(layers, m.EEL, cx, cy, ux, uy, m.CATHETER_RADIUS_MM, 12.0, 0.004)
        lumen_r[i] = _crossing(layers, m.LUMEN, cx, cy, ux, uy, m.CATHETER_RADIUS_MM, 12.0, 0.004)
        eel_r[i] = eel_cross
        transmit = 1.0  # exp(-2 * integral of mu_t), updated sample by sample
        last_mu_t = -1.0
        step_loss = 1.0
        eel_signal = 0.0
        for c in range(n_cols):
            r = radii[c]
            if r <= 0.0:
                labels[i, c] = Label.CATHETER
                signal[i, c] = 0.0
                specular[i, c] = 0.0
                continue
            k0, f, rho = _index(cx + r * ux, cy + r * uy, n_phi)
            r_lum = _lookup(layers, k0, f, m.LUMEN)
            t_fib = _lookup(layers, k0, f, m.FIBROUS_T)
            t_core = _lookup(layers, k0, f, m.CORE_T)
            r_iel = _lookup(layers, k0, f, m.IEL)
            r_eel = _lookup(layers, k0, f, m.EEL)
            r_adv = _lookup(layers, k0, f, m.ADVENTITIA)
            kind = layers[m.CORE_KIND, k0 if f < 0.5 else (k0 + 1) % n_phi]
            if r < catheter_r:
                code = CATHETER
            elif rho < r_lum:
                code = FLUSH
            elif rho < r_lum + t_fib:
                code = FIBROUS
            elif rho < r_lum + t_fib + t_core and kind > 0.5:
                code = LIPID if kind < 1.5 else CALCIUM
            elif rho < r_iel:
                code = INTIMA
            elif rho < r_eel:
                code = MEDIA
            elif rho < r_adv:
                code = ADVENTITIA
            else:
                code = OUTSIDE
            mu_t = optics[code, 0]
            mu_b = optics[code, 1]
            if code == FLUSH and blood_mu_t > 0.0:
                mu_t = blood_mu_t
                mu_b = BLOOD_MU_B_PER_MU_T * blood_mu_t
            mu_b *= texture[i, c]
            label = optics[code, 2]
            if code == INTIMA or code == MEDIA or code == ADVENTITIA:
                mu_b += LINE_MU_B * (_line((rho - r_iel) / line_sigma) + _line((rho - r_eel) / line_sigma))
            if kind > 1.5 and t_core > 0.02 and rho >= r_lum:
                # Calcium's sharp borders: refractive-index steps reflect at both interfaces.
                mu_b += calcium_edge_mu_b * (
                    _line((rho - r_lum - t_fib) / line_sigma) + _line((rho - r_lum - t_fib - t_core) / line_sigma)
                )
            system = system_gain[c]
            if mu_t != last_mu_t:
                step_loss = np.exp(-2.0 * mu_t * step)
                last_mu_t = mu_t
            value = mu_b * transmit * system
            # Sheath surfaces and metal reflect specularly: bright, without speckle.
            ring_sum = 0.0
            for q in range(rings.shape[0]):
                ring_sum += rings[q, 1] * _line((r - rings[q, 0]) / line_sigma)
            mirror = SHEATH_MU_B * ring_sum * system
            if r >= front:
                shadow[i, c] = True
                value = 0.0
                if r <= back:
                    label = blocker_label[i]
            else:
                transmit *= step_loss
            if r >= front - 3 * line_sigma and r <= front + 3 * line_sigma:
                mirror += metal_peak * _line((r - front) / line_sigma) * transmit * system
            if eel_cross == eel_cross and eel_signal == 0.0 and r >= eel_cross and r < front:
                eel_signal = (LINE_MU_B * _line((eel_cross - r_eel) / line_sigma) + optics[MEDIA, 1]) * transmit * system
            signal[i, c] = value
            specular[i, c] = mirror
            labels[i, c] = label
        eel_visible[i] = eel_signal > 0.0 and 10.0 * np.log10(eel_signal / noise_floor) >= eel_snr_min


def blockers(section: m.CrossSection, cat_xy: np.ndarray, angles: np.ndarray):
    """Where each A-line first meets metal (guidewire or strut), and which struts it meets.

    Returns
    -------
    front, back : numpy.ndarray
        ``(rows,)`` radius (mm from the catheter) of the metal's front and back; inf if none.
    kind : numpy.ndarray
        ``(rows,)`` uint8 :class:`Label` of the metal (GUIDEWIRE or STRUT), LUMEN where none.
    strut_of_row : numpy.ndarray
        ``(rows,)`` int, index of the strut each A-line hits first (-1 where none or guidewire).
    """
    ux, uy = np.cos(angles), np.sin(angles)
    rows = angles.shape[0]
    front = np.full(rows, np.inf)
    back = np.full(rows, np.inf)
    kind = np.full(rows, Label.LUMEN, dtype=np.uint8)
    strut_of_row = np.full(rows, -1)
    if section.guidewire_xy is not None:
        gx = section.guidewire_xy[0] - cat_xy[:, 0]
        gy = section.guidewire_xy[1] - cat_xy[:, 1]
        b = ux * gx + uy * gy
        disc = b * b - (gx * gx + gy * gy - m.GUIDEWIRE_RADIUS_MM**2)
        hit = (disc > 0) & (b > 0)
        root = np.sqrt(np.where(hit, disc, 0.0))
        front = np.where(hit, b - root, front)
        back = np.where(hit, b + root, back)
        kind[hit] = Label.GUIDEWIRE
    for s, (centre, radius, half_width, thickness) in enumerate(section.struts):
        px, py = cat_xy[:, 0], cat_xy[:, 1]
        b = ux * px + uy * py
        disc = b * b - (px * px + py * py - radius * radius)
        t = -b + np.sqrt(np.maximum(disc, 0.0))
        hx, hy = px + t * ux, py + t * uy
        dphi = np.abs((np.arctan2(hy, hx) - centre + np.pi) % (2 * np.pi) - np.pi)
        hit = (disc > 0) & (dphi <= half_width) & (t < front)
        front = np.where(hit, t, front)
        back = np.where(hit, t + thickness, back)
        kind[hit] = Label.STRUT
        strut_of_row[hit] = s
    strut_of_row[kind != Label.STRUT] = -1
    return front, back, kind, strut_of_row


@dataclass
class Rendered:
    """One rendered frame and its per-A-line geometric truth (valid rows only, then padded)."""

    pixels: np.ndarray
    labels: np.ndarray
    shadow: np.ndarray
    lumen_radius_mm: np.ndarray
    eel_radius_mm: np.ndarray
    eel_visible: np.ndarray
    blocker_front_mm: np.ndarray
    blocker_kind: np.ndarray
    strut_of_row: np.ndarray
    row_angles: np.ndarray
    catheter_xy: np.ndarray


def render_frame(
    section: m.CrossSection,
    geometry: FrameGeometry,
    z_offset_px: int,
    seam_index: int,
    rng: np.random.Generator,
    optics: Optics = Optics(),
    domain: ImagingDomain = DEFAULT_DOMAIN,
) -> Rendered:
    """Render one polar frame of ``section`` on ``geometry`` (uint16 LOG or LIN) on ``domain``."""
    a = geometry.n_valid_alines
    s = geometry.n_samples
    nominal = geometry.aline_angles_rad()
    # NURD: the true angle of each stored A-line is stretched non-uniformly (monotonic).
    angles = nominal + section.nurd_rad * np.sin(nominal - 0.7)
    # Seam: the catheter moves a little during one rotation, so the A-lines after the seam
    # line see it displaced relative to those just before it.
    rotation_fraction = ((np.arange(a) - seam_index) % a) / a
    cat_xy = section.catheter_xy[None, :] + rotation_fraction[:, None] * section.seam_shift_mm[None, :]
    radii = geometry.radius_mm(np.arange(s), z_offset_px)
    step = geometry.sample_spacing_mm
    front, back, kind, strut_of_row = blockers(section, cat_xy, angles)

    texture = _texture(rng, a, s)
    signal = np.empty((a, s), dtype=np.float64)
    specular = np.empty((a, s), dtype=np.float64)
    labels = np.empty((a, s), dtype=np.uint8)
    shadow = np.zeros((a, s), dtype=np.bool_)
    lumen_r = np.empty(a)
    eel_r = np.empty(a)
    eel_visible = np.zeros(a, dtype=np.bool_)
    line_sigma = max(0.007, 0.6 * step)
    _render_rows(
        section.layers, cat_xy, angles, radii, texture, front, back, kind,
        domain.optics_table(), section.blood_mu_t, line_sigma, _system_gain(radii, optics), optics.eel_visible_snr_db,
        signal, specular, labels, shadow, lumen_r, eel_r, eel_visible,
        np.asarray(domain.rings, dtype=np.float64).reshape(-1, 2), float(domain.catheter_radius_mm),
        float(domain.metal_peak), float(domain.noise_floor) * 10.0 ** (-domain.gain_db / 10.0),
        CALCIUM_EDGE_MU_B * float(domain.calcium_edge),
    )
    eel_visible &= eel_r < front
    eel_visible &= eel_r <= radii[-1]

    intensity = signal.astype(np.float32) * _speckle(rng, a, s, step, optics) + specular.astype(np.float32)
    if domain.gain_db != 0.0:
        intensity *= np.float32(10.0 ** (domain.gain_db / 10.0))
    intensity += domain.noise_floor * rng.standard_exponential((a, s), dtype=np.float32)
    pixels = _log_compress(intensity, geometry, domain.stored_range_db, float(domain.full_scale))

    pad = geometry.n_padded_alines
    if pad:
        pixels = np.vstack([pixels, np.zeros((pad, s), dtype=pixels.dtype)])
        labels = np.vstack([labels, np.full((pad, s), Label.PADDING, dtype=np.uint8)])
        shadow = np.vstack([shadow, np.zeros((pad, s), dtype=np.bool_)])
    return Rendered(
        pixels=pixels,
        labels=labels,
        shadow=shadow,
        lumen_radius_mm=lumen_r,
        eel_radius_mm=eel_r,
        eel_visible=eel_visible,
        blocker_front_mm=front,
        blocker_kind=kind,
        strut_of_row=strut_of_row,
        row_angles=angles,
        catheter_xy=cat_xy,
    )


def _system_gain(radii: np.ndarray, optics: Optics) -> np.ndarray:
    """Confocal function times depth roll-off at each sample radius."""
    r = np.maximum(radii, 0.0)
    confocal = 1.0 / (1.0 + ((r - optics.focus_mm) / optics.rayleigh_mm) ** 2)
    return confocal * np.exp(-((r / optics.rolloff_mm) ** 2))


def _texture(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Mild multiplicative tissue heterogeneity (log-normal, correlated over ~50 um)."""
    coarse = rng.standard_normal((max(rows // 6, 4), max(cols // 10, 4)), dtype=np.float32)
    smooth = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)
    return np.exp(0.25 * smooth).astype(np.float64)


def _speckle(rng: np.random.Generator, rows: int, cols: int, step_mm: float, optics: Optics) -> np.ndarray:
    """Fully developed speckle: |complex Gaussian field * PSF|^2, unit mean."""
    sigma_axial = optics.psf_axial_mm / 2.355 / step_mm
    aline_pitch_mm = 2 * np.pi * 1.5 / rows  # lateral PSF referred to a 1.5 mm radius
    sigma_lateral = optics.psf_lateral_mm / 2.355 / aline_pitch_mm
    field = rng.standard_normal((2, rows, cols), dtype=np.float32)
    re = cv2.GaussianBlur(field[0], (0, 0), sigmaX=max(sigma_axial, 0.3), sigmaY=max(sigma_lateral, 0.3))
    im = cv2.GaussianBlur(field[1], (0, 0), sigmaX=max(sigma_axial, 0.3), sigmaY=max(sigma_lateral, 0.3))
    power = re * re + im * im
    return power / np.float32(power.mean())


def _log_compress(intensity: np.ndarray, geometry: FrameGeometry,
                  stored_range_db: tuple[float, float] = DISPLAY_RANGE_DB,
                  full_scale: float = 65535.0) -> np.ndarray:
    """LOG: dB window mapped to 0..full_scale (uint16). LIN: linear intensity scaled to uint16."""
    lo, hi = stored_range_db
    if geometry.intensity == "LIN":
        scaled = intensity / (10.0 ** (hi / 10.0)) * full_scale
        return np.clip(scaled, 0, full_scale).astype(np.uint16)
    db = 10.0 * np.log10(np.maximum(intensity, 1e-12))
    scaled = (db - lo) * (full_scale / (hi - lo))
    return np.clip(scaled, 0, full_scale).astype(np.uint16)
