"""What every benchmark in ``bench/`` records about its machine, and where it saves results.

Numbers on the shared 2-core development machines move with other jobs' load, so each result
carries the machine, library versions and the load average it was taken under.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
from pathlib import Path

from engine.compute.backends import registry


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
