"""Scan-converted PNG previews of pullback frames (and their ground truth, for phantoms).

Used to look at what the phantom and the readers produce; the live display builds on the same
scan conversion.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.compute.scan_convert import CartesianGrid, ScanConverter
from streams.pullback import Frame, Pullback
from streams.truth import Label

#: BGR colours of the truth labels
LABEL_COLOURS = {
    Label.CATHETER: (40, 40, 40),
    Label.LUMEN: (0, 0, 0),
    Label.WALL: (90, 160, 90),
    Label.FIBROUS: (200, 200, 200),
    Label.LIPID: (0, 200, 255),
    Label.CALCIUM: (255, 255, 255),
    Label.OUTSIDE: (60, 60, 100),
    Label.GUIDEWIRE: (255, 0, 255),
    Label.STRUT: (0, 0, 255),
}


def display_window(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """8-bit grey image: the noise floor (median of the imaged disc) to black, its 99.7th
    percentile to white. Percentiles rather than a fixed dB window, so files from any system
    (LOG or LIN, any gain) display sensibly."""
    values = image[valid]
    lo, hi = np.percentile(values, [60.0, 99.9]) if values.size else (0.0, 1.0)
    scaled = np.clip((image - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return (255.0 * scaled).astype(np.uint8)


def write_previews(pullback: Pullback, folder: Path, frames: list[int] | None = None, size_px: int = 640) -> list[Path]:
    """Write ``frame_NNNN.png`` for the chosen frames (default: MLA frame and two others).

    For a phantom the PNG shows the image beside its ground-truth label map.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = pullback.geometry
    if frames is None:
        frames = _default_frames(pullback)
    fov = 2.0 * float(g.radius_mm(g.n_samples, int(np.max(pullback.z_offset_px))))
    converter = ScanConverter(CartesianGrid(size_px, min(fov, 50.0)))
    converter.start(g)
    written = []
    try:
        for index in frames:
            frame = pullback.frame(index)
            image = converter.process(frame)
            ones = converter.process(_like(frame, np.ones_like(frame.pixels, dtype=np.float32)))
            grey = cv2.cvtColor(display_window(image, ones > 0.5), cv2.COLOR_GRAY2BGR)
            panels = [grey]
            if pullback.truth is not None:
                labels = pullback.truth.frames[index].labels.astype(np.float32)
                label_image = np.rint(converter.process(_like(frame, labels))).astype(int)
                colour = np.zeros((*label_image.shape, 3), dtype=np.uint8)
                for label, bgr in LABEL_COLOURS.items():
                    colour[label_image == label] = bgr
                colour[ones < 0.5] = 0
                panels.append(colour)
            path = folder / f"frame_{index:04d}.png"
            cv2.imwrite(str(path), np.hstack(panels))
            written.append(path)
    finally:
        converter.stop()
    return written


def _like(frame: Frame, pixels: np.ndarray) -> Frame:
    return Frame(frame.pullback_id, frame.index, frame.timestamp_s, pixels, frame.geometry,
                 frame.z_offset_px, frame.seam_index, frame.position_mm)


def _default_frames(pullback: Pullback) -> list[int]:
    n = len(pullback)
    picks = [n // 4, n // 2]
    if pullback.truth is not None:
        picks.insert(0, int(pullback.truth.guidance["mla"]["frame"]))
    return sorted(set(min(max(p, 0), n - 1) for p in picks))
