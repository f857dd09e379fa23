"""The audit trail: rows with who, what, when and result, exported by ``octguide audit``."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from engine.commands.cli import main
from engine.hospital.audit import AuditLog


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "hospital.sqlite"
    with AuditLog(path) as audit:
        audit.record("receive", "CONSOLE (127.0.0.1:5000)", ["1.2.3"], "ok", "1000 bytes")
        audit.record("send", "ORTHANC@127.0.0.1:4242", ["1.2.4", "1.2.5"], "ok")
        audit.record("failure", "ORTHANC@127.0.0.1:4242", ["1.2.4"], "no association\n(down)")
    return path


def test_json_export_has_who_what_when_and_result(db, capsys):
    assert main(["audit", "--db", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["event"] for r in rows] == ["receive", "send", "failure"]
    assert rows[1]["what"] == ["1.2.4", "1.2.5"] and rows[1]["who"] == "ORTHANC@127.0.0.1:4242"
    assert rows[2]["result"] == "no association (down)"  # one line
    assert abs(rows[0]["time_unix"] - time.time()) < 60


def test_csv_export_and_event_filter(db, capsys):
    assert main(["audit", "--db", str(db), "--csv", "--event", "send"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["what"] == "1.2.4 1.2.5" and rows[0]["result"] == "ok"


def test_plain_listing_and_a_missing_database(db, tmp_path, capsys):
    assert main(["audit", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "receive" in out and "CONSOLE (127.0.0.1:5000)" in out
    assert main(["audit", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "no audit database" in capsys.readouterr().err


def test_unknown_events_are_refused(tmp_path):
    with AuditLog(tmp_path / "a.sqlite") as audit, pytest.raises(ValueError):
        audit.record("deleted", "x", [], "ok")
