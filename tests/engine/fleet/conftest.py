"""Small archives for the fleet tests: a few ~10-frame phantom pullbacks at 256 A-lines, and one
in-process Ray session per test module (niced by the test command, small object store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from engine.synthetic.phantom import generate_pullback
from streams.files.io import write_pullback

N_FRAMES = 10
SCENARIOS = ("calcified", "stented-malapposed", "normal")


def write_archive(folder: Path, scenarios=SCENARIOS, seed: int = 0, **kwargs) -> Path:
    """``folder`` with one small ``.oct.h5`` pullback per scenario (nested one level deep for the
    second, so the search is recursive)."""
    for k, scenario in enumerate(scenarios):
        target = folder / ("nested" if k == 1 else "") / f"{scenario}-{seed}.oct.h5"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_pullback(generate_pullback(scenario, seed=seed + k, n_frames=N_FRAMES, n_alines=256,
                                         n_samples=512, **kwargs), target)
    return folder


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    return write_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (2 CPUs, 100 MB object store), shut down after it."""
    ray.init(num_cpus=2, object_store_memory=100 * (1 << 20), include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


def read_run(out: Path) -> dict:
    """``{pullback_id: (pullback.json, [records])}`` of a reanalyse run."""
    runs = {}
    for folder in sorted((out / "pullbacks").iterdir()):
        records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines()]
        runs[folder.name] = (json.loads((folder / "pullback.json").read_text()), records)
    return runs


def measured(record: dict) -> dict:
    """A record without what depends on timing or transport (latencies, lane, the wire id, and
    the sheath's absolute noise floor and scale source: a v2 frame header states the dynamic
    range but no dB offset, so over the wire the floor is on an offset-0 scale; every threshold
    is relative to it, so nothing measured changes)."""
    out = {k: v for k, v in record.items() if k not in ("latency_ms", "lane", "pullback_id")}
    if isinstance(out.get("sheath"), dict):
        out["sheath"] = {k: v for k, v in out["sheath"].items()
                         if k not in ("noise_floor_db", "scale_source")}
    return out


#: Ray's own deprecation notices (raised inside ray.data, not by our calls) are not errors here.
RAY_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

GUIDANCE_KEYS = ("n_frames", "frame_spacing_mm", "mla", "references", "calcium", "sizing", "stent", "warnings")
