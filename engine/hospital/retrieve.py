"""A study's IVOCT instances fetched from a PACS into a folder, for ``octguide replay pacs://...``.

Two ways in, one result (the IVOCT files, SR and key images of the study left behind):

* ``pacs://AE@HOST:PORT/STUDY_UID[/SERIES_UID[/SOP_INSTANCE_UID]]``: DIMSE with pynetdicom,
  C-FIND (Study Root) at SERIES level for the study's ``IVOCT`` series, at IMAGE level for their
  instances, then C-GET of each IVOCT instance over the same kind of association (the PACS
  stores it back to us on it: no C-MOVE destination to configure, no port of ours to open).
  Calling AE title ``OCTGUIDE`` unless ``calling_ae`` says otherwise; the PACS must know it.
* ``http(s)://ROOT/studies/STUDY_UID[/series/SERIES_UID[/instances/SOP_INSTANCE_UID]]``:
  QIDO-RS for the study's instances and their SOP classes, then WADO-RS of each IVOCT one
  (dicomweb-client), ``ROOT`` being the DICOMweb service root (Orthanc: ``.../dicom-web``).

Every failure is a :class:`RetrieveError` in one line: unreachable, refused, nothing IVOCT in
the study, a sub-operation that failed.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from engine.hospital.config import Destination, DestinationError, WebDestination
from streams.errors import OctguideError
from streams.files.dicom import SOP_NAMES
from streams.files.io import read_pullback
from streams.pullback import Pullback

_UID = r"[0-9][0-9.]{0,63}"
_PACS = re.compile(rf"pacs://(?P<peer>[^/]+)/(?P<study>{_UID})(?:/(?P<series>{_UID}))?"
                   rf"(?:/(?P<sop>{_UID}))?/?")
_WADO = re.compile(rf"(?P<root>https?://.+?)/studies/(?P<study>{_UID})"
                   rf"(?:/series/(?P<series>{_UID}))?(?:/instances/(?P<sop>{_UID}))?/?")
IVOCT_MODALITY = "IVOCT"
_SUCCESS, _WARNING = 0x0000, 0xB000


class RetrieveError(OctguideError):
    """The PACS did not give the study's IVOCT instance(s) (one line: why)."""


@dataclass(frozen=True)
class PacsLocation:
    """Where the instances are: the PACS and the study (series and instance optional)."""

    peer: Destination | WebDestination
    study_uid: str
    series_uid: str | None = None
    sop_instance_uid: str | None = None


def is_pacs_spec(spec: str) -> bool:
    """Whether a ``PULLBACK`` argument names a study in a PACS (``pacs://`` or a WADO-RS URL)."""
    return spec.startswith("pacs://") or bool(re.match(r"https?://.+/studies/", spec))


def parse_location(spec: str) -> PacsLocation:
    """The PACS and the study a ``pacs://`` or WADO-RS spec names.

    >>> parse_location("pacs://ORTHANC@127.0.0.1:4242/1.2.3").peer
    Destination(ae_title='ORTHANC', host='127.0.0.1', port=4242)
    >>> parse_location("http://127.0.0.1:8042/dicom-web/studies/1.2.3/series/1.2.4").series_uid
    '1.2.4'
    """
    try:
        if (match := _PACS.fullmatch(spec)) is not None:
            return PacsLocation(Destination.parse(match["peer"]), match["study"], match["series"],
                                match["sop"])
        if (match := _WADO.fullmatch(spec)) is not None:
            return PacsLocation(WebDestination.parse(match["root"]), match["study"],
                                match["series"], match["sop"])
    except DestinationError as exc:
        raise RetrieveError(f"{spec}: {exc}") from None
    raise RetrieveError(f"{spec!r} is not pacs://AE@HOST:PORT/STUDY_UID[/SERIES_UID[/SOP_UID]] "
                        "nor a WADO-RS URL http(s)://ROOT/studies/STUDY_UID[/series/...]")


def _reachable(peer: Destination | WebDestination) -> None:
    try:  # pynetdicom leaves its socket open when the connection is refused: check first
        socket.create_connection((peer.host, peer.port), timeout=5.0).close()
    except OSError as exc:
        raise RetrieveError(f"PACS {peer} unreachable: {exc.strerror or type(exc).__name__}") from None


def retrieve(spec: str, folder: str | os.PathLike, calling_ae: str = "OCTGUIDE",
             timeout_s: float = 300.0) -> list[Path]:
    """Fetch the IVOCT instances ``spec`` names into ``folder`` (``<SOP Instance UID>.dcm``).

    Returns
    -------
    list of Path
        The files written, sorted by SOP Instance UID; never empty.
    """
    location = parse_location(spec)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _reachable(location.peer)
    if isinstance(location.peer, WebDestination):
        paths = _wado(location, out, timeout_s)
    else:
        paths = _dimse(location, out, calling_ae, timeout_s)
    if not paths:
        raise RetrieveError(f"{spec}: no IVOCT instance in that study on {location.peer}")
    return sorted(paths)


# --- DIMSE: C-FIND then C-GET ----------------------------------------------------------------
def _query(level: str, location: PacsLocation, series_uid: str | None = None) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = level
    query.StudyInstanceUID = location.study_uid
    query.SeriesInstanceUID = series_uid or location.series_uid or ""
    if level == "SERIES":
        query.Modality = ""
    else:
        query.SOPInstanceUID = location.sop_instance_uid or ""
        query.SOPClassUID = ""
    return query


def _find(assoc, query: Dataset) -> list[Dataset]:
    matches = []
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        code = int(status.Status) if status and "Status" in status else None
        if code is None:
            raise RetrieveError("the PACS did not answer the C-FIND (association lost or timed out)")
        if code in (0xFF00, 0xFF01) and identifier is not None:
            matches.append(identifier)
        elif code not in (_SUCCESS, 0xFF00, 0xFF01):
            raise RetrieveError(f"C-FIND failed with status 0x{code:04X}")
    return matches


def _dimse(location: PacsLocation, out: Path, calling_ae: str, timeout_s: float) -> list[Path]:
    peer = location.peer
    written: list[Path] = []
    failures: list[str] = []
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if not re.fullmatch(_UID, uid):
            return 0xC000
        target = out / f"{uid}.dcm"
        temp = out / f".{uid}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temp, "wb") as stream:
                stream.write(event.encoded_dataset())
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            with lock:
                failures.append(f"{uid}: {exc.strerror or exc}")
            return 0xA700
        with lock:
            written.append(target)
        return _SUCCESS

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = 30.0
    ae.dimse_timeout = timeout_s
    ae.maximum_pdu_size = 0
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in SOP_NAMES:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    roles = [build_role(sop_class, scp_role=True) for sop_class in SOP_NAMES]
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise RetrieveError(f"PACS {peer} refused the association (is {calling_ae} known to it?)"
                            if assoc.is_rejected else f"no association with PACS {peer}")
    try:
        series = [s for s in _find(assoc, _query("SERIES", location))
                  if str(s.get("Modality", "")).upper() == IVOCT_MODALITY]
        instances = [i for s in series
                     for i in _find(assoc, _query("IMAGE", location, str(s.SeriesInstanceUID)))
                     if str(i.get("SOPClassUID", "")) in SOP_NAMES]
        for instance in instances:
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID = location.study_uid
            query.SeriesInstanceUID = instance.SeriesInstanceUID
            query.SOPInstanceUID = instance.SOPInstanceUID
            final = None
            for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
                final = int(status.Status) if status and "Status" in status else None
            if final not in (_SUCCESS, _WARNING):
                raise RetrieveError(f"C-GET of {instance.SOPInstanceUID} from {peer} ended with "
                                    + ("no response" if final is None else f"status 0x{final:04X}"))
    finally:
        if assoc.is_established:
            assoc.release()
    if failures:
        raise RetrieveError(f"{len(failures)} instance(s) not written: {failures[0]}")
    return written


# --- DICOMweb: QIDO-RS then WADO-RS ----------------------------------------------------------
def _wado(location: PacsLocation, out: Path, timeout_s: float) -> list[Path]:
    peer = location.peer
    client = DICOMwebClient(peer.url, timeout=(5.0, timeout_s))
    client.set_http_retry_params(retry=False)
    try:
        found = client.search_for_instances(study_instance_uid=location.study_uid,
                                            series_instance_uid=location.series_uid,
                                            fields=["00080016", "0020000E", "00080018"])
        written = []
        for item in found:
            record = Dataset.from_json(item)
            sop = str(record.get("SOPInstanceUID", ""))
            if str(record.get("SOPClassUID", "")) not in SOP_NAMES or not re.fullmatch(_UID, sop):
                continue
            if location.sop_instance_uid and sop != location.sop_instance_uid:
                continue
            dataset = client.retrieve_instance(location.study_uid, str(record.SeriesInstanceUID), sop)
            target = out / f"{sop}.dcm"
            temp = out / f".{sop}.{uuid.uuid4().hex}.tmp"
            try:
                dataset.save_as(temp, enforce_file_format=True)
                os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
            written.append(target)
        return written
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "?"
        raise RetrieveError(f"{peer}: QIDO/WADO-RS answered HTTP {code}") from None
    except requests.RequestException as exc:
        raise RetrieveError(f"{peer}: QIDO/WADO-RS failed: {type(exc).__name__}") from None
    except OSError as exc:
        raise RetrieveError(f"{out}: cannot write the retrieved instance ({exc.strerror or exc})") from None


# --- the replay source ---------------------------------------------------------------------------
_FOLDERS: list[tempfile.TemporaryDirectory] = []  # live until the process ends (the SR needs the file)


def retrieve_pullback(spec: str, calling_ae: str = "OCTGUIDE") -> Pullback:
    """The one IVOCT pullback ``spec`` names, fetched into a temporary folder and read as a file
    replay (``attributes["source_file"]`` is the retrieved file, which ``replay --sr`` reports
    on: the SR joins the PACS's study). A study with several IVOCT instances must be narrowed
    to one (``.../SERIES_UID/SOP_INSTANCE_UID``)."""
    folder = tempfile.TemporaryDirectory(prefix="octguide-pacs-")
    _FOLDERS.append(folder)
    paths = retrieve(spec, folder.name, calling_ae)
    if len(paths) > 1:
        names = ", ".join(p.stem for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise RetrieveError(f"{spec}: the study holds {len(paths)} IVOCT instances ({names}); name "
                            "one as .../STUDY_UID/SERIES_UID/SOP_INSTANCE_UID (pacs://) or "
                            ".../series/SERIES_UID/instances/SOP_INSTANCE_UID (WADO-RS)")
    return read_pullback(paths[0])
