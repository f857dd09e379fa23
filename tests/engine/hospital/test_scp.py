"""The Storage SCP of ``octguide listen``: IVOCT accepted and on disk before the response,
everything else refused with the right status and a reason, counted and audited."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from engine.hospital.audit import AuditLog
from engine.hospital.config import DicomConfig
from engine.hospital.scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_NOT_IVOCT,
    ListenError,
    StorageService,
)
from engine.synthetic.phantom import generate_pullback
from streams.files.dicom import SOP_FOR_PROCESSING, pullback_to_dataset, read_dicom


@pytest.fixture(scope="module")
def pullback():
    return generate_pullback("calcified", seed=1, n_frames=3, n_alines=64, n_samples=128,
                             frame_rate_hz=180.0)


@pytest.fixture
def scp(tmp_path):
    received = []
    audit = AuditLog(tmp_path / "hospital.sqlite")

    def on_received(path, who):
        assert path.exists()  # on disk before the SCP answers
        received.append((path, who))

    service = StorageService(DicomConfig(allowed_calling_aes=("CONSOLE",)), tmp_path, audit,
                             on_received)
    host, port = service.start("127.0.0.1", 0)
    service.address, service.received_paths = (host, port), received
    yield service
    service.stop()
    audit.close()


def associate(scp, calling="CONSOLE", sop_class=SOP_FOR_PROCESSING):
    ae = AE(ae_title=calling)
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    return ae.associate(*scp.address, ae_title="OCTGUIDE")


def store(scp, dataset, calling="CONSOLE"):
    assoc = associate(scp, calling, dataset.SOPClassUID)
    assert assoc.is_established
    try:
        return assoc.send_c_store(dataset)
    finally:
        assoc.release()


def test_an_ivoct_instance_is_stored_readable_and_queued(scp, pullback):
    ds = pullback_to_dataset(pullback)
    status = store(scp, ds)
    assert status.Status == 0x0000
    [(path, who)] = scp.received_paths
    assert path.name == f"{ds.SOPInstanceUID}.dcm" and who.startswith("CONSOLE (127.0.0.1:")
    np.testing.assert_array_equal(read_dicom(path).frames, pullback.frames)
    assert store(scp, ds).Status == 0x0000  # a resend: acknowledged, not analysed twice
    assert len(scp.received_paths) == 1 and scp.counts["duplicates"] == 1
    rows = scp.audit.rows("receive")
    assert [r["what"] for r in rows] == [[str(ds.SOPInstanceUID)]] * 2


@pytest.mark.parametrize("damage, expected", [("modality", STATUS_NOT_IVOCT),
                                              ("truncated", STATUS_CANNOT_UNDERSTAND),
                                              ("no-rows", STATUS_CANNOT_UNDERSTAND)])
def test_a_bad_instance_gets_a_failure_status_with_a_reason_and_nothing_breaks(scp, pullback,
                                                                              damage, expected):
    ds = pullback_to_dataset(pullback)
    if damage == "modality":
        ds.Modality = "CT"
    elif damage == "truncated":
        ds.PixelData = ds.PixelData[:1000]
    else:
        del ds.Rows
    status = store(scp, ds)
    assert status.Status == expected
    assert status.ErrorComment and len(status.ErrorComment) <= 64
    assert scp.counts["rejected_instances"] == 1 and not scp.received_paths
    assert not list((scp.incoming).iterdir())  # nothing left behind
    [row] = scp.audit.rows("reject")
    assert row["what"] == [str(ds.SOPInstanceUID)] and row["result"] == f"C-STORE status 0x{expected:04X}"
    assert store(scp, pullback_to_dataset(pullback)).Status == 0x0000  # the next one is fine


def test_other_sop_classes_are_refused_at_association(scp):
    assoc = associate(scp, sop_class=CTImageStorage)
    try:
        assert not assoc.accepted_contexts
        assert [cx.result for cx in assoc.rejected_contexts] == [0x03]  # abstract syntax not supported
    finally:
        if assoc.is_established:
            assoc.release()


def test_a_calling_ae_outside_the_allow_list_is_rejected_and_audited(scp):
    assoc = associate(scp, calling="STRANGER")
    assert assoc.is_rejected
    assert scp.counts["rejected_associations"] == 1
    [row] = scp.audit.rows("reject")
    assert row["who"].startswith("STRANGER")


def test_an_scp_that_allows_no_one_does_not_start(tmp_path):
    with AuditLog(tmp_path / "a.sqlite") as audit, pytest.raises(ListenError):
        StorageService(DicomConfig(), tmp_path, audit, lambda p, w: None)
