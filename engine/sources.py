"""Where pullbacks come from, chosen in the entry point: a file (DICOM IVOCT, .oct.h5), a study
in a PACS (``pacs://AE@HOST:PORT/STUDY_UID`` by C-FIND/C-GET, or a WADO-RS URL
``http(s)://ROOT/studies/STUDY_UID``: :mod:`engine.hospital.retrieve`, the ``[hospital]`` extra),
or a synthetic scenario rendered on the fly (``phantom:SCENARIO[:SEED]``, or
``foreign:SCENARIO[:SEED]`` from the validation-only renderer)."""

from __future__ import annotations

import uuid

from engine.progress import Progress
from engine.synthetic.phantom import SCENARIOS, generate_pullback
from streams.errors import GeometryError, OctguideError
from streams.files.io import read_pullback
from streams.pullback import Pullback
from streams.wire.protocol import PULLBACK_ID_PATTERN


class SourceError(OctguideError):
    """A pullback source that names nothing octguide can open."""


def phantom(scenario: str, seed: int, frames: int | None, alines: int, samples: int) -> Pullback:
    """A phantom pullback at 180 frames/s (the OPTIS/Ultreon rate, DOMAIN.md section 1),
    rendered with a progress bar."""
    progress = Progress("rendering phantom")
    pullback = generate_pullback(scenario, seed=seed, n_frames=frames, n_alines=alines,
                                 n_samples=samples, frame_rate_hz=180.0, progress=progress.update)
    progress.close()
    return pullback


def open_pullback(spec: str, frames: int | None = None, alines: int = 500, samples: int = 1000) -> Pullback:
    """The pullback a ``PULLBACK`` argument names."""
    if spec.startswith("phantom:"):
        name, _, seed = spec[len("phantom:"):].partition(":")
        if name not in SCENARIOS:
            raise SourceError(f"unknown phantom scenario {name!r}; choose from {sorted(SCENARIOS)}")
        return phantom(name, int(seed or 0), frames, alines, samples)
    if spec.startswith(("pacs://", "http://", "https://")):
        # a study in a PACS: fetched into a temporary folder, then a file replay
        from engine.hospital.retrieve import retrieve_pullback  # the [hospital] extra

        return retrieve_pullback(spec)
    if spec.startswith("foreign:"):  # the validation-only renderer (its own geometries)
        from engine.synthetic.foreign import from_spec

        try:
            return from_spec(spec, n_frames=frames or 60)
        except GeometryError as exc:
            raise SourceError(str(exc)) from None
    return read_pullback(spec)


def wire_id(pullback_id: str) -> str:
    """A unique protocol pullback id derived from a source id (sending the same file twice makes
    two pullbacks; the engine rejects a finished id).

    >>> import re; bool(re.fullmatch(r"phantom-calcified-1\\.[0-9a-f]{8}", wire_id("phantom-calcified-1")))
    True
    """
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in pullback_id).lstrip("._-")
    candidate = f"{safe[:48] or 'pullback'}.{uuid.uuid4().hex[:8]}"
    assert PULLBACK_ID_PATTERN.fullmatch(candidate)
    return candidate
