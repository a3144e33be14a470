"""Keyframe selection on feature tracks: translation parallax triggers, pure rotation does not (when the
rotation is known), lost tracks and time limits trigger, and bad input is refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.frontend.keyframes import KeyframeConfig, KeyframeSelector
from slam.messages import FeatureFrame

FOCAL = 458.0
MS = 1_000_000


def _scene(n=150, seed=0) -> np.ndarray:
    """Points 2-6 m in front of the camera, inside a ~70 degree field of view."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 6.0, n)
    return np.stack([rng.uniform(-0.7, 0.7, n) * z, rng.uniform(-0.5, 0.5, n) * z, z], axis=1)


def _observe(points_C0: np.ndarray, R_C0_C: np.ndarray = np.eye(3), p_C0: np.ndarray = np.zeros(3),
             t_ns: int = 0, ids: np.ndarray | None = None) -> FeatureFrame:
    """FeatureFrame of a camera at pose (R_C0_C, p_C0) in the first camera's frame."""
    points = (points_C0 - p_C0) @ R_C0_C  # rows: R_C_C0 (p - t)
    ids = np.arange(len(points), dtype=np.int64) if ids is None else ids
    return FeatureFrame(t_ns, 0, ids, points[:, :2] / points[:, 2:], True)


def _rotation(deg, axis=(0.2, 1.0, 0.1)) -> np.ndarray:
    axis = np.asarray(axis, float)
    return cv2.Rodrigues(axis / np.linalg.norm(axis) * np.deg2rad(deg))[0]


def _selector_at_first_keyframe(points):
    selector = KeyframeSelector(KeyframeConfig(), FOCAL)
    first = _observe(points)
    assert selector.is_keyframe(0, first) and selector.reason == "first frame"
    selector.mark(0, first)
    return selector


def test_translation_parallax_triggers_a_keyframe():
    points = _scene()
    selector = _selector_at_first_keyframe(points)
    small = _observe(points, p_C0=np.array([0.01, 0.0, 0.0]), t_ns=100 * MS)
    assert not selector.is_keyframe(100 * MS, small, np.eye(3))
    assert 0.5 < selector.parallax_px < 10.0  # ~458 * 0.01 / 3.5 m
    moved = _observe(points, p_C0=np.array([0.15, 0.0, 0.0]), t_ns=200 * MS)
    assert selector.is_keyframe(200 * MS, moved, np.eye(3)) and selector.reason == "parallax"
    assert selector.parallax_px > 10.0


def test_translation_with_rotation_is_measured_without_the_rotation():
    points = _scene()
    selector = _selector_at_first_keyframe(points)
    R_C0_C = _rotation(8.0)
    frame = _observe(points, R_C0_C, np.array([0.15, 0.0, 0.0]), t_ns=200 * MS)
    assert selector.is_keyframe(200 * MS, frame, R_C0_C)
    with_rotation = selector.parallax_px
    selector_plain = _selector_at_first_keyframe(points)
    selector_plain.is_keyframe(200 * MS, _observe(points, p_C0=np.array([0.15, 0.0, 0.0])), np.eye(3))
    assert with_rotation == pytest.approx(selector_plain.parallax_px, rel=0.15)


def test_pure_rotation_is_not_a_keyframe_when_the_rotation_is_known():
    points = _scene()
    selector = _selector_at_first_keyframe(points)
    R_C0_C = _rotation(10.0)
    rotated = _observe(points, R_C0_C, t_ns=200 * MS)
    assert not selector.is_keyframe(200 * MS, rotated, R_C0_C)
    assert selector.parallax_px < 1e-6 and selector.reason == "not enough parallax"
    # without the rotation the same motion looks like ~80 px of parallax
    assert selector.is_keyframe(200 * MS, rotated, None) and selector.parallax_px > 50


def test_losing_tracks_triggers_a_keyframe():
    points = _scene(100)
    selector = _selector_at_first_keyframe(points)
    kept = np.arange(100) < 70
    frame = _observe(points[kept], t_ns=100 * MS, ids=np.arange(100)[kept])
    assert not selector.is_keyframe(100 * MS, frame)
    assert selector.tracked_ratio == pytest.approx(0.7)
    kept = np.arange(100) < 50
    extra = _observe(_scene(50, seed=1), t_ns=100 * MS, ids=np.arange(1000, 1050))  # new features do not count
    frame = FeatureFrame(100 * MS, 0, np.concatenate([np.arange(100)[kept], extra.ids]),
                         np.concatenate([_observe(points[kept]).uv, extra.uv]), True)
    assert selector.is_keyframe(100 * MS, frame) and selector.tracked_ratio == pytest.approx(0.5)


def test_time_limits():
    points = _scene()
    selector = _selector_at_first_keyframe(points)
    far = _observe(points, p_C0=np.array([0.3, 0.0, 0.0]))
    assert not selector.is_keyframe(40 * MS, far), "never closer than min_interval_s, whatever the parallax"
    assert selector.reason == "too soon after the last keyframe"
    still = _observe(points)
    assert not selector.is_keyframe(499 * MS, still)
    assert selector.is_keyframe(500 * MS, still) and selector.reason == "max interval reached"
    selector.mark(500 * MS, still)
    assert selector.last_keyframe_t_ns == 500 * MS
    assert not selector.is_keyframe(900 * MS, still)
    with pytest.raises(ValueError, match="before the last keyframe"):
        selector.is_keyframe(100 * MS, still)


def test_empty_keyframe_and_empty_frames():
    selector = KeyframeSelector(KeyframeConfig(), FOCAL)
    empty = FeatureFrame(0, 0, np.zeros(0, np.int64), np.zeros((0, 2)), True)
    selector.mark(0, empty)
    assert selector.is_keyframe(100 * MS, _observe(_scene()))  # features again after a blank keyframe
    selector.mark(100 * MS, _observe(_scene()))
    assert selector.is_keyframe(200 * MS, FeatureFrame(200 * MS, 0, np.zeros(0, np.int64), np.zeros((0, 2)), True))
    assert selector.tracked_ratio == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="min_parallax_px"):
        KeyframeConfig(min_parallax_px=0)
    with pytest.raises(ValueError, match="min_interval_s"):
        KeyframeConfig(min_interval_s=1.0, max_interval_s=0.5)
    with pytest.raises(ValueError, match="min_tracked_ratio"):
        KeyframeConfig(min_tracked_ratio=1.5)
    with pytest.raises(ValueError, match="focal_px"):
        KeyframeSelector(KeyframeConfig(), 0.0)
    selector = _selector_at_first_keyframe(_scene())
    with pytest.raises(ValueError, match="normalized"):
        selector.is_keyframe(100 * MS, FeatureFrame(100 * MS, 0, np.arange(3), np.zeros((3, 2)), False))
    with pytest.raises(ValueError, match="R_Ckf_Ccur"):
        selector.is_keyframe(100 * MS, _observe(_scene()), np.eye(4))
