"""STOW-RS (PS3.18 10.5): one outbox entry stored on a DICOMweb origin server, with
dicomweb-client, and the answer turned into the outbox's verdict (stored / retry / give up).

One instance per request, and an entry counts as stored only when the answer's Referenced SOP
Sequence names its SOP Instance UID (PS3.18 10.5.3): Orthanc answers 200 with empty sequences to a
body it could not parse, so the HTTP status alone proves nothing. Named in the Failed SOP
Sequence (HTTP 409 or 202), the Failure Reason decides; named in neither, it is retried. dicomweb-client's own retries are turned
off: the outbox retries with its back-off and records every attempt.

What is retried: no connection, a timeout, HTTP 408/429 and 5xx, Failure Reason 0xA7xx (out of
resources) and 0x0110 (processing failure). What is not (the entry is ``failed``, kept on disk):
the other 4xx (the URL or the instance is wrong: sending it again changes nothing) and the other
Failure Reasons (0x0122 SOP class not supported, 0xA9xx data set does not match, 0xCxxx cannot
understand).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from engine.hospital.config import WebDestination

#: seconds: TCP connect, then the server's answer to one instance (an SR of 200 frames is ~2 MB)
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
_RETRIED_HTTP = {408, 429}


@dataclass(frozen=True)
class StowVerdict:
    """What one STOW-RS attempt did: ``stored``; else ``permanent`` (do not retry) and why."""

    stored: bool
    result: str
    permanent: bool = False


def web_client(destination: WebDestination) -> DICOMwebClient:
    """A client for ``destination`` that never retries on its own (the outbox does)."""
    client = DICOMwebClient(destination.url, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    client.set_http_retry_params(retry=False)
    return client


def _failure_reason(answer: Dataset, sop_instance_uid: str) -> int | None:
    """The Failure Reason the answer gives for this instance (None: not listed as failed)."""
    for item in answer.get("FailedSOPSequence", []):
        if str(item.get("ReferencedSOPInstanceUID", sop_instance_uid)) == sop_instance_uid:
            return int(item.get("FailureReason", 0x0110))
    return None


def _refused(reason: int) -> StowVerdict:
    transient = reason == 0x0110 or 0xA700 <= reason <= 0xA7FF
    return StowVerdict(False, f"STOW-RS failure reason 0x{reason:04X}", permanent=not transient)


def _answer_dataset(response: requests.Response | None) -> Dataset:
    """The STOW-RS response body as a dataset (empty when it is not DICOM JSON)."""
    if response is None or not response.content:
        return Dataset()
    if "json" not in response.headers.get("Content-Type", ""):
        return Dataset()
    try:
        return Dataset.from_json(response.json())
    except (ValueError, TypeError, KeyError):
        return Dataset()


def stow_instance(client: DICOMwebClient, path: Path, sop_instance_uid: str) -> StowVerdict:
    """Store the DICOM file ``path`` by STOW-RS and say whether the server stored it."""
    try:
        dataset = pydicom.dcmread(path)
    except (OSError, InvalidDicomError, ValueError) as exc:
        return StowVerdict(False, f"outbox file unreadable: {exc}", permanent=True)
    try:
        answer = client.store_instances([dataset])
    except requests.HTTPError as exc:
        response = exc.response
        code = response.status_code if response is not None else 0
        reason = _failure_reason(_answer_dataset(response), sop_instance_uid)
        if reason is not None:
            return _refused(reason)
        transient = code in _RETRIED_HTTP or code >= 500 or code == 0
        return StowVerdict(False, f"STOW-RS HTTP {code}", permanent=not transient)
    except requests.Timeout:
        return StowVerdict(False, "STOW-RS timed out")
    except requests.ConnectionError as exc:
        return StowVerdict(False, f"no connection (PACS unreachable: {type(exc).__name__})")
    except (requests.RequestException, ValueError) as exc:  # a malformed answer: try again later
        return StowVerdict(False, f"STOW-RS failed: {type(exc).__name__}: {exc}")
    return verdict_of(answer, sop_instance_uid)


def verdict_of(answer: Dataset, sop_instance_uid: str) -> StowVerdict:
    """What a 2xx STOW-RS answer says of one instance.

    >>> from pydicom.dataset import Dataset
    >>> verdict_of(Dataset(), "1.2.3").stored
    False
    """
    reason = _failure_reason(answer, sop_instance_uid)
    if reason is not None:
        return _refused(reason)
    stored = {str(item.get("ReferencedSOPInstanceUID", ""))
              for item in answer.get("ReferencedSOPSequence", [])}
    if sop_instance_uid in stored:
        return StowVerdict(True, "stored (STOW-RS)")
    return StowVerdict(False, "STOW-RS answer does not name the instance as stored")
