"""Calibration files: ASL/EuRoC ``sensor.yaml`` and Kalibr ``camchain(-imucam).yaml`` / ``imu.yaml``.

Every error names the file and the field. Kalibr's ``T_cam_imu`` is ``T_C_B``; we store ``T_B_C``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slam.messages import (Calibration, CalibrationError, CameraCalibration, DataError, ImuCalibration,
                           as_rigid_transform)
from slam.parsing import load_yaml, require


def _asl_matrix(value, path, field: str) -> np.ndarray:
    """ASL writes matrices as ``{rows, cols, data}``; plain nested lists are accepted too."""
    if isinstance(value, dict):
        data = require(value, "data", path, field + ".")
        return as_rigid_transform(data, field, path)
    return as_rigid_transform(value, field, path)


def _int_pair(value, path, field: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CalibrationError(f"expected [width, height] integers, got {value!r}", path, field=field)
    return int(value[0]), int(value[1])


def read_asl_camera(path: str | Path, name: str = "cam0") -> CameraCalibration:
    """A camera ``sensor.yaml`` of the ASL/EuRoC layout."""
    path = Path(path)
    data = load_yaml(path)
    model = data.get("camera_model", "pinhole")
    if model != "pinhole":
        raise CalibrationError(f"unsupported camera_model {model!r} (only pinhole)", path, field="camera_model")
    width, height = _int_pair(require(data, "resolution", path), path, "resolution")
    return CameraCalibration(
        width=width, height=height, intrinsics=require(data, "intrinsics", path),
        distortion_model=data.get("distortion_model", "none"),
        distortion=data.get("distortion_coefficients", []),
        T_B_C=_asl_matrix(require(data, "T_BS", path), path, "T_BS"),
        rate_hz=data.get("rate_hz"), name=name, source=str(path))


def read_asl_imu(path: str | Path) -> ImuCalibration:
    """An IMU ``sensor.yaml`` of the ASL/EuRoC layout."""
    path = Path(path)
    data = load_yaml(path)
    return ImuCalibration(
        gyro_noise_density=require(data, "gyroscope_noise_density", path),
        gyro_random_walk=require(data, "gyroscope_random_walk", path),
        accel_noise_density=require(data, "accelerometer_noise_density", path),
        accel_random_walk=require(data, "accelerometer_random_walk", path),
        rate_hz=require(data, "rate_hz", path),
        T_B_S=_asl_matrix(data.get("T_BS", np.eye(4).tolist()), path, "T_BS"),
        source=str(path))


def read_kalibr_camchain(path: str | Path) -> tuple[CameraCalibration, ...]:
    """Cameras from a Kalibr camchain; ``T_cam_imu`` (``T_C_B``) gives each camera's ``T_B_C``.

    A camchain without ``T_cam_imu`` (camera-only calibration) chains ``T_cn_cnm1`` from cam0 = body.
    """
    path = Path(path)
    data = load_yaml(path)
    names = sorted((k for k in data if k.startswith("cam") and k[3:].isdigit()), key=lambda k: int(k[3:]))
    if not names:
        raise DataError("no cam0, cam1, ... entries found (is this a Kalibr camchain?)", path)
    cameras: list[CameraCalibration] = []
    T_B_prev = np.eye(4)
    for name in names:
        cam = data[name]
        if not isinstance(cam, dict):
            raise CalibrationError("expected a mapping", path, field=name)
        model = cam.get("camera_model", "pinhole")
        if model != "pinhole":
            raise CalibrationError(f"unsupported camera_model {model!r} (only pinhole)", path,
                                   field=f"{name}.camera_model")
        if "T_cam_imu" in cam:
            T_C_B = as_rigid_transform(cam["T_cam_imu"], f"{name}.T_cam_imu", path)
            T_B_C = np.linalg.inv(T_C_B)
        elif name == names[0]:
            T_B_C = np.eye(4)
        else:
            T_Cn_Cprev = as_rigid_transform(require(cam, "T_cn_cnm1", path, f"{name}."), f"{name}.T_cn_cnm1", path)
            T_B_C = T_B_prev @ np.linalg.inv(T_Cn_Cprev)
        T_B_prev = T_B_C
        width, height = _int_pair(require(cam, "resolution", path, f"{name}."), path, f"{name}.resolution")
        cameras.append(CameraCalibration(
            width=width, height=height, intrinsics=require(cam, "intrinsics", path, f"{name}."),
            distortion_model=cam.get("distortion_model", "none"), distortion=cam.get("distortion_coeffs", []),
            T_B_C=T_B_C, time_offset_s=float(cam.get("timeshift_cam_imu", 0.0)), name=name, source=str(path)))
    return tuple(cameras)


def kalibr_topics(path: str | Path) -> dict[str, str]:
    """``{"cam0": "/cam0/image_raw", ...}`` from the ``rostopic`` fields of a Kalibr YAML (may be empty)."""
    data = load_yaml(path)
    return {k: v["rostopic"] for k, v in data.items() if isinstance(v, dict) and "rostopic" in v}


def read_kalibr_imu(path: str | Path) -> ImuCalibration:
    """A Kalibr IMU YAML: either top-level keys or under ``imu0``; ``update_rate`` is the rate."""
    path = Path(path)
    data = load_yaml(path)
    prefix = ""
    if "imu0" in data and isinstance(data["imu0"], dict):
        data, prefix = data["imu0"], "imu0."
    return ImuCalibration(
        gyro_noise_density=require(data, "gyroscope_noise_density", path, prefix),
        gyro_random_walk=require(data, "gyroscope_random_walk", path, prefix),
        accel_noise_density=require(data, "accelerometer_noise_density", path, prefix),
        accel_random_walk=require(data, "accelerometer_random_walk", path, prefix),
        rate_hz=require(data, "update_rate", path, prefix),
        # Kalibr's T_i_b maps body to IMU, i.e. T_S_B.
        T_B_S=np.linalg.inv(as_rigid_transform(data.get("T_i_b", np.eye(4).tolist()), prefix + "T_i_b", path)),
        source=str(path))


def read_kalibr(camchain: str | Path, imu: str | Path | None = None) -> Calibration:
    """Calibration from Kalibr files; ``imu`` may be omitted for vision-only data."""
    return Calibration(read_kalibr_camchain(camchain), read_kalibr_imu(imu) if imu else None)
