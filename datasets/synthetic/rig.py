"""The EuRoC MAV stereo rig (cam0/cam1 intrinsics, radtan distortion, T_B_C from sensor.yaml) and IMU."""

from __future__ import annotations

import numpy as np

from slam.messages import CameraCalibration, DataError, ImuCalibration

from .imu import ImuNoise

EUROC_WIDTH, EUROC_HEIGHT = 752, 480
EUROC_INTRINSICS = ([458.654, 457.296, 367.215, 248.375], [457.587, 456.134, 379.999, 255.238])
EUROC_DISTORTION = ([-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05],
                    [-0.28368365, 0.07451284, -0.00010473, -3.55590700e-05])
EUROC_T_B_C = (
    np.array([[0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975],
              [0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768],
              [-0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949],
              [0.0, 0.0, 0.0, 1.0]]),
    np.array([[0.0125552670891, -0.999755099723, 0.0182237714554, -0.0198435579556],
              [0.999598781151, 0.0130119051815, 0.0251588363115, 0.0453689425024],
              [-0.0253898008918, 0.0179005838253, 0.999517347078, 0.00786212447038],
              [0.0, 0.0, 0.0, 1.0]]),
)
EUROC_BASELINE = float(np.linalg.norm(EUROC_T_B_C[1][:3, 3] - EUROC_T_B_C[0][:3, 3]))


def stereo_rig(width: int = EUROC_WIDTH, height: int = EUROC_HEIGHT, rate_hz: float = 20.0,
               baseline: float | None = None) -> tuple[CameraCalibration, CameraCalibration]:
    """EuRoC's cameras; another resolution scales the intrinsics, ``baseline`` [m] rescales cam1's offset."""
    if baseline is not None and not (np.isfinite(baseline) and baseline > 0):
        raise DataError(f"stereo baseline must be a positive distance in metres, got {baseline!r}",
                        field="baseline")
    sx, sy = width / EUROC_WIDTH, height / EUROC_HEIGHT
    T1 = EUROC_T_B_C[1].copy()
    if baseline is not None:
        offset = T1[:3, 3] - EUROC_T_B_C[0][:3, 3]
        T1[:3, 3] = EUROC_T_B_C[0][:3, 3] + offset * (baseline / np.linalg.norm(offset))
    cams = []
    for i, T in enumerate((EUROC_T_B_C[0], T1)):
        fx, fy, cx, cy = EUROC_INTRINSICS[i]
        # pixel centres: u' + 0.5 = s (u + 0.5)
        K = [fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5]
        cams.append(CameraCalibration(int(width), int(height), K, "radtan", EUROC_DISTORTION[i], T, rate_hz,
                                      name=f"cam{i}"))
    return tuple(cams)


def imu_calibration(noise: ImuNoise, rate_hz: float) -> ImuCalibration:
    """ImuCalibration for the sensor.yaml; densities must be positive there, so zero noise writes tiny values."""
    tiny = 1e-12
    return ImuCalibration(max(noise.gyro_noise_density, tiny), max(noise.gyro_random_walk, tiny),
                          max(noise.accel_noise_density, tiny), max(noise.accel_random_walk, tiny), rate_hz)
