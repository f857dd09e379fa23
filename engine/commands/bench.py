"""``octguide bench SUITE [options]``: run a benchmark from the source tree's ``bench/`` folder.

Each suite is a script ``bench/bench_<suite>.py`` exposing ``add_arguments(parser)`` and
``run(args) -> int``; adding a suite (``bench model``, ``bench e2e``) is one entry in
:data:`SUITES` plus its script. The scripts live in ``bench/`` (benchmarks are not tests and not
part of the wheel), so this command works from a source checkout; from an installed wheel it says
where to run it instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from streams.errors import OctguideError

SUITES = {
    "scan": "scan conversion: octguide's CPU/GPU kernels vs cv2.warpPolar, cv2.remap, "
            "scipy/cupyx map_coordinates (500 x 1000 -> 1024 x 1024)",
    "model": "segmentation model: ONNX Runtime vs torch eager, the whole segment stage, "
             "TensorRT where usable, int8 variants (--int8)",
    "measure": "per-frame metal detection + measurement on one core (500-A-line phantom frames) "
               "against its 5 ms budget",
    "reanalyse": "archive re-analysis on Ray: frames/s at 1 and 2 workers, per-frame cost against "
                 "the engine's analysis stage on the same frames, peak memory per worker",
    "stages": "per-stage p50/p99 of the frame path (preprocess, inference, read-out, metal, "
              "measure, scan conversion, render, encoding) against the issue-17 budgets, raw and "
              "scaled to this machine, with the naive loop in the same run",
    "e2e": "end to end through real sockets: console -> octguide serve (separate process) -> "
           "display at 30/180 frames/s and flat out, per stage, against a naive in-process loop",
}
"""Suite name -> one-line help. The script is ``bench/bench_<name>.py``."""


def bench_folder() -> Path | None:
    """The ``bench/`` folder of the source checkout this engine runs from, or of the CWD."""
    for root in (Path(__file__).resolve().parents[2], Path(os.getcwd())):
        if (root / "bench").is_dir() and (root / "engine").is_dir():
            return root / "bench"
    return None


def load_suite(name: str) -> ModuleType:
    """Import ``bench/bench_<name>.py`` by path (``bench/`` is not a package)."""
    folder = bench_folder()
    script = folder / f"bench_{name}.py" if folder else None
    if script is None or not script.is_file():
        raise OctguideError(f"benchmark script bench/bench_{name}.py not found: run octguide bench "
                            "from a source checkout (benchmarks are not shipped in the wheel)")
    spec = importlib.util.spec_from_file_location(f"octguide_bench_{name}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _SuiteParser(argparse.ArgumentParser):
    """The parser of one suite: its options come from the suite script's ``add_arguments``,
    imported only when that suite is named (the CLI does not import every benchmark to start)."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        try:
            module = load_suite(self.prog.rsplit(" ", 1)[-1])
        except OctguideError as exc:
            self.exit(2, f"{self.prog}: error: {exc}\n")
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        module.add_arguments(parser)
        namespace = parser.parse_args(args, namespace)
        namespace.handler = run
        return namespace, []


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure kernel speed against peers and record the result in bench/results/",
        description="Run a benchmark suite from the source tree's bench/ folder. Results are printed "
        "(table or --json) and saved as bench/results/<suite>_<host>_<date>.json.",
    )
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", parser_class=_SuiteParser)
    suites.required = True
    for name, help_text in SUITES.items():
        suites.add_parser(name, help=help_text, description=help_text, add_help=False)


def run(args: argparse.Namespace) -> int:
    return int(load_suite(args.suite).run(args) or 0)
