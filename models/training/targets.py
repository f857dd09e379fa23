"""Training and evaluation targets on the model grid, from the phantom's exact ground truth.

Per frame the truth (:class:`streams.truth.FrameTruth`, on stored rows and columns) becomes:

* ``tissue`` ``(K, J)`` uint8: the wall tissue class (:class:`~models.classes.TissueClass` WALL,
  FIBROUS, LIPID or CALCIUM) of each model pixel, from the stored label map by nearest
  neighbour. It is what a pixel between the lumen and the EEL is; pixels outside that band take
  the class of the nearest tissue along their A-line, so the soft targets below can use it at
  both boundaries.
* ``lumen_px``, ``eel_px`` ``(K,)`` float32: the lumen radius and the EEL radius (visible or
  not, from ``eel_radius_full_mm``) in model samples, i.e. mm / ``grid.depth_step_mm``.
* ``aline`` ``(N_ALINE_OUTPUTS, K)`` float32 in [0, 1]: the fraction of each model A-line that
  is guidewire shadow (``record["guidewire"]["alines"]``), strut shadow (shadowed rows outside
  the guidewire sector) and visible EEL (``eel_radius_mm`` not NaN).
* ``confidence``: 1 when ``record["status"] == "ok"``, 0 for ``low_confidence``.
* ``depth_limit_px``: radius of the last stored sample in model samples; model pixels beyond
  it hold no image data and carry no loss.

Stored rows map to model A-line ``k`` at stored position ``k * A / K`` with the same triangle
kernel that :mod:`engine.compute.preprocess` uses for the image, so targets and inputs agree in angle.

Soft class targets (:func:`soft_class_targets`): model sample ``j`` covers radii
``[(j - 1/2) * step, (j + 1/2) * step)``; its LUMEN share is the fraction of that interval inside
the lumen radius, its BEYOND_EEL share the fraction beyond the EEL radius, the rest is its
``tissue`` class. A network trained on them puts its LUMEN probability crossing 0.5 at the lumen
radius itself, which is what the segmenter reads out with sub-pixel interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.compute.preprocess import triangle_taps
from models.classes import N_ALINE_OUTPUTS, N_CLASSES, TISSUE_OF_LABEL, ALineOutput, TissueClass
from models.grid import ModelGrid
from streams.geometry import FrameGeometry
from streams.truth import FrameTruth


@dataclass(frozen=True)
class FrameTargets:
    """Targets of one frame on the model grid (see the module docstring for every field)."""

    tissue: np.ndarray
    lumen_px: np.ndarray
    eel_px: np.ndarray
    aline: np.ndarray
    confidence: float
    depth_limit_px: float


def stored_to_model_alines(values: np.ndarray, n_model_alines: int) -> np.ndarray:
    """Resample per-stored-row values ``(A, ...)`` to model A-lines ``(K, ...)``, circularly.

    Uses the triangle kernel of :mod:`engine.compute.preprocess` (linear interpolation, widened by the
    down-sampling factor when ``A > K``).

    >>> stored_to_model_alines(np.array([0.0, 1.0, 2.0, 3.0]), 8)
    array([0. , 0.5, 1. , 1.5, 2. , 2.5, 3. , 1.5])
    """
    values = np.asarray(values, dtype=np.float64)
    a = values.shape[0]
    step = a / n_model_alines
    starts, weights = triangle_taps(np.arange(n_model_alines) * step, max(1.0, step))
    rows = np.mod(starts[:, None] + np.arange(weights.shape[1])[None, :], a)
    return np.einsum("kt,kt...->k...", weights, values[rows])


def _circular_run_mask(first: int, last: int, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[(np.arange((last - first) % n + 1) + first) % n] = True
    return mask


def guidewire_rows(truth: FrameTruth, n_valid_alines: int) -> np.ndarray:
    """``(A,)`` bool: stored rows in the guidewire's shadow sector (from the truth record)."""
    guidewire = truth.record.get("guidewire")
    if not guidewire:
        return np.zeros(n_valid_alines, dtype=bool)
    first, last = guidewire["alines"]
    return _circular_run_mask(int(first), int(last), n_valid_alines)


def frame_targets(
    truth: FrameTruth, geometry: FrameGeometry, z_offset_px: int, grid: ModelGrid
) -> FrameTargets:
    """Targets of one phantom frame on ``grid`` (see the module docstring).

    Parameters
    ----------
    truth : FrameTruth
        The frame's ground truth on the stored grid.
    geometry : FrameGeometry
        The pullback's geometry.
    z_offset_px : int
        The frame's OCT Z Offset Correction, samples.
    grid : ModelGrid
        Model grid.
    """
    a = geometry.n_valid_alines
    k, j = grid.n_alines, grid.n_depth
    step = grid.depth_step_mm
    lumen_px = stored_to_model_alines(truth.lumen_radius_mm[:a], k) / step
    eel_px = stored_to_model_alines(truth.eel_radius_full_mm[:a], k) / step

    gw = guidewire_rows(truth, a)
    strut = truth.shadow[:a].any(axis=1) & ~gw
    visible = np.isfinite(truth.eel_radius_mm[:a])
    aline = np.empty((N_ALINE_OUTPUTS, k), dtype=np.float32)
    aline[ALineOutput.GUIDEWIRE] = stored_to_model_alines(gw.astype(np.float64), k)
    aline[ALineOutput.STRUT] = stored_to_model_alines(strut.astype(np.float64), k)
    aline[ALineOutput.EEL_VISIBLE] = stored_to_model_alines(visible.astype(np.float64), k)
    aline[ALineOutput.EEL_VISIBLE, eel_px >= j - 1] = 0.0

    rows = np.rint(np.arange(k) * a / k).astype(np.int64) % a
    columns = np.rint(geometry.column(grid.radius_mm(np.arange(j)), z_offset_px)).astype(np.int64)
    columns = np.clip(columns, 0, geometry.n_samples - 1)
    tissue = TISSUE_OF_LABEL[truth.labels[rows][:, columns]]
    tissue = _fill_along_alines(tissue)

    status = truth.record.get("status", "ok")
    depth_limit = float(geometry.radius_mm(geometry.n_samples - 1, z_offset_px)) / step
    return FrameTargets(
        tissue=tissue,
        lumen_px=lumen_px.astype(np.float32),
        eel_px=eel_px.astype(np.float32),
        aline=aline,
        confidence=1.0 if status == "ok" else 0.0,
        depth_limit_px=depth_limit,
    )


def _fill_along_alines(tissue: np.ndarray) -> np.ndarray:
    """Replace "not tissue" (255) by the nearest tissue class along the A-line (WALL if none).

    Inward of the first tissue pixel the first tissue class is used, outward of the last the
    last, and gaps between take the previous tissue class.
    """
    j = tissue.shape[1]
    is_tissue = tissue != 255
    index = np.where(is_tissue, np.arange(j)[None, :], -1)
    previous = np.maximum.accumulate(index, axis=1)
    first = np.where(is_tissue.any(axis=1), is_tissue.argmax(axis=1), 0)
    source = np.where(previous >= 0, previous, first[:, None])
    filled = np.take_along_axis(tissue, source, axis=1)
    return np.where(filled == 255, np.uint8(TissueClass.WALL), filled).astype(np.uint8)


def soft_class_targets(tissue: np.ndarray, lumen_px: np.ndarray, eel_px: np.ndarray) -> np.ndarray:
    """Per-pixel class distribution ``(..., N_CLASSES, K, J)`` float32 (module docstring).

    Parameters
    ----------
    tissue : numpy.ndarray
        ``(..., K, J)`` uint8 wall tissue class.
    lumen_px, eel_px : numpy.ndarray
        ``(..., K)`` lumen and EEL radii in model samples.

    >>> t = soft_class_targets(np.full((1, 4), 1, np.uint8), np.array([1.25]), np.array([2.5]))
    >>> t[:, 0].round(2)  # rows: LUMEN, WALL, FIBROUS, LIPID, CALCIUM, BEYOND_EEL
    array([[1.  , 0.75, 0.  , 0.  ],
           [0.  , 0.25, 1.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  ],
           [0.  , 0.  , 0.  , 0.  ],
           [0.  , 0.  , 0.  , 1.  ]], dtype=float32)
    """
    j = tissue.shape[-1]
    centre = np.arange(j, dtype=np.float32)
    lumen = np.clip(lumen_px[..., None] - (centre - 0.5), 0.0, 1.0)
    beyond = np.minimum(np.clip(centre + 0.5 - eel_px[..., None], 0.0, 1.0), 1.0 - lumen)
    wall = 1.0 - lumen - beyond
    out = np.zeros(tissue.shape[:-2] + (N_CLASSES,) + tissue.shape[-2:], dtype=np.float32)
    np.put_along_axis(
        out,
        tissue[..., None, :, :].astype(np.int64),
        wall[..., None, :, :].astype(np.float32),
        axis=-3,
    )
    out[..., TissueClass.LUMEN, :, :] += lumen
    out[..., TissueClass.BEYOND_EEL, :, :] += beyond
    return out


def hard_class_map(tissue: np.ndarray, lumen_px: np.ndarray, eel_px: np.ndarray) -> np.ndarray:
    """Truth class map ``(..., K, J)`` uint8: LUMEN inside the lumen radius, BEYOND_EEL outside
    the EEL radius, ``tissue`` between (pixel centres compared with the radii)."""
    centre = np.arange(tissue.shape[-1], dtype=np.float32)
    out = tissue.copy()
    out[centre > eel_px[..., None]] = TissueClass.BEYOND_EEL
    out[centre < lumen_px[..., None]] = TissueClass.LUMEN
    return out
