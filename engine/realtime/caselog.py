"""The embedded case log: one SQLite database (WAL) recording every pullback and frame result.

Why SQLite in WAL mode: a commit appends to the write-ahead log, so a process killed at any
instant leaves every committed transaction readable (``synchronous=NORMAL`` loses nothing on a
process crash; only an OS crash or power loss can lose the last commits, ``synchronous=FULL``
closes that too at ~1 fsync per commit). Readers (``octguide`` tools, a second engine looking at
history) never block the writer.

The engine acknowledges a frame result only once its row is committed here: "acknowledged"
means "survives a kill of the engine". One thread owns the connection (SQLite connections are
not shared between threads); see :class:`engine.realtime.writer.CaseLogWriter`.

Tables
------
``pullbacks``: one row per pullback: id, state (``open``, ``complete``, ``incomplete``,
``interrupted``), opened/closed UNIX times, geometry (JSON), frame rate, expected frames,
model, engine version, config hash, counts (JSON), guidance summary (JSON), results folder,
reason. ``frames``: one row per frame fate: pullback id, frame index, status, the full
``frames.jsonl`` record (JSON), commit time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.realtime.encoding import encode

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pullbacks (
    pullback_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    opened_unix REAL NOT NULL,
    closed_unix REAL,
    geometry TEXT NOT NULL,
    frame_rate_hz REAL NOT NULL,
    n_frames_expected INTEGER,
    model TEXT NOT NULL,
    engine_version TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    counts TEXT,
    guidance_summary TEXT,
    results_dir TEXT,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS frames (
    pullback_id TEXT NOT NULL,
    frame INTEGER NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    committed_unix REAL NOT NULL,
    PRIMARY KEY (pullback_id, frame)
) WITHOUT ROWID;
"""


class CaseLog:
    """The case log (module docstring). Use from one thread: :meth:`open` there.

    Parameters
    ----------
    path : str or Path
        Database file (created with its folder if absent).
    synchronous : str
        SQLite ``synchronous`` pragma: "NORMAL" (survives process kills) or "FULL" (also power
        loss).
    """

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous={synchronous!r} is not NORMAL or FULL")
        self.path = Path(path)
        self.synchronous = synchronous
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open (creating the schema), switch to WAL."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("CaseLog.open() has not been called")
        return self._db

    # -- writing ---------------------------------------------------------------------------------
    def begin_pullback(self, pullback_id: str, *, geometry: dict, frame_rate_hz: float,
                       n_frames_expected: int | None, model: dict, engine_version: str,
                       config_hash: str, opened_unix: float | None = None) -> None:
        """Record a newly opened pullback (state ``open``)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO pullbacks (pullback_id, state, opened_unix, geometry, frame_rate_hz, "
                "n_frames_expected, model, engine_version, config_hash) VALUES (?,?,?,?,?,?,?,?,?)",
                (pullback_id, "open", opened_unix or time.time(), _json(geometry), frame_rate_hz,
                 n_frames_expected, _json(model), engine_version, config_hash),
            )

    def add_frames(self, pullback_id: str, records: Iterable[dict]) -> int:
        """Commit frame records (one transaction); returns how many. A record for a frame already
        present replaces it (a frame's fate is final once recorded: the engine records each
        frame once)."""
        now = time.time()
        rows = [(pullback_id, int(r["frame"]), str(r.get("status")), _json(r), now) for r in records]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO frames VALUES (?,?,?,?,?)", rows)
        return len(rows)

    def finish_pullback(self, pullback_id: str, *, state: str, counts: dict,
                        guidance_summary: dict | None, results_dir: str | None,
                        reason: str | None = None) -> None:
        """Close a pullback: final state, counts, guidance summary and where its results are."""
        with self._transaction() as db:
            db.execute(
                "UPDATE pullbacks SET state=?, closed_unix=?, counts=?, guidance_summary=?, "
                "results_dir=?, reason=? WHERE pullback_id=?",
                (state, time.time(), _json(counts), _json(guidance_summary), results_dir, reason,
                 pullback_id),
            )

    def interrupt_open(self, reason: str) -> list[str]:
        """Mark pullbacks left ``open`` by a previous run as ``interrupted``; their ids."""
        with self._transaction() as db:
            ids = [row[0] for row in db.execute("SELECT pullback_id FROM pullbacks WHERE state='open'")]
            db.execute("UPDATE pullbacks SET state='interrupted', closed_unix=?, reason=? "
                       "WHERE state='open'", (time.time(), reason))
        return ids

    def _transaction(self):
        return _Transaction(self._conn())

    # -- reading ---------------------------------------------------------------------------------
    def pullback(self, pullback_id: str) -> dict | None:
        """The pullback row as a dict (JSON columns parsed), or None."""
        db = self._conn()
        cursor = db.execute("SELECT * FROM pullbacks WHERE pullback_id=?", (pullback_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        out = dict(zip([c[0] for c in cursor.description], row))
        for key in ("geometry", "model", "counts", "guidance_summary"):
            out[key] = json.loads(out[key]) if out[key] is not None else None
        return out

    def frame_records(self, pullback_id: str) -> list[dict]:
        """Every recorded frame of a pullback, in frame order."""
        rows = self._conn().execute(
            "SELECT record FROM frames WHERE pullback_id=? ORDER BY frame", (pullback_id,))
        return [json.loads(r[0]) for r in rows]

    def known_ids(self) -> set[str]:
        """Every pullback id ever opened on this case log (the source of truth for known ids)."""
        return {row[0] for row in self._conn().execute("SELECT pullback_id FROM pullbacks")}

    def known(self, pullback_id: str) -> bool:
        """Whether the pullback was ever opened on this case log."""
        return self._conn().execute(
            "SELECT 1 FROM pullbacks WHERE pullback_id=?", (pullback_id,)).fetchone() is not None


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _json(value: Any) -> str | None:
    """Compact JSON (NaN as null, NumPy values as plain ones), or None."""
    return None if value is None else encode(value).decode("utf-8")
