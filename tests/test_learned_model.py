"""The keypoint net: shapes, invariances, a static exportable graph, and weight files that fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slam.learned.export import traced_graph
from slam.learned.model import InferenceGraph, KeypointNet, NetConfig
from slam.learned.weights import DEFAULT_WEIGHTS, load_weights, save_weights
from slam.messages import DataError

ARCH = "KeypointNet(channels=[8, 16, 32, 64], descriptor_dim=64, head_channels=64, descriptor_stride=4)"
# What the exported graph may contain: plain conv/BN/ReLU, bilinear upsampling, a pixel unshuffle, reductions,
# elementwise arithmetic (the corner layer), constant-index slices, softmax.
ALLOWED_OPS = {"aten::_convolution", "aten::add", "aten::batch_norm", "aten::cat", "aten::clamp_min", "aten::div",
               "aten::expand_as", "aten::linalg_vector_norm", "aten::log", "aten::mean", "aten::mul", "aten::pad",
               "aten::pixel_unshuffle", "aten::pow", "aten::relu", "aten::relu_", "aten::slice", "aten::softmax",
               "aten::sqrt", "aten::std", "aten::sub", "aten::upsample_bilinear2d"}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return KeypointNet().eval()


@pytest.fixture(scope="module")
def image():
    from skimage import data

    return torch.from_numpy(data.camera()[:128, :192].astype(np.float32) / 255)[None, None]


def test_shapes_probabilities_and_unit_descriptors(net, image):
    with torch.no_grad():
        logits, desc = net(image)
        prob, desc2 = InferenceGraph(net)(image)
    assert logits.shape == (1, 65, 16, 24) and desc.shape == (1, 64, 32, 48)  # descriptors at stride 4
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(1, 16, 24))
    torch.testing.assert_close(desc.norm(dim=1), torch.ones(1, 32, 48))
    torch.testing.assert_close(desc, desc2)
    with torch.no_grad():
        coarse = KeypointNet(NetConfig(descriptor_stride=8)).eval()(image)[1]
    assert coarse.shape == (1, 64, 16, 24)


def test_weight_files_from_before_the_descriptor_stride_hold_stride_8_nets(tmp_path):
    path = save_weights(KeypointNet(NetConfig(descriptor_stride=8)), tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["architecture"]["descriptor_stride"]
    torch.save(payload, path)
    assert load_weights(path)[0].config.descriptor_stride == 8
    with pytest.raises(ValueError, match="descriptor_stride"):
        NetConfig(descriptor_stride=2)


def test_channels_last_and_exposure_do_not_change_the_output(net, image):
    graph = InferenceGraph(net)
    with torch.no_grad():
        base = graph(image)
        fast = graph.to(memory_format=torch.channels_last)(image.contiguous(memory_format=torch.channels_last))
        darker = graph(0.5 * image + 0.1)  # each image is standardized inside the graph
    net.to(memory_format=torch.contiguous_format)
    for a, b in zip(base, fast):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for a, b in zip(base, darker):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=0)


def test_graph_is_static_and_plain(tmp_path, net):
    path = save_weights(net, tmp_path / "w.pt")
    traced = traced_graph(path, 64, 96)
    ops = {n.kind() for n in traced.inlined_graph.nodes() if n.kind().startswith("aten::")}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS  # no grid_sample, no shape reads (aten::size)
    with pytest.raises(DataError, match="multiples of 16"):
        traced_graph(path, 60, 96)


def test_core_ml_conversion(tmp_path, net):
    pytest.importorskip("coremltools")
    from slam.learned.export import export_coreml

    out = export_coreml(tmp_path / "kp.mlpackage", save_weights(net, tmp_path / "w.pt"), 64, 96)
    assert (out / "Manifest.json").is_file()  # running it needs macOS; conversion is what we can check here


def test_weight_roundtrip_full_and_half(tmp_path, net, image):
    for half in (False, True):
        path = save_weights(net, tmp_path / f"w{half}.pt", {"version": "x"}, half=half)
        loaded, meta = load_weights(path)
        assert meta["version"] == "x"
        with torch.no_grad():
            for a, b in zip(net(image), loaded(image)):
                torch.testing.assert_close(a, b, atol=5e-2 if half else 0, rtol=0)
    assert (tmp_path / "wTrue.pt").stat().st_size < 0.6 * (tmp_path / "wFalse.pt").stat().st_size


def _error(path, expected=None) -> str:
    with pytest.raises(DataError) as info:
        load_weights(path, expected)
    return str(info.value)


def test_corrupt_and_mismatched_weight_files_name_the_file_and_architecture(tmp_path, net):
    good = save_weights(net, tmp_path / "good.pt")
    message = _error(tmp_path / "missing.pt")
    assert "missing.pt" in message and "no such weight file" in message and ARCH in message

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    message = _error(garbage)
    assert str(garbage) in message and "not a readable weight file" in message and ARCH in message

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "corrupt or truncated" in _error(truncated)

    other = tmp_path / "other.pt"
    torch.save({"state_dict": net.state_dict()}, other)
    assert "not a slam-keypoint-net weight file" in _error(other)

    bigger = save_weights(KeypointNet(NetConfig(channels=(8, 16, 48, 96))), tmp_path / "bigger.pt")
    message = _error(bigger, NetConfig())
    assert "bigger.pt" in message and "channels=[8, 16, 48, 96]" in message and ARCH in message

    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["fuse.0.weight"] = torch.zeros(3, 3)
    del payload["state_dict"]["descriptor_head.1.bias"]
    payload["state_dict"]["stride2.0.0.weight"][0, 0, 0, 0] = float("nan")
    tampered = tmp_path / "tampered.pt"
    torch.save(payload, tampered)
    message = _error(tampered)
    assert "tampered.pt" in message and ARCH in message
    assert "missing descriptor_head.1.bias" in message and "fuse.0.weight has shape (3, 3)" in message
    assert "stride2.0.0.weight holds NaN" in message


def test_shipped_weights_are_small_versioned_and_load():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 1_000_000
    net, meta = load_weights()
    assert meta["version"] and meta["steps"] > 0 and "validation" in meta
    assert (DEFAULT_WEIGHTS.parent / "MODEL_CARD.md").read_text().count(meta["version"]) >= 1
