"""Export the keypoint net to Apple Core ML (an ``.mlpackage`` ML program) for the Neural Engine.

The exported graph is :class:`InferenceGraph` at one static input size: image (1, 1, H, W) in [0, 1] ->
``prob`` (1, 65, H/8, W/8) cell-wise softmax and ``descriptors`` (1, D, H/s, W/s), s the net's descriptor
stride (4 for the shipped weights). NMS, top-k and descriptor sampling stay outside the graph (C++ or
NumPy, :mod:`slam.learned.keypoints`). The graph reads no tensor shapes (coremltools 9 with numpy >= 2.4
fails on traced models that do) and holds only conv/BN/ReLU, bilinear x2 upsampling, reductions and softmax.
Conversion runs anywhere; running the model needs macOS.

    python -m slam.learned.export OUT.mlpackage [--weights W.pt] [--height 480 --width 752]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from slam.messages import DataError

from .model import MULTIPLE, InferenceGraph
from .weights import load_weights

SHAPE_READS = ("aten::size", "aten::sym_size", "prim::shape")


def traced_graph(weights: str | Path | None = None, height: int = 480, width: int = 752) -> torch.jit.ScriptModule:
    """The inference graph traced at (height, width); raises if it reads a tensor shape."""
    if height % MULTIPLE or width % MULTIPLE or height <= 0 or width <= 0:
        raise DataError(f"export size must be positive multiples of {MULTIPLE} px, got {width}x{height}",
                        field="height/width")
    net, _ = load_weights(weights)
    graph = InferenceGraph(net).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Core ML converts TorchScript traces
        traced = torch.jit.trace(graph, torch.rand(1, 1, height, width))
    reads = sorted({n.kind() for n in traced.inlined_graph.nodes() if n.kind() in SHAPE_READS})
    if reads:
        raise RuntimeError(f"the traced graph reads tensor shapes ({', '.join(reads)}); Core ML conversion "
                           "would fail")
    return traced


def export_coreml(out: str | Path, weights: str | Path | None = None, height: int = 480, width: int = 752) -> Path:
    """Write an ``.mlpackage`` (ML program, iOS 16 / macOS 13 or later) and return its path."""
    import coremltools as ct

    out = Path(out)
    traced = traced_graph(weights, height, width)
    model = ct.convert(traced, inputs=[ct.TensorType(name="image", shape=(1, 1, height, width))],
                       outputs=[ct.TensorType(name="prob"), ct.TensorType(name="descriptors")],
                       convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
    model.short_description = "slam keypoint net: cell-wise keypoint softmax and descriptors"
    model.save(str(out))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m slam.learned.export", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=752)
    args = parser.parse_args(argv)
    print(export_coreml(args.out, args.weights, args.height, args.width))


if __name__ == "__main__":
    main()
