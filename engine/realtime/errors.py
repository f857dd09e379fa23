"""The engine's own error type (a stage, the case log, a socket or a worker failed)."""

from __future__ import annotations

from streams.errors import OctguideError


class EngineError(OctguideError):
    """The engine could not start (a stage, the case log or a socket failed), or a worker died."""


__all__ = ["EngineError"]
