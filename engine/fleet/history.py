"""The per-frame measurements a drift report compares, from any of the places results live:

- a ``reanalyse`` run (its ``measurements.parquet``, or that file itself): every feature,
  the pixel features included;
- the engine's case log (``caselog.sqlite``, or a results folder holding one; the format of
  :mod:`engine.realtime.caselog`, opened read-only, never written);
- results folders (a folder whose ``pullbacks/<id>/frames.jsonl`` exist, e.g. an engine's or a
  replay's ``--out``).

The case log and results folders keep the frame records only, not the samples, so there the
pixel features (``intensity_p50``, ``intensity_p99``, ``noise_floor``, ``z_offset_px``) are
null and the report calls them unavailable. A date range (UTC, on the pullback's opening time)
selects pullbacks from a case log or results folders.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow as pa

from engine.fleet.features import frame_row
from engine.fleet.tables import FRAME_SCHEMA, read_frames_table
from engine.realtime.caselog import SCHEMA_VERSION
from streams.errors import OctguideError

CASELOG_NAME = "caselog.sqlite"


class HistoryError(OctguideError):
    """A path that holds no measurements drift can read (the message says what was looked for)."""


def _in_range(opened_unix: float | None, since_unix: float | None, until_unix: float | None) -> bool:
    if since_unix is None and until_unix is None:
        return True
    if opened_unix is None:
        return False
    return (since_unix is None or opened_unix >= since_unix) and (until_unix is None or opened_unix < until_unix)


def caselog_rows(path: Path, since_unix: float | None = None, until_unix: float | None = None) -> list[dict]:
    """Frame rows (:data:`engine.fleet.features.FRAME_COLUMNS`) of the case log ``path``, for
    pullbacks opened in ``[since_unix, until_unix)`` (s since the epoch, either open-ended).

    Raises
    ------
    HistoryError
        Not an octguide case log, or of another schema version.
    """
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise HistoryError(f"{path}: cannot open the case log ({exc})") from None
    try:
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise HistoryError(f"{path}: case log schema {version and version[0]}, this reads {SCHEMA_VERSION}")
        clauses, args = [], []
        if since_unix is not None:
            clauses.append("p.opened_unix >= ?")
            args.append(since_unix)
        if until_unix is not None:
            clauses.append("p.opened_unix < ?")
            args.append(until_unix)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        cursor = db.execute(
            "SELECT f.pullback_id, f.record FROM frames f JOIN pullbacks p ON p.pullback_id = f.pullback_id "
            f"{where} ORDER BY p.opened_unix, f.pullback_id, f.frame", args)
        rows = []
        for pullback_id, text in cursor:
            record = json.loads(text)
            record.setdefault("pullback_id", pullback_id)
            if isinstance(record.get("frame"), int):
                rows.append(frame_row(record, {}, f"caselog:{pullback_id}"))
        return rows
    except (sqlite3.Error, ValueError) as exc:
        raise HistoryError(f"{path}: not an octguide case log ({exc})") from None
    finally:
        db.close()


def results_rows(root: Path, since_unix: float | None = None, until_unix: float | None = None) -> list[dict]:
    """Frame rows of every ``root/pullbacks/<id>/frames.jsonl`` whose ``pullback.json`` was
    opened in the range (a pullback.json without an opening time is left out of a range)."""
    rows = []
    for folder in sorted((root / "pullbacks").iterdir()):
        frames = folder / "frames.jsonl"
        if folder.name.startswith(".") or not frames.is_file():
            continue
        try:
            pullback = json.loads((folder / "pullback.json").read_text())
        except (OSError, ValueError):
            pullback = {}
        if not _in_range((pullback.get("timing") or {}).get("opened_unix"), since_unix, until_unix):
            continue
        for line in frames.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("frame"), int):
                record.setdefault("pullback_id", folder.name)
                rows.append(frame_row(record, {}, str(folder)))
    return rows


def frames_table(path: Path, since_unix: float | None = None, until_unix: float | None = None) -> pa.Table:
    """The measurements table of ``path`` (any of the module docstring's kinds).

    Raises
    ------
    HistoryError
        ``path`` is none of them, or a date range was given for a ``reanalyse`` run (its
        table carries no dates: select the files when running it).
    """
    path = Path(path)
    ranged = since_unix is not None or until_unix is not None
    if path.suffix == ".parquet" or (path / "measurements.parquet").is_file():
        if ranged:
            raise HistoryError(f"{path}: a reanalyse run has no dates; --since/--until select case-log "
                               "or results-folder pullbacks")
        return read_frames_table(path)
    caselog = path if path.is_file() else path / CASELOG_NAME
    if caselog.is_file():
        return pa.Table.from_pylist(caselog_rows(caselog, since_unix, until_unix), schema=FRAME_SCHEMA)
    if (path / "pullbacks").is_dir():
        return pa.Table.from_pylist(results_rows(path, since_unix, until_unix), schema=FRAME_SCHEMA)
    raise HistoryError(f"{path}: no measurements.parquet (reanalyse run), {CASELOG_NAME} (case log) "
                       "or pullbacks/*/frames.jsonl (results folders)")
