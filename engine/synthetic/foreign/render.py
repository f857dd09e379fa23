"""The foreign renderer: polar IVOCT frames and exact truth from a 3-D artery model.

Physics spec: docs/foreign_renderer.md. Validation only, never training data. Independent of
:mod:`engine.synthetic.phantom` by design (neither imports the other).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.clinical import contours
from engine.clinical.guidance import pullback_guidance
from engine.clinical.measure import (
    PolarGrid,
    arc_about_point_deg,
    measure_lumen,
    measure_plaque,
    measure_struts,
)
from engine.config import GuidanceConfig
from engine.synthetic.foreign.scenarios import SCENARIOS, ForeignScenario
from streams.errors import GeometryError
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale
from streams.pullback import Pullback
from streams.truth import FrameTruth, Label, PullbackTruth

GUIDEWIRE_RADIUS_MM = 0.178  #: 0.014 inch wire
STRUT_THICKNESS_MM = 0.08
STRUT_HALF_WIDTH_MM = 0.05
PENETRATION_MM = 1.25  #: EEL deeper than this below the lumen is not visible

# Tissue optics per label: backscatter (linear, fibrous = 1) and attenuation (1/mm, one way).
_BACKSCATTER = np.zeros(256, dtype=np.float32)
_ATTEN = np.zeros(256, dtype=np.float32)
for _label, _b, _mu in (
    (Label.CATHETER, 0.0, 0.0), (Label.LUMEN, 0.0, 0.03), (Label.WALL, 0.7, 2.4),
    (Label.FIBROUS, 1.0, 1.8), (Label.LIPID, 0.4, 9.0), (Label.CALCIUM, 0.07, 0.9),
    (Label.OUTSIDE, 0.45, 3.2), (Label.GUIDEWIRE, 0.0, 0.0), (Label.STRUT, 0.0, 0.0),
):
    _BACKSCATTER[_label], _ATTEN[_label] = _b, _mu
_MEDIA = 250  #: internal label of the media band (rendered dark, reported as WALL)
_BACKSCATTER[_MEDIA], _ATTEN[_MEDIA] = 0.18, 3.0


@dataclass(frozen=True)
class Catheter:
    """The foreign catheter: sheath rings (mm from its centre), outer radius, ghost line."""

    ring_radii_mm: tuple[float, ...] = (0.06, 0.24, 0.36)
    ring_gain_db: tuple[float, ...] = (6.0, 2.0, 4.0)
    outer_radius_mm: float = 0.40
    ghost_radius_mm: float | None = 0.55
    ghost_gain_db: float = -20.0

    def __post_init__(self) -> None:
        if not 1 <= len(self.ring_radii_mm) <= 4 or len(self.ring_gain_db) != len(self.ring_radii_mm):
            raise GeometryError("the sheath needs 1-4 rings, one gain each")
        if any(not 0.05 <= r <= 0.5 for r in self.ring_radii_mm):
            raise GeometryError(f"sheath rings {self.ring_radii_mm} must lie in 0.05..0.5 mm")
        if self.outer_radius_mm < max(self.ring_radii_mm):
            raise GeometryError("the outer radius must enclose every ring")


@dataclass(frozen=True)
class ForeignGeometry:
    """Acquisition: A-lines 256-1024, samples 500-1200, spacing 4-10 um (air), dB range and offset."""

    n_alines: int = 640
    n_samples: int = 760
    aline_spacing_mm: float = 0.0075
    refractive_index: float = 1.34
    z_offset_px: int = 8
    range_db: float = 62.0
    offset_db: float = -52.0
    noise_db: float = -44.0  #: mean noise floor power, dB on the same reference
    speckle_corr_mm: float = 0.012  #: speckle correlation length along the A-line
    speckle_looks: int = 2  #: gamma shape of the intensity speckle

    def __post_init__(self) -> None:
        if not (256 <= self.n_alines <= 1024 and 500 <= self.n_samples <= 1200
                and 0.004 <= self.aline_spacing_mm <= 0.010):
            raise GeometryError(
                f"foreign geometry {self.n_alines}x{self.n_samples} at {self.aline_spacing_mm} mm is outside "
                "256-1024 A-lines, 500-1200 samples, 4-10 um"
            )


def _bump(z: float, z0: float, z1: float, sharp: float = 1.0) -> float:
    """Window over [z0, z1]: sin profile, flattened (sharp > 1) for steep edges."""
    if not z0 < z < z1:
        return 0.0
    return float(min(1.0, sharp * np.sin(np.pi * (z - z0) / (z1 - z0))))


def _sector(angle: np.ndarray, start_deg: float, arc_deg: float, sharp: float) -> np.ndarray:
    """Profile over rays inside a sector (0 outside), 1 at the centre."""
    rel = (np.degrees(angle) - start_deg) % 360.0
    inside = rel < arc_deg
    return np.where(inside, np.minimum(1.0, sharp * np.sin(np.pi * np.clip(rel / arc_deg, 0, 1))), 0.0)


def _ellipse_ray(psi: np.ndarray, centre: tuple[float, float], a: float, b: float, theta: float) -> np.ndarray:
    """Distance from the origin (inside) along rays ``psi`` to an ellipse."""
    e1 = np.array([np.cos(theta), np.sin(theta)])
    e2 = np.array([-np.sin(theta), np.cos(theta)])
    u = np.stack([np.cos(psi), np.sin(psi)], axis=1)
    q = -np.asarray(centre)
    u1, u2, q1, q2 = u @ e1, u @ e2, q @ e1, q @ e2
    qa = u1 ** 2 / a ** 2 + u2 ** 2 / b ** 2
    qb = 2 * (u1 * q1 / a ** 2 + u2 * q2 / b ** 2)
    qc = q1 ** 2 / a ** 2 + q2 ** 2 / b ** 2 - 1.0
    return (-qb + np.sqrt(qb ** 2 - 4 * qa * qc)) / (2 * qa)


def _box(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Moving average of length n (>= 1) along an axis, same size (edges wrap; harmless here)."""
    if n <= 1:
        return x
    c = np.cumsum(np.concatenate([x, np.take(x, np.arange(n), axis=axis)], axis=axis), axis=axis)
    lo = np.take(c, np.arange(x.shape[axis]), axis=axis)
    hi = np.take(c, np.arange(n, x.shape[axis] + n), axis=axis)
    return (hi - lo) / n


def _render_frame(sc: ForeignScenario, z: float, k: int, geo: ForeignGeometry, cath: Catheter,
                  fg: FrameGeometry, rng: np.random.Generator, vessel: dict, cfg: GuidanceConfig):
    a, s = geo.n_alines, geo.n_samples
    sp = fg.sample_spacing_mm
    r = (np.arange(s) + geo.z_offset_px) * sp
    phi = fg.aline_angles_rad()
    # NURD: the beam points at psi while the row is stored at phi (monotonic warp).
    nurd = np.radians(sc.nurd_deg) * (0.5 + 0.5 * np.sin(0.9 * z + vessel["nurd_phase"]))
    psi = (phi + vessel["spin"] * z + nurd * np.sin(phi + 1.7 * z)) % (2 * np.pi)
    # Lumen ellipse about its own centre; the catheter sits off-centre.
    taper = sc.radius_taper_mm * (1 - z / sc.length_mm)
    radius = sc.radius_mm - taper
    if sc.stenosis_z_mm is not None and sc.stenosis_depth > 0:
        radius *= 1 - sc.stenosis_depth * np.exp(-(((z - sc.stenosis_z_mm) / (0.5 * sc.stenosis_width_mm)) ** 2))
    stent = sc.stent
    in_stent = stent is not None and stent["z0"] <= z <= stent["z1"]
    if stent is not None and stent["underexpansion"] > 0 and in_stent:
        radius = stent["radius_mm"] * (1 - stent["underexpansion"] * _bump(z, stent["z0"], stent["z1"]) ** 2)
    elif in_stent:
        radius = stent["radius_mm"]
    ell = sc.ellipticity * (1 + 0.3 * np.sin(z / 4.0))
    ra, rb = radius * (1 + ell), radius * (1 - ell)
    off = sc.catheter_offset_mm * (0.7 + 0.3 * np.sin(z / 5.0 + vessel["off_phase"]))
    off = min(off, 0.85 * (rb - cath.outer_radius_mm - 0.12))
    alpha = vessel["alpha0"] + 0.12 * z
    lumen = _ellipse_ray(psi, (off * np.cos(alpha), off * np.sin(alpha)), ra, rb, vessel["theta0"] + 0.05 * z)
    lumen = np.maximum(lumen, cath.outer_radius_mm + 0.1)

    # Plaque stack per ray: fibrous cover then a core of one type.
    core = np.zeros(a)
    cover = np.zeros(a)
    core_type = np.full(a, Label.FIBROUS, dtype=np.uint8)
    for p in sc.plaques:
        sharp = 6.0 if p.kind == "calcium" else 1.0
        prof = _sector(psi, p.start_deg, p.arc_deg, sharp) * _bump(z, p.z0_mm, p.z1_mm, 2.5 if sharp > 1 else 1.0)
        t = p.thickness_mm * prof
        take = t > core
        core[take] = t[take]
        cover[take] = np.where(t[take] > 0, p.cover_mm * (1 + 0.4 * (1 - prof[take])), 0.0)
        core_type[take] = {"fibrous": Label.FIBROUS, "lipid": Label.LIPID, "calcium": Label.CALCIUM}[p.kind]
    cover = np.where(core > 0, cover, 0.0)
    b_cover = lumen + cover
    b_core = b_cover + core
    b_int = b_core + sc.intima_mm
    eel_full = b_int + sc.media_mm
    b_adv = eel_full + sc.adventitia_mm

    rr = r[None, :]
    labels = np.full((a, s), Label.OUTSIDE, dtype=np.uint8)
    labels[rr < b_adv[:, None]] = Label.WALL
    labels[rr < eel_full[:, None]] = _MEDIA
    labels[rr < b_int[:, None]] = Label.WALL
    core_mask = rr < b_core[:, None]
    labels[core_mask] = np.broadcast_to(core_type[:, None], (a, s))[core_mask]
    labels[rr < b_cover[:, None]] = Label.FIBROUS
    labels[rr < lumen[:, None]] = Label.LUMEN
    labels[:, r < cath.outer_radius_mm] = Label.CATHETER

    shadow = np.zeros((a, s), dtype=bool)
    transmission = np.ones(a)
    spikes = []  # (row mask, radius mm, linear amplitude, sigma mm)
    gw_rows = np.zeros(a, dtype=bool)
    if sc.guidewire:
        gphi = vessel["gw_angle"] + 0.2 * np.sin(z / 6.0)
        lum_at = float(np.interp(gphi % (2 * np.pi), psi[np.argsort(psi)], lumen[np.argsort(psi)], period=2 * np.pi))
        grad = cath.outer_radius_mm + GUIDEWIRE_RADIUS_MM + 0.1 + 0.5 * max(lum_at - cath.outer_radius_mm - 2 * GUIDEWIRE_RADIUS_MM - 0.25, 0)
        d = psi - gphi
        perp = grad * np.sin(d)
        gw_rows = (np.abs(perp) < GUIDEWIRE_RADIUS_MM) & (np.cos(d) > 0)
        half = np.sqrt(np.maximum(GUIDEWIRE_RADIUS_MM ** 2 - perp ** 2, 0))
        front = grad * np.cos(d) - half
        back = grad * np.cos(d) + half
        body = gw_rows[:, None] & (rr >= front[:, None]) & (rr <= back[:, None])
        labels[body] = Label.GUIDEWIRE
        shadow |= gw_rows[:, None] & (rr > front[:, None])
        transmission[gw_rows] = 0.0
        spikes.append((gw_rows, front, 12.0, 0.012))

    struts_rows, struts_radius, hidden = [], [], 0
    if in_stent:
        n = stent["n_struts"]
        first_half = z < 0.5 * (stent["z0"] + stent["z1"])
        base = rng.uniform(0, 2 * np.pi)
        for j in range(n):
            ang = (base + 2 * np.pi * j / n + rng.normal(0, 0.08)) % (2 * np.pi)
            row = int(np.argmin(np.abs((psi - ang + np.pi) % (2 * np.pi) - np.pi)))
            u = rng.uniform()
            if first_half and u < 2 * stent["malapposed_frac"]:
                dist = rng.uniform(0.18, 0.42)
            elif rng.uniform() < stent["embedded_frac"]:
                dist = rng.uniform(-0.03, 0.02)
            else:
                dist = rng.uniform(0.065, 0.095)
            if gw_rows[row] or any(abs((row - q + a // 2) % a - a // 2) < 6 for q in struts_rows):
                hidden += int(gw_rows[row])
                continue
            rs = lumen[row] - dist
            if rs < cath.outer_radius_mm + 0.05:
                continue
            struts_rows.append(row)
            struts_radius.append(rs)
            half_rows = max(1, round(STRUT_HALF_WIDTH_MM / (rs * 2 * np.pi / a)))
            rows = (np.arange(-half_rows, half_rows + 1) + row) % a
            m = np.zeros(a, dtype=bool)
            m[rows] = True
            body = m[:, None] & (rr >= rs) & (rr <= rs + STRUT_THICKNESS_MM)
            labels[body] = Label.STRUT
            shadow |= m[:, None] & (rr > rs)
            transmission[m] = np.minimum(transmission[m], rng.uniform(0.02, 0.3))
            spikes.append((m, np.full(a, rs), 8.0, rng.uniform(0.018, 0.035)))

    # Optical rendering: backscatter x round-trip attenuation x focus, gamma speckle, complex noise.
    blood = 0.0
    if sc.blood is not None:
        blood = _bump(z, sc.blood[0], sc.blood[1]) * 0.9
    mu_b = _BACKSCATTER[labels].astype(np.float32)
    mu_t = _ATTEN[labels].astype(np.float32)
    if blood > 0:
        lum = labels == Label.LUMEN
        mu_b[lum] = 0.6 * blood
        mu_t[lum] = 7.0 * blood
    mu_b = _box(mu_b, 4, 1).astype(np.float32)  # diffuse borders (lipid, layers)
    ca = (labels == Label.CALCIUM)
    edge = ca ^ np.roll(ca, 1, axis=1)
    mu_b[edge | np.roll(edge, 1, axis=1)] += 0.9  # sharp calcium borders
    atten = np.exp(np.float32(-2.0 * sp) * np.cumsum(mu_t, axis=1, dtype=np.float32))
    atten = np.where(shadow, atten * transmission[:, None], atten)
    focus = (1.0 / (1.0 + ((r - 1.1) / 1.6) ** 2)).astype(np.float32)
    signal = (mu_b * atten * focus).astype(np.float32)
    corr = max(1, round(geo.speckle_corr_mm / sp))
    sp_int = np.zeros((a, s), dtype=np.float32)
    for _ in range(geo.speckle_looks):
        re = _box(rng.standard_normal((a, s), dtype=np.float32), corr, 1)
        im = _box(rng.standard_normal((a, s), dtype=np.float32), corr, 1)
        sp_int += re * re + im * im
    sp_int /= np.float32(sp_int.mean())
    power = signal * sp_int
    for ring_r, gain in zip(cath.ring_radii_mm, cath.ring_gain_db):
        power += 10 ** (gain / 10) * np.exp(-0.5 * ((rr - ring_r) / 0.007) ** 2)
    if cath.ghost_radius_mm is not None:
        power += 10 ** (cath.ghost_gain_db / 10) * np.exp(-0.5 * ((rr - cath.ghost_radius_mm) / 0.006) ** 2)
    for rows, rad, amp, sig in spikes:  # only the rows a reflector covers
        idx = np.flatnonzero(rows)
        power[idx] += (amp * np.exp(-0.5 * ((rr - rad[idx, None]) / sig) ** 2)).astype(np.float32)
    noise_amp = np.sqrt(10 ** (geo.noise_db / 10) * (1 + 0.6 * r / r[-1]) / 2).astype(np.float32)
    n_re = rng.standard_normal((a, s), dtype=np.float32)
    n_im = rng.standard_normal((a, s), dtype=np.float32)
    amp_sig = np.sqrt(power)
    total = (amp_sig + n_re * noise_amp) ** 2 + (n_im * noise_amp) ** 2
    db = 10 * np.log10(np.maximum(total, 1e-12))
    stored = np.clip(np.round((db - geo.offset_db) / fg.intensity_scale.db_per_count), 0, 65535).astype(np.uint16)

    labels[labels == _MEDIA] = Label.WALL
    # Truth record (results contract), measured on the exact geometry.
    m = measure_lumen(lumen, phi)
    status = "low_confidence" if blood > 0.5 else "ok"
    eel_vis = eel_full.copy()
    hidden_eel = (transmission < 0.5) | ((core_type == Label.LIPID) & (core > 0.15)) | (eel_full - lumen > PENETRATION_MM)
    hidden_eel |= eel_full >= r[-1]
    eel_vis[hidden_eel] = np.nan
    ex, ey = contours.polar_to_xy(eel_full, phi)
    cx, cy = m.centroid_xy
    eel_arc = arc_about_point_deg(ex, ey, ~hidden_eel, cx, cy)
    eel_m = measure_lumen(eel_full, phi)
    grid = PolarGrid(angles_rad=phi, column_radius_mm=r)
    masks = {"calcium": labels == Label.CALCIUM, "lipid": labels == Label.LIPID, "fibrous": labels == Label.FIBROUS}
    plaque = measure_plaque(masks, grid, m, a, cfg, wall_mask=labels >= Label.WALL)
    struts, stent_rec = measure_struts(np.array(struts_rows, dtype=int), np.array(struts_radius), lumen, phi, cfg)
    gw = None
    if gw_rows.any():
        runs = contours.circular_runs(gw_rows)
        first, last = max(runs, key=lambda fl: (fl[1] - fl[0]) % a)
        gw = {"alines": [int(first), int(last)]}
    record = {
        "frame": k,
        "status": status,
        "confidence": 1.0,
        "lumen": {
            "area_mm2": round(m.area_mm2, 5),
            "min_diameter_mm": round(m.min_diameter_mm, 5),
            "max_diameter_mm": round(m.max_diameter_mm, 5),
            "mean_diameter_mm": round(m.mean_diameter_mm, 5),
            "radius_mm": [round(float(v), 5) for v in lumen],
            "centroid_mm": [round(cx, 5), round(cy, 5)],
        },
        "eel": {
            "radius_mm": [None if not np.isfinite(v) else round(float(v), 5) for v in eel_vis],
            "visible_arc_deg": round(eel_arc, 2),
            "mean_diameter_mm": round(eel_m.mean_diameter_mm, 5) if eel_arc > 180 else None,
            "area_mm2": round(eel_m.area_mm2, 5),
        },
        **plaque,
        "guidewire": gw,
        "struts": struts if in_stent else [],
        "stent": stent_rec if in_stent else None,
        "hidden_struts": hidden,
        "blood": round(blood, 3),
        "nurd_deg": round(float(np.degrees(nurd)), 3),
    }
    truth = FrameTruth(lumen_radius_mm=lumen, eel_radius_mm=eel_vis, eel_radius_full_mm=eel_full,
                       labels=labels, shadow=shadow, record=record)
    return stored, truth


def generate_pullback(
    scenario: str | ForeignScenario,
    seed: int = 0,
    n_frames: int = 60,
    frame_pitch_mm: float | None = None,
    geometry: ForeignGeometry | None = None,
    catheter: Catheter | None = None,
    cfg: GuidanceConfig | None = None,
) -> Pullback:
    """Render a foreign pullback with exact truth on ``pb.truth`` (deterministic per seed).

    Frame 0 is the most distal; the frames span the scenario's length unless ``frame_pitch_mm``
    is given. The frames state their scale (``geometry.intensity_scale``, source "dicom-lut").
    """
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    geo = geometry or ForeignGeometry()
    cath = catheter or Catheter()
    cfg = cfg or GuidanceConfig()
    if n_frames < 2:
        raise GeometryError(f"n_frames={n_frames}: a pullback needs at least 2 frames")
    pitch = frame_pitch_mm if frame_pitch_mm is not None else sc.length_mm / (n_frames - 1)
    scale = IntensityScale.log_range(geo.range_db, 65535, source="dicom-lut", offset_db=geo.offset_db)
    fg = FrameGeometry(n_alines=geo.n_alines, n_samples=geo.n_samples, aline_spacing_mm=geo.aline_spacing_mm,
                       refractive_index=geo.refractive_index, intensity_scale=scale)
    vrng = np.random.default_rng([seed, 0xF0])
    vessel = {
        "nurd_phase": vrng.uniform(0, 6.3), "spin": vrng.normal(0, 0.02), "off_phase": vrng.uniform(0, 6.3),
        "alpha0": vrng.uniform(0, 6.3), "theta0": vrng.uniform(0, 3.14), "gw_angle": vrng.uniform(0, 6.3),
    }
    frames = np.empty((n_frames, geo.n_alines, geo.n_samples), dtype=np.uint16)
    truths = []
    for k in range(n_frames):
        frames[k], t = _render_frame(sc, k * pitch, k, geo, cath, fg, np.random.default_rng([seed, k, 0xF1]),
                                     vessel, cfg)
        truths.append(t)
    records = [t.record for t in truths]
    guidance = pullback_guidance(records, pitch, cfg=cfg)
    truth = PullbackTruth(frames=truths, guidance=guidance,
                          scenario={"name": sc.name, "seed": seed, "renderer": "foreign"})
    return Pullback(
        frames=frames, geometry=fg, z_offset_px=np.full(n_frames, geo.z_offset_px),
        seam_index=np.zeros(n_frames, dtype=int), frame_spacing_mm=np.full(n_frames, pitch),
        frame_rate_hz=180.0, pullback_id=f"{sc.name}-{seed}", truth=truth,
        attributes={"source": "foreign", "scenario": sc.name, "seed": seed},
    )
