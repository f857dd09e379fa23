"""The hospital audit trail: every receive, analysis, send and failure is one row of the
``hospital_audit`` table (who, what, when, result), in an SQLite file (WAL) that may be the
engine's case log (``caselog.sqlite``): the table is octguide's hospital side's own.

Columns: ``id``, ``time_unix`` (UNIX seconds), ``event`` (``receive``, ``reject``,
``analysis``, ``send``, ``failure``), ``who`` (calling AE title and peer address, or the
destination for a send), ``what`` (JSON list of SOP Instance UIDs), ``result`` (``ok`` or the
DICOM status / failure in one line), ``detail`` (free text: the pullback id, attempt number, ...).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

EVENTS = ("receive", "reject", "analysis", "send", "failure")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hospital_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_unix REAL NOT NULL,
    event TEXT NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hospital_audit_time ON hospital_audit (time_unix);
"""
COLUMNS = ("id", "time_unix", "event", "who", "what", "result", "detail")


class AuditLog:
    """Append-only audit rows; each :meth:`record` is committed before it returns. Safe to use
    from several threads (one connection, serialised by a lock) and several processes (WAL)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, event: str, who: str, what: Iterable[str], result: str, detail: str = "") -> None:
        if event not in EVENTS:
            raise ValueError(f"audit event {event!r} is not one of {EVENTS}")
        row = (time.time(), event, str(who), json.dumps(sorted(str(u) for u in what)),
               " ".join(str(result).split()), str(detail))
        with self._lock:
            self._db.execute("INSERT INTO hospital_audit (time_unix, event, who, what, result, detail) "
                             "VALUES (?, ?, ?, ?, ?, ?)", row)

    def rows(self, event: str | None = None, limit: int | None = None) -> list[dict]:
        """Rows oldest first (``what`` decoded to a list)."""
        sql = "SELECT id, time_unix, event, who, what, result, detail FROM hospital_audit"
        args: tuple = ()
        if event:
            sql, args = sql + " WHERE event = ?", (event,)
        sql += " ORDER BY id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            found = self._db.execute(sql, args).fetchall()
        return [dict(zip(COLUMNS, (*r[:4], json.loads(r[4]), *r[5:]))) for r in found]


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "what": " ".join(row["what"])})
    return out.getvalue()


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2) + "\n"
