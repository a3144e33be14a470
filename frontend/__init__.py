"""frontend stage: camera models, keypoint extractors, the KLT feature tracker and keyframe selection."""

from .camera_model import project_points, undistort_points
from .extractor import (EXTRACTORS, FastConfig, FastExtractor, FeatureExtractor, ShiTomasiConfig, ShiTomasiExtractor,
                        make_extractor)
from .keyframes import KeyframeConfig, KeyframeSelector
from .keypoint_select import select_keypoints, select_keypoints_numpy
from .tracker import FeatureTracker, TrackerConfig, TrackerStats, epipolar_inliers

__all__ = ["EXTRACTORS", "FastConfig", "FastExtractor", "FeatureExtractor", "FeatureTracker", "KeyframeConfig",
           "KeyframeSelector", "ShiTomasiConfig", "ShiTomasiExtractor", "TrackerConfig", "TrackerStats",
           "epipolar_inliers", "make_extractor", "project_points", "select_keypoints", "select_keypoints_numpy",
           "undistort_points"]
