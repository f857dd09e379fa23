"""``octguide model list | show VERSION | activate VERSION | rollback``.

The installed models (``models/weights/*.manifest.json``) with their manifests, each verified
(sha256 of the model file, signature); one active version, the config's ``[segment]
model_version`` (``activate``/``rollback --config FILE`` write it there; without ``--config`` the
version is recorded in the state folder and the command prints the line to put in the config;
precedence in :mod:`engine.fleet.registry`); a model whose manifest does not verify is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="installed model versions: list, show, activate, rollback",
                                   description="List, inspect, activate and roll back installed models.")
    parser.add_argument("action", choices=("list", "show", "activate", "rollback"))
    parser.add_argument("version", nargs="?", default=None, help="model key, NAME@VERSION or version")
    parser.add_argument("--models-dir", type=Path, default=None, help="installed models (default: models/weights)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the active version is recorded (default: $OCTGUIDE_STATE_DIR or ~/.config/octguide)")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config whose [segment] model_version activate/rollback set (created if "
                        "absent) and list reads")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.fleet.registry import ModelRegistry, RegistryError

    registry = ModelRegistry(args.models_dir, args.state_dir)
    if args.action in ("show", "activate") and not args.version:
        raise SystemExit(f"octguide model {args.action}: error: VERSION is required")
    if args.action == "list":
        segment = load_config(args.config).segment if args.config and args.config.exists() else None
        spec, _ = registry.active_spec(segment)
        try:
            active = registry.find(spec).key
        except RegistryError:
            active = None
        models = [m.describe() | {"active": m.key == active} for m in registry.installed()]
        if args.json:
            print(json.dumps(models, indent=2))
        for m in [] if args.json else models:
            state = "verified" if m["verified"] else f"REFUSED ({m['error']})"
            print(f"{'*' if m['active'] else ' '} {m['key']:<24} {m['name']} {m['version']}  "
                  f"sha256 {str(m['sha256'])[:12]}...  {state}")
        return 0
    if args.action == "show":
        model = registry.find(args.version).describe()
        print(json.dumps(model, indent=2, default=str))
        return 0 if model["verified"] else 1
    model = (registry.activate(args.version, args.config) if args.action == "activate"
             else registry.rollback(args.config))
    print(f"active model: {model.key} ({model.manifest.name} {model.manifest.version}, "
          f"sha256 {model.manifest.sha256[:12]}...)")
    if args.config:
        print(f"written to {args.config}: [segment] model_version = {json.dumps(model.key)}")
    else:
        print(f"recorded in {registry.state_dir}; a config's [segment] model_version takes precedence: "
              f'set model_version = {json.dumps(model.key)} under [segment] (or pass --config FILE)')
    return 0
