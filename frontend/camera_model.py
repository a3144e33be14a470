"""Pixels <-> undistorted normalized image coordinates (x/z, y/z) for every distortion model of the project.

Models (see :class:`slam.messages.CameraCalibration`): ``none`` (pinhole), ``radtan`` (k1 k2 p1 p2),
``radtan5`` (k1 k2 p1 p2 k3) and ``equidistant`` (Kannala-Brandt k1..k4, OpenCV's fisheye model).
Undistortion is iterative in OpenCV; the default criteria stop after 5 iterations, which leaves
~0.3 px of error in the corners of the EuRoC lens, so tight criteria are passed.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.messages import CameraCalibration

# Iterate until the reprojection error is below 1e-10 (normalized units), at most 100 times.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
_ZERO3 = np.zeros(3)
_FISHEYE_ROUND_TRIP_PX = 0.01


def _points(values, field: str) -> np.ndarray:
    pts = np.asarray(values, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{field} must have shape (N, 2), got {pts.shape}")
    return np.ascontiguousarray(pts)


def undistort_points(cam: CameraCalibration, px) -> np.ndarray:
    """(N, 2) distorted pixels of ``cam`` -> (N, 2) float64 undistorted normalized coordinates (x/z, y/z).

    A fisheye pixel whose ray is 90 degrees or more off the optical axis has no x/z; it gets NaN.
    """
    px = _points(px, "px")
    if len(px) == 0:
        return np.zeros((0, 2))
    if cam.distortion_model == "none":
        fx, fy, cx, cy = cam.intrinsics
        return (px - (cx, cy)) / (fx, fy)
    src = px.reshape(-1, 1, 2)
    if cam.distortion_model != "equidistant":
        out = cv2.undistortPoints(src, cam.K, cam.distortion, criteria=_UNDISTORT_CRITERIA)
        return out.reshape(-1, 2).astype(np.float64, copy=False)
    out = cv2.fisheye.undistortPoints(src, cam.K, cam.distortion, criteria=_UNDISTORT_CRITERIA)
    out = out.reshape(-1, 2).astype(np.float64, copy=False)
    # Past 90 degrees OpenCV returns a wrong (mirrored) point; only a round trip tells it apart.
    out[np.abs(project_points(cam, out) - px).max(axis=1) > _FISHEYE_ROUND_TRIP_PX] = np.nan
    return out


def project_points(cam: CameraCalibration, normalized) -> np.ndarray:
    """(N, 2) undistorted normalized coordinates -> (N, 2) float64 distorted pixels of ``cam``."""
    xy = _points(normalized, "normalized")
    if len(xy) == 0:
        return np.zeros((0, 2))
    if cam.distortion_model == "none":
        fx, fy, cx, cy = cam.intrinsics
        return xy * (fx, fy) + (cx, cy)
    rays = np.hstack([xy, np.ones((len(xy), 1))])
    if cam.distortion_model == "equidistant":
        out, _ = cv2.fisheye.projectPoints(rays.reshape(-1, 1, 3), _ZERO3, _ZERO3, cam.K, cam.distortion)
    else:
        out, _ = cv2.projectPoints(rays, _ZERO3, _ZERO3, cam.K, cam.distortion)
    return out.reshape(-1, 2).astype(np.float64, copy=False)
