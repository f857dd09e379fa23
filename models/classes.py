"""What the segmentation network predicts: its pixel classes and its per-A-line outputs.

The network works on the polar model grid (:class:`models.grid.ModelGrid`): ``K`` model
A-lines over 360 degrees by ``J`` depth samples from the catheter centre. It predicts

* a class per pixel (:class:`TissueClass`, softmax over the classes),
* three independent per-A-line probabilities (:class:`ALineOutput`): the A-line lies in the
  guidewire shadow, in a stent-strut shadow, and the EEL is visible on it,
* one per-frame confidence: the probability that the frame is fit for measurement (no residual
  blood spoiling the lumen).

This module has no torch dependency: training, export, runtime and evaluation all share it.
"""

from __future__ import annotations

import enum

import numpy as np

from streams.truth import Label


class TissueClass(enum.IntEnum):
    """Pixel classes of the model's class map (uint8).

    ``LUMEN`` is everything from the catheter centre to the lumen surface (catheter, flush or
    residual blood, guidewire, struts standing in the lumen); ``BEYOND_EEL`` is everything outside
    the external elastic lamina (adventitia, perivascular tissue). Between the two, ``WALL`` is
    normal intima and media and the plaque classes are as in :class:`streams.truth.Label`.
    """

    LUMEN = 0
    WALL = 1
    FIBROUS = 2
    LIPID = 3
    CALCIUM = 4
    BEYOND_EEL = 5


N_CLASSES = len(TissueClass)
PLAQUE_CLASSES = (TissueClass.FIBROUS, TissueClass.LIPID, TissueClass.CALCIUM)


class ALineOutput(enum.IntEnum):
    """Rows of the per-A-line output (independent sigmoids)."""

    GUIDEWIRE = 0  #: the A-line is in the guidewire's shadow sector
    STRUT = 1  #: the A-line is in a stent strut's shadow
    EEL_VISIBLE = 2  #: the EEL can be seen on the A-line


N_ALINE_OUTPUTS = len(ALineOutput)

#: Tissue class between lumen and EEL for each phantom label; labels that are not wall tissue
#: (lumen, catheter, guidewire, strut, outside, padding) map to 255 ("not tissue").
TISSUE_OF_LABEL = np.full(256, 255, dtype=np.uint8)
TISSUE_OF_LABEL[Label.WALL] = TissueClass.WALL
TISSUE_OF_LABEL[Label.FIBROUS] = TissueClass.FIBROUS
TISSUE_OF_LABEL[Label.LIPID] = TissueClass.LIPID
TISSUE_OF_LABEL[Label.CALCIUM] = TissueClass.CALCIUM
