"""The ``[dicom]`` settings octguide's hospital side reads (by attribute, from
``Config.dicom`` once the engine's config has that section; these defaults otherwise)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, fields
from typing import Any

from streams.errors import OctguideError

AE_TITLE_PATTERN = re.compile(r"[ -\[\]-~]{1,16}")  # 16 chars of the default repertoire, no backslash
_DESTINATION = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})")
_WEB_SCHEMES = ("http://", "https://")


class DestinationError(OctguideError):
    """A destination that is neither ``AE@HOST:PORT`` nor a DICOMweb ``http(s)://`` URL."""


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: called AE title, host, TCP port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``AE@HOST:PORT``.

        >>> Destination.parse("ORTHANC@127.0.0.1:4242")
        Destination(ae_title='ORTHANC', host='127.0.0.1', port=4242)
        """
        match = _DESTINATION.fullmatch(str(text).strip())
        if not match or not 1 <= int(match["port"]) <= 65535 or not AE_TITLE_PATTERN.fullmatch(match["ae"]):
            raise DestinationError(f"destination {text!r} is not AE@HOST:PORT (AE title at most 16 "
                                   "characters, port 1..65535)")
        return cls(match["ae"], match["host"], int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class WebDestination:
    """A DICOMweb origin server: its service root (``http(s)://HOST[:PORT]/PATH``, the URL the
    ``/studies`` resources hang off, e.g. Orthanc's ``http://127.0.0.1:8042/dicom-web``); reports
    go to it by STOW-RS."""

    url: str

    @classmethod
    def parse(cls, text: str) -> WebDestination:
        """A DICOMweb service root; a trailing ``/`` is dropped (one spelling, one outbox key).

        >>> WebDestination.parse("http://127.0.0.1:8042/dicom-web/")
        WebDestination(url='http://127.0.0.1:8042/dicom-web')
        >>> WebDestination.parse("http://127.0.0.1:8042/dicom-web/").port
        8042
        """
        text = str(text).strip()
        parts = urllib.parse.urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (parts.scheme not in ("http", "https") or not parts.hostname or port == -1
                or parts.query or parts.fragment or any(c.isspace() for c in text)):
            raise DestinationError(f"destination {text!r} is not a DICOMweb URL "
                                   "http(s)://HOST[:PORT]/PATH (no query, no fragment)")
        return cls(text.rstrip("/"))

    @property
    def host(self) -> str:
        return str(urllib.parse.urlsplit(self.url).hostname)

    @property
    def port(self) -> int:
        parts = urllib.parse.urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def __str__(self) -> str:
        return self.url


AnyDestination = Destination | WebDestination


def parse_destination(text: str | AnyDestination) -> AnyDestination:
    """``AE@HOST:PORT`` (C-STORE) or a DICOMweb URL ``http(s)://...`` (STOW-RS).

    >>> parse_destination("ORTHANC@127.0.0.1:4242")
    Destination(ae_title='ORTHANC', host='127.0.0.1', port=4242)
    >>> parse_destination("http://127.0.0.1:8042/dicom-web")
    WebDestination(url='http://127.0.0.1:8042/dicom-web')
    """
    if isinstance(text, (Destination, WebDestination)):
        return text
    if str(text).strip().lower().startswith(_WEB_SCHEMES):
        return WebDestination.parse(text)
    return Destination.parse(text)


@dataclass(frozen=True)
class DicomConfig:
    """``[dicom]``: what the engine writes and where it sends it.

    Attributes
    ----------
    write_sr : bool
        Write the SR (and key images where the pixels are at hand) for every completed pullback.
    destinations : tuple of str
        Where every report goes, through the outbox: ``AE@HOST:PORT`` (C-STORE) or a DICOMweb
        service root ``http(s)://HOST:PORT/PATH`` (STOW-RS).
    ae_title : str
        octguide's own AE title (calling AE when sending, called AE when listening).
    allowed_calling_aes : tuple of str
        Calling AE titles allowed to push pullbacks to ``octguide listen``; empty allows none
        unless ``allow_any_calling_ae``.
    allow_any_calling_ae : bool
        Accept any calling AE title (testing only).
    retry_initial_s, retry_max_s : float
        Outbox back-off: first retry delay and its cap, seconds (doubling in between).
    max_attempts : int
        Attempts before an outbox entry is marked failed (kept on disk, reported).
    """

    write_sr: bool = False
    destinations: tuple[str, ...] = ()
    ae_title: str = "OCTGUIDE"
    allowed_calling_aes: tuple[str, ...] = ()
    allow_any_calling_ae: bool = False
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    max_attempts: int = 1000

    def __post_init__(self) -> None:
        if not AE_TITLE_PATTERN.fullmatch(self.ae_title):
            raise DestinationError(f"ae_title {self.ae_title!r} is not a DICOM AE title")
        for destination in self.destinations:
            parse_destination(destination)
        if not (0 < self.retry_initial_s <= self.retry_max_s):
            raise DestinationError("retry_initial_s must be positive and at most retry_max_s")
        if self.max_attempts < 1:
            raise DestinationError("max_attempts must be at least 1")

    def parsed_destinations(self) -> list[AnyDestination]:
        return [parse_destination(d) for d in self.destinations]


def dicom_config(cfg: Any) -> DicomConfig:
    """The ``[dicom]`` section of an engine config, read by attribute: a
    :class:`DicomConfig` itself, ``cfg.dicom`` when the engine config has that section, the
    defaults otherwise (keys the engine's section lacks keep their defaults here)."""
    if isinstance(cfg, DicomConfig):
        return cfg
    section = getattr(cfg, "dicom", None)
    if section is None:
        return DicomConfig()
    values = {f.name: getattr(section, f.name) for f in fields(DicomConfig) if hasattr(section, f.name)}
    if "destinations" in values:
        values["destinations"] = tuple(values["destinations"])
    if "allowed_calling_aes" in values:
        values["allowed_calling_aes"] = tuple(values["allowed_calling_aes"])
    return DicomConfig(**values)
