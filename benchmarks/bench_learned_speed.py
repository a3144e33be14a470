"""Speed of the learned extractor on a 752x480 image with 2 threads, stage by stage, and of its native kernels
against their NumPy twins (the reason the kernels exist).

Issue target: the extractor end to end (network + NMS + top-k + descriptors) <= 20 ms per 752x480 image on
a 2-core machine (aim: 15 ms). Times are the best of N runs (the machine is shared; the best run is the
one least disturbed); the median is printed beside it. The end-to-end row also wanders with glibc's allocator
state (page faults on big temporaries): 16.5 ms in a loop with MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised, 17-21 ms without (session 8).

Usage: python benchmarks/bench_learned_speed.py [--weights PATH] [--repeat 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.nn import functional as F

from slam.learned.features import LearnedFeatures, keypoint_descriptors, sample_descriptors
from slam.learned.keypoints import cell_nms, cell_nms_numpy
from slam.learned.matching import mutual_match, mutual_match_numpy
from slam.learned.model import standardize

EUROC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "euroc_V1_01_easy_micro"


def timed(fn, repeat: int) -> tuple[float, float]:
    """(best, median) milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), 1e3 * float(np.median(times))


def test_image() -> np.ndarray:
    frames = sorted((EUROC / "mav0" / "cam0" / "data").glob("*.png"))
    if frames:
        import cv2

        return cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE)
    from skimage import data, transform

    return (transform.resize(data.camera(), (480, 752)) * 255).astype(np.uint8)


def full_resolution_nms(prob: torch.Tensor, count: int) -> None:
    """The alternative to per-cell NMS: full-resolution heatmap, 9x9 max-pool NMS, top-k."""
    heat = F.pixel_shuffle(prob[:, :-1], 8)
    peaks = heat * (heat == F.max_pool2d(heat, 9, stride=1, padding=4))
    torch.topk(peaks.flatten(), count)


def whole_graph(features: LearnedFeatures, image: np.ndarray):
    """The extractor's output the plain way: the exported graph in eager mode, NMS, dense descriptor map sampled."""
    prob, dense = features.dense(image)
    c = features.config
    xy, _ = cell_nms(prob, image.shape[1], image.shape[0], c.threshold, c.nms_radius, c.max_keypoints, None, c.border)
    return sample_descriptors(dense, xy, features.graph.net.config.descriptor_stride)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    n = args.repeat
    image = test_image()
    features = LearnedFeatures(args.weights)
    k = features.config.max_keypoints
    x = torch.from_numpy(image).float().div(255)[None, None]
    x_last = x.contiguous(memory_format=torch.channels_last)
    graph = features.graph
    prob_np, desc_np = features.dense(image)
    with torch.inference_mode():
        prob_t = graph(x_last)[0]
    xy, _ = cell_nms(prob_np, 752, 480, features.config.threshold, 4.0, k)
    stride = graph.net.config.descriptor_stride

    table = Table(title=f"learned extractor, 752x480, 2 threads, {k} keypoints (best / median of {n} runs)")
    for col in ("stage", "best ms", "median ms", "note"):
        table.add_column(col, justify="right" if col != "stage" else "left")

    def row(name, fn, note=""):
        best, median = timed(fn, n)
        table.add_row(name, f"{best:.2f}", f"{median:.2f}", note)
        return best

    contiguous = graph.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        row("network, NCHW", lambda: contiguous(x))
        graph.to(memory_format=torch.channels_last)
        row("network, channels_last", lambda: graph(x_last), "the exported graph")
        x_std = standardize(x_last)
        row("corner layer, OpenCV (standardized image)", lambda: graph.net.corners.opencv(x_std[0, 0].numpy()),
            "what the extractor runs")
        corners = torch.from_numpy(graph.net.corners.opencv(x_std[0, 0].numpy()))[None, None]
        trunk = features.trunk
        row("network without the corner layer and dense descriptors, BN folded", lambda: trunk(x_std, corners),
            "what the extractor runs")
        coarse, f4 = trunk(x_std, corners)[1:]
        row("NMS full resolution (9x9 max-pool) + top-k", lambda: full_resolution_nms(prob_t, k), "for comparison")
    native = row("per-cell NMS + top-k, native", lambda: cell_nms(prob_np, 752, 480, 0.005, 4.0, k))
    twin = row("per-cell NMS + top-k, NumPy twin", lambda: cell_nms_numpy(prob_np, 752, 480, 0.005, 4.0, k))
    row("descriptors at the keypoints", lambda: keypoint_descriptors(graph.net, coarse, f4, xy),
        "what the extractor runs")
    row("descriptors sampled from the dense map", lambda: sample_descriptors(desc_np, xy, stride))
    total = row("extractor end to end", lambda: features(image), "target <= 20 ms (aim 15)")
    row("the same from the whole graph (dense map sampled)", lambda: whole_graph(features, image),
        "for comparison: the same output")
    feats = features(image)
    sim = feats.descriptors @ feats.descriptors[::-1].T
    m_native = row(f"matching {len(sim)}x{len(sim)}: mutual NN + ratio, native",
                   lambda: mutual_match(sim, 0.9))
    m_twin = row("matching: mutual NN + ratio, NumPy twin", lambda: mutual_match_numpy(sim, 0.9))
    row("matching: similarity matrix (BLAS)", lambda: feats.descriptors @ feats.descriptors.T)
    console = Console(width=140)
    console.print(table)
    console.print(f"per-cell NMS: native {twin / native:.1f}x faster than NumPy; matching: native "
                  f"{m_twin / m_native:.1f}x faster; end to end {total:.1f} ms = {len(feats) / total * 1e3:,.0f} "
                  f"keypoints/s")


if __name__ == "__main__":
    main()
