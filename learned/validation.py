"""Validation of the keypoint net during training: fixed homography pairs of held-out training images, and
the metrics of the full inference path (net, per-cell NMS, top-k, descriptors, mutual nearest neighbours).

NumPy post-processing (the native kernels' twins), so training needs no compiled extension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import load_images
from .features import sample_descriptors
from .homography import eval_pair
from .keypoints import cell_nms_numpy
from .matching import mutual_match_numpy
from .metrics import homography_correct, match_errors, mma, repeatability
from .model import MULTIPLE, InferenceGraph, KeypointNet


def validation_pairs(paths: list[Path], seed: int = 1234, per_image: int = 2):
    """Fixed (image, warped, H) pairs of held-out training images, cropped to multiples of 16."""
    pairs = []
    rng = np.random.default_rng(seed)
    for image in load_images(paths):
        height, width = image.shape[0] // MULTIPLE * MULTIPLE, image.shape[1] // MULTIPLE * MULTIPLE
        image = np.ascontiguousarray(image[:height, :width])
        for _ in range(per_image):
            warped, H = eval_pair(image, rng)
            pairs.append((image, warped, H))
    return pairs


def _features(graph: InferenceGraph, image: np.ndarray, device, max_keypoints: int, threshold: float):
    x = torch.from_numpy(image).float().div(255)[None, None].to(device)
    prob, desc = graph(x)
    prob = prob[0].permute(1, 2, 0).float().cpu().numpy()
    desc = desc[0].permute(1, 2, 0).float().cpu().numpy()
    xy, _ = cell_nms_numpy(prob, image.shape[1], image.shape[0], threshold, 4.0, max_keypoints, border=4)
    return xy, sample_descriptors(desc, xy, graph.net.config.descriptor_stride)


def evaluate(net: KeypointNet, pairs, max_keypoints: int = 1024, threshold: float = 0.005) -> dict:
    """Repeatability, MMA at 1/3/5 px (mutual nearest neighbours), homography accuracy and matches, averaged
    over ``pairs``; leaves ``net`` in training mode."""
    if not pairs:
        return {"pairs": 0}
    graph = InferenceGraph(net).eval()
    device = next(net.parameters()).device
    rows = []
    with torch.inference_mode():
        for image, warped, H in pairs:
            xy1, d1 = _features(graph, image, device, max_keypoints, threshold)
            xy2, d2 = _features(graph, warped, device, max_keypoints, threshold)
            matches = mutual_match_numpy(d1 @ d2.T)
            rows.append([repeatability(xy1, xy2, H, image.shape, warped.shape),
                         *mma(match_errors(xy1, xy2, matches, H)),
                         float(homography_correct(xy1, xy2, matches, H, image.shape)), len(matches)])
    net.train()
    mean = np.mean(rows, axis=0)
    names = ("repeatability", "mma1", "mma3", "mma5", "homography_acc", "matches")
    return {"pairs": len(pairs), **{name: float(v) for name, v in zip(names, mean)}}
