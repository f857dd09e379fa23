"""Installed model versions, the active one, and rollback.

The registry reads the manifests in the models folder (``models/weights/*.manifest.json`` by
default); it never writes weights or manifests. A model is named by its key (the manifest's
file stem, e.g. ``octseg`` or ``octseg.int8-static``), by ``NAME@VERSION``, by its version where
that is unique, or by a path to a model or manifest file. Every use verifies the manifest and the
model file's sha256 (:func:`models.manifest.load_manifest`); a model that does not verify is
refused.

The active version is the config's ``[segment] model_version`` (``octguide model activate VERSION
--config FILE`` writes it into that TOML file). Which model a command runs, first match wins:
its ``--model``; ``[segment] model_version``; ``[segment] model`` (a path); the version last
activated without ``--config`` (``STATE_DIR/active-model.json``, ``$OCTGUIDE_STATE_DIR``, else
``~/.config/octguide``); the installed default weights. Every activation is also recorded in the
state file, with the history that ``rollback`` walks back.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.analysis.segment import DEFAULT_MODEL
from engine.config import ConfigError, load_config
from models.manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    ModelLookupError,
    ModelManifestError,
    find_installed,
    load_manifest,
    manifest_path_for,
    parse_manifest,
)
from streams.errors import OctguideError

STATE_FILE = "active-model.json"


class RegistryError(OctguideError):
    """An unknown model, a model whose manifest does not verify, or nothing to roll back to."""


@dataclass(frozen=True)
class InstalledModel:
    """One installed model: its manifest, and whether it verified (sha256, signature).

    Attributes
    ----------
    key : str
        Manifest file stem.
    manifest_path : pathlib.Path
        Its manifest.
    manifest : Manifest or None
        Parsed manifest (None when it cannot be parsed).
    verified : bool
        The manifest parses and the model file's sha256 matches it.
    error : str or None
        Why it does not verify.
    """

    key: str
    manifest_path: Path
    manifest: Manifest | None
    verified: bool
    error: str | None = None
    data: dict = field(default_factory=dict, compare=False)

    @property
    def model_path(self) -> Path:
        if self.manifest is None:
            raise RegistryError(f"{self.manifest_path}: {self.error}")
        return self.manifest.model_path

    def describe(self) -> dict:
        m = self.manifest
        return {"key": self.key, "name": m.name if m else None, "version": m.version if m else None,
                "sha256": m.sha256 if m else None, "verified": self.verified, "error": self.error,
                "manifest": str(self.manifest_path), "file": str(m.model_path) if m else None,
                "description": self.data.get("description"), "recipe": self.data.get("training"),
                "quantisation": self.data.get("quantisation"), "evaluation": self.data.get("evaluation")}


def _key(manifest_path: Path) -> str:
    return manifest_path.name[: -len(MANIFEST_SUFFIX)]


def inspect(manifest_path: Path) -> InstalledModel:
    """Parse and verify one manifest (never raises: a failure is recorded in ``error``)."""
    try:
        manifest = parse_manifest(manifest_path)
    except ModelManifestError as exc:
        return InstalledModel(_key(manifest_path), manifest_path, None, False, str(exc))
    try:
        load_manifest(manifest_path)
    except ModelManifestError as exc:
        return InstalledModel(_key(manifest_path), manifest_path, manifest, False, str(exc), manifest.data)
    return InstalledModel(_key(manifest_path), manifest_path, manifest, True, None, manifest.data)


class ModelRegistry:
    """The installed models of ``models_dir`` and the active version recorded in ``state_dir``."""

    def __init__(self, models_dir: Path | None = None, state_dir: Path | None = None):
        self.models_dir = Path(models_dir) if models_dir else DEFAULT_MODEL.parent
        env = os.environ.get("OCTGUIDE_STATE_DIR")
        self.state_dir = Path(state_dir or env or Path.home() / ".config" / "octguide")

    def installed(self) -> list[InstalledModel]:
        return [inspect(p) for p in sorted(self.models_dir.glob(f"*{MANIFEST_SUFFIX}"))]

    def find(self, spec: str) -> InstalledModel:
        path = Path(spec)
        if path.suffix in (".onnx", ".json") and path.exists():
            return inspect(manifest_path_for(path))
        try:
            return inspect(find_installed(spec, self.models_dir))
        except ModelLookupError as exc:
            raise RegistryError(str(exc)) from None

    def active_spec(self, segment: Any = None) -> tuple[str, str]:
        """What names the active model, and where that came from (the precedence of the module
        docstring, less a command's ``--model``): ``(spec, "config" | "config path" | "state" |
        "default")``. ``segment`` is a config's ``[segment]`` (:class:`engine.config.SegmentConfig`)."""
        if segment is not None and segment.model_version:
            return segment.model_version, "config"
        if segment is not None and segment.model:
            return segment.model, "config path"
        if self.state().get("active"):
            return self.state()["active"], "state"
        return _key(Path(str(DEFAULT_MODEL)).with_suffix(MANIFEST_SUFFIX)), "default"

    def resolve(self, spec: str | None = None, segment: Any = None) -> InstalledModel:
        """The model ``spec`` names (None: the active one, :meth:`active_spec`), verified.

        Raises
        ------
        RegistryError
            Unknown, ambiguous, or its manifest or sha256 does not verify.
        """
        if spec is None:
            spec, _ = self.active_spec(segment)
        model = self.find(spec)
        if not model.verified:
            raise RegistryError(f"refusing model {model.key}: {model.error}")
        return model

    def state(self) -> dict:
        try:
            return json.loads((self.state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return {"active": None, "history": []}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{self.state_dir / STATE_FILE}: not readable ({exc})") from None

    def _write_state(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".{STATE_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_dir / STATE_FILE)

    def activate(self, spec: str, config_path: Path | None = None) -> InstalledModel:
        """Make ``spec`` the active version (verified first): recorded in the state file, and
        with ``config_path`` written into that config as ``[segment] model_version``; the
        previous one goes on the history that :meth:`rollback` returns to."""
        model = self.resolve(spec)
        if config_path is not None:
            write_model_version(Path(config_path), model.key)
        state = self.state()
        if state.get("active") and state["active"] != model.key:
            state["history"] = [*state.get("history", []), state["active"]]
        state["active"] = model.key
        state["sha256"] = model.manifest.sha256
        self._write_state(state)
        return model

    def rollback(self, config_path: Path | None = None) -> InstalledModel:
        """Make the previously active version active again (verified first; with
        ``config_path``, written into that config too)."""
        state = self.state()
        history = list(state.get("history") or [])
        if not history:
            raise RegistryError("nothing to roll back to: no earlier active model is recorded")
        model = self.resolve(history.pop())
        if config_path is not None:
            write_model_version(Path(config_path), model.key)
        self._write_state({"active": model.key, "sha256": model.manifest.sha256, "history": history})
        return model


_TABLE = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
_MODEL_VERSION_LINE = re.compile(r"^\s*model_version\s*=")


def write_model_version(config_path: Path, key: str) -> None:
    """Set ``[segment] model_version = "KEY"`` in the TOML file ``config_path`` (created if
    absent), keeping every other line and comment as it is; the result is validated as a
    config before it replaces the file atomically.

    Raises
    ------
    RegistryError
        The file cannot be read or written, or the result is not a valid config (for example
        ``[segment] model`` names a model path too: the two may not both be set).
    """
    try:
        lines = config_path.read_text().splitlines() if config_path.exists() else []
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{config_path}: cannot read the configuration ({exc})") from None
    setting = f"model_version = {json.dumps(key)}"
    table, start = None, None
    for number, line in enumerate(lines):
        match = _TABLE.match(line)
        if match:
            table = match.group(1)
            if table == "segment":
                start = number
        elif table == "segment" and _MODEL_VERSION_LINE.match(line):
            lines[number] = setting
            break
    else:
        if start is None:
            lines += ["", "[segment]", setting] if lines else ["[segment]", setting]
        else:
            lines.insert(start + 1, setting)
    tmp = config_path.with_name(f".{config_path.name}.tmp-{os.getpid()}")
    try:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("\n".join(lines) + "\n")
        load_config(tmp)
        os.replace(tmp, config_path)
    except ConfigError as exc:
        raise RegistryError(f"{config_path}: not activated: {str(exc).split(': ', 1)[-1]}") from None
    except OSError as exc:
        raise RegistryError(f"{config_path}: cannot write the configuration ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
