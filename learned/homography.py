"""Random homographies for training pairs and for evaluation warps, and applying them to points.

A view is the quadrilateral of a base crop that a random rotation, scale, translation and corner jitter
(perspective) make of the crop's rectangle; the homography maps view pixels to base-crop pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class WarpRange:
    """How far a random view departs from its crop (each drawn uniformly, scale log-uniformly)."""

    max_rotation_deg: float = 20.0
    min_scale: float = 0.8  # > 1: the view shows more of the scene (zoom out)
    max_scale: float = 1.25
    max_translation: float = 0.1  # of the crop size
    max_perspective: float = 0.1  # corner jitter, of the crop size


TRAIN_WARP = WarpRange()  # per view: a pair differs by up to twice this
EVAL_WARP = WarpRange(max_rotation_deg=15.0, min_scale=0.8, max_scale=1.25, max_translation=0.05,
                      max_perspective=0.08)  # about HPatches' viewpoint sequences, applied once


def random_view(width: int, height: int, rng: np.random.Generator, warp: WarpRange = TRAIN_WARP) -> np.ndarray:
    """3x3 homography from the pixels of a random view to the pixels of a ``width`` x ``height`` crop."""
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    center = corners.mean(axis=0)
    size = np.array([width, height], np.float64)
    angle = np.radians(rng.uniform(-warp.max_rotation_deg, warp.max_rotation_deg))
    scale = np.exp(rng.uniform(np.log(warp.min_scale), np.log(warp.max_scale)))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = rng.uniform(-warp.max_translation, warp.max_translation, 2) * size
    jitter = rng.uniform(-warp.max_perspective, warp.max_perspective, (4, 2)) * size
    seen = (corners - center) @ rotation.T * scale + center + shift + jitter
    return cv2.getPerspectiveTransform(corners.astype(np.float32), seen.astype(np.float32)).astype(np.float64)


def warp_points(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by the 3x3 homography ``H``."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    p = np.hstack([xy, np.ones((len(xy), 1))]) @ np.asarray(H, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:]


def warp_image(image: np.ndarray, H: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` seen through ``H`` (maps ``image`` pixels to output pixels) in an output of ``shape`` (h, w)."""
    return cv2.warpPerspective(image, H, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)


def eval_pair(image: np.ndarray, rng: np.random.Generator, warp: WarpRange = EVAL_WARP):
    """(warped image, H from ``image`` pixels to warped pixels): an HPatches-style synthetic pair."""
    height, width = image.shape[:2]
    H = np.linalg.inv(random_view(width, height, rng, warp))
    return warp_image(image, H, (height, width)), H
