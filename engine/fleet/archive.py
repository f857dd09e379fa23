"""An archive of pullback files: which files, their stable ids, and what is already analysed.

A source is a folder (searched recursively for DICOM IVOCT and ``.oct.h5`` files) or a list
file (one path per line, ``#`` comments). Each file gets a deterministic results id (its stem,
made safe for the wire protocol, plus 8 hex digits of its absolute path's sha256) so a re-run
finds its earlier results, and a fingerprint (size, mtime) so a replaced file is analysed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from streams.errors import OctguideError
from streams.wire.protocol import PULLBACK_ID_PATTERN

PULLBACK_SUFFIXES = (".dcm", ".dicom", ".h5")  #: files a folder contributes (.oct.h5 ends in .h5)


class ArchiveError(OctguideError):
    """A source that names no pullback files."""


@dataclass(frozen=True)
class ArchiveFile:
    """One pullback file of the archive.

    Attributes
    ----------
    path : str
        Absolute path.
    pullback_id : str
        Results id (``<stem>.<8 hex>``), the folder name under ``OUT/pullbacks``.
    size_bytes : int
        File size, bytes.
    mtime_ns : int
        Modification time, ns since the epoch.
    """

    path: str
    pullback_id: str
    size_bytes: int
    mtime_ns: int

    def fingerprint(self) -> dict:
        return {"path": self.path, "size_bytes": self.size_bytes, "mtime_ns": self.mtime_ns}


def results_id(path: Path) -> str:
    """The results id of a file: its stem (suffixes dropped, unsafe characters replaced) and
    8 hex digits of the sha256 of its absolute path.

    >>> results_id(Path("/archive/case 7.oct.h5"))[:7]
    'case_7.'
    """
    name = path.name
    for suffix in (".oct.h5", ".h5", ".dcm", ".dicom"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip("._-") or "pullback"
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    candidate = f"{safe[:54]}.{digest}"
    if not PULLBACK_ID_PATTERN.fullmatch(candidate):  # pragma: no cover (the rules above ensure it)
        raise ArchiveError(f"{path}: no valid results id ({candidate!r})")
    return candidate


def _entry(path: Path) -> ArchiveFile:
    stat = path.stat()
    return ArchiveFile(str(path.resolve()), results_id(path), int(stat.st_size), int(stat.st_mtime_ns))


def list_archive(source: str | os.PathLike) -> list[ArchiveFile]:
    """The pullback files ``source`` names, sorted by path (a folder, recursively, or a list file).

    Raises
    ------
    ArchiveError
        ``source`` does not exist, a listed file is missing, or nothing was found.
    """
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in PULLBACK_SUFFIXES)
    elif source.is_file():
        paths = []
        for number, line in enumerate(source.read_text().splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            path = Path(text) if Path(text).is_absolute() else source.parent / text
            if not path.is_file():
                raise ArchiveError(f"{source}:{number}: {text} is not a file")
            paths.append(path)
    else:
        raise ArchiveError(f"{source}: no such folder or list file")
    if not paths:
        raise ArchiveError(f"{source}: no pullback files (*.dcm, *.dicom, *.oct.h5, *.h5)")
    entries = [_entry(p) for p in paths]
    ids: dict[str, str] = {}
    for e in entries:
        if ids.setdefault(e.pullback_id, e.path) != e.path:
            raise ArchiveError(f"{e.path} is listed twice")
    return entries


def already_analysed(results_root: Path, entry: ArchiveFile, model_sha256: str, config_hash: str) -> bool:
    """True when ``results_root/pullbacks/<id>/pullback.json`` is a finished analysis of this
    very file (same fingerprint) with the same model sha256 and config hash."""
    try:
        done = json.loads((results_root / "pullbacks" / entry.pullback_id / "pullback.json").read_text())
    except (OSError, ValueError):
        return False
    return (done.get("config_hash") == config_hash
            and (done.get("model") or {}).get("sha256") == model_sha256
            and (done.get("reanalysis") or {}).get("source") == entry.fingerprint())
