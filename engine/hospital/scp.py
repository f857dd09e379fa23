"""The Storage SCP of ``octguide listen``: consoles and archives push IVOCT pullbacks here.

* Association: only the IVOCT Image Storage SOP classes (For Presentation, For Processing) in
  Explicit or Implicit VR Little Endian (what :mod:`streams.files.dicom` reads) and Verification
  are accepted; other presentation contexts are refused at association (result 3, abstract
  syntax not supported). Calling AE titles outside the allow-list are refused (A-ASSOCIATE-RJ,
  reason "calling AE title not recognized"). Every refusal is audited.
* C-STORE: the received data set is written to disk (fsync, rename) and read back with octguide's
  IVOCT reader *before* the response: a success status means "on disk, readable, queued". A
  data set that is not an IVOCT instance gets 0xA900 (does not match SOP class), one that cannot
  be read 0xC000 (cannot understand), each with an Error Comment naming the reason, counted and
  audited; the file is removed and nothing else is affected.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from engine.hospital.audit import AuditLog
from engine.hospital.config import DicomConfig
from streams.errors import NotIVOCTError, OctguideError, PullbackFileError
from streams.files.dicom import SOP_NAMES, read_dicom

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_NOT_IVOCT = 0xA900  # Error: Data Set does not match SOP Class
STATUS_CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand
STATUS_OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (disk full, cannot write)
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _reason(exc: Exception) -> str:
    """The reader's reason without the temporary file's path (the sender never saw it)."""
    if isinstance(exc, PullbackFileError):
        return f"{exc.attribute}: {exc.reason}" if exc.attribute else exc.reason
    return str(exc)


class ListenError(OctguideError):
    """The Storage SCP cannot start (no calling AE allowed, port in use)."""


class StorageService:
    """Storage SCP lifecycle: :meth:`start` binds and serves in the background, :meth:`stop`
    closes. ``on_received(path, who)`` is called for each stored instance (it must not block:
    queue the work)."""

    def __init__(self, config: DicomConfig, folder: Path, audit: AuditLog,
                 on_received: Callable[[Path, str], None]):
        if not config.allowed_calling_aes and not config.allow_any_calling_ae:
            raise ListenError("no calling AE title is allowed to push: set [dicom] "
                              "allowed_calling_aes (octguide listen --allow AE)")
        self.config = config
        self.received = folder / "received"
        self.incoming = folder / "incoming"
        for path in (self.received, self.incoming):
            path.mkdir(parents=True, exist_ok=True)
        self.audit = audit
        self.on_received = on_received
        self._lock = threading.Lock()
        self.counts = {"received": 0, "duplicates": 0, "rejected_instances": 0,
                       "rejected_associations": 0}
        self._server: Any = None

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def start(self, host: str, port: int) -> tuple[str, int]:
        ae = AE(ae_title=self.config.ae_title)
        for sop_class in SOP_NAMES:
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if not self.config.allow_any_calling_ae:
            ae.require_calling_aet = list(self.config.allowed_calling_aes)
        ae.maximum_pdu_size = 0  # no limit: a pullback is one large instance
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_ACCEPTED, self._on_accepted)]
        try:
            self._server = ae.start_server((host, port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        return self._server.server_address[:2]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @staticmethod
    def _who(event: Any) -> str:
        requestor = event.assoc.requestor
        return f"{requestor.ae_title} ({requestor.address}:{requestor.port})"

    def _on_rejected(self, event: Any) -> None:
        self._count("rejected_associations")
        self.audit.record("reject", self._who(event), [], "association rejected",
                          "calling AE title not in the allow-list")

    def _on_accepted(self, event: Any) -> None:
        refused = [cx.abstract_syntax for cx in event.assoc.rejected_contexts]
        if refused:
            self.audit.record("reject", self._who(event), [], "presentation contexts refused",
                              "not IVOCT (abstract syntax not supported): " + " ".join(refused))

    def _on_store(self, event: Any) -> Dataset | int:
        who = self._who(event)
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        temp = self.incoming / f"{uuid.uuid4().hex}.dcm"
        try:
            data = event.encoded_dataset(include_meta=True)
            with open(temp, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as exc:
            temp.unlink(missing_ok=True)
            return self._refuse(who, sop_uid, STATUS_OUT_OF_RESOURCES, f"cannot be written: {exc}")
        try:
            pullback = read_dicom(temp)
            del pullback  # read to prove the instance is a readable IVOCT pullback
        except NotIVOCTError as exc:
            temp.unlink(missing_ok=True)
            return self._refuse(who, sop_uid, STATUS_NOT_IVOCT, _reason(exc))
        except (OctguideError, ValueError, OSError) as exc:
            temp.unlink(missing_ok=True)
            return self._refuse(who, sop_uid, STATUS_CANNOT_UNDERSTAND, _reason(exc))
        path = self.received / f"{sop_uid}.dcm"
        duplicate = path.exists()
        os.replace(temp, path)
        self._count("duplicates" if duplicate else "received")
        self.audit.record("receive", who, [sop_uid], "ok", "duplicate: already received"
                          if duplicate else f"{path.stat().st_size} bytes")
        if not duplicate:
            self.on_received(path, who)
        return STATUS_SUCCESS

    def _refuse(self, who: str, sop_uid: str, status: int, reason: str) -> Dataset:
        self._count("rejected_instances")
        reason = " ".join(str(reason).split())
        self.audit.record("reject", who, [sop_uid], f"C-STORE status 0x{status:04X}", reason)
        log.warning("refused %s from %s: %s", sop_uid, who, reason)
        response = Dataset()
        response.Status = status
        response.ErrorComment = reason[:64]  # LO: at most 64 characters
        return response
