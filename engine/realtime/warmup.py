"""Warm-up of the per-frame path before the first live frame (issue 13 item 15).

A fresh engine used to spend ~1 s on its first frame: Numba specialises a kernel per argument
*type*, and a frame decoded off the wire is a **read-only** array, a different type from the
writable arrays the stages warm themselves with, so the first live frame compiled (or loaded from
Numba's disk cache) every kernel again; the scan-conversion table and preprocessing plan of the
pullback's geometry were built on it too.

So the engine, in each worker, before it reports ready, runs the whole per-frame path (stage,
overlay build, render, L-mode cuts, JSON encoding) on frames made exactly as live ones are
(:func:`wire_frame`: encoded and decoded through :mod:`streams.wire.protocol`) for every wire
dtype, on the geometries of :data:`WARM_GEOMETRIES`.

The warm frames are **realistic**: one cross-section of the bundled phantom
(:data:`WARM_SCENARIO` at :data:`WARM_POSITION_MM`: sheath rings, a lumen, calcium and fibrous
plaque, guidewire and shadow, stent struts), rendered once per process (:func:`phantom_pixels`),
so every branch of segmentation read-out, sheath detection, metal detection, the lumen, plaque
and strut measurements, the overlay's contours and the burned-in drawing runs; an all-zero frame
per geometry adds the "nothing found" branches. An all-zero frame alone used to end in "lumen
boundary not found" before any lumen kernel ran, so the first real frame compiled them.

Warm frames give the stages' cross-frame state (the previous frame's sheath, the adjacent
lumen area) a value a real frame could inherit, so :func:`forget_warm_frames` clears it after
warm-up: results are those of an engine that never saw a warm frame.

When a pullback's first frame (its START) fixes a geometry, the engine's I/O thread builds that
geometry's tables in every worker's stage (:func:`prepare_geometry`) *before* it offers the frame
to the scheduler, so no frame is analysed on a geometry whose tables are missing. The stages'
table caches are locked (``ScanConverter.table``, ``Preprocessor.plan``), so building one from
the I/O thread while a worker analyses another pullback's frame is safe; a custom stage's
``prepare(geometry, dtype)`` must be as thread-safe.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from typing import Any

import numpy as np
import zmq

from engine.synthetic.phantom import SCENARIOS
from engine.synthetic.phantom.model import VesselModel
from engine.synthetic.phantom.render import DEFAULT_DOMAIN, render_frame
from streams.geometry import FrameGeometry
from streams.intensity import IntensityScale
from streams.pullback import Frame
from streams.wire.protocol import (
    DTYPE_CODES,
    DTYPES,
    FULL_SCALE,
    Limits,
    decode_payload,
    encode_frame,
    frame_from_header,
    unpack_header,
)

log = logging.getLogger(__name__)

WARM_PULLBACK_ID = "octguide-warm-up"  #: pullback id of warm-up frames (never published or recorded)
WARM_FRAME_INDEX = 1_000_000  #: frame index of warm-up frames: adjacent to no real frame
WARM_SCENARIO = "stented-malapposed"  #: phantom scenario of the realistic warm frame
WARM_SEED = 1  #: its vessel seed
#: Position of the warm cross-section along the pullback, mm: the lesion (calcium arc,
#: under-expanded stent struts, guidewire), where every measurement branch has something to do.
WARM_POSITION_MM = 20.0
WARM_Z_OFFSET_PX = 12  #: OCT Z Offset Correction of the warm frame, samples (the phantom's default)

#: Geometries warmed in ``start()``: the bundled phantom's (the README main job, 500 A-lines x
#: 1000 samples at 6.5 um in air, refractive index 1.34, and the phantom's stated intensity
#: scale, as a console of the class sends it: the same tables a live pullback of it uses) and a
#: small one (tests, previews).
WARM_GEOMETRIES = (
    FrameGeometry(n_alines=500, n_samples=1000, aline_spacing_mm=0.0065, refractive_index=1.34,
                  intensity_scale=DEFAULT_DOMAIN.intensity_scale("LOG")),
    FrameGeometry(n_alines=64, n_samples=64, aline_spacing_mm=0.01),
)
WIRE_DTYPES = tuple(DTYPES.values())  #: every pixel dtype the frame protocol carries


@functools.cache
def _warm_section() -> Any:
    """The phantom cross-section of the warm frame (built once per process: ~1 s)."""
    return VesselModel(SCENARIOS[WARM_SCENARIO], WARM_SEED).cross_section(WARM_POSITION_MM)


@functools.lru_cache(maxsize=8)
def phantom_pixels(geometry: FrameGeometry) -> np.ndarray:
    """The warm cross-section rendered on ``geometry``: ``(n_alines, n_samples)`` uint16 on the
    phantom's own imaging domain, read-only (cached per geometry and shared by every worker)."""
    rendered = render_frame(_warm_section(), geometry, WARM_Z_OFFSET_PX, 0,
                            np.random.default_rng(WARM_SEED))
    pixels = np.ascontiguousarray(rendered.pixels, dtype=np.uint16)
    pixels.flags.writeable = False
    return pixels


def _as_dtype(geometry: FrameGeometry, pixels: np.ndarray, dtype: np.dtype
              ) -> tuple[FrameGeometry, np.ndarray]:
    """uint16 phantom pixels as a console sending ``dtype`` would: the same dynamic range over
    that dtype's full scale (:data:`streams.wire.protocol.FULL_SCALE`)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint16:
        return geometry, pixels
    full = FULL_SCALE[DTYPE_CODES[dtype]]
    values = pixels.astype(np.float64) * (full / 65535.0)
    converted = (np.rint(values) if dtype.kind == "u" else values).astype(dtype)
    scale = geometry.intensity_scale
    if scale is not None and geometry.intensity == "LOG":
        scale = IntensityScale.log_range(scale.db_per_count * 65535.0, full, source=scale.source)
        geometry = replace(geometry, intensity_scale=scale)
    return geometry, converted


def wire_frame(geometry: FrameGeometry, dtype: np.dtype, index: int = WARM_FRAME_INDEX,
               pixels: np.ndarray | None = None, z_offset_px: int = 0) -> Frame:
    """A frame of ``geometry`` and ``dtype`` (``pixels``, all zero by default) as the I/O thread
    hands it to a worker: encoded, sent as a ZeroMQ frame and decoded (read-only pixels, the
    live types, the geometry as the header states it)."""
    if pixels is None:
        pixels = np.zeros((geometry.n_alines, geometry.n_samples), dtype)
    frame = Frame(WARM_PULLBACK_ID, index, 0.0, np.ascontiguousarray(pixels, dtype), geometry,
                  z_offset_px)
    header_bytes, payload = encode_frame(frame, frame_spacing_mm=0.1, frame_rate_hz=100.0)
    header = unpack_header(bytes(header_bytes))
    decoded = decode_payload(header, zmq.Frame(bytes(payload)), Limits())
    return frame_from_header(header, decoded, header.geometry(), 0.0)


def warm_frames(geometry: FrameGeometry) -> list[Frame]:
    """The warm frames of one geometry: the phantom cross-section in every wire dtype, then an
    all-zero uint16 frame (nothing to find)."""
    frames = []
    for dtype in WIRE_DTYPES:
        typed_geometry, pixels = _as_dtype(geometry, phantom_pixels(geometry), dtype)
        frames.append(wire_frame(typed_geometry, dtype, pixels=pixels, z_offset_px=WARM_Z_OFFSET_PX))
    frames.append(wire_frame(geometry, np.dtype(np.uint16)))
    return frames


def forget_warm_frames(stage: Any) -> None:
    """Clear what warm frames left in ``stage``'s cross-frame state: ``stage.reset()`` where the
    stage has one (the shipped stages do; a stage without cross-frame state needs none)."""
    reset = getattr(stage, "reset", None)
    if callable(reset):
        reset()


def prepare_geometry(stage: Any, geometry: FrameGeometry, dtype: np.dtype) -> bool:
    """Build what the stage keeps per geometry (scan-conversion table, preprocessing plan) for
    ``geometry`` frames of ``dtype``, without analysing a frame. Uses ``stage.prepare(geometry,
    dtype)`` where the stage has one, else the tables of the stages this repository ships.
    Idempotent (a cached table is looked up, not rebuilt). Returns whether anything was prepared."""
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


__all__ = ["WARM_GEOMETRIES", "WARM_PULLBACK_ID", "WIRE_DTYPES", "forget_warm_frames", "phantom_pixels",
           "prepare_geometry", "warm_frames", "wire_frame"]
