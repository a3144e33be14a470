"""IMU preintegration between two stamps in NumPy (Forster et al. 2017), with first-order bias Jacobians.

Why NumPy and not ``gtsam.PreintegratedImuMeasurements`` for the initializer's linear steps: its Python
wrapper exposes deltaRij/deltaVij/deltaPij but not the bias Jacobians (``preintegrated_H_biasOmega`` and
friends are not wrapped), and the gyro-bias and accelerometer-bias solves are linear in exactly those
Jacobians; feeding it is a per-sample Python loop anyway, and the interpolation at the frame stamps has to be
done here in either case. (The initializer's final BA does use GTSAM's ImuFactor, fed with the same samples.)

Model (IMU samples in the body frame B, i.e. T_B_S = identity as in EuRoC): ``gyro = omega_B + b_g + n``, ``accel = R_W_B^T (a_W - g_W) + b_a + n``.
Over [t0, t1] with ``R_i = R_W_B(t0)``:

    dR = R_i^T R_j,   dv = R_i^T (v_j - v_i - g_W dt),   dp = R_i^T (p_j - p_i - v_i dt - g_W dt^2 / 2).

Integration is midpoint (measurements averaged over each sub-interval, VINS-Mono style); samples that do
not fall on t0/t1 are linearly interpolated there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from slam.messages import ImuSample


# ------------------------------------------------------------------------------------------- SO(3)


def skew(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def so3_exp(phi: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``phi`` (Rodrigues; scalar math, it is called in loops)."""
    x, y, z = float(phi[0]), float(phi[1]), float(phi[2])
    angle2 = x * x + y * y + z * z
    if angle2 < 1e-16:
        a, b = 1.0, 0.5
    else:
        angle = math.sqrt(angle2)
        a, b = math.sin(angle) / angle, (1.0 - math.cos(angle)) / angle2
    xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
    return np.array([[1.0 - b * (yy + zz), b * xy - a * z, b * xz + a * y],
                     [b * xy + a * z, 1.0 - b * (xx + zz), b * yz - a * x],
                     [b * xz - a * y, b * yz + a * x, 1.0 - b * (xx + yy)]])


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vector of ``R`` (angle < pi)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if angle < 1e-6:
        return 0.5 * w
    if np.pi - angle < 1e-6:  # near pi the antisymmetric part vanishes: the axis is a column of (R + I) / 2
        B = 0.5 * (R + np.eye(3))
        k = int(np.argmax(np.diag(B)))
        axis = B[:, k] / np.sqrt(B[k, k])
        return angle * axis / np.linalg.norm(axis)
    return angle / (2.0 * np.sin(angle)) * w


def right_jacobian(phi: np.ndarray) -> np.ndarray:
    """Right Jacobian of SO(3): Exp(phi + d) ~ Exp(phi) Exp(Jr(phi) d)."""
    angle = float(np.linalg.norm(phi))
    K = skew(phi)
    if angle < 1e-6:
        return np.eye(3) - 0.5 * K
    return (np.eye(3) - (1.0 - np.cos(angle)) / angle ** 2 * K
            + (angle - np.sin(angle)) / angle ** 3 * K @ K)


def skew_batch(v: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) cross-product matrices."""
    K = np.zeros(v.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return K


def _rodrigues_coefficients(angle: np.ndarray):
    """sin(a)/a, (1-cos a)/a^2, (a-sin a)/a^3 with their series near zero."""
    small = angle < 1e-4
    a = np.where(small, 1.0, angle)
    a2 = angle * angle
    c1 = np.where(small, 1.0 - a2 / 6.0, np.sin(a) / a)
    c2 = np.where(small, 0.5 - a2 / 24.0, (1.0 - np.cos(a)) / a ** 2)
    c3 = np.where(small, 1.0 / 6.0 - a2 / 120.0, (a - np.sin(a)) / a ** 3)
    return c1, c2, c3


def so3_exp_batch(phi: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors -> (N, 3, 3) rotation matrices."""
    c1, c2, _ = _rodrigues_coefficients(np.linalg.norm(phi, axis=-1))
    K = skew_batch(phi)
    return np.eye(3) + c1[:, None, None] * K + c2[:, None, None] * K @ K


def right_jacobian_batch(phi: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) right Jacobians of SO(3)."""
    _, c2, c3 = _rodrigues_coefficients(np.linalg.norm(phi, axis=-1))
    K = skew_batch(phi)
    return np.eye(3) - c2[:, None, None] * K + c3[:, None, None] * K @ K


# -------------------------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class ImuArrays:
    """IMU samples as arrays (faster to slice than a list of ImuSample)."""

    t_ns: np.ndarray  # (N,) int64, increasing
    gyro: np.ndarray  # (N, 3) rad/s
    accel: np.ndarray  # (N, 3) m/s^2


def as_imu_arrays(imu: ImuArrays | Sequence[ImuSample] | tuple) -> ImuArrays:
    """Accept ImuArrays, a list of ImuSample, or a ``(t_ns, gyro, accel)`` tuple of arrays."""
    if isinstance(imu, ImuArrays):
        return imu
    if isinstance(imu, tuple) and len(imu) == 3 and not isinstance(imu[0], ImuSample):
        t, g, a = imu
    else:
        samples = list(imu)
        t = [s.t_ns for s in samples]
        g = [s.gyro for s in samples]
        a = [s.accel for s in samples]
    t = np.asarray(t, dtype=np.int64).reshape(-1)
    g = np.asarray(g, dtype=np.float64).reshape(len(t), 3)
    a = np.asarray(a, dtype=np.float64).reshape(len(t), 3)
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("IMU stamps must be strictly increasing")
    return ImuArrays(t, g, a)


@dataclass(frozen=True, eq=False)
class Preintegrated:
    """Preintegrated IMU deltas over [t0_ns, t1_ns] at the bias linearization point, plus bias Jacobians."""

    t0_ns: int
    t1_ns: int
    dt: float  # s
    dR: np.ndarray  # (3, 3) R_Bi_Bj
    dv: np.ndarray  # (3,) in B_i
    dp: np.ndarray  # (3,) in B_i
    J_R_bg: np.ndarray  # (3, 3) d Log(dR) / d b_g (right perturbation)
    J_v_bg: np.ndarray
    J_v_ba: np.ndarray
    J_p_bg: np.ndarray
    J_p_ba: np.ndarray
    gyro_bias: np.ndarray  # (3,) biases the deltas were integrated with
    accel_bias: np.ndarray
    num_samples: int  # IMU samples used, interpolated end points included

    def corrected(self, gyro_bias: np.ndarray, accel_bias: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dR, dv, dp) for other biases, to first order (re-preintegrate when the change is large)."""
        dbg = np.asarray(gyro_bias, float) - self.gyro_bias
        dba = np.asarray(accel_bias, float) - self.accel_bias
        dR = self.dR @ so3_exp(self.J_R_bg @ dbg)
        dv = self.dv + self.J_v_bg @ dbg + self.J_v_ba @ dba
        dp = self.dp + self.J_p_bg @ dbg + self.J_p_ba @ dba
        return dR, dv, dp

    def rebiased(self, gyro_bias: np.ndarray, accel_bias: np.ndarray) -> Preintegrated:
        """The same interval at other biases via :meth:`corrected` (first order; the Jacobians are kept)."""
        dR, dv, dp = self.corrected(gyro_bias, accel_bias)
        return replace(self, dR=dR, dv=dv, dp=dp, gyro_bias=np.asarray(gyro_bias, float).reshape(3),
                       accel_bias=np.asarray(accel_bias, float).reshape(3))


# ------------------------------------------------------------------------------------ integration


def samples_between(imu: ImuArrays, t0_ns: int, t1_ns: int):
    """Stamps and readings on [t0, t1]: the samples strictly inside plus values interpolated at t0 and t1."""
    t = imu.t_ns
    if len(t) < 2 or t0_ns < t[0] or t1_ns > t[-1]:
        raise ValueError(f"IMU data [{t[0] if len(t) else None}, {t[-1] if len(t) else None}] ns does not "
                         f"cover [{t0_ns}, {t1_ns}] ns")
    inside = slice(np.searchsorted(t, t0_ns, side="right"), np.searchsorted(t, t1_ns, side="left"))
    stamps = np.concatenate([[t0_ns], t[inside], [t1_ns]])
    ends = np.array([t0_ns, t1_ns], dtype=np.float64)
    tf = t.astype(np.float64)

    def interp(values):
        edge = np.stack([np.interp(ends, tf, values[:, k]) for k in range(3)], axis=1)
        return np.concatenate([edge[:1], values[inside], edge[1:]])

    return stamps, interp(imu.gyro), interp(imu.accel)


def preintegrate(imu: ImuArrays | Sequence[ImuSample] | tuple, t0_ns: int, t1_ns: int,
                 gyro_bias: np.ndarray | None = None, accel_bias: np.ndarray | None = None) -> Preintegrated:
    """Preintegrate body-frame IMU readings over [t0_ns, t1_ns]; raises ValueError if the IMU does not cover it."""
    imu = as_imu_arrays(imu)
    t0_ns, t1_ns = int(t0_ns), int(t1_ns)
    if t1_ns <= t0_ns:
        raise ValueError(f"need t1 > t0, got [{t0_ns}, {t1_ns}]")
    bg = np.zeros(3) if gyro_bias is None else np.asarray(gyro_bias, dtype=np.float64).reshape(3)
    ba = np.zeros(3) if accel_bias is None else np.asarray(accel_bias, dtype=np.float64).reshape(3)
    stamps, gyro, accel = samples_between(imu, t0_ns, t1_ns)
    steps = np.diff(stamps).astype(np.float64) * 1e-9
    omega = 0.5 * (gyro[:-1] + gyro[1:]) - bg  # midpoint rate of each sub-interval
    acc = accel - ba

    keep = steps > 0.0
    h, omega, a0, a1 = steps[keep], omega[keep], acc[:-1][keep], acc[1:][keep]
    dR_step = so3_exp_batch(omega * h[:, None])  # (N, 3, 3)
    R = np.empty((len(h) + 1, 3, 3))  # R[k]: rotation at the start of step k, R[N]: the end
    R[0] = np.eye(3)
    for k in range(len(h)):
        R[k + 1] = R[k] @ dR_step[k]
    hh = h[:, None]
    a_mid = 0.5 * (np.einsum("nij,nj->ni", R[:-1], a0) + np.einsum("nij,nj->ni", R[1:], a1))
    v_steps = a_mid * hh
    v_before = np.cumsum(v_steps, axis=0) - v_steps  # velocity at the start of each step
    v = v_steps.sum(axis=0)
    p = (v_before * hh + 0.5 * a_mid * hh * hh).sum(axis=0)

    # Bias Jacobians, Forster's recursion J_R(k+1) = dR_k^T J_R(k) - Jr_k h_k, in closed form:
    # J_R(k) = -R_k^T C_k with C_k = sum_{m<k} R_{m+1} Jr_m h_m; the rest are sums over the steps.
    h3 = h[:, None, None]
    C_steps = R[1:] @ right_jacobian_batch(omega * hh) * h3
    C_before = np.cumsum(C_steps, axis=0) - C_steps
    J_R_before = -np.swapaxes(R[:-1], 1, 2) @ C_before
    J_R_bg = -R[-1].T @ C_steps.sum(axis=0)
    D = R[:-1] @ skew_batch(0.5 * (a0 + a1)) @ J_R_before * h3  # d(velocity step)/d bg = -D
    J_v_bg_before = -(np.cumsum(D, axis=0) - D)
    J_v_bg = -D.sum(axis=0)
    J_p_bg = (J_v_bg_before * h3 - 0.5 * D * h3).sum(axis=0)
    J_v_ba_steps = -R[:-1] * h3
    J_v_ba_before = np.cumsum(J_v_ba_steps, axis=0) - J_v_ba_steps
    J_v_ba = J_v_ba_steps.sum(axis=0)
    J_p_ba = (J_v_ba_before * h3 + 0.5 * J_v_ba_steps * h3).sum(axis=0)
    R = R[-1]
    # Re-orthonormalize: a few hundred products drift by ~1e-15, harmless, but keep dR exactly a rotation.
    U, _, Vt = np.linalg.svd(R)
    return Preintegrated(t0_ns, t1_ns, float(steps.sum()), U @ Vt, v, p, J_R_bg, J_v_bg, J_v_ba, J_p_bg, J_p_ba,
                         bg, ba, len(stamps))
