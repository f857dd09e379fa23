"""The viewer's typed error."""

from __future__ import annotations

from streams.errors import OctguideError


class ViewerError(OctguideError):
    """The viewer could not start (port in use, results folder unreadable)."""


__all__ = ["ViewerError"]
