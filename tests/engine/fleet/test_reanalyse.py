"""``octguide reanalyse`` in-process: the results contract, equality with ``octguide replay``,
a corrupt file counted with its reason, a killed run resuming, a re-run skipping everything,
frames read in bounded batches, and each pullback's DICOM SR beside its pullback.json."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from engine.commands.cli import main
from engine.fleet.archive import list_archive
from engine.fleet.reanalyse import ReanalysisOptions, reanalyse
from engine.synthetic.phantom import generate_pullback
from streams.files.io import write_pullback
from tests.engine.commands.test_replay import read_results
from tests.engine.fleet.conftest import (
    GUIDANCE_KEYS,
    N_FRAMES,
    RAY_WARNINGS,
    SCENARIOS,
    measured,
    read_run,
)

READ_BATCH = 4  #: frames a read task decodes at a time here (a pullback is N_FRAMES = 10)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("ray_local"), RAY_WARNINGS]


@pytest.fixture(scope="module")
def corrupt_archive(archive, tmp_path_factory):
    folder = tmp_path_factory.mktemp("corrupt-archive")
    shutil.copytree(archive, folder, dirs_exist_ok=True)
    (folder / "broken.dcm").write_bytes(b"\x00" * 64 + b"not a pullback")
    truncated = (archive / f"{SCENARIOS[0]}-0.oct.h5").read_bytes()
    (folder / "truncated.oct.h5").write_bytes(truncated[: len(truncated) // 2])
    write_pullback(generate_pullback("normal", seed=7, n_frames=N_FRAMES, n_alines=256, n_samples=512),
                   folder / "console-export.dcm")
    return folder


@pytest.fixture(scope="module")
def first_run(corrupt_archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    options = ReanalysisOptions(workers=1, show_progress=False, read_batch_frames=READ_BATCH)
    return out, reanalyse(corrupt_archive, out, options)


def test_reanalyse_writes_the_results_contract_and_counts_corrupt_files(first_run):
    out, summary = first_run
    assert (summary["pullbacks"], summary["analysed"], summary["failed"], summary["skipped"]) == (6, 4, 2, 0)
    assert summary["frames"] == 4 * N_FRAMES and summary["failed_frames"] == 0
    assert summary["actors"]["num_gpus"] == 0 and summary["actors"]["runtimes"] == ["onnxruntime (cpu)"]
    assert 0 < summary["steady"]["frames"] < summary["frames"] and summary["steady"]["frames_per_s"] > 0
    failures = pq.read_table(out / "failures.parquet").to_pylist()
    assert sorted(f["source"].rsplit("/", 1)[1] for f in failures) == ["broken.dcm", "truncated.oct.h5"]
    assert all(f["reason"] and "\n" not in f["reason"] for f in failures)
    runs = read_run(out)
    assert len(runs) == 4
    for pullback_id, (pullback, records) in runs.items():
        assert pullback["status"] == "complete" and pullback["pullback_id"] == pullback_id
        assert pullback["model"]["sha256"] == summary["model"]["sha256"]
        assert [r["frame"] for r in records] == list(range(N_FRAMES))
        assert all(r["audit"]["model"] == pullback["model"] and r["pullback_id"] == pullback_id for r in records)
    table = pq.read_table(out / "measurements.parquet")
    assert table.num_rows == 4 * N_FRAMES
    assert set(table.column("pullback_id").to_pylist()) == set(runs)
    assert all(v is not None for v in table.column("noise_floor").to_pylist())


def test_reanalyse_equals_replay_for_the_same_pullback(first_run, corrupt_archive, tmp_path):
    out, _ = first_run
    source = corrupt_archive / "nested" / f"{SCENARIOS[1]}-0.oct.h5"
    assert main(["replay", str(source), "--out", str(tmp_path / "replay"), "--rate", "max"]) == 0
    replayed, replay_records = read_results(tmp_path / "replay")
    entry = next(e for e in list_archive(corrupt_archive) if e.path == str(source.resolve()))
    ours, records = read_run(out)[entry.pullback_id]
    assert [measured(r) for r in records] == [measured(r) for r in replay_records]
    assert {k: ours[k] for k in GUIDANCE_KEYS} == {k: replayed[k] for k in GUIDANCE_KEYS}
    assert (ours["model"], ours["config_hash"]) == (replayed["model"], replayed["config_hash"])


def test_each_pullback_is_read_in_bounded_batches(first_run):
    _, summary = first_run
    per_pullback = -(-N_FRAMES // READ_BATCH)
    assert N_FRAMES > READ_BATCH and per_pullback == 3
    assert summary["read_batches"] == 4 * per_pullback  # and equal to replay's: the test below


def test_each_pullback_has_its_sr_beside_its_pullback_json(first_run, corrupt_archive):
    pytest.importorskip("highdicom")
    import highdicom
    import pydicom

    from engine.hospital.sr import expected_numbers, report_numbers

    out, summary = first_run
    assert (summary["sr"], summary["sr_written"], summary["sr_failed"]) == ("on", 4, 0)
    by_source = {e.pullback_id: e.path for e in list_archive(corrupt_archive)}
    for pullback_id, (pullback, records) in read_run(out).items():
        path = out / "pullbacks" / pullback_id / "dicom" / "sr.dcm"
        document = highdicom.sr.srread(path)
        assert document.Modality == "SR" and len(document.ContentSequence) > 0
        assert report_numbers(pydicom.dcmread(path)) == pytest.approx(expected_numbers(pullback, records), rel=1e-12)
        if by_source[pullback_id].endswith(".dcm"):  # the console's file names the study
            source = pydicom.dcmread(by_source[pullback_id], stop_before_pixels=True)
            assert document.StudyInstanceUID == source.StudyInstanceUID
            assert document.PatientID == source.PatientID
        else:
            assert document.PatientID == "OCTGUIDE-SYNTHETIC"


def test_a_rerun_skips_every_pullback_already_analysed(first_run, corrupt_archive):
    out, _ = first_run
    before = pq.read_table(out / "measurements.parquet")
    again = reanalyse(corrupt_archive, out, ReanalysisOptions(show_progress=False))
    assert (again["skipped"], again["analysed"], again["frames"]) == (4, 0, 0)
    assert again["sr_written"] == 0  # every SR is there already
    assert again["failed"] == 2  # corrupt files are tried again, and counted again
    assert pq.read_table(out / "measurements.parquet").equals(before)


def test_a_killed_run_resumes_where_it_stopped(first_run, corrupt_archive, tmp_path):
    out = tmp_path / "killed"
    finished = []

    def kill_after_first(pullback_id: str) -> None:
        finished.append(pullback_id)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reanalyse(corrupt_archive, out, ReanalysisOptions(show_progress=False), on_pullback=kill_after_first)
    assert [p.name for p in (out / "pullbacks").iterdir() if not p.name.startswith(".")] == finished
    resumed = reanalyse(corrupt_archive, out, ReanalysisOptions(show_progress=False))
    assert (resumed["skipped"], resumed["analysed"], resumed["failed"]) == (1, 3, 2)
    full = pq.read_table(first_run[0] / "measurements.parquet")
    assert pq.read_table(out / "measurements.parquet").equals(full)


def test_reanalyse_command_prints_a_summary(archive, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# one pullback\n{archive / (SCENARIOS[0] + '-0.oct.h5')}\n")
    assert main(["reanalyse", str(listing), "--out", str(tmp_path / "out"), "--state-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "analysed 1" in text and "octseg" in text
    assert main(["reanalyse", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "no such folder" in capsys.readouterr().err
