"""Export a trained checkpoint to ONNX with its manifest (torch and onnx, ``[train]``).

The graph is :class:`models.network.InferenceModel` (probabilities out) exported at opset
:data:`OPSET` with named I/O and a dynamic batch dimension; the grid dimensions are fixed (the
model is trained for one grid; the preprocessor resamples every input geometry onto it).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from models.classes import N_ALINE_OUTPUTS, N_CLASSES, ALineOutput, TissueClass
from models.grid import NOISE_FLOOR_MAPPING, IntensityMapping, ModelGrid
from models.manifest import Manifest, TensorSpec, manifest_path_for, sha256_of
from models.network import InferenceModel, SegNet

OPSET = 17
INPUT_NAME = "frames"
OUTPUT_NAMES = ("class_prob", "aline_prob", "confidence")
BATCH = "batch"


def io_specs(grid: ModelGrid) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The exported graph's input and output specs on ``grid``."""
    k, j = grid.n_alines, grid.n_depth
    inputs = (TensorSpec(INPUT_NAME, (BATCH, 1, k, j), "float32"),)
    outputs = (
        TensorSpec(OUTPUT_NAMES[0], (BATCH, N_CLASSES, k, j), "float32"),
        TensorSpec(OUTPUT_NAMES[1], (BATCH, N_ALINE_OUTPUTS, k), "float32"),
        TensorSpec(OUTPUT_NAMES[2], (BATCH, 1), "float32"),
    )
    return inputs, outputs


def to_onnx(net: SegNet, grid: ModelGrid) -> onnx.ModelProto:
    """Trace ``net`` (eval mode) into an ONNX model with named I/O, dynamic batch, static grid."""
    model = InferenceModel(net).eval()
    example = torch.zeros(1, 1, grid.n_alines, grid.n_depth)
    buffer = io.BytesIO()
    dynamic = {name: {0: BATCH} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    # The TorchScript exporter (dynamo=False) gives a plain opset-17 graph without needing
    # onnxscript; torch marks it deprecated, which is not an error for this use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    # The tracer loses the static grid dims after the pixel (un)shuffle reshapes; declare them
    # and let strict shape inference confirm the graph agrees.
    _, outputs = io_specs(grid)
    for declared, spec in zip(proto.graph.output, outputs):
        dims = declared.type.tensor_type.shape.dim
        for dim, size in zip(dims, spec.shape):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    proto.producer_name = "octguide"
    onnx.checker.check_model(proto, full_check=True)
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def export(
    net: SegNet,
    grid: ModelGrid,
    path: Path,
    *,
    name: str,
    version: str,
    mapping: IntensityMapping | None = None,
    data: dict | None = None,
) -> Manifest:
    """Write ``path`` (``.onnx``) and its manifest; return the manifest.

    Parameters
    ----------
    net : SegNet
        Trained network.
    grid : ModelGrid
        Grid it was trained on.
    path : pathlib.Path
        Output ``.onnx`` file; the manifest goes next to it (``<stem>.manifest.json``).
    name, version : str
        Model identity.
    mapping : IntensityMapping, optional
        Normalisation its inputs were trained with (default: :data:`models.grid.NOISE_FLOOR_MAPPING`,
        the training recipe's).
    data : dict, optional
        Extra manifest content (description, training recipe and summary, evaluation).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    proto = to_onnx(net.eval(), grid)
    path.write_bytes(proto.SerializeToString())
    inputs, outputs = io_specs(grid)
    manifest = Manifest(
        path=manifest_path_for(path),
        name=name,
        version=version,
        model_file=path.name,
        sha256=sha256_of(path),
        opset=OPSET,
        inputs=inputs,
        outputs=outputs,
        grid=grid,
        mapping=mapping or NOISE_FLOOR_MAPPING,
        classes=tuple(c.name.lower() for c in TissueClass),
        aline_outputs=tuple(o.name.lower() for o in ALineOutput),
        data=dict(data or {}),
    )
    manifest.write()
    return manifest


def torch_reference(net: SegNet, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Probabilities from torch eager for ``x`` ``(B, 1, K, J)`` float32 (for agreement tests)."""
    with torch.inference_mode():
        return tuple(t.numpy() for t in InferenceModel(net.eval())(torch.from_numpy(x)))
