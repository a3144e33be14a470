"""Native grid-bucketed keypoint selection: parity with its NumPy twin, and the properties it promises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slam.frontend.keypoint_select import select_keypoints, select_keypoints_numpy


def _points(n, seed, width=752, height=480, quantize=False):
    rng = np.random.default_rng(seed)
    xy = rng.uniform([0, 0], [width, height], (n, 2))
    score = rng.random(n)
    if quantize:  # many exact ties, and points on cell borders
        xy, score = np.round(xy / 8) * 8, np.round(score * 5)
    return xy, score


@pytest.mark.parametrize("n, seed, quantize", [(0, 0, False), (1, 1, False), (3000, 2, False), (3000, 3, True)])
@pytest.mark.parametrize("params", [dict(), dict(max_per_cell=0), dict(min_distance=0), dict(max_total=0),
                                    dict(cell_size=50, max_per_cell=2, min_distance=15.5, max_total=150)])
def test_parity_with_numpy_twin(n, seed, quantize, params):
    xy, score = _points(n, seed, quantize=quantize)
    native = select_keypoints(xy, score, 752, 480, **params)
    twin = select_keypoints_numpy(xy, score, 752, 480, **params)
    assert native.dtype == np.int64
    np.testing.assert_array_equal(native, twin)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 400), cell=st.floats(4, 200), per_cell=st.integers(0, 5),
       dist=st.floats(0, 40), total=st.integers(0, 300))
def test_parity_property(seed, n, cell, per_cell, dist, total):
    xy, score = _points(n, seed, 200, 150, quantize=seed % 2 == 0)
    np.testing.assert_array_equal(select_keypoints(xy, score, 200, 150, cell, per_cell, dist, total),
                                  select_keypoints_numpy(xy, score, 200, 150, cell, per_cell, dist, total))


def test_selection_properties():
    xy, score = _points(5000, 7)
    picked = select_keypoints(xy, score, 752, 480, cell_size=32, max_per_cell=3, min_distance=10, max_total=400)
    assert len(picked) == 400 and len(set(picked.tolist())) == 400
    assert np.all(np.diff(score[picked]) <= 0)  # strongest first
    cells = (xy[picked, 1] // 32).astype(int) * 24 + (xy[picked, 0] // 32).astype(int)
    assert np.bincount(cells).max() <= 3
    d = np.linalg.norm(xy[picked, None] - xy[None, picked], axis=-1) + np.eye(len(picked)) * 1e9
    assert d.min() >= 10
    assert picked[0] == np.argmax(score)


def test_rejects_points_outside_and_nan_scores():
    xy = np.array([[-1.0, 5.0], [10.0, 480.0], [5.0, 5.0], [6.0, 6.0]])
    score = np.array([9.0, 8.0, np.nan, 1.0])
    for fn in (select_keypoints, select_keypoints_numpy):
        assert fn(xy, score, 752, 480).tolist() == [3]


def test_bad_arguments():
    for fn in (select_keypoints, select_keypoints_numpy):
        with pytest.raises(ValueError, match=r"xy must have shape \(N, 2\)"):
            fn(np.zeros((3, 3)), np.zeros(3), 10, 10)
        with pytest.raises(ValueError, match="score must have shape"):
            fn(np.zeros((3, 2)), np.zeros(2), 10, 10)
        with pytest.raises(ValueError, match="must be positive and cell_size >= 1"):
            fn(np.zeros((3, 2)), np.zeros(3), 0, 10)
