"""Landmark triangulation from normalized observations, with the checks that keep bad points out.

Observations are undistorted normalized coordinates (x/z, y/z); poses are ``T_W_C`` (4x4).
"""

from __future__ import annotations

import numpy as np


def project(T_W_C: np.ndarray, p_W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized coordinates (N, 2) and depths (N,) of world points (N, 3) seen from camera ``T_W_C``."""
    p_C = (np.atleast_2d(p_W) - T_W_C[:3, 3]) @ T_W_C[:3, :3]
    z = p_C[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return p_C[:, :2] / z[:, None], z


def triangulate_stereo(uv0: np.ndarray, uv1: np.ndarray, T_C0_C1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points in cam0 (N, 3) by the midpoint of the two rays, and the per-point angle between the rays [rad]."""
    uv0, uv1 = np.atleast_2d(uv0), np.atleast_2d(uv1)
    r0 = np.column_stack([uv0, np.ones(len(uv0))])
    r1 = np.column_stack([uv1, np.ones(len(uv1))]) @ T_C0_C1[:3, :3].T  # cam1 rays in cam0
    o1 = T_C0_C1[:3, 3]
    # minimise |d0 r0 - (o1 + d1 r1)|: 2x2 normal equations per point
    a, b, c = (r0 * r0).sum(1), (r0 * r1).sum(1), (r1 * r1).sum(1)
    e, f = r0 @ o1, r1 @ o1
    det = a * c - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        d0 = (c * e - b * f) / det
        d1 = (b * e - a * f) / det
        cos = b / np.sqrt(a * c)
    points = 0.5 * (d0[:, None] * r0 + (o1 + d1[:, None] * r1))
    return points, np.arccos(np.clip(cos, -1.0, 1.0))


def triangulate_views(T_W_Cs: list[np.ndarray], uvs: np.ndarray) -> np.ndarray:
    """One point (3,) seen in several views: linear (DLT) least squares on the normalized observations."""
    rows = []
    for T_W_C, (x, y) in zip(T_W_Cs, uvs):
        P = np.linalg.inv(T_W_C)[:3]  # [R_C_W | t_C_W]
        rows.append(x * P[2] - P[0])
        rows.append(y * P[2] - P[1])
    _, _, vt = np.linalg.svd(np.array(rows))
    h = vt[-1]
    return h[:3] / h[3] if abs(h[3]) > 1e-12 else np.full(3, np.nan)


def max_parallax(T_W_Cs: list[np.ndarray], uvs: np.ndarray) -> float:
    """Largest angle [rad] between the world-frame bearing rays of one landmark's observations."""
    rays = np.array([T[:3, :3] @ np.array([u, v, 1.0]) for T, (u, v) in zip(T_W_Cs, uvs)])
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    cos = np.clip(rays @ rays.T, -1.0, 1.0)
    return float(np.arccos(cos.min()))


def reprojection_px(T_W_Cs: list[np.ndarray], uvs: np.ndarray, p_W: np.ndarray, focal: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-view reprojection error [px] and depth of ``p_W``."""
    errors, depths = [], []
    for T_W_C, uv in zip(T_W_Cs, uvs):
        proj, z = project(T_W_C, p_W)
        errors.append(float(np.linalg.norm(proj[0] - uv)) * focal if z[0] > 0 else np.inf)
        depths.append(float(z[0]))
    return np.array(errors), np.array(depths)
