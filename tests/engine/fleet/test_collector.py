"""The driver's collector: frame rows in any order give each pullback's records back in frame
order; a file that fails part-way is one failure and its other frames are dropped."""

from __future__ import annotations

import json

import numpy as np

from engine.fleet.archive import ArchiveFile
from engine.fleet.reanalyse import ReanalysisOptions, _Collector
from tests.engine.fleet.conftest import read_run

AUDIT = {"model": {"name": "octseg", "version": "1", "sha256": "ab" * 32}, "engine_version": "t", "config_hash": "h"}


def rows(pullback_id: str, frames: list[int], n_frames: int, done_unix: float,
         error_at: int | None = None) -> dict:
    """One result batch as the actors return it, finished at ``done_unix`` (s; ``error_at``: a
    read-error row there instead)."""
    cols = {k: [] for k in ("path", "pullback_id", "index", "n_frames", "spacing_mm", "error", "read_node",
                            "read_batch", "record", "features", "failed", "node", "runtime", "peak_rss_mib",
                            "done_unix")}
    for position, i in enumerate(frames):
        error = position == error_at
        values = {"path": f"/a/{pullback_id}.oct.h5", "pullback_id": pullback_id, "index": -1 if error else i,
                  "n_frames": n_frames, "spacing_mm": 0.2, "error": "OSError: damaged chunk" if error else "",
                  "read_node": "n1", "read_batch": i // 4, "failed": False, "node": "n1",
                  "runtime": "onnxruntime (cpu)", "peak_rss_mib": 100.0, "done_unix": done_unix,
                  "record": "" if error else json.dumps({"frame": i, "status": "ok", "pullback_id": pullback_id,
                                                         "audit": AUDIT, "lane": "backfill"}),
                  "features": "" if error else json.dumps({"noise_floor": 1.0})}
        for k, v in values.items():
            cols[k].append(v)
    return {k: np.asarray(v, dtype=object) for k, v in cols.items()}


def test_frames_in_any_order_are_written_in_frame_order_and_a_part_way_failure_counts_once(tmp_path):
    todo = [ArchiveFile(f"/a/{p}.oct.h5", p, 1, 1) for p in ("good.00000001", "bad.00000002")]
    summary = {"skipped": 0, "failed": 0, "frames": 0, "analysed": 0, "failed_frames": 0, "read_batches": 0}
    failures: list[dict] = []
    finished: list[str] = []
    collector = _Collector(todo, tmp_path, ReanalysisOptions(show_progress=False), summary, failures,
                           finished.append, None)
    batches = [rows("good.00000001", [7, 3, 9, 0], 10, 1004.0), rows("bad.00000002", [0, 1], 10, 1005.0),
               rows("good.00000001", [5, 1, 8, 2, 6, 4], 10, 1006.0),
               rows("bad.00000002", [2, 3], 10, 1007.0, error_at=1), rows("bad.00000002", [4, 5], 10, 1008.0)]
    for batch in batches:
        for k in range(len(batch["pullback_id"])):
            collector.add(batch, k)
    collector.close()
    assert finished == ["good.00000001"]
    assert (summary["analysed"], summary["failed"], summary["read_batches"]) == (1, 1, 3)
    assert failures == [{"source": "/a/bad.00000002.oct.h5", "pullback_id": "bad.00000002",
                         "reason": "OSError: damaged chunk"}]
    (pullback, records), = read_run(tmp_path).values()
    assert [r["frame"] for r in records] == list(range(10)) and pullback["n_frames"] == 10
    # 13 frames analysed (the bad file's 0-2 before its error); the first batch to finish (4
    # frames at 1004 s) is out; the last counted one ends at 1007 s (the dropped one at 1008)
    assert summary["frames"] == 13
    assert summary["steady"] == {"frames": 9, "seconds": 3.0, "frames_per_s": 3.0}
