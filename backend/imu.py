"""IMU buffer and GTSAM preintegration (``PreintegratedCombinedMeasurements``: biases are estimated).

Samples are integrated between arbitrary stamps: each interval between consecutive boundaries (the two
stamps and every sample between them) uses the mean of the readings interpolated at its ends, which is
second-order accurate and does not care whether frames fall on IMU samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gtsam
import numpy as np

from slam.messages import ImuCalibration, ImuSample

GRAVITY = 9.81
MAX_GYRO = 35.0  # rad/s (2000 deg/s, the largest common gyro range)
MAX_ACCEL = 160.0  # m/s^2 (16 g)

log = logging.getLogger(__name__)


@dataclass
class ImuNoiseConfig:
    """Multipliers on the calibrated noise densities (real IMUs are noisier than their datasheets)."""

    noise_scale: float = 1.0  # white noise of gyro and accelerometer
    walk_scale: float = 1.0  # bias random walk
    # position integration error [m/sqrt(s)]; 1e-4 made the window so stiff that Cholesky failed (hall_loop)
    integration_sigma: float = 1e-3


def preintegration_params(imu: ImuCalibration, config: ImuNoiseConfig) -> gtsam.PreintegrationCombinedParams:
    params = gtsam.PreintegrationCombinedParams.MakeSharedU(GRAVITY)
    eye = np.eye(3)
    params.setGyroscopeCovariance((config.noise_scale * imu.gyro_noise_density) ** 2 * eye)
    params.setAccelerometerCovariance((config.noise_scale * imu.accel_noise_density) ** 2 * eye)
    params.setBiasOmegaCovariance((config.walk_scale * imu.gyro_random_walk) ** 2 * eye)
    params.setBiasAccCovariance((config.walk_scale * imu.accel_random_walk) ** 2 * eye)
    params.setIntegrationCovariance(config.integration_sigma ** 2 * eye)
    if not np.allclose(imu.T_B_S, np.eye(4)):
        params.setBodyPSensor(gtsam.Pose3(imu.T_B_S))
    return params


class ImuBuffer:
    """Time-ordered IMU samples with integration between any two stamps; old samples are dropped."""

    def __init__(self, keep_s: float = 30.0):
        self.keep_ns = int(keep_s * 1e9)
        self.t_ns = np.zeros(0, np.int64)
        self.data = np.zeros((0, 6))  # gyro, accel
        self._pending: list[ImuSample] = []
        self.rejected = 0

    def add(self, sample: ImuSample) -> bool:
        """Buffer one sample; non-finite, physically impossible or out-of-order ones are counted and skipped."""
        last = self._pending[-1].t_ns if self._pending else (self.t_ns[-1] if len(self.t_ns) else None)
        if (not (np.all(np.isfinite(sample.gyro)) and np.all(np.isfinite(sample.accel)))
                or np.abs(sample.gyro).max() > MAX_GYRO or np.abs(sample.accel).max() > MAX_ACCEL
                or (last is not None and sample.t_ns <= last)):
            self.rejected += 1
            if self.rejected <= 5:
                log.warning("IMU sample at %d ns skipped (non-finite, out of range or out of order)", sample.t_ns)
            return False
        self._pending.append(sample)
        return True

    def _flush(self) -> None:
        if not self._pending:
            return
        t = np.array([s.t_ns for s in self._pending], np.int64)
        d = np.array([np.concatenate([s.gyro, s.accel]) for s in self._pending])
        self._pending.clear()
        self.t_ns = np.concatenate([self.t_ns, t])
        self.data = np.concatenate([self.data, d])
        if len(self.t_ns) and self.t_ns[-1] - self.t_ns[0] > 2 * self.keep_ns:
            keep = self.t_ns >= self.t_ns[-1] - self.keep_ns
            self.t_ns, self.data = self.t_ns[keep], self.data[keep]

    @property
    def last_t_ns(self) -> int | None:
        self._flush()
        return int(self.t_ns[-1]) if len(self.t_ns) else None

    def covers(self, t0_ns: int, t1_ns: int) -> bool:
        self._flush()
        return len(self.t_ns) > 0 and self.t_ns[0] <= t0_ns and self.t_ns[-1] >= t1_ns

    def largest_gap_ns(self, t0_ns: int, t1_ns: int) -> int:
        """Longest time without a sample in a hole that overlaps [t0, t1]; a hole counts in full (from the
        last sample before ``t0``), and a buffer that stops short of ``t1`` counts up to ``t1``."""
        self._flush()
        i0 = int(np.searchsorted(self.t_ns, t0_ns, side="right")) - 1
        i1 = int(np.searchsorted(self.t_ns, t1_ns, side="left")) + 1
        head = [] if i0 >= 0 else [t0_ns]
        stamps = np.concatenate([head, self.t_ns[max(i0, 0):i1], [t1_ns]]).astype(np.int64)
        return int(np.max(np.diff(np.minimum(stamps, t1_ns))))

    def window(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(stamps, gyro|accel rows) of the samples inside [t0, t1]."""
        self._flush()
        i0 = np.searchsorted(self.t_ns, t0_ns, side="left")
        i1 = np.searchsorted(self.t_ns, t1_ns, side="right")
        return self.t_ns[i0:i1], self.data[i0:i1]

    def interpolate(self, t_ns: np.ndarray) -> np.ndarray:
        """Readings at ``t_ns`` (linear; held constant beyond the ends)."""
        self._flush()
        t = np.asarray(t_ns, np.int64)
        if len(self.t_ns) == 0:
            raise ValueError("no IMU samples")
        rel = (self.t_ns - self.t_ns[0]).astype(np.float64)
        q = (t - self.t_ns[0]).astype(np.float64)
        return np.stack([np.interp(q, rel, self.data[:, i]) for i in range(6)], axis=-1)

    def integrate(self, pim, t0_ns: int, t1_ns: int) -> int:
        """Add the motion between ``t0_ns`` and ``t1_ns`` to ``pim``; returns the number of intervals."""
        if t1_ns <= t0_ns:
            return 0
        self._flush()
        inner = self.t_ns[(self.t_ns > t0_ns) & (self.t_ns < t1_ns)]
        bounds = np.concatenate([[t0_ns], inner, [t1_ns]]).astype(np.int64)
        readings = self.interpolate(bounds)
        mid = 0.5 * (readings[1:] + readings[:-1])
        dts = np.diff(bounds) * 1e-9
        for (gx, gy, gz, ax, ay, az), dt in zip(mid, dts):
            if dt > 0:
                pim.integrateMeasurement(np.array([ax, ay, az]), np.array([gx, gy, gz]), dt)
        return len(dts)

    def mean(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean gyro and accelerometer readings over [t0, t1] and the sample count."""
        _, data = self.window(t0_ns, t1_ns)
        if len(data) == 0:
            return np.zeros(3), np.zeros(3), 0
        m = data.mean(axis=0)
        return m[:3], m[3:], len(data)

    def rotation(self, t0_ns: int, t1_ns: int, gyro_bias: np.ndarray) -> np.ndarray:
        """Body rotation R_B0_B1 from the bias-corrected gyro (for the tracker's flow prediction)."""
        self._flush()
        R = np.eye(3)
        if t1_ns <= t0_ns or len(self.t_ns) == 0:
            return R
        inner = self.t_ns[(self.t_ns > t0_ns) & (self.t_ns < t1_ns)]
        bounds = np.concatenate([[t0_ns], inner, [t1_ns]]).astype(np.int64)
        readings = self.interpolate(bounds)
        mid = 0.5 * (readings[1:, :3] + readings[:-1, :3]) - gyro_bias
        for w, dt in zip(mid, np.diff(bounds) * 1e-9):
            R = R @ gtsam.Rot3.Expmap(w * dt).matrix()
        return R
