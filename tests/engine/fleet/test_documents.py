"""One implementation of the results documents: the engine's writer thread
(``export_pullback``) and re-analysis build ``pullback.json`` with the same pure function."""

from __future__ import annotations

import json

import pytest

from engine.config import Config
from engine.fleet.archive import ArchiveFile
from engine.fleet.reanalyse import _Pending, reanalysis_document
from engine.realtime import results
from engine.synthetic.phantom import generate_pullback
from streams.wire.protocol import dumps

NOW_UNIX = 1_800_000_000.25
MODEL = {"name": "octseg", "version": "1", "sha256": "ab" * 32}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    pullback = generate_pullback("calcified", seed=3, n_frames=8, n_alines=256, n_samples=512)
    out = []
    for k, truth in enumerate(pullback.truth.frames):
        record = dict(truth.record, pullback_id="pb", lane="live" if k % 2 else "backfill")
        record["latency_ms"] = {"end_to_end": 10.0 + k}
        out.append(record)
    return out


class _CaseLog:
    def __init__(self, records: list[dict]):
        self.records = records

    def frame_records(self, pullback_id: str) -> list[dict]:
        return [dict(r) for r in self.records]

    def pullback(self, pullback_id: str) -> dict:
        return {"opened_unix": 5.0}

    def finish_pullback(self, pullback_id: str, **fields) -> None:
        self.finished = fields


@pytest.mark.parametrize("state", ["complete", "interrupted"])
def test_export_pullback_writes_the_pure_document(records, tmp_path, monkeypatch, state):
    monkeypatch.setattr(results.time, "time", lambda: NOW_UNIX)
    counts = {"received": 8, "shown": 4, "rejected": 1}
    written = results.export_pullback(_CaseLog(records), tmp_path, "pb", state, [0.2] * 8, None,
                                      {"counts": counts, "last_frame_unix": NOW_UNIX - 1.5},
                                      Config().guidance, MODEL, "hash")
    document = results.pullback_document(
        records, pullback_id="pb", state=state, spacing=[0.2] * 8, reason=None, counts=counts,
        guidance_config=Config().guidance, model=MODEL, engine_version=results.__version__,
        config_hash="hash", opened_unix=5.0, last_frame_unix=NOW_UNIX - 1.5, clock=lambda: NOW_UNIX)
    assert (tmp_path / "pb" / "pullback.json").read_bytes() == dumps(document) + b"\n"
    assert written["pullback"] == document
    assert document["timing"]["guidance_delay_s"] == 1.5 and document["timing"]["first_live_ms"] == 11.0
    if state == "complete":
        assert document["mla"] is not None and any("1 of 8 frames" in w for w in document["warnings"])
    else:
        assert document["warnings"] == ["no guidance: the pullback is interrupted"]


def test_the_reanalysis_document_is_the_engines_plus_its_source(records, monkeypatch):
    monkeypatch.setattr(results.time, "time", lambda: NOW_UNIX)
    backfilled = [dict(r, lane="backfill") for r in records]
    entry = ArchiveFile("/archive/a.oct.h5", "a.0000abcd", 123, 456)
    pending = _Pending(entry, len(records), spacing={i: 0.2 for i in range(len(records))}, failed=1,
                       opened_unix=5.0, last_unix=NOW_UNIX - 2.0)
    audit = {"model": MODEL, "engine_version": "9.9", "config_hash": "hash"}
    ours = reanalysis_document(pending, backfilled, Config(), audit)
    engines = results.pullback_document(
        backfilled, pullback_id=entry.pullback_id, state="complete", spacing=[0.2] * len(records),
        reason=None, counts=ours["counts"], guidance_config=Config().guidance, model=MODEL,
        engine_version="9.9", config_hash="hash", opened_unix=5.0, last_frame_unix=NOW_UNIX - 2.0)
    assert list(ours) == [*engines, "reanalysis"]
    assert json.loads(dumps(ours)) == json.loads(dumps(engines | {"reanalysis": {"source": entry.fingerprint()}}))
    assert ours["counts"]["backfilled"] == len(records) - 1 and ours["timing"]["first_live_ms"] is None
    assert any("1 of 8 frames have no measurement (failed 1)" in w for w in ours["warnings"])
