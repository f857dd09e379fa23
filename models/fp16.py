"""Half-precision copy of an ONNX graph with float32 I/O, for strongly typed TensorRT builds.

TensorRT 11 removed the weak-typing ``BuilderFlag.FP16``: precision lives in the graph and the
network is built strongly typed (TensorRT 10.x accepts the same graph with the
``STRONGLY_TYPED`` creation flag). :func:`to_float16` makes that graph for this model family
without extra dependencies: float32 weights and constants become float16, the input is cast to
float16 on entry and the outputs back to float32 on exit, so the engine keeps the manifest's
float32 I/O. Tensors that ONNX requires in float32 whatever the compute type (``Resize``'s
``roi``/``scales``) stay float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: (op_type, input index) pairs that must stay float32.
KEEP_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2)}


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16-compute copy of ``model`` with the same float32 input and output names.

    Parameters
    ----------
    model : onnx.ModelProto
        A float32 model whose graph inputs and outputs are float32.

    Returns
    -------
    onnx.ModelProto
        Checked and shape-inferred (strict) copy.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    keep = {
        node.input[i]
        for node in graph.node
        for (op, i) in KEEP_FLOAT32_INPUTS
        if node.op_type == op and len(node.input) > i and node.input[i]
    }

    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
            )
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in keep:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(
                        numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16))
                    )
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16

    casts_in = []
    for graph_input in graph.input:
        half = f"{graph_input.name}__fp16"
        for node in graph.node:
            node.input[:] = [half if name == graph_input.name else name for name in node.input]
        casts_in.append(
            helper.make_node(
                "Cast",
                [graph_input.name],
                [half],
                to=TensorProto.FLOAT16,
                name=f"cast_in_{graph_input.name}",
            )
        )
    casts_out = []
    for graph_output in graph.output:
        half = f"{graph_output.name}__fp16"
        for node in graph.node:
            node.output[:] = [half if name == graph_output.name else name for name in node.output]
        casts_out.append(
            helper.make_node(
                "Cast",
                [half],
                [graph_output.name],
                to=TensorProto.FLOAT,
                name=f"cast_out_{graph_output.name}",
            )
        )
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
