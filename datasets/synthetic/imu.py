"""IMU readings from the analytic motion: exact rates and specific force, plus EuRoC-like noise and biases.

gyro = omega_B + b_g + n_g,  accel = R_W_B^T (a_W - g_W) + b_a + n_a,  g_W = (0, 0, -9.81).
White noise has std ``density / sqrt(dt)``; biases follow a random walk with std ``walk * sqrt(dt)`` per
step. Defaults are the ADIS16448 values from EuRoC's ``imu0/sensor.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .trajectory import MotionState

GRAVITY_W = np.array([0.0, 0.0, -9.81])


@dataclass(frozen=True)
class ImuNoise:
    gyro_noise_density: float = 1.6968e-4  # rad/s/sqrt(Hz)
    accel_noise_density: float = 2.0e-3  # m/s^2/sqrt(Hz)
    gyro_random_walk: float = 1.9393e-5  # rad/s^2/sqrt(Hz)
    accel_random_walk: float = 3.0e-3  # m/s^3/sqrt(Hz)
    gyro_bias: tuple[float, float, float] = (0.002, -0.0015, 0.001)  # initial bias, rad/s
    accel_bias: tuple[float, float, float] = (0.03, -0.02, 0.05)  # initial bias, m/s^2
    enabled: bool = True  # False: exact readings, zero biases


@dataclass(frozen=True)
class ImuData:
    gyro: np.ndarray  # (N, 3)
    accel: np.ndarray  # (N, 3)
    bias_gyro: np.ndarray  # (N, 3) true bias at each sample
    bias_accel: np.ndarray  # (N, 3)


def ideal(state: MotionState) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free (gyro, accel) of a motion state."""
    accel = np.einsum("nji,nj->ni", state.R_W_B, state.a_W - GRAVITY_W)
    return state.omega_B.copy(), accel


def simulate(state: MotionState, dt: float, noise: ImuNoise, rng: np.random.Generator) -> ImuData:
    gyro, accel = ideal(state)
    n = len(gyro)
    if not noise.enabled:
        zeros = np.zeros((n, 3))
        return ImuData(gyro, accel, zeros, zeros.copy())

    def walk(start, sigma):
        steps = rng.standard_normal((n, 3)) * sigma * np.sqrt(dt)
        steps[0] = 0.0
        return np.asarray(start, float) + np.cumsum(steps, axis=0)

    bg = walk(noise.gyro_bias, noise.gyro_random_walk)
    ba = walk(noise.accel_bias, noise.accel_random_walk)
    gyro = gyro + bg + rng.standard_normal((n, 3)) * noise.gyro_noise_density / np.sqrt(dt)
    accel = accel + ba + rng.standard_normal((n, 3)) * noise.accel_noise_density / np.sqrt(dt)
    return ImuData(gyro, accel, bg, ba)
