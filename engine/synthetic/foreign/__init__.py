"""An independent IVOCT renderer for validation only (never for training): docs/foreign_renderer.md.

Written without reference to :mod:`engine.synthetic.phantom`; the two must never import each other.
"""

from engine.synthetic.foreign.render import Catheter, ForeignGeometry, generate_pullback
from engine.synthetic.foreign.scenarios import SCENARIOS, ForeignScenario
from streams.errors import GeometryError
from streams.pullback import Pullback


def from_spec(spec: str, n_frames: int = 60) -> Pullback:
    """The pullback of a ``foreign:SCENARIO[:seed]`` source spec (the ``foreign:`` prefix optional).

    >>> from_spec("foreign:nope")
    Traceback (most recent call last):
    ...
    streams.errors.GeometryError: unknown foreign scenario 'nope'; known: foreign-fibrous-stenosis, foreign-heavy-calcium, foreign-lipid-tcfa, foreign-mixed-artefacts, foreign-stent-expanded, foreign-stent-underexpanded-malapposed
    """
    body = spec.removeprefix("foreign:")
    name, _, seed = body.partition(":")
    if name not in SCENARIOS:
        raise GeometryError(f"unknown foreign scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    try:
        seed_value = int(seed) if seed else 0
    except ValueError:
        raise GeometryError(f"foreign seed {seed!r} is not an integer") from None
    return generate_pullback(name, seed=seed_value, n_frames=n_frames)


__all__ = ["SCENARIOS", "Catheter", "ForeignGeometry", "ForeignScenario", "from_spec", "generate_pullback"]
