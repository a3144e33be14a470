"""Exact feature tracks of a synthetic sequence: scene points projected with the true cam0 poses.

What a perfect frontend would deliver: every track is one 3-D point of the scene, observed at its exact
projection for as long as it stays in view and unoccluded (checked by ray casting). Written as a
feature-track CSV (:func:`slam.datasets.feature_tracks.write_feature_csv`) with the sequence's own IMU, the
backend runs on it alone, which separates the estimator's error from the frontend's: on hall_loop the
mono-inertial full batch reaches 0.042 m ATE with exact tracks against 0.058 m with the frontend's (0.195 m
before the tracker aligned each track to its first patch; ``benchmarks/bench_mono_scale.py --tracks exact``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from slam.messages import FeatureFrame

from .generator import Sequence
from .render import raycast

MARGIN_PX = 15.0  # tracks end this close to the image edge
MAX_DEPTH_M = 25.0  # no new tracks on farther surfaces (a real frontend rarely holds them either)


def exact_tracks(truth: Sequence, max_tracks: int = 120, spacing_px: float = 30.0,
                 seed: int = 0) -> Iterator[FeatureFrame]:
    """cam0 FeatureFrames (normalized coordinates) at every frame of ``truth``.

    New tracks start on a jittered grid wherever no track is within ``spacing_px``, up to ``max_tracks``;
    ids are never reused. Positions use cam0's pinhole intrinsics (distortion does not matter: the
    coordinates written are the rays' own).
    """
    cam = truth.cameras[0]
    fx, fy, cx, cy = (float(v) for v in cam.intrinsics[:4])
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(spacing_px, cam.width - spacing_px + 1, spacing_px),
                         np.arange(spacing_px, cam.height - spacing_px + 1, spacing_px))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    ids = np.zeros(0, np.int64)
    points = np.zeros((0, 3))  # world points of the live tracks
    next_id = 0
    for k, t_ns in enumerate(truth.frame_t_ns):
        T = truth.T_W_C(k, 0)
        p_C = (points - T[:3, 3]) @ T[:3, :3]
        z = p_C[:, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            xy = p_C[:, :2] / z[:, None]
        px = xy * (fx, fy) + (cx, cy)
        live = ((z > 0.2) & (px[:, 0] > MARGIN_PX) & (px[:, 0] < cam.width - MARGIN_PX)
                & (px[:, 1] > MARGIN_PX) & (px[:, 1] < cam.height - MARGIN_PX))
        if np.any(live):  # occluded: the ray hits something nearer than the point
            depth = raycast(truth.scene, T, np.vstack([xy[live].T, np.ones(int(live.sum()))]))[0]
            live[live] = np.abs(depth - z[live]) < 1e-3 * np.maximum(z[live], 1.0)
        ids, points, xy, px = ids[live], points[live], xy[live], px[live]
        if len(ids) < max_tracks:
            free = grid if not len(px) else grid[np.min(np.linalg.norm(grid[:, None] - px[None], axis=2), 1)
                                                 > spacing_px]
            free = rng.permutation(free) + rng.uniform(-spacing_px / 3, spacing_px / 3, free.shape)  # no side first
            rays = np.vstack([(free[:, 0] - cx) / fx, (free[:, 1] - cy) / fy, np.ones(len(free))])
            depth = raycast(truth.scene, T, rays)[0] if len(free) else np.zeros(0)
            hit = np.flatnonzero(np.isfinite(depth) & (depth < MAX_DEPTH_M))[:max_tracks - len(ids)]
            new_xy = rays[:2, hit].T
            ids = np.concatenate([ids, np.arange(next_id, next_id + len(hit))])
            points = np.vstack([points, (rays[:, hit] * depth[hit]).T @ T[:3, :3].T + T[:3, 3]])
            xy = np.vstack([xy, new_xy])
            next_id += len(hit)
        yield FeatureFrame(int(t_ns), 0, ids.copy(), xy.copy(), True, k)
