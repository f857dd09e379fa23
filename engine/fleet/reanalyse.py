"""Re-analysis of an archive with Ray Data: the engine's own per-frame analysis over many files.

The pipeline (streaming: at most a few blocks of frames in flight, never the archive)::

    list files -> read + decode (CPU tasks, one file each, frames out one by one)
      -> FullAnalysis in actors (the engine's stage: preprocess, segment, metal, measure;
         the model loaded once per actor, ONNX Runtime with the actor's CPUs)
      -> the driver: a pullback's records complete -> guidance -> results folder
         (engine.realtime.results.write_results, the engine's writer) + its Parquet part

A file already analysed with the same model sha256 and config hash is skipped, so a killed run
resumes where it stopped and a re-run does nothing; a file that cannot be read is one failure
with its reason (``OUT/failures.parquet``), never the end of the run.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray

from engine import __version__
from engine.analysis.analyse import FrameAnalyser
from engine.analysis.segment import DEFAULT_MODEL, SegmenterConfig
from engine.analysis.stages import FullAnalysis
from engine.compute.scan_convert import CartesianGrid, DisplayOrientation
from engine.config import Config
from engine.fleet.archive import ArchiveFile, already_analysed, list_archive
from engine.fleet.cluster import READ_CPUS, ray_session, worker_cpus
from engine.fleet.features import frame_row, pixel_features
from engine.fleet.tables import join_frame_parts, write_failures, write_frame_part
from engine.progress import Progress
from engine.realtime.results import pullback_document, write_results
from models.manifest import load_manifest
from streams.files.io import read_pullback

BATCH_FRAMES = 4  #: frames per actor call (small: a frame is ~0.1-1 MB and the object store is small)
BLOCK_BYTES = 8 << 20  #: Ray Data's target block size here, bytes (frames stream in small blocks)
ACTOR_START_TIMEOUT_S = 600  #: how long the analysis actors may take to start (load and warm the model), s


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def read_frames(row: dict):
    """Ray flat_map: one archive file -> its frames, one row each (pickled
    :class:`~streams.pullback.Frame` with the results id as its pullback id), or one row with
    the reason the file could not be read."""
    path, pullback_id = str(row["path"]), str(row["pullback_id"])
    try:
        pullback = read_pullback(path)
        if len(pullback) == 0:
            raise ValueError("the file holds no frames")
    except Exception as exc:  # noqa: BLE001 (a bad file is a counted failure with its reason)
        yield {"path": path, "pullback_id": pullback_id, "index": -1, "n_frames": 0, "spacing_mm": 0.0,
               "frame": b"", "error": f"{type(exc).__name__}: {exc}"[:500], "read_node": _node()}
        return
    n = len(pullback)
    for i in range(n):
        frame = dataclasses.replace(pullback.frame(i), pullback_id=pullback_id)
        yield {"path": path, "pullback_id": pullback_id, "index": i, "n_frames": n,
               "spacing_mm": float(pullback.frame_spacing_mm[i]), "frame": pickle.dumps(frame),
               "error": "", "read_node": _node()}


def analysis_stage(config: Config, model_path: str, threads: int) -> FullAnalysis:
    """The engine's full analysis stage for ``model_path`` (no display rendering)."""
    grid = CartesianGrid(config.server.image_size_px, config.server.image_fov_mm)
    analyser = FrameAnalyser(guidance=config.guidance,
                             segmenter=SegmenterConfig(model=model_path, threads=threads))
    return FullAnalysis(analyser, grid, DisplayOrientation(), render=False)


class FrameAnalysisActor:
    """Ray Data actor: holds one started analysis stage (the model loaded once) and turns
    batches of frame rows into record rows (JSON text), as the engine's worker does."""

    def __init__(self, config: dict, model_path: str, threads: int):
        self.config = Config.from_dict(config)
        self.stage = analysis_stage(self.config, model_path, threads)
        self.stage.start()
        self.audit = {"model": dict(self.stage.status().get("model") or {}),
                      "engine_version": __version__, "config_hash": self.config.config_hash()}
        self.node = _node()

    def _record(self, frame) -> tuple[dict, bool]:
        try:
            result = self.stage.process(frame)
        except Exception as exc:  # noqa: BLE001 (the frame's fate, recorded as the engine does)
            return {"frame": frame.index, "status": "rejected",
                    "reason": f"analysis_error: {type(exc).__name__}: {exc}"[:500]}, True
        record = dict(result.record)
        record["latency_ms"] = {k: round(v, 3) for k, v in result.latency_ms.items()}
        record["lane"] = "backfill"
        return record, False

    def __call__(self, batch: dict) -> dict:
        records, features, failed = [], [], []
        for blob, pullback_id in zip(batch["frame"], batch["pullback_id"]):
            if not len(blob):
                records.append("")
                features.append("")
                failed.append(False)
                continue
            frame = pickle.loads(blob)
            record, bad = self._record(frame)
            record["pullback_id"] = str(pullback_id)
            record["audit"] = self.audit
            records.append(json.dumps(record))
            features.append(json.dumps(pixel_features(frame)))
            failed.append(bad)
        n = len(records)
        return {"path": batch["path"], "pullback_id": batch["pullback_id"], "index": batch["index"],
                "n_frames": batch["n_frames"], "spacing_mm": batch["spacing_mm"], "error": batch["error"],
                "read_node": batch["read_node"], "record": np.asarray(records, dtype=object),
                "features": np.asarray(features, dtype=object), "failed": np.asarray(failed),
                "node": np.asarray([self.node] * n, dtype=object),
                "peak_rss_mib": np.full(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)}


@dataclasses.dataclass
class _Pending:
    entry: ArchiveFile
    n_frames: int
    records: dict = dataclasses.field(default_factory=dict)
    features: dict = dataclasses.field(default_factory=dict)
    spacing: dict = dataclasses.field(default_factory=dict)
    failed: int = 0
    opened_unix: float = dataclasses.field(default_factory=time.time)
    last_unix: float = 0.0


def reanalysis_document(pending: _Pending, records: list[dict], config: Config, audit: dict) -> dict:
    """The ``pullback.json`` of a re-analysed pullback: the engine's own document
    (:func:`engine.realtime.results.pullback_document`; every frame backfilled, or failed) plus
    ``reanalysis`` (the source file's fingerprint, by which a re-run recognises it)."""
    n = pending.n_frames
    counts = {"received": n, "rejected": 0, "shown": 0, "backfilled": n - pending.failed, "late": 0,
              "failed": pending.failed, "skipped": 0, "never_received": 0, "out_of_order": 0}
    spacing = [pending.spacing.get(i, pending.spacing.get(0, 0.0)) for i in range(n)]
    return pullback_document(
        records, pullback_id=pending.entry.pullback_id, state="complete", spacing=spacing, reason=None,
        counts=counts, guidance_config=config.guidance, model=audit["model"],
        engine_version=audit["engine_version"], config_hash=audit["config_hash"],
        opened_unix=pending.opened_unix, last_frame_unix=pending.last_unix,
        extra={"reanalysis": {"source": pending.entry.fingerprint()}})


@dataclasses.dataclass(frozen=True)
class ReanalysisOptions:
    """How a re-analysis runs.

    Attributes
    ----------
    model_path : str
        The ``.onnx`` model (its manifest beside it is verified before anything runs).
    config : Config
        Engine configuration (guidance thresholds; its hash goes into every result).
    workers : int
        Analysis actors (one model each).
    address : str or None
        Ray cluster address; None starts Ray locally with the machine's cores.
    num_cpus : int or None
        CPUs of a locally started Ray (default: the machine's cores).
    show_progress : bool
        Progress bar on stderr.
    """

    model_path: str = str(DEFAULT_MODEL)
    config: Config = dataclasses.field(default_factory=Config)
    workers: int = 1
    address: str | None = None
    num_cpus: int | None = None
    show_progress: bool = True


def reanalyse(source: str | Path, out: Path, options: ReanalysisOptions = ReanalysisOptions(),
              on_pullback: Callable[[str], None] | None = None) -> dict:
    """Re-analyse every pullback file of ``source`` into ``out`` (see the module docstring).

    Returns the run summary (also written to ``out/summary.json``). ``on_pullback(id)`` is
    called after each pullback's results are written.
    """
    started = time.perf_counter()
    out = Path(out)
    entries = list_archive(source)
    manifest = load_manifest(Path(options.model_path))  # refuses a model that does not verify
    config = options.config
    config_hash = config.config_hash()
    todo = [e for e in entries if not already_analysed(out, e, manifest.sha256, config_hash)]
    summary = {"pullbacks": len(entries), "skipped": len(entries) - len(todo), "analysed": 0,
               "failed": 0, "frames": 0, "failed_frames": 0, "nodes": [], "read_nodes": [],
               "model": {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256},
               "config_hash": config_hash, "workers": options.workers}
    failures: list[dict] = []
    if todo:
        with ray_session(options.address, options.num_cpus) as resources:
            _run(todo, out, options, resources, summary, failures, on_pullback, len(entries))
    duration = time.perf_counter() - started
    summary["duration_s"] = round(duration, 3)
    summary["frames_per_s"] = round(summary["frames"] / duration, 3) if duration > 0 else None
    summary["failures"] = failures
    summary["outputs"] = {"pullbacks": str(out / "pullbacks"),
                          "measurements": str(join_frame_parts(out, [e.pullback_id for e in entries])),
                          "failures": str(write_failures(out, failures))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _dataset(todo: list[ArchiveFile], options: ReanalysisOptions, resources: dict):
    ctx = ray.data.DataContext.get_current()
    ctx.target_max_block_size = BLOCK_BYTES
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S  # every worker's model loaded before frames flow
    cpus = worker_cpus(float(resources.get("CPU", 1.0)), options.workers)
    items = [{"path": e.path, "pullback_id": e.pullback_id} for e in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.flat_map(read_frames, num_cpus=READ_CPUS)
    return ds.map_batches(
        FrameAnalysisActor, batch_size=BATCH_FRAMES, batch_format="numpy", num_cpus=cpus,
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        fn_constructor_kwargs={"config": options.config.to_dict(), "model_path": options.model_path,
                               "threads": max(1, int(cpus))})


def _run(todo, out, options, resources, summary, failures, on_pullback, total) -> None:
    by_id = {e.pullback_id: e for e in todo}
    pending: dict[str, _Pending] = {}
    nodes, read_nodes = set(), set()
    progress = Progress("reanalyse") if options.show_progress else None
    done = summary["skipped"]
    t0 = time.perf_counter()
    audit = None
    for batch in _dataset(todo, options, resources).iter_batches(batch_size=None, batch_format="numpy"):
        for k in range(len(batch["pullback_id"])):
            pid = str(batch["pullback_id"][k])
            read_nodes.add(str(batch["read_node"][k]))
            if batch["error"][k]:
                failures.append({"source": str(batch["path"][k]), "pullback_id": pid,
                                 "reason": str(batch["error"][k])})
                summary["failed"] += 1
                done += 1
                continue
            nodes.add(str(batch["node"][k]))
            summary["peak_worker_rss_mib"] = max(summary.get("peak_worker_rss_mib", 0.0),
                                                 round(float(batch["peak_rss_mib"][k]), 1))
            p = pending.setdefault(pid, _Pending(by_id[pid], int(batch["n_frames"][k])))
            i = int(batch["index"][k])
            record = json.loads(batch["record"][k])
            audit = audit or {key: record["audit"][key] for key in ("model", "engine_version", "config_hash")}
            p.records[i], p.features[i] = record, json.loads(batch["features"][k])
            p.spacing[i] = float(batch["spacing_mm"][k])
            p.failed += bool(batch["failed"][k])
            p.last_unix = time.time()
            summary["frames"] += 1
            if len(p.records) == p.n_frames:
                _finish(pending.pop(pid), out, options.config, audit)
                summary["analysed"] += 1
                summary["failed_frames"] += p.failed
                done += 1
                if on_pullback is not None:
                    on_pullback(pid)
        if progress:
            elapsed = time.perf_counter() - t0
            rate = summary["frames"] / elapsed if elapsed > 0 else 0.0
            finished = done - summary["skipped"]
            eta = (elapsed / finished * (total - done)) if finished else float("nan")
            progress.update(done, total, f"pullbacks, {summary['frames']} frames, {rate:.1f} frames/s, "
                            f"ETA {eta:.0f} s")
    if progress:
        progress.close()
    for pid, p in pending.items():  # frames lost (an actor died mid-pullback): say so, keep going
        failures.append({"source": p.entry.path, "pullback_id": pid,
                         "reason": f"only {len(p.records)} of {p.n_frames} frames came back"})
        summary["failed"] += 1
    summary["nodes"], summary["read_nodes"] = sorted(nodes), sorted(read_nodes)



def _finish(p: _Pending, out: Path, config: Config, audit: dict) -> None:
    records = [p.records[i] for i in range(p.n_frames)]
    document = reanalysis_document(p, records, config, audit)
    write_results(out / "pullbacks", p.entry.pullback_id, records, document)
    write_frame_part(out, p.entry.pullback_id,
                     [frame_row(r, p.features[r["frame"]], p.entry.path) for r in records])
