"""``octguide keys [--out DIR] [--name NAME]``: create a CurveZMQ certificate pair.

The engine needs ``engine.key_secret`` (``server.server_secret_key``) and a folder holding the
public ``NAME.key`` of every client allowed to connect (``server.authorized_clients``); each
client needs its own ``NAME.key_secret`` and the engine's public ``engine.key``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.realtime.security import SERVER_CERT, generate_keys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="create a CurveZMQ key pair for the engine or a client",
        description="Create NAME.key (public: give it to the other side) and NAME.key_secret "
        "(keep it; mode 0600). Existing keys are never overwritten.",
    )
    parser.add_argument("--out", type=Path, default=Path("keys"), help="folder (default ./keys)")
    parser.add_argument("--name", default=SERVER_CERT,
                        help=f"certificate name (default {SERVER_CERT!r}; use e.g. 'console' for a client)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    public, secret = generate_keys(args.out, args.name)
    print(f"public key  {public}")
    print(f"secret key  {secret} (keep private)")
    if args.name == SERVER_CERT:
        print("engine: set server.curve = true, server.server_secret_key to the secret key and "
              "server.authorized_clients to a folder of client public keys")
    else:
        print(f"client: copy {public.name} into the engine's server.authorized_clients folder")
    return 0
