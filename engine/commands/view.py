"""``octguide view [--engine ADDRESS] [--port 8080]``: the live browser viewer.

Serves the cath-lab display page on localhost and bridges the engine's overlays to it over a
WebSocket (:mod:`engine.viewer.bridge`, docs/viewer.md). ``--results DIR`` shows a finished replay's
results instead (``octguide replay --out DIR``), rebuilding images from the pullback it read.
SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path

from engine.commands.console_sim import add_curve_arguments, curve_keys
from engine.commands.serve import add_config_arguments, build_config, write_endpoints
from engine.viewer.bridge import ViewerBridge, results_source

log = logging.getLogger("octguide.view")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "view",
        help="serve the live browser viewer of an engine's overlays (or of a replay's results)",
        description="Serve the cath-lab display page on localhost: live overlays, L-mode, lumen "
        "profile, guidance, from a running engine (--engine, its control endpoint) or a finished "
        "replay (--results DIR).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--engine", default="tcp://127.0.0.1:5558",
                        help="the engine's control endpoint (default tcp://127.0.0.1:5558)")
    source.add_argument("--results", type=Path, default=None,
                        help="a replay's results folder (octguide replay --out DIR) instead of an engine")
    parser.add_argument("--pullback", type=Path, default=None,
                        help="with --results: the pullback file the replay read (default: from DIR/replay.json)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve the page on (default 127.0.0.1; others need --allow-remote)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP/WebSocket port (default 8080; 0: any free)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="serve on a non-loopback address (the page has no authentication)")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="also accept pages from ORIGIN (scheme://host[:port]; repeatable); "
                        "by default only the viewer's own origin may open its WebSocket")
    parser.add_argument("--image-cache-mib", type=float, default=512.0,
                        help="live images kept for scrubbing, MiB (default 512)")
    parser.add_argument("--url-file", type=Path, default=None,
                        help="write {\"url\": ...} here as JSON once serving (for wrappers using --port 0)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    add_config_arguments(parser)
    add_curve_arguments(parser)
    parser.set_defaults(handler=run)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve_viewer(bridge: ViewerBridge, url_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bridge.start()
    try:
        if url_file is not None:
            write_endpoints(url_file, {"url": bridge.url})
        source = f"results {bridge.results.results_dir}" if bridge.results else f"engine {bridge.engine}"
        print(f"octguide viewer on {bridge.url} ({source})", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await bridge.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (0 <= args.port <= 65535):
        raise SystemExit(f"octguide: error: --port {args.port}: not a TCP port")
    if not _loopback(args.host) and not args.allow_remote:
        raise SystemExit(f"octguide: error: --host {args.host} is not loopback: the page has no "
                         "authentication; add --allow-remote to serve it anyway")
    if args.pullback is not None and args.results is None:
        raise SystemExit("octguide: error: --pullback goes with --results")
    if args.results is not None:
        results = results_source(args.results, args.pullback, build_config(args.config, args.overrides))
        bridge = ViewerBridge(None, args.host, args.port, results=results, allowed_origins=args.allow_origin)
    else:
        bridge = ViewerBridge(args.engine, args.host, args.port, curve=curve_keys(args),
                              image_cache_mib=args.image_cache_mib, allowed_origins=args.allow_origin)
    asyncio.run(serve_viewer(bridge, args.url_file))
    return 0
