"""``octguide model list | show VERSION | activate VERSION | rollback``.

The installed models (``models/weights/*.manifest.json``) with their manifests, each verified
(sha256 of the model file, signature); one active version, recorded in the state folder
(:mod:`engine.fleet.registry`: the engine config has no model field yet); a model whose
manifest does not verify is refused.
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
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.fleet.registry import ModelRegistry

    registry = ModelRegistry(args.models_dir, args.state_dir)
    if args.action in ("show", "activate") and not args.version:
        raise SystemExit(f"octguide model {args.action}: error: VERSION is required")
    if args.action == "list":
        active = registry.state().get("active")
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
    model = registry.activate(args.version) if args.action == "activate" else registry.rollback()
    print(f"active model: {model.key} ({model.manifest.name} {model.manifest.version}, "
          f"sha256 {model.manifest.sha256[:12]}...)")
    return 0
