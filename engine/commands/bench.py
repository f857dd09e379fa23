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


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    # Kept in step with each suite's add_arguments; the suite module is imported only on run.
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--repeats", type=int, default=300, metavar="N", help="timed calls per backend")
    parser.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="measure all backends this many times, interleaved")
    parser.add_argument("--frames", type=int, default=8, metavar="N", help="distinct frames cycled")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure kernel speed against peers and record the result in bench/results/",
        description="Run a benchmark suite from the source tree's bench/ folder. Results are printed "
        "(table or --json) and saved as bench/results/<suite>_<host>_<date>.json.",
    )
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", parser_class=type(parser))
    suites.required = True
    for name, help_text in SUITES.items():
        suite = suites.add_parser(name, help=help_text, description=help_text)
        _common_arguments(suite)
        suite.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return int(load_suite(args.suite).run(args) or 0)
