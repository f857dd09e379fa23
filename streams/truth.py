"""Ground-truth records for phantom pullbacks (and label definitions shared with the model).

The truth is computed from the phantom's geometric model, never from the rendered image. Per
frame it holds per-A-line boundary radii, a polar tissue label map and a shadow mask, plus the
frame-level measurements of the results contract (``docs/results.md``); per pullback it holds the
guidance that the MLD MAX rules give on those measurements.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Label(enum.IntEnum):
    """Tissue classes of the polar label map (uint8)."""

    CATHETER = 0  #: inside the sheath's outer surface
    LUMEN = 1  #: flushed lumen (or residual blood)
    WALL = 2  #: normal wall: intima, media, adventitia
    FIBROUS = 3  #: fibrous plaque, fibrous cap over lipid, fibrous cover over calcium
    LIPID = 4  #: lipid pool
    CALCIUM = 5  #: calcium
    OUTSIDE = 6  #: perivascular tissue beyond the adventitia
    GUIDEWIRE = 7  #: inside the guidewire
    STRUT = 8  #: inside a stent strut
    PADDING = 255  #: padded A-line rows (no image data)


PLAQUE_LABELS = (Label.FIBROUS, Label.LIPID, Label.CALCIUM)


@dataclass
class FrameTruth:
    """Exact geometry of one phantom frame.

    Attributes
    ----------
    lumen_radius_mm : numpy.ndarray
        ``(n_alines,)`` float64, radius of the lumen surface along each stored A-line (mm from the
        catheter centre); NaN on padded rows. Defined in shadows too (the geometry is known).
    eel_radius_mm : numpy.ndarray
        ``(n_alines,)`` float64, radius of the EEL along each A-line, NaN where the EEL is not
        visible in the image (shadow, behind attenuating plaque, beyond penetration or range).
    eel_radius_full_mm : numpy.ndarray
        ``(n_alines,)`` float64, the EEL radius along each A-line whether visible or not.
    labels : numpy.ndarray
        ``(n_alines, n_samples)`` uint8 :class:`Label` map on the stored grid.
    shadow : numpy.ndarray
        ``(n_alines, n_samples)`` bool, True behind a guidewire or strut surface.
    record : dict
        Frame-level measurements in the shape of one ``frames.jsonl`` object (see docs/results.md),
        plus phantom-only keys (``blood``, ``nurd``, ``hidden_struts``).
    """

    lumen_radius_mm: np.ndarray
    eel_radius_mm: np.ndarray
    eel_radius_full_mm: np.ndarray
    labels: np.ndarray
    shadow: np.ndarray
    record: dict = field(default_factory=dict)


@dataclass
class PullbackTruth:
    """Ground truth of a whole phantom pullback.

    Attributes
    ----------
    frames : list of FrameTruth
        One per frame, in acquisition order.
    guidance : dict
        Pullback-level truth in the shape of ``pullback.json`` (mla, references, calcium, sizing,
        stent), computed by :mod:`engine.clinical.rules` on the per-frame truth.
    scenario : dict
        The scenario specification and seed that produced the pullback.
    """

    frames: list[FrameTruth]
    guidance: dict
    scenario: dict
