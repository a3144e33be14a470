"""The learned keypoint detector behind the :class:`~slam.frontend.extractor.FeatureExtractor` protocol.

The net (``slam.learned``) proposes at most one keypoint per 8x8 cell, honouring the tracker's mask; the
grid bucketing of the classical extractors then spreads them over the image. For tracking, a keypoint's
score is the net's probability times the square root of its Shi-Tomasi response (the structure tensor's
smaller eigenvalue), and keypoints below the Shi-Tomasi extractor's floor are dropped: the net ranks cells
by how well they match, KLT needs how well they localize. That brought the learned tracks' error to the
Shi-Tomasi tracks' (``benchmarks/bench_tracks.py``, room_mav, median px at ages 1/10/40 frames, measured
before the tracker aligned tracks to their first patch: 0.06/0.32/0.71 ranked by probability alone,
0.04/0.21/0.56 so, Shi-Tomasi 0.03/0.20/0.56; with the alignment both are at 0.04/0.04/0.05). The tracker only
detects to top up lost KLT tracks, so the net runs on the frames that need new features and KLT carries
them in between. The descriptors of the last detection are kept (``last_features``) for matching and loop
closure.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .extractor import _EMPTY, GridConfig, _check_inputs
from .keypoint_select import select_keypoints


@dataclass(frozen=True)
class LearnedConfig(GridConfig):
    weights: str = ""  # weight file; "" for the weights shipped in slam/learned/weights
    threshold: float = 0.005  # minimum keypoint probability
    nms_radius: float = 4.0  # px
    threads: int = 0  # torch CPU threads; 0 leaves torch's setting alone
    # Trackability: the Shi-Tomasi response (cv2.cornerMinEigenVal, ShiTomasiConfig's scale) a keypoint needs,
    # and the power of it that multiplies the score (0: rank by the net's probability alone)
    min_eigenvalue: float = 2e-4
    eigenvalue_power: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.threshold < 1:
            raise ValueError(f"LearnedConfig.threshold must be in [0, 1), got {self.threshold!r}")
        for name in ("min_eigenvalue", "eigenvalue_power"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"LearnedConfig.{name} must be a number >= 0, got {value!r}")
        if not (isinstance(self.threads, int) and self.threads >= 0):
            raise ValueError(f"LearnedConfig.threads must be an integer >= 0, got {self.threads!r}")


class LearnedExtractor:
    """Learned keypoints (net + per-cell NMS + top-k), grid-bucketed; descriptors in ``last_features``."""

    name = "learned"

    def __init__(self, config: LearnedConfig = LearnedConfig()):
        import torch  # only when the learned frontend is chosen: the classical one starts without torch

        from slam.learned.features import DetectorConfig, LearnedFeatures

        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        detector = DetectorConfig(max_keypoints=0, threshold=config.threshold, nms_radius=config.nms_radius)
        self.features = LearnedFeatures(config.weights or None, detector)
        self.last_features = None

    def detect(self, image, mask=None, max_count=200):
        _check_inputs(image, mask, max_count)
        if max_count == 0:
            return _EMPTY
        xy, probability, maps = self.features.detect(image, mask, max_count=0)  # every cell's, strongest first
        c = self.config
        candidates, scores = np.arange(len(xy)), probability
        if len(xy) and (c.min_eigenvalue > 0 or c.eigenvalue_power > 0):
            px = np.clip(np.rint(xy).astype(np.int64), 0, (image.shape[1] - 1, image.shape[0] - 1))
            eigenvalue = cv2.cornerMinEigenVal(image, 3, 3)[px[:, 1], px[:, 0]]
            candidates = np.flatnonzero(eigenvalue > c.min_eigenvalue)
            scores = probability[candidates] * eigenvalue[candidates] ** c.eigenvalue_power
        keep = select_keypoints(xy[candidates], scores, image.shape[1], image.shape[0], c.cell_size,
                                c.max_per_cell, c.min_distance, max_count)
        from slam.learned.features import Features

        chosen = xy[candidates[keep]]  # descriptors only for these: the tracker tops up a few tracks at a time
        self.last_features = Features(chosen, scores[keep].astype(np.float32), self.features.describe(maps, chosen))
        return self.last_features.xy.astype(np.float32), self.last_features.scores.astype(np.float32)
