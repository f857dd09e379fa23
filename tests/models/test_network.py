"""The network: circular padding really wraps, ONNX export agrees with torch (needs torch, onnx)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.compute.backends import registry
from models.grid import ModelGrid

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from models.classes import N_ALINE_OUTPUTS, N_CLASSES
from models.network import NetworkConfig, SegNet
from models.training.export import export, io_specs, to_onnx, torch_reference

GRID = ModelGrid(64, 96, 2.0)


def _net(seed: int = 0) -> SegNet:
    torch.manual_seed(seed)
    net = SegNet(NetworkConfig(widths=(8, 16, 16, 24), aline_hidden=8))
    # Non-trivial batch-norm statistics so that eval mode is not the identity.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _outputs(net: SegNet, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in net(torch.from_numpy(x))]


def test_feature_at_aline_zero_reaches_the_last_aline():
    net = _net()
    rng = np.random.default_rng(1)
    x = rng.random((1, 1, GRID.n_alines, GRID.n_depth), dtype=np.float32)
    base = _outputs(net, x)
    bumped = x.copy()
    bumped[0, 0, 0, 20:40] += 1.0
    after = _outputs(net, bumped)
    k = GRID.n_alines
    # A-line K-1 is A-line 0's neighbour across the seam: it changes as much as a neighbour does,
    # far more than the A-line half-way round (which only the deepest, coarse features reach).
    # Without the wrap, K-1 would be the farthest A-line from 0 and change least.
    near = np.abs(after[0][0, :, k - 1] - base[0][0, :, k - 1]).max()
    far = np.abs(after[0][0, :, k // 2] - base[0][0, :, k // 2]).max()
    assert near > 10 * far
    assert (
        np.abs(after[1][0, :, k - 1] - base[1][0, :, k - 1]).max()
        > 10 * np.abs(after[1][0, :, k // 2] - base[1][0, :, k // 2]).max()
    )


def test_circular_conv_wraps_the_alines_and_zero_pads_the_depth():
    from models.network import CircularConv

    torch.manual_seed(0)
    layer = CircularConv(1, 1).eval()
    with torch.no_grad():
        layer.conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 8, 6)
    x[0, 0, 0, 0] = 1.0
    with torch.no_grad():
        y = layer(x)[0, 0]  # fresh batch norm in eval mode is the identity
    assert y[7, 0] > 0.99 and y[1, 0] > 0.99  # A-line 0 reaches A-lines K-1 and 1
    assert y[7, 5] == 0.0 and y[0, 5] == 0.0  # depth 0 does not reach the last depth sample


def test_rotation_by_the_stride_commutes_with_the_network():
    net = _net()
    x = np.random.default_rng(2).random((1, 1, GRID.n_alines, GRID.n_depth), dtype=np.float32)
    shift = net.stride * 3
    rolled = _outputs(net, np.roll(x, shift, axis=2))
    expected = _outputs(net, x)
    np.testing.assert_allclose(rolled[0], np.roll(expected[0], shift, axis=2), atol=1e-5)
    np.testing.assert_allclose(rolled[1], np.roll(expected[1], shift, axis=2), atol=1e-5)
    np.testing.assert_allclose(rolled[2], expected[2], atol=1e-5)


def test_output_shapes():
    net = _net()
    classes, aline, confidence = _outputs(
        net, np.zeros((2, 1, GRID.n_alines, GRID.n_depth), np.float32)
    )
    assert classes.shape == (2, N_CLASSES, GRID.n_alines, GRID.n_depth)
    assert aline.shape == (2, N_ALINE_OUTPUTS, GRID.n_alines)
    assert confidence.shape == (2, 1)


@pytest.mark.skipif(not registry().available("onnxruntime"), reason="onnxruntime not usable")
def test_onnx_export_matches_torch_with_a_dynamic_batch(tmp_path):
    ort = registry().module("onnxruntime")
    net = _net(3)
    manifest = export(net, GRID, tmp_path / "m.onnx", name="m", version="0")
    session = ort.InferenceSession(str(manifest.model_path), providers=["CPUExecutionProvider"])
    inputs, outputs = io_specs(GRID)
    assert [i.name for i in session.get_inputs()] == [s.name for s in inputs]
    assert [o.name for o in session.get_outputs()] == [s.name for s in outputs]
    assert session.get_inputs()[0].shape == ["batch", 1, GRID.n_alines, GRID.n_depth]
    for batch in (1, 3):
        x = np.random.default_rng(batch).random(
            (batch, 1, GRID.n_alines, GRID.n_depth), dtype=np.float32
        )
        got = session.run(None, {"frames": x})
        for ort_out, torch_out in zip(got, torch_reference(net, x)):
            assert ort_out.shape == torch_out.shape
            np.testing.assert_allclose(ort_out, torch_out, atol=2e-5)


@pytest.mark.skipif(not registry().available("onnxruntime"), reason="onnxruntime not usable")
def test_float16_graph_keeps_float32_io_and_agrees():
    import onnx

    from models.fp16 import to_float16

    ort = registry().module("onnxruntime")
    proto = to_onnx(_net(4), GRID)
    half = to_float16(proto)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.FLOAT]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in half.graph.output)
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in half.graph.initializer)
    x = np.random.default_rng(5).random((1, 1, GRID.n_alines, GRID.n_depth), dtype=np.float32)
    full = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"frames": x}
    )
    reduced = ort.InferenceSession(
        half.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"frames": x})
    for a, b in zip(full, reduced):
        np.testing.assert_allclose(a, b, atol=1e-2)
