"""Synthetic IMU + feature-frame streams without rendering: the generator's analytic motion and IMU model,
landmarks on the walls of a room, projected into the EuRoC stereo rig with pixel noise. Fast enough for
backend tests that need many seconds of motion.
"""

from __future__ import annotations

import numpy as np

from slam.datasets.synthetic.generator import T0_NS
from slam.datasets.synthetic.imu import ImuNoise, simulate
from slam.datasets.synthetic.rig import imu_calibration, stereo_rig
from slam.datasets.synthetic.trajectory import MOTIONS
from slam.geometry import rot_to_quat
from slam.messages import Calibration, FeatureFrame, ImuSample, Trajectory


def room_landmarks(rng, n: int = 3000) -> np.ndarray:
    """Points on the walls, floor and ceiling of the 8 x 6 x 3 m synthetic room."""
    lo, hi = np.array([-4.0, -3.0, 0.0]), np.array([4.0, 3.0, 3.0])
    p = rng.uniform(lo, hi, (n, 3))
    axis = rng.integers(0, 3, n)
    side = rng.integers(0, 2, n)
    p[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    return p


def feature_stream(seconds: float = 10.0, stereo: bool = True, seed: int = 0, motion: str = "mav",
                   static_s: float = 1.0, pixel_sigma: float = 0.5, outliers: float = 0.0, max_features: int = 120,
                   imu_noise: ImuNoise | None = None):
    """(calibration, messages, ground truth): a time-ordered list of ImuSample and FeatureFrame."""
    rng = np.random.default_rng(seed)
    cams = stereo_rig()[: 2 if stereo else 1]
    noise = imu_noise or ImuNoise()
    calib = Calibration(cams, imu_calibration(noise, 200.0))
    motion_model = MOTIONS[motion](seed, static_s=static_s)
    t_imu = np.arange(0, int(seconds * 200) + 1) / 200.0
    state = motion_model.evaluate(t_imu)
    readings = simulate(state, 1 / 200.0, noise, rng)
    imu_ns = T0_NS + np.round(t_imu * 1e9).astype(np.int64)
    messages = [ImuSample(int(t), readings.gyro[k], readings.accel[k]) for k, t in enumerate(imu_ns)]
    landmarks = room_landmarks(rng)
    focal = cams[0].intrinsics[0]
    frames = []
    for k in range(0, len(t_imu), 10):  # 20 Hz
        T_W_B = np.eye(4)
        T_W_B[:3, :3], T_W_B[:3, 3] = state.R_W_B[k], state.p_W[k]
        seen = []
        for c, cam in enumerate(cams):
            T_W_C = T_W_B @ cam.T_B_C
            p_C = (landmarks - T_W_C[:3, 3]) @ T_W_C[:3, :3]
            z = p_C[:, 2]
            uv = p_C[:, :2] / np.where(z > 0.1, z, np.nan)[:, None]
            px = uv * focal + cam.intrinsics[2:]
            ok = (z > 0.1) & np.all((px > 5) & (px < [cam.width - 5, cam.height - 5]), axis=1)
            seen.append((ok, uv))
        ids = np.flatnonzero(seen[0][0])[:max_features]
        uv0 = seen[0][1][ids] + rng.normal(0, pixel_sigma / focal, (len(ids), 2))
        bad = rng.random(len(ids)) < outliers
        uv0[bad] += rng.normal(0, 20 / focal, (int(bad.sum()), 2))
        frames.append(FeatureFrame(int(imu_ns[k]), 0, ids.astype(np.int64), uv0))
        if stereo:
            ids1 = ids[seen[1][0][ids]]
            uv1 = seen[1][1][ids1] + rng.normal(0, pixel_sigma / focal, (len(ids1), 2))
            frames.append(FeatureFrame(int(imu_ns[k]), 1, ids1.astype(np.int64), uv1))
    # IMU before frames at equal stamps, as every reader orders them
    merged = sorted(messages + frames, key=lambda m: (m.t_ns, isinstance(m, FeatureFrame)))
    gt = Trajectory(imu_ns, state.p_W, rot_to_quat(state.R_W_B), state.v_W, readings.bias_gyro, readings.bias_accel)
    return calib, merged, gt
