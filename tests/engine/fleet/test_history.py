"""Drift over the engine's own history: its case log (read-only) and its results folders, over a
date range; a shifted lumen area is drift only in the range that holds it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.commands.cli import main
from engine.commands.drift import utc_time
from engine.fleet.drift import drift_report
from engine.fleet.history import HistoryError, frames_table
from engine.realtime.caselog import CaseLog
from engine.realtime.results import write_results

NOVEMBER, DECEMBER = utc_time("2026-11-10"), utc_time("2026-12-02")
FRAMES = 400  #: per pullback: enough that PSI sampling noise (~9 (1/n + 1/m)) stays under the watch level


def records(pullback_id: str, mean_area_mm2: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"frame": i, "status": "ok", "pullback_id": pullback_id, "confidence": float(rng.uniform(0.8, 1)),
             "lumen": {"area_mm2": float(rng.normal(mean_area_mm2, 0.5))},
             "sheath": {"radius_mm": 0.45}} for i in range(FRAMES)]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """An engine results folder: case log and results folders; November's pullbacks at 6 mm2,
    December's at 6 mm2 (one) and 9 mm2 (one, on the 3rd)."""
    root = tmp_path_factory.mktemp("engine-results")
    log = CaseLog(root / "caselog.sqlite")
    log.open()
    plan = [("nov-a", NOVEMBER, 6.0), ("nov-b", NOVEMBER + 3600, 6.0), ("dec-a", DECEMBER, 6.0),
            ("dec-b", DECEMBER + 86400, 9.0)]
    for seed, (pid, opened, area) in enumerate(plan):
        log.begin_pullback(pid, geometry={}, frame_rate_hz=180.0, n_frames_expected=FRAMES, model={},
                           engine_version="t", config_hash="h", opened_unix=opened)
        recs = records(pid, area, seed)
        log.add_frames(pid, recs)
        write_results(root / "pullbacks", pid, recs, {"pullback_id": pid, "timing": {"opened_unix": opened}})
    log.close()
    return root


def test_the_case_log_is_read_over_a_date_range_and_never_written(history):
    before = (history / "caselog.sqlite").read_bytes()
    table = frames_table(history / "caselog.sqlite", NOVEMBER, utc_time("2026-12-01"))
    assert table.num_rows == 2 * FRAMES and set(table.column("pullback_id").to_pylist()) == {"nov-a", "nov-b"}
    assert table.column("noise_floor").null_count == table.num_rows  # no samples in a case log
    assert frames_table(history).num_rows == 4 * FRAMES  # the folder holding caselog.sqlite
    assert (history / "caselog.sqlite").read_bytes() == before


def test_results_folders_read_like_the_case_log(history, tmp_path):
    only_folders = tmp_path / "only"
    only_folders.mkdir()
    (only_folders / "pullbacks").symlink_to(history / "pullbacks")
    ours = frames_table(only_folders, DECEMBER, None)
    theirs = frames_table(history, DECEMBER, None)
    key = lambda t: sorted(zip(t.column("pullback_id").to_pylist(), t.column("lumen_area_mm2").to_pylist()))
    assert key(ours) == key(theirs) and len(key(ours)) == 2 * FRAMES


def test_drift_over_dates_finds_the_shift_only_where_it_is(history, tmp_path, capsys):
    nov = (NOVEMBER, utc_time("2026-12-01"))
    stable = drift_report(history, history, reference_range=nov, current_range=(DECEMBER, DECEMBER + 3600))
    assert "lumen_area_mm2" not in stable["drift"] + stable["watch"], stable["features"]
    assert main(["drift", str(history), str(history / "caselog.sqlite"), "--out", str(tmp_path / "r"),
                 "--reference-since", "2026-11-01", "--reference-until", "2026-12-01",
                 "--since", "2026-12-03"]) == 0
    shifted = json.loads((tmp_path / "r" / "drift.json").read_text())
    assert shifted["drift"] == ["lumen_area_mm2"], shifted["features"]
    assert {f["feature"]: f["verdict"] for f in shifted["features"]}["noise_floor"] == "unavailable"
    assert "lumen_area_mm2" in capsys.readouterr().out


def test_a_path_without_measurements_is_one_line(tmp_path, capsys):
    with pytest.raises(HistoryError, match="no measurements.parquet"):
        frames_table(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "measurements.parquet").write_bytes(b"")
    with pytest.raises(HistoryError, match="has no dates"):
        frames_table(tmp_path / "run", NOVEMBER, None)
    assert main(["drift", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "no measurements.parquet" in capsys.readouterr().err
