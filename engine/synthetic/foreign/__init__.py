"""An independent IVOCT renderer for validation only (never for training): docs/foreign_renderer.md.

Written without reference to :mod:`engine.synthetic.phantom`; the two must never import each other.
"""

from engine.synthetic.foreign.render import Catheter, ForeignGeometry, generate_pullback
from engine.synthetic.foreign.scenarios import SCENARIOS, ForeignScenario

__all__ = ["Catheter", "ForeignGeometry", "ForeignScenario", "SCENARIOS", "generate_pullback"]
