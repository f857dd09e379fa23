"""The six foreign scenarios: artery models along a pullback (docs/foreign_renderer.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plaque:
    """One plaque: a sector of rays (catheter-frame angles, deg) over a span of the pullback (mm).

    ``kind`` is "fibrous", "lipid" or "calcium". ``cover_mm`` is the fibrous tissue between the
    lumen and a lipid pool or calcium (the cap); ``thickness_mm`` the pool's / plate's / fibrous
    plaque's peak thickness (a raised-cosine profile over the sector and the span).
    """

    kind: str
    start_deg: float
    arc_deg: float
    z0_mm: float
    z1_mm: float
    thickness_mm: float
    cover_mm: float = 0.0


@dataclass(frozen=True)
class ForeignScenario:
    """An artery model; lengths in mm, angles in degrees, distances from the lumen centre."""

    name: str
    length_mm: float = 30.0
    radius_mm: float = 1.6  #: mean lumen radius of the healthy vessel
    radius_taper_mm: float = 0.15  #: radius lost from proximal (end) to distal (frame 0)
    ellipticity: float = 0.08  #: (a - b) / (a + b) of the lumen ellipse
    stenosis_z_mm: float | None = 15.0
    stenosis_depth: float = 0.0  #: fraction of the radius lost at the stenosis centre
    stenosis_width_mm: float = 4.0
    intima_mm: float = 0.12
    media_mm: float = 0.18
    adventitia_mm: float = 0.35
    plaques: tuple[Plaque, ...] = ()
    catheter_offset_mm: float = 0.3  #: catheter centre from lumen centre
    guidewire: bool = True
    stent: dict | None = None  #: {z0, z1, n_struts, radius_mm, underexpansion, malapposed_frac, embedded_frac}
    blood: tuple[float, float] | None = None  #: (z0, z1) of residual blood
    nurd_deg: float = 0.0  #: peak non-uniform rotation distortion, degrees
    extra: dict = field(default_factory=dict)


SCENARIOS: dict[str, ForeignScenario] = {
    s.name: s
    for s in (
        ForeignScenario(
            "foreign-fibrous-stenosis",
            stenosis_depth=0.45,
            plaques=(Plaque("fibrous", 40.0, 200.0, 9.0, 21.0, 0.7),),
        ),
        ForeignScenario(
            "foreign-heavy-calcium",
            radius_mm=1.5,
            intima_mm=1.15,  # diffuse intimal thickening: the EEL lies beyond penetration, sizing is lumen-based
            stenosis_depth=0.35,
            plaques=(
                Plaque("calcium", 60.0, 220.0, 6.0, 24.0, 0.75, cover_mm=0.08),
                Plaque("fibrous", 300.0, 60.0, 8.0, 22.0, 0.4),
            ),
        ),
        ForeignScenario(
            "foreign-lipid-tcfa",
            stenosis_depth=0.35,
            plaques=(Plaque("lipid", 150.0, 140.0, 8.0, 22.0, 0.9, cover_mm=0.05),),
        ),
        ForeignScenario(
            "foreign-stent-expanded",
            stenosis_z_mm=None,
            radius_mm=1.55,
            stent={"z0": 6.0, "z1": 24.0, "n_struts": 10, "radius_mm": 1.55, "underexpansion": 0.0,
                       "malapposed_frac": 0.0, "embedded_frac": 0.2},
        ),
        ForeignScenario(
            "foreign-stent-underexpanded-malapposed",
            stenosis_z_mm=15.0,
            radius_mm=1.7,
            stent={"z0": 5.0, "z1": 25.0, "n_struts": 9, "radius_mm": 1.6, "underexpansion": 0.3,
                       "malapposed_frac": 0.35, "embedded_frac": 0.1},
        ),
        ForeignScenario(
            "foreign-mixed-artefacts",
            stenosis_depth=0.3,
            ellipticity=0.18,
            catheter_offset_mm=0.75,
            plaques=(Plaque("fibrous", 200.0, 170.0, 10.0, 20.0, 0.5),),
            blood=(3.0, 9.0),
            nurd_deg=14.0,
        ),
    )
}
