"""What every benchmark in ``bench/`` records about its machine, how it times, and where it
saves results.

Numbers on the shared 2-core development machines move with other jobs' load, so each result
carries the machine, library versions and the load average it was taken under.

Timing: :class:`StageTimes` is the one loop every bench times with (``bench_stages``,
``bench_measure``, ``bench_model``, ``bench_e2e``'s naive loop, ``bench_cpu_reference``,
``bench_scan``): wall time (``time.perf_counter``) and the calling thread's CPU time
(``time.thread_time``, the steadier clock on a shared machine) per call of a named stage, and
one summary (:func:`latency_stats`). :func:`interleaved` lets several candidates take turns in
blocks, so load that comes and goes hits all of them alike.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.compute.backends import registry


def latency_stats(samples_s: Sequence[float] | np.ndarray, centre: str = "median") -> dict:
    """Summary of per-call times given in seconds, in ms rounded to the microsecond.

    Returns ``{centre}_ms`` (the median; ``centre`` names it "median" or "p50" as the bench's
    schema has it), ``p99_ms``, ``mean_ms``, ``min_ms`` and ``samples``.

    >>> latency_stats([0.001, 0.002, 0.003], centre="p50")
    {'p50_ms': 2.0, 'p99_ms': 2.98, 'mean_ms': 2.0, 'min_ms': 1.0, 'samples': 3}
    """
    a = np.asarray(samples_s, dtype=np.float64) * 1e3
    if a.size == 0:
        return {f"{centre}_ms": None, "p99_ms": None, "mean_ms": None, "min_ms": None, "samples": 0}
    return {f"{centre}_ms": round(float(np.median(a)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "min_ms": round(float(a.min()), 3), "samples": int(a.size)}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """``(fn(*args, **kwargs), wall s, this thread's CPU s)`` of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.thread_time() - cpu


class StageTimes:
    """Per-call wall and thread-CPU seconds of named stages, in the order they were first seen.

    >>> times = StageTimes()
    >>> total = times.call("add", sum, [1, 2, 3])
    >>> with times.stage("sleep"):
    ...     time.sleep(0.002)
    >>> total, list(times.wall_s), times.summary()["sleep"]["samples"]
    (6, ['add', 'sleep'], 1)
    """

    def __init__(self) -> None:
        self.wall_s: dict[str, list[float]] = {}
        self.cpu_s: dict[str, list[float]] = {}

    def add(self, stage: str, wall_s: float, cpu_s: float | None = None) -> None:
        """Record one sample (CPU time optional: stages timed elsewhere have only wall time)."""
        self.wall_s.setdefault(stage, []).append(float(wall_s))
        if cpu_s is not None:
            self.cpu_s.setdefault(stage, []).append(float(cpu_s))

    def call(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, timed as one sample of ``stage``; returns its result."""
        result, wall, cpu = timed(fn, *args, **kwargs)
        self.add(stage, wall, cpu)
        return result

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as one sample of ``name``."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.thread_time() - cpu)

    def sum_of(self, name: str, parts: Sequence[str]) -> None:
        """Add stage ``name`` whose every sample is the sum of the same samples of ``parts``."""
        for store in (self.wall_s, self.cpu_s):
            if all(p in store for p in parts):
                store[name] = [float(sum(v)) for v in zip(*(store[p] for p in parts), strict=True)]

    def samples_ms(self, stage: str, clock: str = "wall") -> np.ndarray:
        """The samples of ``stage`` in ms (``clock``: "wall" or "cpu")."""
        store = self.wall_s if clock == "wall" else self.cpu_s
        return np.asarray(store.get(stage, ()), dtype=np.float64) * 1e3

    def summary(self, stages: Sequence[str] | None = None, centre: str = "median",
                clock: str = "wall") -> dict[str, dict]:
        """:func:`latency_stats` of each stage (all of them by default)."""
        store = self.wall_s if clock == "wall" else self.cpu_s
        return {name: latency_stats(store.get(name, ()), centre) for name in (stages or list(store))}


def interleaved(calls: dict[str, Callable[[int], object]], repeats: int, warmup: int = 0,
                block: int = 1) -> StageTimes:
    """Time every ``call(i)`` ``repeats`` times (``i`` = 0, 1, ..) after ``warmup`` untimed calls
    each, the candidates taking turns in blocks of ``block`` calls: load that comes and goes on
    shared cores hits them alike (a block rather than single calls where a runtime's idle threads
    keep spinning for a while after a call and would tax whichever candidate runs next)."""
    for call in calls.values():
        for i in range(warmup):
            call(i)
    times = StageTimes()
    done = dict.fromkeys(calls, 0)
    while any(n < repeats for n in done.values()):
        for name, call in calls.items():
            for _ in range(min(block, repeats - done[name])):
                times.call(name, call, done[name])
                done[name] += 1
    return times


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Host, CPU, cores, platform, Python, load average now, and the backend registry's
    versions of the libraries it found usable."""
    backends = registry().report()["backends"]
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "libraries": {name: e["version"] for name, e in backends.items() if e["available"]},
    }


def result_stem(suite: str, result: dict, folder: Path) -> Path:
    """``folder/<suite>_<host>_<YYYYmmdd-HHMMSS>`` (no suffix), the folder created."""
    folder.mkdir(parents=True, exist_ok=True)
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in result["machine"]["host"])[:40]
    return folder / f"{suite}_{host}_{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def save_json(suite: str, result: dict, folder: Path) -> Path:
    """Write ``result`` as ``<suite>_<host>_<date>.json`` in ``folder``; returns the path."""
    path = result_stem(suite, result, folder).with_suffix(".json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
