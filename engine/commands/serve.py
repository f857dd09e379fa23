"""``octguide serve [--config FILE] [--set SECTION.KEY=VALUE ...]``: run the engine.

Binds loopback endpoints by default (``[server]`` in the config, docs/protocol.md); SIGINT and
SIGTERM stop it cleanly: pending frames are analysed for up to ``server.stop_drain_s``, results
and the case log are flushed, open pullbacks are closed as incomplete, sockets closed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

from engine.config import Config, ConfigError, load_config
from engine.realtime.server import Engine

log = logging.getLogger("octguide.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the engine: frames in over ZeroMQ, overlays and guidance out",
        description="Run the octguide engine. Endpoints, limits, analysis stage and security come "
        "from the [server] section of the config (loopback by default); --set overrides any key. "
        "SIGINT/SIGTERM flush results and stop cleanly.",
    )
    add_config_arguments(parser)
    parser.add_argument("--insecure", action="store_true",
                        help="allow non-loopback endpoints without CurveZMQ (logged, reported)")
    parser.add_argument("--endpoints-file", type=Path, default=None,
                        help="write the bound endpoints here as JSON once serving (for wrappers "
                        "that bind port 0: tcp://127.0.0.1:*)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.set_defaults(handler=run)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--set``, shared by every command that starts an engine."""
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (TOML syntax; bare words are strings), "
                        "e.g. --set server.workers=2 --set server.frames_endpoint=tcp://127.0.0.1:6000")


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"server.workers=2"`` -> ``("server", "workers", 2)``.

    >>> parse_override("server.frames_endpoint=tcp://127.0.0.1:*")
    ('server', 'frames_endpoint', 'tcp://127.0.0.1:*')
    >>> parse_override("guidance.stent_lengths_mm=[8, 12]")
    ('guidance', 'stent_lengths_mm', [8, 12])
    """
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not (sep and dot and section and name):
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, name, value


def build_config(path: Path | None, overrides: list[str], extra: dict[str, dict] | None = None) -> Config:
    """The validated config: file (or defaults), then ``extra`` (a command's own settings), then
    the ``--set`` overrides, so the user's explicit word wins."""
    data = load_config(path).to_dict() if path else {}
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    for text in overrides:
        section, name, value = parse_override(text)
        data.setdefault(section, {})[name] = value
    return Config.from_dict(data)


def write_endpoints(path: Path, endpoints: dict) -> None:
    """Write the endpoints JSON atomically (a watcher never reads half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(endpoints))
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = build_config(args.config, args.overrides,
                          {"server": {"insecure": True}} if args.insecure else None)
    engine = Engine(config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        endpoints = engine.start()
        if args.endpoints_file:
            write_endpoints(args.endpoints_file, endpoints)
        print("octguide engine serving " + " ".join(f"{k}={v}" for k, v in endpoints.items()),
              file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if engine.failure is not None:
                log.error("engine failed: %s", engine.failure)
                break
    finally:
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if engine.failure is not None else 0
