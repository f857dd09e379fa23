"""Warm-up of the per-frame path before the first live frame (issue 13 item 15).

A fresh engine used to spend ~1 s on its first frame: Numba specialises a kernel per argument
*type*, and a frame decoded off the wire is a **read-only** array, a different type from the
writable arrays the stages warm themselves with, so the first live frame compiled (or loaded from
Numba's disk cache) every kernel again; the scan-conversion table and preprocessing plan of the
pullback's geometry were built on it too.

So the engine, in each worker, before it reports ready, runs the whole per-frame path (stage,
overlay build, render, L-mode cuts, JSON encoding) on frames made exactly as live ones are
(:func:`wire_frame`: encoded and decoded through :mod:`streams.wire.protocol`) for every wire
dtype, on the geometries of :data:`WARM_GEOMETRIES`; and when a pullback's first frame fixes a
geometry not warmed yet, each worker builds that geometry's tables (:func:`prepare_geometry`)
before it takes its next frame.

Warm frames are all zero: they exercise every compiled kernel's types without giving the
stages' cross-frame state (the previous frame's sheath, the adjacent lumen area) a value a real
frame could inherit.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import zmq

from streams.geometry import FrameGeometry
from streams.pullback import Frame
from streams.wire.protocol import (
    DTYPES,
    Limits,
    decode_payload,
    encode_frame,
    frame_from_header,
    unpack_header,
)

log = logging.getLogger(__name__)

WARM_PULLBACK_ID = "octguide-warm-up"  #: pullback id of warm-up frames (never published or recorded)
WARM_FRAME_INDEX = 1_000_000  #: frame index of warm-up frames: adjacent to no real frame

#: Geometries warmed in ``start()``: the bundled phantom's (the README main job, 500 A-lines x
#: 1000 samples at 6.5 um in air, refractive index 1.34, as a console of the class sends) and a
#: small one (tests, previews).
WARM_GEOMETRIES = (
    FrameGeometry(n_alines=500, n_samples=1000, aline_spacing_mm=0.0065, refractive_index=1.34),
    FrameGeometry(n_alines=64, n_samples=64, aline_spacing_mm=0.01),
)
WIRE_DTYPES = tuple(DTYPES.values())  #: every pixel dtype the frame protocol carries


def wire_frame(geometry: FrameGeometry, dtype: np.dtype, index: int = WARM_FRAME_INDEX) -> Frame:
    """An all-zero frame of ``geometry`` and ``dtype`` as the I/O thread hands it to a worker:
    encoded, sent as a ZeroMQ frame and decoded (read-only pixels, the live types)."""
    pixels = np.zeros((geometry.n_alines, geometry.n_samples), dtype)
    frame = Frame(WARM_PULLBACK_ID, index, 0.0, pixels, geometry)
    header_bytes, payload = encode_frame(frame, frame_spacing_mm=0.1, frame_rate_hz=100.0)
    header = unpack_header(bytes(header_bytes))
    decoded = decode_payload(header, zmq.Frame(bytes(payload)), Limits())
    return frame_from_header(header, decoded, header.geometry(), 0.0)


def prepare_geometry(stage: Any, geometry: FrameGeometry, dtype: np.dtype) -> bool:
    """Build what the stage keeps per geometry (scan-conversion table, preprocessing plan) for
    ``geometry`` frames of ``dtype``, without analysing a frame. Uses ``stage.prepare(geometry,
    dtype)`` where the stage has one, else the tables of the stages this repository ships.
    Returns whether anything was prepared."""
    prepare = getattr(stage, "prepare", None)
    if callable(prepare):
        prepare(geometry, np.dtype(dtype))
        return True
    done = False
    converter = getattr(stage, "converter", None)
    if converter is not None and callable(getattr(converter, "table", None)):
        converter.table(geometry)
        done = True
    segmenter = getattr(getattr(stage, "analyser", None), "segmenter", None)
    preprocessor = getattr(segmenter, "preprocessor", None)
    if preprocessor is not None and callable(getattr(preprocessor, "plan", None)):
        preprocessor.plan(geometry, np.dtype(dtype))
        done = True
    return done


__all__ = ["WARM_GEOMETRIES", "WARM_PULLBACK_ID", "WIRE_DTYPES", "prepare_geometry", "wire_frame"]
