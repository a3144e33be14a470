"""Pluggable keypoint extractors: the :class:`FeatureExtractor` protocol, Shi-Tomasi and FAST, and a registry.

The tracker only calls ``detect``; the learned detector (:mod:`slam.frontend.learned_extractor`, the net of
``slam.learned``) plugs in behind the same protocol as ``learned``. All of them bucket their candidates on a
grid with the native :func:`select_keypoints`: strongest first, a few per cell, none closer than
``min_distance``. An even spread over the image conditions the pose estimate far better than the same
number of features on one texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .keypoint_select import select_keypoints


class FeatureExtractor(Protocol):
    name: str

    def detect(self, image: np.ndarray, mask: np.ndarray | None, max_count: int) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints of a uint8 HxW ``image``, none where ``mask`` is 0, at most ``max_count``.

        Returns (N, 2) float32 pixel coordinates (x right, y down) and (N,) float32 scores, strongest first.
        """
        ...


def _check_inputs(image: np.ndarray, mask: np.ndarray | None, max_count: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"image must be a uint8 HxW array, got {getattr(image, 'dtype', type(image))} "
                         f"with shape {getattr(image, 'shape', None)}")
    if mask is not None and (mask.shape != image.shape or mask.dtype != np.uint8):
        raise ValueError(f"mask must be uint8 with the image's shape {image.shape}, got {mask.dtype} "
                         f"{mask.shape}")
    if max_count < 0:
        raise ValueError(f"max_count must be >= 0, got {max_count}")


_EMPTY = (np.zeros((0, 2), np.float32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class GridConfig:
    """Grid bucketing shared by the classical extractors."""

    cell_size: float = 48.0  # px
    max_per_cell: int = 3  # 0: no limit
    min_distance: float = 20.0  # px between two new features

    def __post_init__(self):
        name = type(self).__name__
        if not (isinstance(self.cell_size, (int, float)) and self.cell_size >= 1):
            raise ValueError(f"{name}.cell_size must be >= 1 px, got {self.cell_size!r}")
        if not (isinstance(self.max_per_cell, int) and self.max_per_cell >= 0):
            raise ValueError(f"{name}.max_per_cell must be an integer >= 0, got {self.max_per_cell!r}")
        if not (isinstance(self.min_distance, (int, float)) and self.min_distance >= 0):
            raise ValueError(f"{name}.min_distance must be >= 0 px, got {self.min_distance!r}")


def _bucket(xy: np.ndarray, score: np.ndarray, shape, grid: GridConfig, max_count: int):
    keep = select_keypoints(xy, score, shape[1], shape[0], grid.cell_size, grid.max_per_cell,
                            grid.min_distance, max_count)
    return xy[keep].astype(np.float32), score[keep].astype(np.float32)


@dataclass(frozen=True)
class ShiTomasiConfig(GridConfig):
    quality_level: float = 0.01  # relative to the strongest corner of the image (as goodFeaturesToTrack)
    # Absolute floor on the minimum eigenvalue: a flat wall with 2 grey levels of sensor noise peaks at
    # ~1e-4, so noise never becomes a feature (KLT could not track it anyway).
    min_eigenvalue: float = 2e-4
    block_size: int = 3


class ShiTomasiExtractor:
    """Minimum-eigenvalue corners, 3x3 non-maximum suppression, then grid bucketing.

    The same score as ``cv2.goodFeaturesToTrack`` at about the same cost, but with the grid spread
    (goodFeaturesToTrack piles its features onto the most textured region).
    """

    name = "shi_tomasi"

    def __init__(self, config: ShiTomasiConfig = ShiTomasiConfig()):
        self.config = config

    def detect(self, image, mask=None, max_count=200):
        _check_inputs(image, mask, max_count)
        if max_count == 0:
            return _EMPTY
        c = self.config
        eig = cv2.cornerMinEigenVal(image, c.block_size, 3)
        threshold = max(c.min_eigenvalue, c.quality_level * float(eig.max()))
        peaks = cv2.compare(eig, threshold, cv2.CMP_GT)
        if mask is not None:
            peaks &= cv2.compare(mask, 0, cv2.CMP_GT)
        peaks &= cv2.compare(eig, cv2.dilate(eig, None), cv2.CMP_GE)  # 3x3 local maxima
        xy = cv2.findNonZero(peaks)  # several times faster than np.nonzero on a full image
        if xy is None:
            return _EMPTY
        xy = xy.reshape(-1, 2)
        return _bucket(xy.astype(np.float64), eig[xy[:, 1], xy[:, 0]], image.shape, c, max_count)


@dataclass(frozen=True)
class FastConfig(GridConfig):
    threshold: int = 20  # grey levels of contrast around the circle


class FastExtractor:
    """FAST-9 corners with OpenCV's non-maximum suppression, then grid bucketing by FAST response."""

    name = "fast"

    def __init__(self, config: FastConfig = FastConfig()):
        self.config = config
        self._detector = cv2.FastFeatureDetector_create(config.threshold, True)

    def detect(self, image, mask=None, max_count=200):
        _check_inputs(image, mask, max_count)
        if max_count == 0:
            return _EMPTY
        keypoints = self._detector.detect(image, mask)
        if not keypoints:
            return _EMPTY
        xy = cv2.KeyPoint_convert(keypoints).astype(np.float64)
        score = np.fromiter((k.response for k in keypoints), np.float64, len(keypoints))
        return _bucket(xy, score, image.shape, self.config, max_count)


# Imported here, after the shared pieces it builds on are defined (it imports them from this module).
from .learned_extractor import LearnedConfig, LearnedExtractor  # noqa: E402

EXTRACTORS = {"shi_tomasi": (ShiTomasiExtractor, ShiTomasiConfig), "fast": (FastExtractor, FastConfig),
              "learned": (LearnedExtractor, LearnedConfig)}


def make_extractor(name: str = "shi_tomasi", **config) -> FeatureExtractor:
    """The extractor registered as ``name``, its config fields set from ``config``."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown extractor {name!r}; valid: {', '.join(sorted(EXTRACTORS))}")
    cls, config_cls = EXTRACTORS[name]
    try:
        return cls(config_cls(**config))
    except TypeError as exc:
        raise ValueError(f"bad config for extractor {name!r}: {exc}") from None
