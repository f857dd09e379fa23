"""Named phantom scenarios: a vessel, its plaques, an optional stent and artefacts.

Positions along the pullback (``z_mm``) are measured from frame 0, the most distal frame.
Angles are about the vessel centre, degrees, in the same sense as stored A-line rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

PLAQUE_KINDS = ("fibrous", "lipid", "calcium")


@dataclass(frozen=True)
class PlaqueSpec:
    """One plaque.

    Attributes
    ----------
    kind : str
        "fibrous", "lipid" or "calcium".
    angle_deg : float
        Centre angle about the vessel centre, degrees.
    arc_deg : float
        Full angular extent about the vessel centre, degrees (flat top plus tapers).
    z_mm : float
        Centre position along the pullback, mm from frame 0.
    length_mm : float
        Longitudinal extent, mm.
    thickness_mm : float
        Maximum thickness: whole plaque (fibrous), lipid pool (lipid) or calcium (calcium), mm.
    cover_mm : float
        Fibrous tissue between lumen and core: minimum cap thickness (lipid) or cover (calcium), mm.
    """

    kind: str
    angle_deg: float
    arc_deg: float
    z_mm: float
    length_mm: float
    thickness_mm: float
    cover_mm: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in PLAQUE_KINDS:
            raise ValueError(f"plaque kind {self.kind!r} is not one of {PLAQUE_KINDS}")
        if not 0 < self.arc_deg <= 360 or self.length_mm <= 0 or self.thickness_mm <= 0:
            raise ValueError(f"plaque {self} needs 0 < arc <= 360, length > 0, thickness > 0")


@dataclass(frozen=True)
class MalappositionSpec:
    """A region where the vessel wall stands off the stent by ``gap_mm``."""

    z_start_mm: float
    z_end_mm: float
    angle_deg: float
    arc_deg: float
    gap_mm: float


@dataclass(frozen=True)
class StentSpec:
    """An implanted stent.

    Attributes
    ----------
    z_start_mm, z_end_mm : float
        Distal and proximal stent edges, mm from frame 0.
    diameter_mm : float
        Expanded diameter at the strut reflection surface, mm.
    underexpansion : float
        Fractional diameter loss at ``underexpansion_z_mm`` (0 = none), tapering over 6 mm.
    underexpansion_z_mm : float
        Where the stent is least expanded.
    strut_thickness_mm, strut_width_mm : float
        Strut plus polymer thickness and strut width, mm.
    struts_per_frame : int
        Mean number of struts crossing a frame.
    malapposition : tuple of MalappositionSpec
        Regions of wall stand-off.
    """

    z_start_mm: float
    z_end_mm: float
    diameter_mm: float
    underexpansion: float = 0.0
    underexpansion_z_mm: float = 0.0
    strut_thickness_mm: float = 0.09
    strut_width_mm: float = 0.11
    struts_per_frame: int = 10
    malapposition: tuple[MalappositionSpec, ...] = ()


@dataclass(frozen=True)
class ArtefactSpec:
    """Optional imaging artefacts.

    Attributes
    ----------
    blood : tuple of (z_start_mm, z_end_mm, mu_t_per_mm)
        Residual blood (poor flush) in the lumen over these ranges.
    nurd : tuple of (z_start_mm, z_end_mm, amplitude_deg)
        Non-uniform rotational distortion: angular stretch of the A-lines.
    seam : bool
        Seam discontinuity at the seam A-line (angular jump and gain step).
    z_offset_drift_px : float
        Peak-to-peak slow drift of the OCT Z offset along the pullback, samples.
    guidewire : bool
        Guidewire present (bright spot with full shadow).
    """

    blood: tuple[tuple[float, float, float], ...] = ()
    nurd: tuple[tuple[float, float, float], ...] = ()
    seam: bool = False
    z_offset_drift_px: float = 0.0
    guidewire: bool = True


@dataclass(frozen=True)
class VesselSpec:
    """The healthy vessel the plaques sit in.

    Attributes
    ----------
    eel_radius_distal_mm, eel_radius_proximal_mm : float
        Mean EEL radius at frame 0 and at the last frame (coronaries taper distally), mm.
    shape_amplitude : float
        Relative amplitude of the low-order harmonics that make the contour irregular.
    intima_mm, media_mm, adventitia_mm : float
        Normal wall layer thicknesses, mm.
    intima_distal_extra_mm : float
        Diffuse intimal thickening added at frame 0, fading to none at mid-pullback, mm.
    catheter_eccentricity : float
        Mean fraction (0..1) of the free room by which the catheter sits off the lumen centre.
    """

    eel_radius_distal_mm: float = 1.55
    eel_radius_proximal_mm: float = 1.85
    shape_amplitude: float = 0.04
    intima_mm: float = 0.10
    media_mm: float = 0.15
    adventitia_mm: float = 0.35
    intima_distal_extra_mm: float = 0.0
    catheter_eccentricity: float = 0.45


@dataclass(frozen=True)
class Scenario:
    """A named phantom pullback recipe."""

    name: str
    description: str
    vessel: VesselSpec = field(default_factory=VesselSpec)
    plaques: tuple[PlaqueSpec, ...] = ()
    stent: StentSpec | None = None
    artefacts: ArtefactSpec = field(default_factory=ArtefactSpec)
    n_frames: int = 200
    frame_pitch_mm: float = 0.2

    @property
    def length_mm(self) -> float:
        return (self.n_frames - 1) * self.frame_pitch_mm

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes: object) -> "Scenario":
        return replace(self, **changes)


def _scenarios() -> dict[str, Scenario]:
    lesion_z = 20.0
    return {
        s.name: s
        for s in (
            Scenario(
                name="normal",
                description="Healthy tapering coronary with mild intimal thickening, no lesion.",
            ),
            Scenario(
                name="fibrous-stenosis",
                description="Eccentric fibrous plaque narrowing the lumen over ~12 mm.",
                plaques=(
                    PlaqueSpec("fibrous", 60, 220, lesion_z, 12.0, 0.85),
                    PlaqueSpec("fibrous", 250, 90, lesion_z + 2, 6.0, 0.25),
                ),
            ),
            Scenario(
                name="calcified",
                description="Heavily calcified lesion: arc > 180 deg, thickness > 0.5 mm, "
                "length > 5 mm (Fujino score 4).",
                vessel=VesselSpec(eel_radius_distal_mm=1.65, eel_radius_proximal_mm=1.95),
                plaques=(
                    PlaqueSpec("calcium", 150, 250, lesion_z, 9.0, 0.75, cover_mm=0.06),
                    PlaqueSpec("fibrous", 330, 80, lesion_z, 10.0, 0.3),
                ),
            ),
            Scenario(
                name="lipid-tcfa",
                description="Lipid-rich thin-cap fibroatheroma (cap 50 um, arc ~150 deg) in a "
                "large vessel whose far wall is beyond penetration (lumen-based sizing).",
                vessel=VesselSpec(
                    eel_radius_distal_mm=2.0,
                    eel_radius_proximal_mm=2.3,
                    catheter_eccentricity=0.85,
                    intima_distal_extra_mm=0.2,
                ),
                plaques=(
                    PlaqueSpec("lipid", 200, 170, lesion_z, 9.0, 0.9, cover_mm=0.05),
                    PlaqueSpec("fibrous", 40, 150, lesion_z - 1, 10.0, 0.7),
                ),
            ),
            Scenario(
                name="stented-good",
                description="Well expanded, well apposed stent over a treated fibrous lesion.",
                plaques=(PlaqueSpec("fibrous", 60, 200, lesion_z, 10.0, 0.5),),
                stent=StentSpec(z_start_mm=lesion_z - 9, z_end_mm=lesion_z + 9, diameter_mm=3.1),
            ),
            Scenario(
                name="stented-malapposed",
                description="Stent under-expanded at the lesion with proximal malapposition "
                "(gaps 0.2-0.45 mm).",
                vessel=VesselSpec(eel_radius_distal_mm=1.6, eel_radius_proximal_mm=2.1),
                plaques=(PlaqueSpec("calcium", 100, 140, lesion_z, 6.0, 0.4, cover_mm=0.08),),
                stent=StentSpec(
                    z_start_mm=lesion_z - 9,
                    z_end_mm=lesion_z + 9,
                    diameter_mm=3.0,
                    underexpansion=0.22,
                    underexpansion_z_mm=lesion_z,
                    malapposition=(
                        MalappositionSpec(lesion_z + 4.5, lesion_z + 9, 250, 150, 0.35),
                        MalappositionSpec(lesion_z - 8.5, lesion_z - 6.5, 20, 80, 0.2),
                    ),
                ),
            ),
            Scenario(
                name="artefacts",
                description="Fibrous lesion imaged with residual blood, NURD, a seam and "
                "z-offset drift.",
                plaques=(PlaqueSpec("fibrous", 300, 210, lesion_z, 10.0, 0.6),),
                artefacts=ArtefactSpec(
                    blood=((4.0, 7.0, 6.0), (30.0, 31.5, 12.0)),
                    nurd=((10.0, 16.0, 12.0),),
                    seam=True,
                    z_offset_drift_px=24.0,
                ),
            ),
        )
    }


SCENARIOS: dict[str, Scenario] = _scenarios()
