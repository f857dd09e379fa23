"""int8 variants of the shipped model for ONNX Runtime CPU (an experiment the benchmark runs).

Two ONNX Runtime quantisations of the float32 graph, each written with its own manifest (same
I/O, its own sha256) so that the segmentation stage verifies and runs it like the float32 model:

* dynamic: int8 weights, activations quantised per batch at run time (``quantize_dynamic``);
* static: QDQ int8 weights (per channel) and uint8 activations calibrated on preprocessed
  phantom frames from the validation seeds (``quantize_static``), never the evaluation seeds.

Whether an int8 model ships is decided on the held-out accuracy the benchmark measures
(``bench/bench_model.py --int8``); see ``docs/model_card.md``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.compute.preprocess import Preprocessor
from models.manifest import Manifest, manifest_path_for, sha256_of
from models.training.data import VALIDATION_SEED_BASE, DataRecipe


def calibration_frames(manifest: Manifest, n_pullbacks: int = 7) -> np.ndarray:
    """``(N, 1, K, J)`` float32 preprocessed phantom frames from validation seeds."""
    recipe = DataRecipe(
        seed_base=VALIDATION_SEED_BASE + 50_000, n_pullbacks=n_pullbacks, grid=manifest.grid
    )
    stage = Preprocessor(manifest.grid, manifest.mapping)
    stage.start()
    try:
        frames = [stage.process(f) for i in range(n_pullbacks) for f in recipe.pullback(i)]
    finally:
        stage.stop()
    return np.stack(frames)[:, None].astype(np.float32)


def _variant_manifest(manifest: Manifest, path: Path, kind: str) -> Manifest:
    variant = replace(
        manifest,
        path=manifest_path_for(path),
        name=f"{manifest.name}-{kind}",
        model_file=path.name,
        sha256=sha256_of(path),
        # The float model's evaluation does not describe the variant: it is evaluated on its own.
        data={
            **{k: v for k, v in manifest.data.items() if k != "evaluation"},
            "quantisation": kind,
            "float_model_sha256": manifest.sha256,
        },
    )
    variant.write()
    return variant


def quantize(
    manifest: Manifest, out_dir: Path, kind: str, calibration: np.ndarray | None = None
) -> Manifest:
    """Write the ``kind`` ("int8-dynamic" or "int8-static") variant of ``manifest``'s model.

    Parameters
    ----------
    manifest : Manifest
        The verified float32 model.
    out_dir : pathlib.Path
        Folder for the variant's ``.onnx`` and manifest.
    kind : str
        "int8-dynamic" or "int8-static".
    calibration : numpy.ndarray, optional
        ``(N, 1, K, J)`` calibration inputs for "int8-static" (default: :func:`calibration_frames`).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared = out_dir / f"{manifest.name}.prepared.onnx"
    quant_pre_process(str(manifest.model_path), str(prepared), skip_symbolic_shape=True)
    path = out_dir / f"{manifest.name}.{kind}.onnx"
    if kind == "int8-dynamic":
        quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QInt8, per_channel=True)
    elif kind == "int8-static":
        frames = calibration_frames(manifest) if calibration is None else calibration
        name = manifest.inputs[0].name

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(frames[i : i + 1] for i in range(frames.shape[0]))

            def get_next(self):
                item = next(self.items, None)
                return None if item is None else {name: item}

        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    else:
        raise ValueError(f"kind={kind!r} is not 'int8-dynamic' or 'int8-static'")
    prepared.unlink()
    return _variant_manifest(manifest, path, kind)
