"""Data model: calibration validation names the field; lazy images; trajectories; rotation helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slam.geometry import invert_transform, make_transform, quat_multiply, quat_to_rot, rot_to_quat
from slam.messages import (CalibrationError, CameraCalibration, DataError, EncodedImage, ImageFile, ImuCalibration,
                           Trajectory, as_rigid_transform)


def test_camera_calibration_normalizes_model_names():
    cam = CameraCalibration(752, 480, [458.6, 457.3, 367.2, 248.4], "radial-tangential",
                            [-0.28, 0.07, 0.0002, 0.00002])
    assert cam.distortion_model == "radtan"
    assert CameraCalibration(10, 10, [1, 1, 5, 5], "radtan", [0.1, 0, 0, 0, 0.01]).distortion_model == "radtan5"
    assert CameraCalibration(10, 10, [1, 1, 5, 5], "fisheye", [0, 0, 0, 0]).distortion_model == "equidistant"
    np.testing.assert_allclose(cam.K, [[458.6, 0, 367.2], [0, 457.3, 248.4], [0, 0, 1]])


@pytest.mark.parametrize("kwargs, field", [
    (dict(width=0), "cam0.width"),
    (dict(height=480.5), "cam0.height"),
    (dict(intrinsics=[1, 2, 3]), "cam0.intrinsics"),
    (dict(intrinsics=[1, np.nan, 3, 4]), "cam0.intrinsics"),
    (dict(distortion=[0.1, 0.2]), "cam0.distortion"),
    (dict(distortion_model="division"), "cam0.distortion_model"),
    (dict(T_B_C=np.eye(3)), "cam0.T_B_C"),
    (dict(T_B_C=np.diag([1.0, 1.0, -1.0, 1.0])), "cam0.T_B_C"),  # a reflection is not a rotation
    (dict(rate_hz=-20), "cam0.rate_hz"),
])
def test_camera_calibration_errors_name_the_field(kwargs, field):
    args = dict(width=752, height=480, intrinsics=[458.6, 457.3, 367.2, 248.4], distortion_model="radtan",
                distortion=[-0.28, 0.07, 0.0, 0.0], source="cams.yaml")
    args.update(kwargs)
    with pytest.raises(CalibrationError) as info:
        CameraCalibration(**args)
    assert info.value.field == field and str(info.value).startswith(f"cams.yaml [{field}]")


def test_imu_calibration_rejects_non_positive_noise():
    with pytest.raises(CalibrationError, match=r"imu.accel_random_walk"):
        ImuCalibration(1e-4, 1e-5, 2e-3, 0.0, 200.0)


def test_rigid_transform_accepts_3x4_and_flat():
    T = as_rigid_transform(np.eye(4)[:3], "T")
    assert T.shape == (4, 4)
    assert as_rigid_transform(np.eye(4).ravel().tolist(), "T").shape == (4, 4)
    with pytest.raises(CalibrationError, match="last row"):
        as_rigid_transform([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], "T")
    with pytest.raises(CalibrationError, match="matrix of numbers"):
        as_rigid_transform([["a", 0, 0, 0]] * 4, "T")


def test_data_error_formats_location():
    assert str(DataError("bad", "f.csv", 3)) == "f.csv:3: bad"
    assert str(DataError("bad", "f.yaml", field="cam0.T")) == "f.yaml [cam0.T]: bad"
    assert str(DataError("bad")) == "bad"


def test_image_sources(tmp_path):
    import cv2

    image = (np.arange(48 * 64) % 251).astype(np.uint8).reshape(48, 64)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    np.testing.assert_array_equal(ImageFile(tmp_path / "a.png").load(), image)
    with pytest.raises(DataError, match=r"b.png: file is missing"):
        ImageFile(tmp_path / "b.png").load()
    ok, png = cv2.imencode(".png", image)
    np.testing.assert_array_equal(EncodedImage(png.tobytes()).load(), image)
    with pytest.raises(DataError, match="bag.db3 #3: unreadable or corrupt"):
        EncodedImage(b"junk", origin="bag.db3 #3").load()


def test_trajectory_shape_check():
    with pytest.raises(DataError, match=r"Trajectory.q_W_B"):
        Trajectory(np.arange(3), np.zeros((3, 3)), np.zeros((3, 3)))


@settings(max_examples=50, deadline=None)
@given(q=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1))
def test_quaternion_round_trip(q):
    q = np.asarray(q) / np.linalg.norm(q)
    R = quat_to_rot(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(quat_to_rot(rot_to_quat(R)), R, atol=1e-12)
    # The product of quaternions is the product of rotations.
    np.testing.assert_allclose(quat_to_rot(quat_multiply(q, q[[0, 2, 3, 1]])), R @ quat_to_rot(q[[0, 2, 3, 1]]),
                               atol=1e-12)
    T = make_transform(R, q[:3])
    np.testing.assert_allclose(T @ invert_transform(T), np.eye(4), atol=1e-12)


def test_quaternion_convention_is_hamilton_wxyz():
    # 90 deg about z maps x to y.
    R = quat_to_rot([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
