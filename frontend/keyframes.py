"""Keyframe selection on feature tracks: enough parallax, too few shared tracks, or too long since the last one.

Works on :class:`FeatureFrame` (undistorted normalized cam0 coordinates), so the same rule serves image
runs and backend-only runs from a feature-track file. Parallax is rotation-compensated: rotation alone
moves features without adding depth information, so a pure rotation must not make a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.messages import FeatureFrame


@dataclass(frozen=True)
class KeyframeConfig:
    min_parallax_px: float = 10.0  # median rotation-compensated feature motion since the last keyframe
    min_tracked_ratio: float = 0.6  # share of the last keyframe's features still tracked
    max_interval_s: float = 0.5  # a keyframe at least this often (bounds IMU preintegration length)
    min_interval_s: float = 0.05  # never two keyframes closer than this

    def __post_init__(self):
        for name in ("min_parallax_px", "max_interval_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"KeyframeConfig.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.min_interval_s, (int, float)) and 0 <= self.min_interval_s < self.max_interval_s):
            raise ValueError(f"KeyframeConfig.min_interval_s must be in [0, max_interval_s), got "
                             f"{self.min_interval_s!r}")
        if not (isinstance(self.min_tracked_ratio, (int, float)) and 0 <= self.min_tracked_ratio <= 1):
            raise ValueError(f"KeyframeConfig.min_tracked_ratio must be in [0, 1], got {self.min_tracked_ratio!r}")


class KeyframeSelector:
    """Decides whether a frame becomes a keyframe; :meth:`mark` records the one that did.

    After each :meth:`is_keyframe`, ``parallax_px`` and ``tracked_ratio`` hold the measured values (NaN when
    not measured) and ``reason`` says why the answer was what it was.
    """

    def __init__(self, config: KeyframeConfig = KeyframeConfig(), focal_px: float = 460.0):
        if not (np.isfinite(focal_px) and focal_px > 0):
            raise ValueError(f"focal_px must be a positive number of pixels, got {focal_px!r}")
        self.config = config
        self.focal_px = float(focal_px)
        self.reset()

    def reset(self) -> None:
        self._t_ns: int | None = None
        self._ids = np.zeros(0, np.int64)
        self._uv = np.zeros((0, 2))
        self.parallax_px = float("nan")
        self.tracked_ratio = float("nan")
        self.reason = ""

    @property
    def last_keyframe_t_ns(self) -> int | None:
        return self._t_ns

    def is_keyframe(self, t_ns: int, frame: FeatureFrame, R_Ckf_Ccur: np.ndarray | None = None) -> bool:
        """Whether ``frame`` (cam0, normalized) should become a keyframe.

        ``R_Ckf_Ccur``: camera rotation from this frame to the last keyframe (maps current camera
        coordinates into the keyframe's), e.g. from the gyro; None assumes no rotation.
        """
        _check_frame(frame)
        self.parallax_px = self.tracked_ratio = float("nan")
        if self._t_ns is None:
            self.reason = "first frame"
            return True
        dt_s = (int(t_ns) - self._t_ns) * 1e-9
        if dt_s < 0:
            raise ValueError(f"t_ns={t_ns} is before the last keyframe (t_ns={self._t_ns})")
        if dt_s < self.config.min_interval_s:
            self.reason = "too soon after the last keyframe"
            return False
        if dt_s >= self.config.max_interval_s:
            self.reason = "max interval reached"
            return True
        if len(self._ids) == 0:
            self.reason = "last keyframe had no features"
            return True
        _, in_kf, in_cur = np.intersect1d(self._ids, np.asarray(frame.ids), assume_unique=True,
                                          return_indices=True)
        self.tracked_ratio = len(in_kf) / len(self._ids)
        if self.tracked_ratio < self.config.min_tracked_ratio:
            self.reason = "too few tracks shared with the last keyframe"
            return True
        self.parallax_px = self._parallax_px(self._uv[in_kf], np.asarray(frame.uv, np.float64)[in_cur], R_Ckf_Ccur)
        if self.parallax_px >= self.config.min_parallax_px:
            self.reason = "parallax"
            return True
        self.reason = "not enough parallax"
        return False

    def mark(self, t_ns: int, frame: FeatureFrame) -> None:
        """Make ``frame`` the last keyframe."""
        _check_frame(frame)
        self._t_ns = int(t_ns)
        self._ids = np.asarray(frame.ids, np.int64).copy()
        self._uv = np.asarray(frame.uv, np.float64).reshape(-1, 2).copy()

    def _parallax_px(self, uv_kf: np.ndarray, uv_cur: np.ndarray, R_Ckf_Ccur) -> float:
        """Median |x_cur - proj(R_Ccur_Ckf x_kf)| in pixels over the shared features."""
        if len(uv_kf) == 0:
            return float("nan")
        rays = np.hstack([uv_kf, np.ones((len(uv_kf), 1))])
        if R_Ckf_Ccur is not None:
            R = np.asarray(R_Ckf_Ccur, np.float64)
            if R.shape != (3, 3) or not np.all(np.isfinite(R)):
                raise ValueError(f"R_Ckf_Ccur must be a finite 3x3 rotation matrix, got shape {R.shape}")
            rays = rays @ R  # rows of R_Ccur_Ckf x_kf = R^T x_kf
        ahead = rays[:, 2] > 1e-6
        if not np.any(ahead):
            return float("inf")  # every shared feature rotated behind the camera: the view changed
        predicted = rays[ahead, :2] / rays[ahead, 2:]
        return float(np.median(np.linalg.norm(uv_cur[ahead] - predicted, axis=1)) * self.focal_px)


def _check_frame(frame: FeatureFrame) -> None:
    if not frame.normalized:
        raise ValueError(f"KeyframeSelector needs normalized coordinates; frame {frame.index} (camera "
                         f"{frame.camera}) holds pixels")
    if len(frame.ids) != len(frame.uv):
        raise ValueError(f"frame {frame.index}: {len(frame.ids)} ids but {len(frame.uv)} uv rows")
