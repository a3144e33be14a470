"""Pixels <-> undistorted normalized coordinates for every distortion model: round trips and the forward
models written out independently (so a round trip of two wrong halves cannot pass)."""

from __future__ import annotations

import numpy as np
import pytest

from slam.frontend.camera_model import project_points, undistort_points
from slam.messages import CameraCalibration

EUROC_K = [458.654, 457.296, 367.215, 248.375]
CAMERAS = {
    "none": CameraCalibration(752, 480, EUROC_K),
    "radtan": CameraCalibration(752, 480, EUROC_K, "radtan", [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05]),
    "radtan5": CameraCalibration(752, 480, EUROC_K, "radtan5",
                                 [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05, 0.01]),
    # TUM-VI's 512x512 fisheye (cam0 of the dso calibration): ~190 deg, corners beyond 90 deg
    "equidistant": CameraCalibration(512, 512, [190.978477, 190.973307, 254.931706, 256.897442], "equidistant",
                                     [0.003482389, 0.000715034845, -0.00205323614, 0.000202936736]),
}


def _forward(cam: CameraCalibration, xy: np.ndarray) -> np.ndarray:
    """The textbook models (Kalibr / OpenCV conventions), independent of camera_model."""
    x, y = xy[:, 0], xy[:, 1]
    d = cam.distortion
    if cam.distortion_model == "equidistant":
        r = np.hypot(x, y)
        theta = np.arctan(r)
        theta_d = theta * (1 + d[0] * theta**2 + d[1] * theta**4 + d[2] * theta**6 + d[3] * theta**8)
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        xd, yd = x * scale, y * scale
    elif cam.distortion_model in ("radtan", "radtan5"):
        r2 = x * x + y * y
        k3 = d[4] if len(d) == 5 else 0.0
        radial = 1 + d[0] * r2 + d[1] * r2**2 + k3 * r2**3
        xd = x * radial + 2 * d[2] * x * y + d[3] * (r2 + 2 * x * x)
        yd = y * radial + d[2] * (r2 + 2 * y * y) + 2 * d[3] * x * y
    else:
        xd, yd = x, y
    fx, fy, cx, cy = cam.intrinsics
    return np.stack([fx * xd + cx, fy * yd + cy], axis=1)


def _pixel_grid(cam: CameraCalibration, n: int = 25) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0, cam.width - 1, n), np.linspace(0, cam.height - 1, n))
    return np.stack([u.ravel(), v.ravel()], axis=1)


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_pixels_round_trip_over_the_whole_image(model):
    cam = CAMERAS[model]
    px = _pixel_grid(cam)
    normalized = undistort_points(cam, px)
    valid = np.all(np.isfinite(normalized), axis=1)
    if model == "equidistant":  # the fisheye's corners look more than 90 degrees off axis: no x/z there
        assert 0.6 < valid.mean() < 1.0
        assert not np.any(valid[np.linalg.norm(px - cam.intrinsics[2:], axis=1) > 300])
    else:
        assert valid.all()
    np.testing.assert_allclose(project_points(cam, normalized[valid]), px[valid], atol=1e-6)


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_projection_is_the_textbook_model_and_undistortion_inverts_it(model):
    cam = CAMERAS[model]
    rng = np.random.default_rng(1)
    half_fov = 1.2 if model == "equidistant" else 0.6  # normalized radius reached inside the image
    xy = rng.uniform(-half_fov, half_fov, (400, 2)) * [1.0, 0.7]
    px = project_points(cam, xy)
    np.testing.assert_allclose(px, _forward(cam, xy), atol=1e-6)
    inside = (px[:, 0] >= 0) & (px[:, 0] < cam.width) & (px[:, 1] >= 0) & (px[:, 1] < cam.height)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(undistort_points(cam, px[inside]), xy[inside], atol=1e-8)


def test_distortion_really_moves_points():
    """Guards the tests above: radtan/equidistant must differ from the pinhole somewhere in the image."""
    xy = np.array([[0.5, 0.4]])
    pinhole = project_points(CAMERAS["none"], xy)
    assert np.linalg.norm(project_points(CAMERAS["radtan"], xy) - pinhole) > 10
    assert np.linalg.norm(project_points(CAMERAS["radtan5"], xy) - project_points(CAMERAS["radtan"], xy)) > 0.1


def test_principal_point_maps_to_the_optical_axis():
    for cam in CAMERAS.values():
        np.testing.assert_allclose(undistort_points(cam, [cam.intrinsics[2:]]), [[0.0, 0.0]], atol=1e-12)


def test_empty_and_badly_shaped_input():
    cam = CAMERAS["radtan"]
    assert undistort_points(cam, np.zeros((0, 2))).shape == (0, 2)
    assert project_points(cam, np.zeros((0, 2))).shape == (0, 2)
    with pytest.raises(ValueError, match=r"px must have shape \(N, 2\)"):
        undistort_points(cam, np.zeros(4))
    with pytest.raises(ValueError, match=r"normalized must have shape \(N, 2\)"):
        project_points(cam, np.zeros((3, 3)))
