"""Learned keypoints and descriptors of an image: the net (channels_last), per-cell NMS + top-k, descriptors.

    features = LearnedFeatures()                 # the shipped weights; LearnedFeatures("my.pt") for your own
    f = features(image)                          # uint8 HxW -> Features(xy, scores, descriptors)
    pairs = match_descriptors(f.descriptors, g.descriptors)   # slam.learned.matching

The net sees the image padded (edge pixels repeated) to a multiple of 16; keypoints never lie in the padding.
Descriptors are sampled bilinearly from the net's 1/s-resolution map (s the descriptor stride, 8 or 4;
map cells centred at s c + (s - 1) / 2 px) and re-normalized. On the CPU that map is never built whole:
the net runs without it and without its fixed corner layer (:class:`~slam.learned.model.TrunkGraph`, batch
norms folded into the convolutions; the corner response comes from OpenCV), and the descriptors are finished
at the four map cells around each keypoint only, to the same values. 752x480, 2 threads
(``benchmarks/bench_learned_speed.py``): the whole graph takes 19 ms, the trunk 11 ms + 3 ms of corners.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .keypoints import CELL, cell_nms
from .model import MULTIPLE, InferenceGraph, KeypointNet, NetConfig, TrunkGraph, fold_batch_norms, standardize
from .weights import load_weights


@dataclass(frozen=True)
class DetectorConfig:
    max_keypoints: int = 1024  # top-k after NMS; 0: all
    threshold: float = 0.005  # minimum keypoint probability of a cell (1 - dustbin)
    nms_radius: float = 4.0  # px; no two keypoints closer (only neighbouring cells are compared)
    border: int = 4  # px; no keypoints this close to the edge (the corner layer replicates edge pixels)

    def __post_init__(self):
        if not (isinstance(self.max_keypoints, int) and self.max_keypoints >= 0):
            raise ValueError(f"DetectorConfig.max_keypoints must be an integer >= 0, got {self.max_keypoints!r}")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"DetectorConfig.threshold must be in [0, 1), got {self.threshold!r}")
        if not 0 <= self.nms_radius <= 4 * CELL:
            raise ValueError(f"DetectorConfig.nms_radius must be in [0, {4 * CELL}] px, got {self.nms_radius!r}")


@dataclass(frozen=True)
class Features:
    xy: np.ndarray  # (N, 2) float32 pixels, x right, y down
    scores: np.ndarray  # (N,) float32, descending
    descriptors: np.ndarray  # (N, D) float32, unit length

    def __len__(self) -> int:
        return len(self.xy)


def _bilinear(xy: np.ndarray, stride: int, rows: int, cols: int):
    """Map cells around pixels ``xy`` of a ``stride`` px map: rows (v0, v1), columns (u0, u1) and the
    weights (fu, fv) of the second row and column, as (N, 1) float32."""
    u = np.clip((xy[:, 0] - (stride - 1) / 2) / stride, 0, cols - 1)
    v = np.clip((xy[:, 1] - (stride - 1) / 2) / stride, 0, rows - 1)
    u0 = np.minimum(np.floor(u).astype(np.int64), cols - 2) if cols > 1 else np.zeros(len(u), np.int64)
    v0 = np.minimum(np.floor(v).astype(np.int64), rows - 2) if rows > 1 else np.zeros(len(v), np.int64)
    u1, v1 = np.minimum(u0 + 1, cols - 1), np.minimum(v0 + 1, rows - 1)
    return v0, v1, u0, u1, (u - u0)[:, None].astype(np.float32), (v - v0)[:, None].astype(np.float32)


def _unit(d):
    return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)


def sample_descriptors(dense: np.ndarray, xy: np.ndarray, stride: int = CELL) -> np.ndarray:
    """Bilinear samples of a (rows, cols, D) descriptor map of ``stride`` px per map cell at pixel ``xy``,
    re-normalized to unit length."""
    rows, cols, dim = dense.shape
    if len(xy) == 0:
        return np.zeros((0, dim), np.float32)
    v0, v1, u0, u1, fu, fv = _bilinear(xy, stride, rows, cols)
    d = ((dense[v0, u0] * (1 - fu) + dense[v0, u1] * fu) * (1 - fv)
         + (dense[v1, u0] * (1 - fu) + dense[v1, u1] * fu) * fv)
    return _unit(d).astype(np.float32)


def keypoint_descriptors(net: KeypointNet, coarse: torch.Tensor, f4: torch.Tensor, xy: np.ndarray) -> np.ndarray:
    """The descriptors :func:`sample_descriptors` takes from the net's dense map, computed from the trunk's
    outputs (:class:`~slam.learned.model.TrunkGraph`, batch of one) at the four map cells around each
    keypoint only: the x2 upsampling of the 1/8 descriptors is a bilinear lookup there, and the fine head is
    per-pixel (1x1 convolutions)."""
    stride = net.config.descriptor_stride
    if stride == CELL:
        return sample_descriptors(F.normalize(coarse, dim=1)[0].permute(1, 2, 0).numpy(), xy, stride)
    rows, cols = f4.shape[2:]
    if len(xy) == 0:
        return np.zeros((0, coarse.shape[1]), np.float32)
    v0, v1, u0, u1, fu, fv = _bilinear(xy, stride, rows, cols)
    r, c = np.concatenate([v0, v0, v1, v1]), np.concatenate([u0, u1, u0, u1])
    # F.interpolate(x2, bilinear, align_corners=False) puts map cell c at (c + 0.5) / 2 - 0.5 on the 1/8 grid;
    # grid_sample with border padding clamps the edges as it does
    at = np.stack([(c + 0.5) / cols, (r + 0.5) / rows], -1) * 2 - 1
    with torch.inference_mode():
        upsampled = F.grid_sample(coarse, torch.from_numpy(at.astype(np.float32))[None, :, None], mode="bilinear",
                                  padding_mode="border", align_corners=False)
        fine = net.fine_head(f4[:, :, torch.from_numpy(r), torch.from_numpy(c)][..., None])
        cells = _unit((upsampled + fine)[0, :, :, 0].numpy().T).reshape(4, len(xy), -1)
    d = (cells[0] * (1 - fu) + cells[1] * fu) * (1 - fv) + (cells[2] * (1 - fu) + cells[3] * fu) * fv
    return _unit(d).astype(np.float32)


class LearnedFeatures:
    """Keypoints + descriptors from the learned net; weights from ``weights`` (path) or the shipped file."""

    def __init__(self, weights: str | Path | None = None, config: DetectorConfig = DetectorConfig(),
                 expected: NetConfig | None = None):
        net, self.metadata = load_weights(weights, expected)
        self.config = config
        # channels_last roughly halves the CPU time of the convolutions.
        self.graph = InferenceGraph(net).eval().to(memory_format=torch.channels_last)
        self.trunk = TrunkGraph(fold_batch_norms(net)).to(memory_format=torch.channels_last)

    @property
    def descriptor_dim(self) -> int:
        return self.graph.net.config.descriptor_dim

    def _input(self, image: np.ndarray) -> torch.Tensor:
        """A uint8 HxW image as the net's input: [1 x 1 x H' x W'] in [0, 1], padded, channels_last."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(f"image must be a uint8 HxW array, got {getattr(image, 'dtype', type(image))} "
                             f"with shape {getattr(image, 'shape', None)}")
        height, width = image.shape
        x = torch.from_numpy(image).to(torch.float32).div_(255.0)[None, None]
        pad_h, pad_w = -height % MULTIPLE, -width % MULTIPLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x.contiguous(memory_format=torch.channels_last)

    def dense(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole net's outputs (the exported graph's, eager): (rows, cols, 65) probabilities and the
        (rows, cols, D) descriptor map at the descriptor stride."""
        with torch.inference_mode():
            prob, desc = self.graph(self._input(image))
        return prob[0].permute(1, 2, 0).contiguous().numpy(), desc[0].permute(1, 2, 0).contiguous().numpy()

    def detect(self, image: np.ndarray, mask: np.ndarray | None = None, max_count: int | None = None):
        """Keypoints without descriptors: (xy, scores, maps), strongest first; ``maps`` goes to :meth:`describe`
        for the descriptors of the keypoints a caller keeps (the learned frontend keeps a few per detection)."""
        with torch.inference_mode():
            x = standardize(self._input(image))
            corners = torch.from_numpy(self.graph.net.corners.opencv(x[0, 0].numpy()))[None, None]
            prob, coarse, f4 = self.trunk(x, corners)
        c = self.config
        count = c.max_keypoints if max_count is None else max_count
        xy, scores = cell_nms(prob[0].permute(1, 2, 0).contiguous().numpy(), image.shape[1], image.shape[0],
                              c.threshold, c.nms_radius, count, mask, c.border)
        return xy, scores, (coarse, f4)

    def describe(self, maps, xy: np.ndarray) -> np.ndarray:
        """Descriptors at pixels ``xy`` from the ``maps`` of :meth:`detect`."""
        return keypoint_descriptors(self.graph.net, *maps, xy)

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, max_count: int | None = None) -> Features:
        """Keypoints (none where ``mask`` is 0), strongest first, at most ``max_count`` (default: config)."""
        xy, scores, maps = self.detect(image, mask, max_count)
        return Features(xy, scores, self.describe(maps, xy))
