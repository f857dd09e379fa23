"""The ``octguide`` console script.

Each subcommand lives in its own module under :mod:`engine.commands` and exposes
``register(subparsers)``; the module is found by name, so adding a command touches no other file.
Usage errors and configuration errors (a bad ``--config`` file or ``--set``:
:class:`~engine.config.ConfigError`) exit 2 with one line on stderr; an
:class:`~streams.errors.OctguideError` exits 1 with one line naming what was wrong.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import engine.commands
from engine import __version__
from engine.config import ConfigError
from streams.errors import OctguideError


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="octguide",
        description="Real-time intravascular OCT guidance engine "
        "(engineering software trained on synthetic data: not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"octguide {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(engine.commands.__path__), key=lambda m: m.name):
        if info.name == "cli":  # this module: the entry point, not a subcommand
            continue
        module = importlib.import_module(f"engine.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"octguide: config error: {exc}", file=sys.stderr)
        return 2
    except OctguideError as exc:
        print(f"octguide: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("octguide: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
