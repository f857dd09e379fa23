"""Typed errors for pullback files and frames.

Every error names what was wrong and where (file, attribute, frame) so the CLI can print it on
one line and the engine can count it by type on its status channel.
"""

from __future__ import annotations


class OctguideError(Exception):
    """Base of every error octguide raises on purpose."""


class PullbackFileError(OctguideError):
    """A pullback file could not be read or written.

    Parameters
    ----------
    path : str
        The file concerned.
    message : str
        What is wrong, in words a user can act on.
    attribute : str, optional
        The DICOM attribute (keyword and tag) or container field concerned.
    """

    def __init__(self, path: object, message: str, attribute: str | None = None):
        self.path = str(path)
        self.attribute = attribute
        self.reason = message
        where = f"{self.path}: {attribute}" if attribute else self.path
        super().__init__(f"{where}: {message}")


class TruncatedFileError(PullbackFileError):
    """The file ends before its declared content does."""


class NotIVOCTError(PullbackFileError):
    """The file is not an IVOCT pullback (wrong SOP class or modality, or not DICOM at all)."""


class MissingAttributeError(PullbackFileError):
    """A required attribute is absent or empty."""


class InconsistentDimensionsError(PullbackFileError):
    """Declared dimensions disagree with each other or with the pixel data."""


class UnsupportedTransferSyntaxError(PullbackFileError):
    """The pixel data is encoded in a transfer syntax octguide does not decode."""


class GeometryError(OctguideError, ValueError):
    """A frame geometry is outside what real IVOCT systems produce."""
