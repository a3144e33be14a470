"""Grid-bucketed keypoint selection: a C++ kernel (``slam._native``) and its NumPy twin.

Strongest first; at most ``max_per_cell`` per ``cell_size`` grid cell (spreads features over the image,
which conditions the pose estimate); none closer than ``min_distance`` px to an already selected point
(no two features on one corner); at most ``max_total``. Ties keep input order, so both twins agree exactly.
"""

from __future__ import annotations

import numpy as np


def _check(xy, score) -> tuple[np.ndarray, np.ndarray]:
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    score = np.ascontiguousarray(score, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (N, 2), got {xy.shape}")
    if score.shape != (len(xy),):
        raise ValueError(f"score must have shape ({len(xy)},), got {score.shape}")
    return xy, score


def select_keypoints_numpy(xy, score, width: int, height: int, cell_size: float = 32.0, max_per_cell: int = 4,
                           min_distance: float = 8.0, max_total: int = 1000) -> np.ndarray:
    """NumPy twin of the native kernel (same algorithm, same result); returns int64 indices."""
    xy, score = _check(xy, score)
    if width <= 0 or height <= 0 or not cell_size >= 1:
        raise ValueError("width and height must be positive and cell_size >= 1 px")
    order = np.argsort(-score, kind="stable")
    cells_x = int(np.ceil(width / cell_size))
    per_cell = np.zeros(cells_x * int(np.ceil(height / cell_size)), dtype=np.int64)
    suppress = min_distance > 0
    r = float(min_distance) if suppress else 1.0
    g = max(r, 4.0)  # occupancy cell >= r, so conflicts lie in the 3x3 neighbourhood; >= 4 px bounds the grid
    occ_x, occ_y = int(np.ceil(width / g)), int(np.ceil(height / g))
    occupied: dict[int, list[int]] = {}
    selected: list[int] = []
    for idx in order:
        if 0 < max_total <= len(selected):
            break
        x, y = xy[idx]
        if not (0 <= x < width and 0 <= y < height) or np.isnan(score[idx]):
            continue
        cell = int(y / cell_size) * cells_x + int(x / cell_size)
        if max_per_cell > 0 and per_cell[cell] >= max_per_cell:
            continue
        if suppress:
            ox, oy = int(x / g), int(y / g)
            near = [j for gy in range(max(oy - 1, 0), min(oy + 1, occ_y - 1) + 1)
                    for gx in range(max(ox - 1, 0), min(ox + 1, occ_x - 1) + 1)
                    for j in occupied.get(gy * occ_x + gx, ())]
            if near:
                d = xy[near] - (x, y)
                if np.any(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] < r * r):
                    continue
            occupied.setdefault(oy * occ_x + ox, []).append(int(idx))
        per_cell[cell] += 1
        selected.append(int(idx))
    return np.asarray(selected, dtype=np.int64)


def select_keypoints(xy, score, width: int, height: int, cell_size: float = 32.0, max_per_cell: int = 4,
                     min_distance: float = 8.0, max_total: int = 1000) -> np.ndarray:
    """Native kernel; see :func:`select_keypoints_numpy` for the reference semantics."""
    from slam import _native

    xy, score = _check(xy, score)
    return _native.select_keypoints(xy, score, int(width), int(height), float(cell_size), int(max_per_cell),
                                    float(min_distance), int(max_total))
