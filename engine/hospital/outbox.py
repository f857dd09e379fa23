"""The persistent outbox: DICOM instances waiting for a PACS, on disk before any send.

Why a file copy plus an SQLite row (WAL): :meth:`Outbox.enqueue` copies the instance into
``FOLDER/files/`` (fsync, rename) and commits its row before returning, so a kill at any instant
leaves either nothing (the caller enqueues again) or a complete entry the next sender sends. The
row's key is (SOP Instance UID, destination): enqueueing the same instance twice keeps one entry,
and an entry is marked ``sent`` only after the PACS answered a success status. A sender killed
between the PACS's answer and that commit resends the instance after restart under the same SOP
Instance UID; DICOM makes that the same instance, which a PACS stores once (Orthanc: ignored as a
duplicate), so it arrives exactly once.

A destination is a DICOM peer (``AE@HOST:PORT``: C-STORE, one association per pass) or a
DICOMweb service root (``http(s)://...``: STOW-RS, one request per instance,
:mod:`engine.hospital.stow`); both go through the same rows, back-off and audit.

Each attempt (success, failure status, no association) is a ``send`` or ``failure`` row in the
audit log. Failed attempts are retried with exponential back-off (``retry_initial_s`` doubling up
to ``retry_max_s``); after ``max_attempts`` the entry is ``failed`` and stays on disk, reported.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from engine.hospital.audit import AuditLog
from engine.hospital.config import (
    AnyDestination,
    Destination,
    DicomConfig,
    WebDestination,
    parse_destination,
)
from engine.hospital.stow import stow_instance, web_client
from streams.errors import OctguideError

log = logging.getLogger(__name__)

#: C-STORE statuses that mean "stored" (success and the warnings of PS3.4 B.2.3)
STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    sop_instance_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_unix REAL NOT NULL,
    last_result TEXT NOT NULL DEFAULT '',
    enqueued_unix REAL NOT NULL,
    sent_unix REAL,
    PRIMARY KEY (sop_instance_uid, destination)
) WITHOUT ROWID;
"""


def _unreachable(destination: AnyDestination, timeout_s: float = 5.0) -> str | None:
    """Why the destination's TCP port does not answer, or None. Checked before associating
    because pynetdicom leaves its socket open when the connection is refused."""
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class OutboxError(OctguideError):
    """A file that cannot be queued (not DICOM, no SOP Instance UID, unreadable)."""


@dataclass(frozen=True)
class Entry:
    sop_instance_uid: str
    destination: str
    sop_class_uid: str
    file: str
    state: str
    attempts: int
    next_attempt_unix: float
    last_result: str


class Outbox:
    """The outbox in ``folder`` (``outbox.sqlite`` and ``files/``).

    Parameters
    ----------
    folder : path
        Created if absent.
    config : DicomConfig
        Calling AE title and the retry policy.
    audit : AuditLog, optional
        Where each attempt is recorded (default: ``folder/outbox.sqlite``'s own audit table).
    """

    def __init__(self, folder: str | os.PathLike, config: DicomConfig | None = None,
                 audit: AuditLog | None = None):
        self.folder = Path(folder)
        self.files = self.folder / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.config = config or DicomConfig()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / "outbox.sqlite", timeout=30.0,
                                   check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a queued report must survive power loss too
        self._db.executescript(_SCHEMA)
        self._own_audit = audit is None
        self.audit = audit or AuditLog(self.folder / "outbox.sqlite")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._own_audit:
            self.audit.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queueing ---------------------------------------------------------------------------
    def enqueue(self, path: str | os.PathLike, destination: AnyDestination | str) -> bool:
        """Queue one DICOM file for ``destination`` (``AE@HOST:PORT`` or a DICOMweb URL); False
        when that instance is already queued or sent there (nothing is sent twice)."""
        destination = parse_destination(destination)
        path = Path(path)
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            sop_uid, sop_class = str(header.SOPInstanceUID), str(header.SOPClassUID)
        except (OSError, InvalidDicomError, AttributeError, ValueError) as exc:
            raise OutboxError(f"{path}: cannot be queued: not a DICOM instance ({exc})") from exc
        stored = self.files / f"{sop_uid}.dcm"
        if not stored.exists():
            temp = self.files / f".{sop_uid}.{uuid.uuid4().hex}.tmp"
            try:
                shutil.copyfile(path, temp)
                with open(temp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(temp, stored)
            finally:
                temp.unlink(missing_ok=True)
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO outbox (sop_instance_uid, destination, sop_class_uid, file, "
                "state, next_attempt_unix, enqueued_unix) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (sop_uid, str(destination), sop_class, str(stored), now, now))
        return cursor.rowcount == 1

    def entries(self, state: str | None = None) -> list[Entry]:
        sql = ("SELECT sop_instance_uid, destination, sop_class_uid, file, state, attempts, "
               "next_attempt_unix, last_result FROM outbox")
        args: tuple = ()
        if state:
            sql, args = sql + " WHERE state = ?", (state,)
        with self._lock:
            return [Entry(*row) for row in self._db.execute(sql + " ORDER BY enqueued_unix", args)]

    def pending(self) -> list[Entry]:
        """Entries not yet sent and not given up (``pending``, or ``sending`` when a sender died
        mid-attempt)."""
        return [e for e in self.entries() if e.state in ("pending", "sending")]

    # --- sending ----------------------------------------------------------------------------
    def _backoff_s(self, attempts: int) -> float:
        return min(self.config.retry_max_s, self.config.retry_initial_s * 2.0 ** max(attempts - 1, 0))

    def _finish(self, entry: Entry, stored: bool, result: str, permanent: bool = False,
                method: str = "C-STORE") -> None:
        attempts = entry.attempts + 1
        now = time.time()
        if stored:
            state, next_at = "sent", now
        elif permanent or attempts >= self.config.max_attempts:
            state, next_at = "failed", now
        else:
            state, next_at = "pending", now + self._backoff_s(attempts)
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_attempt_unix = ?, last_result = ?, "
                "sent_unix = CASE WHEN ? = 'sent' THEN ? ELSE sent_unix END "
                "WHERE sop_instance_uid = ? AND destination = ?",
                (state, attempts, next_at, result, state, now, entry.sop_instance_uid,
                 entry.destination))
        self.audit.record("send" if stored else "failure", entry.destination,
                          [entry.sop_instance_uid], "ok" if stored else result,
                          f"{method} attempt {attempts}" + (f"; {state}" if state == "failed" else
                                                           "" if stored else
                                                           f"; retry in {next_at - now:.1f} s"))

    def _mark_sending(self, entries: list[Entry]) -> None:
        with self._lock:
            self._db.executemany("UPDATE outbox SET state = 'sending' WHERE sop_instance_uid = ? "
                                 "AND destination = ?",
                                 [(e.sop_instance_uid, e.destination) for e in entries])

    def send_due(self, now: float | None = None,
                 before_each: Callable[[Entry], None] | None = None) -> dict[str, int]:
        """One pass: every due entry, one association per destination. Returns counts
        ``{"sent": n, "failed_attempts": n}``."""
        now = time.time() if now is None else now
        due: dict[str, list[Entry]] = {}
        for entry in self.pending():
            if entry.next_attempt_unix <= now:
                due.setdefault(entry.destination, []).append(entry)
        counts = {"sent": 0, "failed_attempts": 0}
        for destination, entries in due.items():
            target = parse_destination(destination)
            if isinstance(target, WebDestination):
                sent = self._stow_to(target, entries, before_each)
            else:
                sent = self._send_to(target, entries, before_each)
            counts["sent"] += sent
            counts["failed_attempts"] += len(entries) - sent
        return counts

    def _send_to(self, destination: Destination, entries: list[Entry],
                 before_each: Callable[[Entry], None] | None) -> int:
        unreachable = _unreachable(destination)
        if unreachable:
            for entry in entries:
                self._finish(entry, False, f"no association (PACS unreachable: {unreachable}) "
                             f"with {destination}")
            return 0
        ae = AE(ae_title=self.config.ae_title)
        ae.acse_timeout = ae.network_timeout = 10.0
        ae.dimse_timeout = 120.0
        for sop_class in sorted({e.sop_class_uid for e in entries})[:128]:
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        if not assoc.is_established:
            reason = "association rejected" if assoc.is_rejected else "no association (PACS unreachable)"
            for entry in entries:
                self._finish(entry, False, f"{reason} by {destination}")
            return 0
        sent = 0
        try:
            accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
            for entry in entries:
                if not assoc.is_established:
                    self._finish(entry, False, "association lost")
                    continue
                if entry.sop_class_uid not in accepted:
                    self._finish(entry, False, f"SOP class {entry.sop_class_uid} not accepted by "
                                 f"{destination}", permanent=True)
                    continue
                if before_each is not None:
                    before_each(entry)
                self._mark_sending([entry])
                try:
                    status = assoc.send_c_store(Path(entry.file))
                except (OSError, ValueError, RuntimeError) as exc:
                    self._finish(entry, False, f"C-STORE could not be sent: {exc}")
                    continue
                code = int(status.Status) if "Status" in status else None
                if code in STORED_STATUSES:
                    self._finish(entry, True, f"0x{code:04X}")
                    sent += 1
                else:
                    self._finish(entry, False, "no C-STORE response" if code is None
                                 else f"C-STORE status 0x{code:04X}")
        finally:
            if assoc.is_established:
                assoc.release()
        return sent

    def _stow_to(self, destination: WebDestination, entries: list[Entry],
                 before_each: Callable[[Entry], None] | None) -> int:
        unreachable = _unreachable(destination)
        if unreachable:
            for entry in entries:
                self._finish(entry, False, f"no connection (PACS unreachable: {unreachable}) "
                             f"with {destination}", method="STOW-RS")
            return 0
        client = web_client(destination)
        sent = 0
        for entry in entries:
            if before_each is not None:
                before_each(entry)
            self._mark_sending([entry])
            verdict = stow_instance(client, Path(entry.file), entry.sop_instance_uid)
            self._finish(entry, verdict.stored, verdict.result, permanent=verdict.permanent,
                         method="STOW-RS")
            sent += verdict.stored
        return sent

    def drain(self, timeout_s: float, before_each: Callable[[Entry], None] | None = None) -> bool:
        """Send until nothing is pending (True) or ``timeout_s`` passed (False), sleeping until
        the next entry is due between passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.send_due(before_each=before_each)
            pending = self.pending()
            if not pending:
                return True
            wait = min(e.next_attempt_unix for e in pending) - time.time()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(max(0.05, min(wait, remaining)))
