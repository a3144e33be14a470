"""Feature-matching metrics on image pairs with a known homography (HPatches-style), used by the training
validation and by ``benchmarks/bench_features.py`` alike.

- repeatability: keypoints of either image that the other image shows, with a keypoint of the other image
  within ``threshold`` px after warping; (found1 + found2) / (shown1 + shown2) (SuperPoint's definition);
- mean matching accuracy (MMA) at t px: the fraction of matches whose warped point lies within t px;
- homography accuracy: RANSAC homography from the matches; correct if the image corners it maps lie on
  average within ``threshold`` px of where the true homography maps them.
"""

from __future__ import annotations

import cv2
import numpy as np

from .homography import warp_points


def _shown(xy: np.ndarray, H: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    p = warp_points(H, xy)
    return (p[:, 0] >= 0) & (p[:, 1] >= 0) & (p[:, 0] <= shape[1] - 1) & (p[:, 1] <= shape[0] - 1)


def repeatability(xy1: np.ndarray, xy2: np.ndarray, H: np.ndarray, shape1, shape2, threshold: float = 3.0) -> float:
    """SuperPoint's repeatability of keypoints ``xy1`` (image 1) and ``xy2`` (image 2); ``H``: 1 -> 2."""
    H_inv = np.linalg.inv(H)
    a = xy1[_shown(xy1, H, shape2)]
    b = xy2[_shown(xy2, H_inv, shape1)]
    if len(a) == 0 or len(b) == 0:
        return 0.0
    d = np.linalg.norm(warp_points(H, a)[:, None] - b[None].astype(np.float64), axis=-1)
    found = np.count_nonzero(d.min(axis=1) <= threshold) + np.count_nonzero(d.min(axis=0) <= threshold)
    return found / (len(a) + len(b))


def match_errors(xy1: np.ndarray, xy2: np.ndarray, matches: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Pixel error in image 2 of each match (i, j): |H xy1[i] - xy2[j]|."""
    if len(matches) == 0:
        return np.zeros(0)
    return np.linalg.norm(warp_points(H, xy1[matches[:, 0]]) - xy2[matches[:, 1]], axis=1)


def mma(errors: np.ndarray, thresholds=(1, 3, 5)) -> list[float]:
    """Fraction of matches within each threshold (0 when there are no matches)."""
    return [float(np.mean(errors <= t)) if len(errors) else 0.0 for t in thresholds]


def homography_correct(xy1, xy2, matches, H, shape, threshold: float = 3.0) -> bool:
    """True if a RANSAC homography from the matches maps image 1's corners within ``threshold`` px (mean)."""
    if len(matches) < 4:
        return False
    estimate, _ = cv2.findHomography(xy1[matches[:, 0]].astype(np.float64), xy2[matches[:, 1]].astype(np.float64),
                                     cv2.RANSAC, 3.0, maxIters=2000, confidence=0.999)
    if estimate is None:
        return False
    height, width = shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    return float(np.mean(np.linalg.norm(warp_points(estimate, corners) - warp_points(H, corners), axis=1))) <= threshold
