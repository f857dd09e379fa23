"""Re-analysis of an archive with Ray Data: the engine's own per-frame analysis over many files.

The pipeline (streaming: at most a few blocks of frames in flight, never the archive)::

    list files -> read + decode (CPU tasks, one file each, its frames decoded a bounded batch
         at a time and streamed out one row each: engine.fleet.frames)
      -> the engine's analysis stage in actors (engine.analysis.stages.stage_factory:
         preprocess, segment, metal, measure; the model loaded once per actor; ONNX Runtime
         with the actor's CPUs, or num_gpus=1 and the registry's GPU runtime on a GPU cluster)
      -> the driver: a pullback's records complete, in frame order -> its pullback.json
         (engine.realtime.results.pullback_document) and results folder (write_results, the
         engine's writer) + its Parquet part + its DICOM SR (engine.hospital, where installed)

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
from engine.analysis.segment import DEFAULT_MODEL
from engine.analysis.stages import stage_factory
from engine.compute.backends import BackendRegistry, registry
from engine.config import Config, SegmentConfig
from engine.fleet.archive import ArchiveFile, already_analysed, list_archive
from engine.fleet.cluster import READ_CPUS, ray_session, worker_cpus
from engine.fleet.features import frame_row, pixel_features
from engine.fleet.frames import DEFAULT_BATCH_FRAMES, FrameBatches
from engine.fleet.tables import join_frame_parts, write_failures, write_frame_part
from engine.progress import Progress
from engine.realtime.results import finished_record, pullback_document, write_results
from models.manifest import load_manifest
from streams.errors import OctguideError
from streams.files.io import sniff_format

BATCH_FRAMES = 4  #: frames per actor call (small: a frame is ~0.1-1 MB and the object store is small)
BLOCK_BYTES = 8 << 20  #: Ray Data's target block size here, bytes (frames stream in small blocks)
ACTOR_START_TIMEOUT_S = 600  #: how long the analysis actors may take to start (load and warm the model), s


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def _read_error(path: str, pullback_id: str, exc: BaseException, n_frames: int = 0) -> dict:
    return {"path": path, "pullback_id": pullback_id, "index": -1, "n_frames": n_frames, "spacing_mm": 0.0,
            "frame": b"", "error": f"{type(exc).__name__}: {exc}"[:500].replace("\n", " "),
            "read_node": _node(), "read_batch": -1}


def read_frames(row: dict, batch_frames: int = DEFAULT_BATCH_FRAMES):
    """Ray flat_map: one archive file -> its frames, one row each (pickled
    :class:`~streams.pullback.Frame` with the results id as its pullback id), decoded
    ``batch_frames`` at a time (:class:`~engine.fleet.frames.FrameBatches`: the task never holds
    the whole pullback); or one row with the reason the file could not be read (also after some
    of its frames, when a later batch is damaged: the driver then drops the pullback)."""
    path, pullback_id = str(row["path"]), str(row["pullback_id"])
    try:
        reader = FrameBatches(path, batch_frames, pullback_id)
        if len(reader) == 0:
            reader.close()
            raise ValueError("the file holds no frames")
    except Exception as exc:  # noqa: BLE001 (a bad file is a counted failure with its reason)
        yield _read_error(path, pullback_id, exc)
        return
    n, node = len(reader), _node()
    with reader:
        try:
            for number, batch in enumerate(reader.batches()):
                for frame in batch:
                    yield {"path": path, "pullback_id": pullback_id, "index": frame.index, "n_frames": n,
                           "spacing_mm": float(reader.meta.frame_spacing_mm[frame.index]),
                           "frame": pickle.dumps(frame), "error": "", "read_node": node,
                           "read_batch": number}
        except Exception as exc:  # noqa: BLE001 (damaged samples part-way: the file's failure)
            yield _read_error(path, pullback_id, exc, n)


GPU_RUNTIMES = ("tensorrt", "torch-cuda")  #: segmentation runtimes that run on a GPU (engine.config)


@dataclasses.dataclass(frozen=True)
class ActorRequest:
    """What each analysis actor asks Ray for and which segmentation runtime it runs.

    Attributes
    ----------
    num_cpus : float
        CPUs per actor (preprocessing, metal detection and measurement stay on the CPU).
    num_gpus : int
        GPUs per actor: 1 for a GPU actor (Ray then sets its ``CUDA_VISIBLE_DEVICES``), else 0.
    runtime, fallback : str
        ``[segment] runtime`` and ``fallback`` the actors run with (the actor's own backend
        registry still probes them on its node and reports what it selected).
    threads : int
        ONNX Runtime intra-op threads.
    why : str
        One line for the summary: why this request.
    """

    num_cpus: float
    num_gpus: int
    runtime: str
    fallback: str
    threads: int
    why: str

    def ray_kwargs(self) -> dict:
        """The resource arguments of the actor pool's ``map_batches``."""
        return {"num_cpus": self.num_cpus, **({"num_gpus": self.num_gpus} if self.num_gpus else {})}


def gpu_runtime(backends: BackendRegistry | None = None) -> str:
    """The first GPU segmentation runtime the backend registry has an implementation of
    (``tensorrt``: a cached engine from ``octguide build-engine``)."""
    names = [i.name for i in (backends or registry()).implementations("segment") if i.device == "gpu" and i.target]
    if not names:
        raise ReanalysisError("the backend registry has no GPU segmentation runtime")
    return names[0]


def actor_request(segment: SegmentConfig, cluster: dict, workers: int, gpu: bool | None = None,
                  backends: BackendRegistry | None = None) -> ActorRequest:
    """The actors' request on a cluster with ``cluster`` resources (``ray.cluster_resources()``).

    ``gpu`` None: GPU actors where the cluster has a GPU, each ``num_gpus=1`` running
    ``[segment] runtime`` if that is a GPU runtime, else the registry's (:func:`gpu_runtime`);
    True: GPU actors or an error; False: CPU actors.

    Raises
    ------
    ReanalysisError
        GPU actors asked for and fewer GPUs than workers, or a GPU runtime configured on a
        cluster without a GPU and no ``[segment] fallback``.
    """
    gpus = int(cluster.get("GPU", 0))
    cpus = worker_cpus(float(cluster.get("CPU", 1.0)), workers)
    threads = max(1, int(cpus))
    if gpus > 0 if gpu is None else gpu:
        if gpus < workers:
            raise ReanalysisError(f"{workers} GPU actor(s) need {workers} GPU(s); the cluster has {gpus} "
                                  "(--no-gpu runs on CPUs)")
        runtime = segment.runtime if segment.runtime in GPU_RUNTIMES else gpu_runtime(backends)
        fallback = segment.fallback if segment.fallback != runtime else ""
        return ActorRequest(cpus, 1, runtime, fallback, threads,
                            f"{gpus} GPU(s) in the cluster: {runtime} on one GPU per actor")
    if segment.runtime in GPU_RUNTIMES:
        if not segment.fallback:
            raise ReanalysisError(f"segment.runtime={segment.runtime!r} needs a GPU and the cluster has none "
                                  "(set segment.fallback, or run on a cluster with GPUs)")
        return ActorRequest(cpus, 0, segment.fallback, "", threads,
                            f"no GPU in the cluster: segment.fallback {segment.fallback!r}")
    return ActorRequest(cpus, 0, segment.runtime, segment.fallback, threads, "CPU actors")


def actor_config(config: Config, model_path: str, request: ActorRequest) -> Config:
    """``config`` as an analysis actor runs it: ``model_path`` (verified by the driver),
    the request's runtime and threads, no display rendering. The results carry the hash of the
    user's ``config``, not of this one (only how it runs differs)."""
    data = config.to_dict()
    data["segment"].update(model=model_path, model_version="", runtime=request.runtime,
                           fallback=request.fallback, threads=request.threads)
    data["server"]["render_image"] = False
    return Config.from_dict(data)


def analysis_stage(config: Config, model_path: str, request: ActorRequest):
    """The engine's own analysis stage (:func:`engine.analysis.stages.stage_factory`: every
    section of the config, the runtime chosen through the backend registry) for ``model_path``."""
    return stage_factory(actor_config(config, model_path, request))()


class FrameAnalysisActor:
    """Ray Data actor: holds one started analysis stage (the model loaded once) and turns
    batches of frame rows into record rows (JSON text), as the engine's worker does."""

    def __init__(self, config: dict, model_path: str, request: ActorRequest):
        user_config = Config.from_dict(config)
        self.stage = analysis_stage(user_config, model_path, request)
        self.stage.start()
        status = self.stage.status()
        self.audit = {"model": dict(status.get("model") or {}),
                      "engine_version": __version__, "config_hash": user_config.config_hash()}
        choice = status.get("segment") or {}
        self.runtime = f"{choice.get('selected')} ({choice.get('device')})" + (
            " fallback" if choice.get("fallback_used") else "")
        self.node = _node()

    def _record(self, frame, pullback_id: str) -> tuple[dict, bool]:
        start = time.perf_counter()
        try:
            result = self.stage.process(frame)
        except Exception as exc:  # noqa: BLE001 (the frame's fate, recorded as the engine does)
            rejected = {"frame": frame.index, "status": "rejected",
                        "reason": f"analysis_error: {type(exc).__name__}: {exc}"[:500]}
            latency = {"analysis": (time.perf_counter() - start) * 1e3}
            return finished_record(rejected, latency, "backfill", pullback_id, self.audit), True
        return finished_record(result.record, result.latency_ms, "backfill", pullback_id, self.audit), False

    def __call__(self, batch: dict) -> dict:
        records, features, failed = [], [], []
        for blob, pullback_id in zip(batch["frame"], batch["pullback_id"]):
            if not len(blob):
                records.append("")
                features.append("")
                failed.append(False)
                continue
            frame = pickle.loads(blob)
            record, bad = self._record(frame, str(pullback_id))
            records.append(json.dumps(record))
            features.append(json.dumps(pixel_features(frame)))
            failed.append(bad)
        n = len(records)
        return {"path": batch["path"], "pullback_id": batch["pullback_id"], "index": batch["index"],
                "n_frames": batch["n_frames"], "spacing_mm": batch["spacing_mm"], "error": batch["error"],
                "read_node": batch["read_node"], "read_batch": batch["read_batch"], "record": np.asarray(records, dtype=object),
                "features": np.asarray(features, dtype=object), "failed": np.asarray(failed),
                "node": np.asarray([self.node] * n, dtype=object),
                "runtime": np.asarray([self.runtime] * n, dtype=object),
                "done_unix": np.full(n, time.time()),
                "peak_rss_mib": np.full(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)}


class ReanalysisError(OctguideError):
    """A re-analysis that cannot run as asked (an output it was told to write is not available)."""


@dataclasses.dataclass
class _Pending:
    entry: ArchiveFile
    n_frames: int
    records: dict = dataclasses.field(default_factory=dict)
    features: dict = dataclasses.field(default_factory=dict)
    spacing: dict = dataclasses.field(default_factory=dict)
    read_batches: set = dataclasses.field(default_factory=set)
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
    read_batch_frames : int
        Frames a read task decodes at a time (it never holds more of a pullback's samples).
    gpu : bool or None
        GPU actors (``num_gpus=1`` each, :func:`actor_request`); None: where the cluster has GPUs.
    sr : bool or None
        Write each pullback's DICOM SR (``pullbacks/<id>/dicom/sr.dcm``, engine.hospital's
        writer); None: when the ``[hospital]`` extra is installed.
    """

    model_path: str = str(DEFAULT_MODEL)
    config: Config = dataclasses.field(default_factory=Config)
    workers: int = 1
    address: str | None = None
    num_cpus: int | None = None
    show_progress: bool = True
    read_batch_frames: int = DEFAULT_BATCH_FRAMES
    gpu: bool | None = None
    sr: bool | None = None


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
               "config_hash": config_hash, "workers": options.workers, "read_batches": 0,
               "sr_written": 0, "sr_failed": 0, "steady": {"frames": 0, "seconds": 0.0, "frames_per_s": None}}
    failures: list[dict] = []
    writer, summary["sr"] = sr_writer(options.sr)
    if writer is not None:  # a pullback analysed before, by a run that wrote no SR, gets it now
        analysing = {e.pullback_id for e in todo}
        for entry in entries:
            folder = out / "pullbacks" / entry.pullback_id
            if entry.pullback_id not in analysing and not (folder / "dicom" / "sr.dcm").exists():
                write_sr(writer, folder, entry, summary, failures)
    if todo:
        with ray_session(options.address, options.num_cpus) as resources:
            _run(todo, out, options, resources, summary, failures, on_pullback, len(entries), writer)
    duration = time.perf_counter() - started
    summary["duration_s"] = round(duration, 3)
    summary["frames_per_s"] = round(summary["frames"] / duration, 3) if duration > 0 else None
    summary["failures"] = failures
    summary["outputs"] = {"pullbacks": str(out / "pullbacks"),
                          "measurements": str(join_frame_parts(out, [e.pullback_id for e in entries])),
                          "failures": str(write_failures(out, failures))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _dataset(todo: list[ArchiveFile], options: ReanalysisOptions, request: ActorRequest):
    ctx = ray.data.DataContext.get_current()
    ctx.target_max_block_size = BLOCK_BYTES
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S  # every worker's model loaded before frames flow
    items = [{"path": e.path, "pullback_id": e.pullback_id} for e in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.flat_map(read_frames, num_cpus=READ_CPUS, fn_kwargs={"batch_frames": options.read_batch_frames})
    return ds.map_batches(
        FrameAnalysisActor, batch_size=BATCH_FRAMES, batch_format="numpy", **request.ray_kwargs(),
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        fn_constructor_kwargs={"config": options.config.to_dict(), "model_path": options.model_path,
                               "request": request})


def sr_writer(wanted: bool | None) -> tuple[Callable | None, str]:
    """engine.hospital's public SR writer (``write_report``) where the ``[hospital]`` extra is
    installed, and a one-line state for the summary.

    Raises
    ------
    ReanalysisError
        ``wanted`` is True and the writer cannot be imported.
    """
    if wanted is False:
        return None, "off (--no-sr)"
    try:
        from engine.hospital.export import write_report
    except ImportError as exc:
        if wanted:
            raise ReanalysisError(f"--sr needs the [hospital] extra (highdicom): {exc}") from None
        return None, f"off: the [hospital] extra is not installed ({exc})"
    return write_report, "on"


def write_sr(writer: Callable, folder: Path, entry: ArchiveFile, summary: dict, failures: list[dict]) -> None:
    """A pullback's SR beside its pullback.json (``dicom/sr.dcm``); a DICOM source gives it its
    patient, study and referenced instance (header only), any other a synthetic stand-in. A
    failure is counted (``sr_failed``) with its reason in the failures table."""
    try:
        source = entry.path if sniff_format(entry.path) == "dicom" else None
        writer(folder, source, folder / "dicom" / "sr.dcm")
    except (OctguideError, OSError, ValueError) as exc:
        summary["sr_failed"] += 1
        failures.append({"source": entry.path, "pullback_id": entry.pullback_id,
                         "reason": f"DICOM SR not written: {type(exc).__name__}: {exc}"[:500]})
        return
    summary["sr_written"] += 1


class _Collector:
    """The driver's side: frame rows in any order -> each pullback's records in frame order ->
    its results folder, Parquet part and SR once its last frame is back."""

    def __init__(self, todo: list[ArchiveFile], out: Path, options: ReanalysisOptions, summary: dict,
                 failures: list[dict], on_pullback: Callable[[str], None] | None, writer: Callable | None):
        self.by_id = {e.pullback_id: e for e in todo}
        self.out, self.options, self.summary, self.failures = out, options, summary, failures
        self.on_pullback = on_pullback
        self.pending: dict[str, _Pending] = {}
        self.failed_ids: set[str] = set()
        self.nodes: set[str] = set()
        self.read_nodes: set[str] = set()
        self.runtimes: set[str] = set()
        self.first_done: tuple[float, int] | None = None  # (earliest actor batch end, unix s; its frames)
        self.last_done_unix = 0.0
        self.done = summary["skipped"]
        self.audit: dict | None = None
        self.write_sr = writer

    def _fail(self, source: str, pullback_id: str, reason: str) -> None:
        self.failures.append({"source": source, "pullback_id": pullback_id, "reason": reason})
        self.summary["failed"] += 1
        self.done += 1

    def add(self, batch: dict, k: int) -> None:
        pid = str(batch["pullback_id"][k])
        self.read_nodes.add(str(batch["read_node"][k]))
        if pid in self.failed_ids:
            return  # the file failed part-way: its other frames are dropped
        if batch["error"][k]:
            self.failed_ids.add(pid)
            self.pending.pop(pid, None)
            self._fail(str(batch["path"][k]), pid, str(batch["error"][k]))
            return
        self.nodes.add(str(batch["node"][k]))
        self.runtimes.add(str(batch["runtime"][k]))
        self.summary["peak_worker_rss_mib"] = max(self.summary.get("peak_worker_rss_mib", 0.0),
                                                  round(float(batch["peak_rss_mib"][k]), 1))
        p = self.pending.setdefault(pid, _Pending(self.by_id[pid], int(batch["n_frames"][k])))
        i = int(batch["index"][k])
        record = json.loads(batch["record"][k])
        self.audit = self.audit or {key: record["audit"][key] for key in ("model", "engine_version", "config_hash")}
        p.records[i], p.features[i] = record, json.loads(batch["features"][k])
        p.spacing[i] = float(batch["spacing_mm"][k])
        p.read_batches.add(int(batch["read_batch"][k]))
        p.failed += bool(batch["failed"][k])
        p.last_unix = time.time()
        self._done(float(batch["done_unix"][k]))
        self.summary["frames"] += 1
        if len(p.records) == p.n_frames:
            self._finish(self.pending.pop(pid))

    def _finish(self, p: _Pending) -> None:
        records = [p.records[i] for i in range(p.n_frames)]  # the pullback's frame order, restored
        document = reanalysis_document(p, records, self.options.config, self.audit)
        folder = write_results(self.out / "pullbacks", p.entry.pullback_id, records, document)
        write_frame_part(self.out, p.entry.pullback_id,
                         [frame_row(r, p.features[r["frame"]], p.entry.path) for r in records])
        s = self.summary
        s["analysed"] += 1
        s["failed_frames"] += p.failed
        s["read_batches"] += len(p.read_batches)
        if self.write_sr is not None:
            write_sr(self.write_sr, folder, p.entry, s, self.failures)
        self.done += 1
        if self.on_pullback is not None:
            self.on_pullback(p.entry.pullback_id)

    def _done(self, done_unix: float) -> None:
        if self.first_done is None or done_unix < self.first_done[0]:
            self.first_done = (done_unix, 1)
        elif done_unix == self.first_done[0]:
            self.first_done = (done_unix, self.first_done[1] + 1)
        self.last_done_unix = max(self.last_done_unix, done_unix)

    def steady(self) -> dict:
        """The actors' steady rate: frames finished after the first actor batch over the time
        from its end to the last batch's end (the actors' clocks, s): actor start and model load
        are out, and so is the driver's buffering (results reach it in bursts)."""
        if self.first_done is None:
            return {"frames": 0, "seconds": 0.0, "frames_per_s": None}
        start, first = self.first_done
        frames, seconds = self.summary["frames"] - first, self.last_done_unix - start
        return {"frames": frames, "seconds": round(seconds, 3),
                "frames_per_s": round(frames / seconds, 3) if frames and seconds > 0 else None}

    def close(self) -> None:
        self.summary["steady"] = self.steady()
        for pid, p in self.pending.items():  # frames lost (an actor died mid-pullback): say so, keep going
            self._fail(p.entry.path, pid, f"only {len(p.records)} of {p.n_frames} frames came back")
        self.summary["nodes"], self.summary["read_nodes"] = sorted(self.nodes), sorted(self.read_nodes)
        self.summary.setdefault("actors", {})["runtimes"] = sorted(self.runtimes)


def _run(todo, out, options, resources, summary, failures, on_pullback, total, writer) -> None:
    request = actor_request(options.config.segment, resources, options.workers, options.gpu)
    summary["actors"] = dataclasses.asdict(request)
    collector = _Collector(todo, out, options, summary, failures, on_pullback, writer)
    progress = Progress("reanalyse") if options.show_progress else None
    t0 = time.perf_counter()
    for batch in _dataset(todo, options, request).iter_batches(batch_size=None, batch_format="numpy"):
        for k in range(len(batch["pullback_id"])):
            collector.add(batch, k)
        if progress:
            elapsed = time.perf_counter() - t0
            rate = summary["frames"] / elapsed if elapsed > 0 else 0.0
            finished = collector.done - summary["skipped"]
            eta = (elapsed / finished * (total - collector.done)) if finished else float("nan")
            progress.update(collector.done, total, f"pullbacks, {summary['frames']} frames, "
                            f"{rate:.1f} frames/s, ETA {eta:.0f} s")
    if progress:
        progress.close()
    collector.close()
