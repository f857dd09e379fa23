"""Model manifests: what a shipped model file is, checked before it is ever run.

A manifest is a JSON file next to the model (``<name>.manifest.json``) holding the model's
name, version, file name, sha256, opset, input/output names, shapes and dtypes, the model grid
and intensity mapping its input must be preprocessed with, the class lists, the training data
recipe and the evaluation metrics.

:func:`load_manifest` reads and validates the JSON and checks the file's sha256;
:func:`check_signature` compares the I/O a runtime reports with the manifest. Both raise a
:class:`ModelManifestError` subclass naming the file and what differs; nothing is run on a
model that fails either check.

>>> spec = TensorSpec("frames", ("batch", 1, 256, 384), "float32")
>>> spec.matches(("batch", 1, 256, 384)), spec.matches((None, 1, 256, 380))
(True, False)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from models.classes import ALineOutput, TissueClass
from models.grid import IntensityMapping, ModelGrid
from streams.errors import OctguideError

MANIFEST_SUFFIX = ".manifest.json"
FORMAT_VERSION = 1


class ModelManifestError(OctguideError):
    """A model or its manifest is missing, malformed or inconsistent."""


class ModelChecksumError(ModelManifestError):
    """The model file's sha256 differs from the manifest's (the file was changed or swapped)."""


class ModelSignatureError(ModelManifestError):
    """The model's input/output names, shapes or dtypes differ from the manifest's."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output.

    Attributes
    ----------
    name : str
        Tensor name in the graph.
    shape : tuple
        Dimensions: int for fixed ones, a str (symbolic name, e.g. "batch") for dynamic ones.
    dtype : str
        NumPy dtype name ("float32").
    """

    name: str
    shape: tuple
    dtype: str

    def matches(self, shape: tuple) -> bool:
        """True when ``shape`` (ints for fixed dims, str/None/-1 for dynamic ones) agrees."""
        if len(shape) != len(self.shape):
            return False
        for want, got in zip(self.shape, shape):
            dynamic_got = got is None or isinstance(got, str) or got == -1
            if isinstance(want, str) != dynamic_got or (not dynamic_got and int(got) != want):
                return False
        return True

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict) -> TensorSpec:
        return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest (see the module docstring).

    Attributes
    ----------
    path : pathlib.Path
        The manifest file.
    name, version : str
        Model name and version.
    model_file : str
        Model file name, relative to the manifest's folder.
    sha256 : str
        Hex sha256 of the model file.
    opset : int
        ONNX opset.
    inputs, outputs : tuple of TensorSpec
        Graph I/O in order.
    grid : ModelGrid
        Model input grid.
    mapping : IntensityMapping
        Intensity normalisation the input was trained with.
    classes : tuple of str
        Pixel classes in output-channel order (:class:`models.classes.TissueClass`).
    aline_outputs : tuple of str
        Per-A-line outputs in order (:class:`models.classes.ALineOutput`).
    data : dict
        Everything else (training recipe and summary, evaluation metrics, description).
    """

    path: Path
    name: str
    version: str
    model_file: str
    sha256: str
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    grid: ModelGrid
    mapping: IntensityMapping
    classes: tuple[str, ...]
    aline_outputs: tuple[str, ...]
    data: dict = field(default_factory=dict, compare=False)

    @property
    def model_path(self) -> Path:
        return self.path.parent / self.model_file

    def as_dict(self) -> dict:
        return {
            **self.data,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "file": self.model_file,
            "sha256": self.sha256,
            "opset": self.opset,
            "inputs": [s.as_dict() for s in self.inputs],
            "outputs": [s.as_dict() for s in self.outputs],
            "grid": {
                "n_alines": self.grid.n_alines,
                "n_depth": self.grid.n_depth,
                "depth_mm": self.grid.depth_mm,
            },
            "intensity_mapping": {
                "full_scale": self.mapping.full_scale,
                "dynamic_range_db": self.mapping.dynamic_range_db,
                "low": self.mapping.low,
                "high": self.mapping.high,
                "mode": self.mapping.mode,
                "span_db": self.mapping.span_db,
            },
            "classes": list(self.classes),
            "aline_outputs": list(self.aline_outputs),
        }

    def write(self) -> None:
        """Write the manifest JSON to :attr:`path`."""
        self.path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


CORE_KEYS = (
    "format_version",
    "name",
    "version",
    "file",
    "sha256",
    "opset",
    "inputs",
    "outputs",
    "grid",
    "intensity_mapping",
    "classes",
    "aline_outputs",
)

EXPECTED_CLASSES = tuple(c.name.lower() for c in TissueClass)
EXPECTED_ALINE_OUTPUTS = tuple(o.name.lower() for o in ALineOutput)


def manifest_path_for(model_or_manifest: Path) -> Path:
    """The manifest path for a model file (``x.onnx`` -> ``x.manifest.json``) or a manifest."""
    path = Path(model_or_manifest)
    if path.name.endswith(MANIFEST_SUFFIX):
        return path
    return path.with_name(path.name.rsplit(".", 1)[0] + MANIFEST_SUFFIX)


class ModelLookupError(OctguideError):
    """No installed model, or more than one, answers to a name."""


def find_installed(spec: str, weights_dir: Path) -> Path:
    """The manifest of the one installed model in ``weights_dir`` that ``spec`` names: its key
    (the file stem, ``octseg-2.0.0``), ``NAME@VERSION`` (``octseg@2.0.0``) or a bare version,
    tried in that order (the first kind with any match decides). Nothing is verified here: the
    caller loads the manifest (:func:`load_manifest`) before anything runs. The one lookup of
    ``[segment] model_version`` (the engine) and ``octguide model`` (the fleet registry).

    Raises
    ------
    ModelLookupError
        Nothing, or more than one model of the deciding kind, answers (one line, with the keys).
    """
    weights_dir = Path(weights_dir)
    entries = []
    for manifest in sorted(weights_dir.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}  # an unreadable manifest answers only to its key; loading it says why
        data = data if isinstance(data, dict) else {}
        entries.append((manifest.name[: -len(MANIFEST_SUFFIX)], manifest, data.get("name"), data.get("version")))
    for match in (lambda key, name, version: key == spec,
                  lambda key, name, version: name is not None and f"{name}@{version}" == spec,
                  lambda key, name, version: version is not None and version == spec):
        found = [(key, path) for key, path, name, version in entries if match(key, name, version)]
        if len(found) == 1:
            return found[0][1]
        if len(found) > 1:
            raise ModelLookupError(f"model {spec!r} is ambiguous: {', '.join(k for k, _ in found)} "
                                   "(name one by key)")
    raise ModelLookupError(f"no installed model answers to {spec!r} in {weights_dir} "
                           f"(installed: {', '.join(e[0] for e in entries) or 'none'})")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_manifest(path: Path) -> Manifest:
    """Read and validate a manifest's JSON (no file checksum; see :func:`load_manifest`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelManifestError(f"{path}: manifest not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelManifestError(f"{path}: manifest is not readable JSON ({exc})") from None
    missing = [k for k in CORE_KEYS if k not in data]
    if missing:
        raise ModelManifestError(f"{path}: manifest lacks {missing}")
    if data["format_version"] != FORMAT_VERSION:
        raise ModelManifestError(
            f"{path}: manifest format {data['format_version']} is not {FORMAT_VERSION}"
        )
    if (
        tuple(data["classes"]) != EXPECTED_CLASSES
        or tuple(data["aline_outputs"]) != EXPECTED_ALINE_OUTPUTS
    ):
        raise ModelSignatureError(
            f"{path}: classes {data['classes']} / A-line outputs {data['aline_outputs']} are not this "
            f"engine's {list(EXPECTED_CLASSES)} / {list(EXPECTED_ALINE_OUTPUTS)}"
        )
    try:
        grid = ModelGrid(
            int(data["grid"]["n_alines"]),
            int(data["grid"]["n_depth"]),
            float(data["grid"]["depth_mm"]),
        )
        mapping = IntensityMapping(**data["intensity_mapping"])
        inputs = tuple(TensorSpec.from_dict(d) for d in data["inputs"])
        outputs = tuple(TensorSpec.from_dict(d) for d in data["outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelManifestError(f"{path}: malformed grid, mapping or I/O ({exc})") from None
    extra = {k: v for k, v in data.items() if k not in CORE_KEYS}
    return Manifest(
        path,
        str(data["name"]),
        str(data["version"]),
        str(data["file"]),
        str(data["sha256"]),
        int(data["opset"]),
        inputs,
        outputs,
        grid,
        mapping,
        tuple(data["classes"]),
        tuple(data["aline_outputs"]),
        extra,
    )


def load_manifest(model_or_manifest: Path) -> Manifest:
    """Parse the manifest of a model and check the model file's sha256 against it.

    Parameters
    ----------
    model_or_manifest : pathlib.Path
        The model file (``.onnx``) or its ``.manifest.json``.

    Raises
    ------
    ModelManifestError
        The manifest is missing or malformed, or the model file is missing.
    ModelChecksumError
        The model file's sha256 is not the manifest's.
    """
    manifest = parse_manifest(manifest_path_for(model_or_manifest))
    if not manifest.model_path.is_file():
        raise ModelManifestError(f"{manifest.path}: model file {manifest.model_path} not found")
    actual = sha256_of(manifest.model_path)
    if actual != manifest.sha256:
        raise ModelChecksumError(
            f"{manifest.model_path}: sha256 {actual[:16]}... does not match the manifest's "
            f"{manifest.sha256[:16]}... ({manifest.path}); the model file was modified or replaced"
        )
    return manifest


def check_signature(
    manifest: Manifest, inputs: list[TensorSpec], outputs: list[TensorSpec], source: str
) -> None:
    """Raise :class:`ModelSignatureError` unless ``inputs``/``outputs`` match the manifest's.

    Parameters
    ----------
    manifest : Manifest
        What the model should be.
    inputs, outputs : list of TensorSpec
        What the runtime reports (shapes with None/str/-1 for dynamic dims).
    source : str
        What reported them (a file, an engine), for the message.
    """
    for kind, want, got in (
        ("input", manifest.inputs, inputs),
        ("output", manifest.outputs, outputs),
    ):
        if [s.name for s in want] != [s.name for s in got]:
            raise ModelSignatureError(
                f"{source}: {kind} names {[s.name for s in got]} differ from the manifest's "
                f"{[s.name for s in want]} ({manifest.path})"
            )
        for w, g in zip(want, got):
            if not w.matches(tuple(g.shape)) or w.dtype != g.dtype:
                raise ModelSignatureError(
                    f"{source}: {kind} {g.name!r} is {g.dtype} {list(g.shape)}, the manifest says "
                    f"{w.dtype} {list(w.shape)} ({manifest.path})"
                )
