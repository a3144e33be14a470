"""Native per-cell NMS/top-k and mutual-nearest-neighbour matching: parity with their NumPy twins, and the
properties they promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slam.learned.keypoints import cell_nms, cell_nms_numpy
from slam.learned.matching import match_descriptors, mutual_match, mutual_match_numpy


def _softmax_cells(rows, cols, seed, sharpness=3.0, quantize=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(rows, cols, 65)) * sharpness
    if quantize:  # many exact ties between cells and within a cell
        logits = np.round(logits)
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (p / p.sum(axis=2, keepdims=True)).astype(np.float32)


def _unit(n, dim, seed):
    d = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("seed, quantize", [(0, False), (1, True)])
@pytest.mark.parametrize("params", [dict(), dict(threshold=0.05, radius=4.0, max_count=500), dict(radius=0.0),
                                    dict(radius=12.0), dict(threshold=0.98, max_count=7), dict(border=4)])
def test_cell_nms_parity(seed, quantize, params):
    prob = _softmax_cells(60, 94, seed, quantize=quantize)
    mask = (np.random.default_rng(seed).random((475, 750)) > 0.3).astype(np.uint8)
    for m in (None, mask):
        size = (752, 480) if m is None else (750, 475)  # 750x475: the last cells reach into the padding
        xy, score = cell_nms(prob, *size, mask=m, **params)
        xy_twin, score_twin = cell_nms_numpy(prob, *size, mask=m, **params)
        assert xy.dtype == np.float32 and score.dtype == np.float32 and xy.shape == (len(score), 2)
        np.testing.assert_array_equal(xy, xy_twin)
        np.testing.assert_array_equal(score, score_twin)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 12), cols=st.integers(1, 12),
       threshold=st.floats(0.5, 1.0), radius=st.floats(0, 20), count=st.integers(0, 50), border=st.integers(0, 9))
def test_cell_nms_parity_property(seed, rows, cols, threshold, radius, count, border):
    prob = _softmax_cells(rows, cols, seed, quantize=seed % 2 == 0)
    a = cell_nms(prob, cols * 8, rows * 8, threshold, radius, count, border=border)
    b = cell_nms_numpy(prob, cols * 8, rows * 8, threshold, radius, count, border=border)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_cell_nms_properties():
    prob = _softmax_cells(60, 94, 5)
    xy, score = cell_nms(prob, 752, 480, threshold=0.97, radius=6.0, max_count=800, border=5)
    assert 0 < len(xy) <= 800
    assert np.all(np.diff(score) <= 0) and score.min() >= 0.97  # strongest first, above the threshold
    assert xy.min() >= 5 - 1 and xy[:, 0].max() < 752 - 5 + 1 and xy[:, 1].max() < 480 - 5 + 1
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    assert d.min() >= 6.0 - 2.0  # integer positions >= 6 px apart, each refined by less than 1 px
    cells = (np.floor(xy[:, 1] / 8) * 94 + np.floor(xy[:, 0] / 8)).astype(int)
    assert len(np.unique(cells)) == len(cells)  # at most one keypoint per cell


def test_cell_nms_one_hot_cells_give_exact_pixels_and_mask_and_border():
    prob = np.zeros((2, 3, 65), np.float32)
    prob[..., 64] = 1.0  # dustbin everywhere ...
    prob[0, 0, 64], prob[0, 0, 3 * 8 + 5] = 0.0, 1.0  # ... except pixel (5, 3) of cell (0, 0)
    prob[1, 2, 64], prob[1, 2, 7 * 8 + 7] = 0.1, 0.9  # and pixel (23, 15) of cell (1, 2)
    xy, score = cell_nms(prob, 24, 16, threshold=0.5)
    np.testing.assert_array_equal(xy, [[5, 3], [23, 15]])
    np.testing.assert_allclose(score, [1.0, 0.9])
    mask = np.full((16, 24), 255, np.uint8)
    mask[3, 5] = 0
    assert cell_nms(prob, 24, 16, 0.5, mask=mask)[0].tolist() == [[23, 15]]
    assert cell_nms(prob, 23, 16, 0.5)[0].tolist() == [[5, 3]]  # (23, 15) lies in the padding
    assert cell_nms(prob, 24, 16, 0.5, border=3)[0].tolist() == [[5, 3]]  # (23, 15) is 1 px from the edge
    assert cell_nms(prob, 24, 16, 0.95)[0].tolist() == [[5, 3]]  # cell (1, 2) scores 1 - dustbin = 0.9


def test_cell_nms_subpixel_refinement():
    prob = np.zeros((1, 1, 65), np.float32)
    prob[0, 0, 4 * 8 + 4] = 0.6  # pixel (4, 4)
    prob[0, 0, 4 * 8 + 5] = 0.2  # (5, 4): pulls x right
    prob[0, 0, 64] = 0.2
    xy, _ = cell_nms(prob, 8, 8)
    np.testing.assert_allclose(xy, [[4.25, 4.0]], atol=1e-6)
    np.testing.assert_allclose(cell_nms(prob, 8, 8)[1], [0.8])  # the cell's keypoint probability
    np.testing.assert_array_equal(xy, cell_nms_numpy(prob, 8, 8)[0])


def test_cell_nms_rejects_bad_input():
    with pytest.raises(ValueError, match="65"):
        cell_nms(np.zeros((2, 2, 64), np.float32), 16, 16)
    with pytest.raises(ValueError, match="mask"):
        cell_nms(np.zeros((2, 2, 65), np.float32), 16, 16, mask=np.zeros((8, 8), np.uint8))


@pytest.mark.parametrize("n, m", [(0, 5), (5, 0), (1, 1), (1, 7), (300, 280), (1000, 1000)])
@pytest.mark.parametrize("params", [dict(), dict(ratio=0.8), dict(ratio=0.95, min_similarity=0.5)])
def test_mutual_match_parity(n, m, params):
    a, b = _unit(n, 64, n), _unit(m, 64, m + 1)
    if n and m:
        k = min(n, m) // 2
        b[:k] = a[:k] + 0.2 * _unit(k, 64, 7)  # some true pairs
        b /= np.linalg.norm(b, axis=1, keepdims=True)
    sim = a @ b.T
    native = mutual_match(sim, **params)
    assert native.dtype == np.int64 and native.shape[1] == 2
    np.testing.assert_array_equal(native, mutual_match_numpy(sim, **params))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 40), m=st.integers(0, 40), ratio=st.floats(0.5, 1.0),
       levels=st.integers(2, 6))
def test_mutual_match_parity_with_ties(seed, n, m, ratio, levels):
    sim = np.round(np.random.default_rng(seed).random((n, m)) * levels) / levels  # many exact ties
    np.testing.assert_array_equal(mutual_match(sim, ratio), mutual_match_numpy(sim, ratio))


def test_mutual_match_properties():
    a = _unit(200, 32, 1)
    b = a[::-1] + 0.05 * _unit(200, 32, 2)  # b[199 - i] is a[i], slightly moved
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    pairs = match_descriptors(a, b)
    assert len(pairs) == 200 and np.all(pairs[:, 1] == 199 - pairs[:, 0])
    assert len(set(pairs[:, 1].tolist())) == len(pairs)  # one-to-one
    sim = a @ b.T
    strict = mutual_match(sim, ratio=0.5)  # a stricter ratio keeps a subset
    assert set(map(tuple, strict.tolist())) <= set(map(tuple, pairs.tolist()))
    assert len(mutual_match(sim, min_similarity=1.01)) == 0
