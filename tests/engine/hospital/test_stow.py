"""STOW-RS to a DICOMweb URL through the same outbox as C-STORE: against a real Orthanc's
``/dicom-web``, each instance stored once, PACS down then up, every attempt audited; and the
verdicts of STOW-RS answers (stored, refused for good, retried)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from engine.commands.cli import main
from engine.hospital.audit import AuditLog
from engine.hospital.config import (
    DestinationError,
    DicomConfig,
    WebDestination,
    parse_destination,
)
from engine.hospital.outbox import Outbox
from engine.hospital.stow import verdict_of
from tests.engine.hospital.orthanc import Orthanc
from tests.engine.hospital.test_send import instances, send_through_an_outage


def test_send_to_a_dicomweb_url_stores_each_instance_once_and_audits_it(orthanc, tmp_path, capsys):
    files = instances(tmp_path / "in", 3)
    argv = ["send", *[str(p) for p, _ in files], "--to", orthanc.dicomweb_url + "/",
            "--outbox", str(tmp_path / "outbox")]
    assert main(argv) == 0
    assert main(argv) == 0  # again: already sent there (the trailing / is the same destination)
    assert "0 queued now, 3 already queued" in capsys.readouterr().out
    assert sorted(orthanc.sop_instance_uids()) == sorted(uid for _, uid in files)
    with AuditLog(tmp_path / "outbox" / "outbox.sqlite") as audit:
        sends = audit.rows("send")
    assert sorted(r["what"][0] for r in sends) == sorted(uid for _, uid in files)
    assert all(r["who"] == orthanc.dicomweb_url and r["result"] == "ok"
               and r["detail"].startswith("STOW-RS attempt 1") for r in sends)


def test_instances_queued_while_the_dicomweb_server_is_down_arrive_exactly_once(tmp_path):
    pacs = Orthanc(tmp_path / "orthanc", calling_aes=("OCTGUIDE",))
    config = DicomConfig(retry_initial_s=0.5, retry_max_s=2.0, destinations=(pacs.dicomweb_url,))
    with Outbox(tmp_path / "outbox", config) as outbox:
        failures = send_through_an_outage(outbox, pacs, instances(tmp_path / "in", 2),
                                          config.parsed_destinations()[0])
        assert all(r["detail"].startswith("STOW-RS attempt") for r in failures)


def _answer(stored: tuple[str, ...] = (), failed: tuple[tuple[str, int], ...] = ()) -> Dataset:
    answer = Dataset()
    answer.ReferencedSOPSequence = []
    for uid in stored:
        item = Dataset()
        item.ReferencedSOPInstanceUID = uid
        answer.ReferencedSOPSequence.append(item)
    answer.FailedSOPSequence = []
    for uid, reason in failed:
        item = Dataset()
        item.ReferencedSOPInstanceUID = uid
        item.FailureReason = reason
        answer.FailedSOPSequence.append(item)
    return answer


@pytest.mark.parametrize(("answer", "stored", "permanent"), [
    (_answer(stored=("1.2.3",)), True, False),
    (_answer(stored=("1.2.4",)), False, False),  # another instance's success is not ours
    (_answer(), False, False),  # Orthanc's answer to a body it could not read: retried
    (_answer(failed=(("1.2.3", 0x0122),)), False, True),  # SOP class not supported
    (_answer(failed=(("1.2.3", 0xC000),)), False, True),  # cannot understand
    (_answer(failed=(("1.2.3", 0xA700),)), False, False),  # out of resources: later
    (_answer(stored=("1.2.3",), failed=(("1.2.3", 0x0110),)), False, False),
], ids=["stored", "other-uid", "empty", "sop-class", "cannot-understand", "resources", "both"])
def test_a_stow_answer_decides_stored_retried_or_given_up(answer, stored, permanent):
    verdict = verdict_of(answer, "1.2.3")
    assert (verdict.stored, verdict.permanent) == (stored, permanent)
    assert "\n" not in verdict.result


def test_destinations_are_dicom_peers_or_dicomweb_urls():
    assert isinstance(parse_destination("https://pacs.example:8443/dicom-web/"), WebDestination)
    assert str(parse_destination("http://127.0.0.1:8042/dicom-web/")) == "http://127.0.0.1:8042/dicom-web"
    assert parse_destination("https://pacs.example/wado").port == 443
    config = DicomConfig(destinations=("PACS@127.0.0.1:104", "http://127.0.0.1:8042/dicom-web"))
    assert [type(d).__name__ for d in config.parsed_destinations()] == ["Destination", "WebDestination"]
    for bad in ("ftp://pacs/x", "http://", "http://pacs:99999/x", "http://pacs/x?token=1", "PACS@host"):
        with pytest.raises(DestinationError) as info:
            DicomConfig(destinations=(bad,))
        assert "\n" not in str(info.value)
