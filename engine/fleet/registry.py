"""Installed model versions, the active one, and rollback.

The registry reads the manifests in the models folder (``models/weights/*.manifest.json`` by
default); it never writes weights or manifests. A model is named by its key (the manifest's
file stem, e.g. ``octseg`` or ``octseg.int8-static``), by ``NAME@VERSION``, by its version where
that is unique, or by a path to a model or manifest file. Every use verifies the manifest and the
model file's sha256 (:func:`models.manifest.load_manifest`); a model that does not verify is
refused. The engine config has no model field yet, so the active version is recorded in
``STATE_DIR/active-model.json`` (``$OCTGUIDE_STATE_DIR``, else ``~/.config/octguide``), with the
history that ``rollback`` walks back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.analysis.segment import DEFAULT_MODEL
from models.manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    ModelManifestError,
    load_manifest,
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
            manifest = path if path.name.endswith(MANIFEST_SUFFIX) else path.with_name(
                path.name.rsplit(".", 1)[0] + MANIFEST_SUFFIX)
            return inspect(manifest)
        models = self.installed()
        for match in (lambda m: m.key == spec,
                      lambda m: m.manifest is not None and f"{m.manifest.name}@{m.manifest.version}" == spec,
                      lambda m: m.manifest is not None and m.manifest.version == spec):
            found = [m for m in models if match(m)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise RegistryError(f"model {spec!r} is ambiguous: {', '.join(m.key for m in found)} "
                                    "(name one by key)")
        raise RegistryError(f"no installed model {spec!r} in {self.models_dir}; installed: "
                            f"{', '.join(m.key for m in models) or 'none'}")

    def resolve(self, spec: str | None = None) -> InstalledModel:
        """The model ``spec`` names (None: the active one, else the shipped default), verified.

        Raises
        ------
        RegistryError
            Unknown, ambiguous, or its manifest or sha256 does not verify.
        """
        if spec is None:
            spec = self.state().get("active") or _key(Path(str(DEFAULT_MODEL)).with_suffix(MANIFEST_SUFFIX))
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

    def activate(self, spec: str) -> InstalledModel:
        """Record ``spec`` as the active version (verified first); the previous one goes on the
        history that :meth:`rollback` returns to."""
        model = self.resolve(spec)
        state = self.state()
        if state.get("active") and state["active"] != model.key:
            state["history"] = [*state.get("history", []), state["active"]]
        state["active"] = model.key
        state["sha256"] = model.manifest.sha256
        self._write_state(state)
        return model

    def rollback(self) -> InstalledModel:
        """Make the previously active version active again (verified first)."""
        state = self.state()
        history = list(state.get("history") or [])
        if not history:
            raise RegistryError("nothing to roll back to: no earlier active model is recorded")
        model = self.resolve(history.pop())
        self._write_state({"active": model.key, "sha256": model.manifest.sha256, "history": history})
        return model
