"""Typed messages and calibration shared by every stage (the leaf module: it imports no stage).

Conventions, used in every module of the project:

- Time is ``int`` nanoseconds (``t_ns``), arrays of stamps are ``int64``. Seconds appear only in file formats.
- ``T_A_B`` is a 4x4 rigid transform that maps a point from frame B into frame A
  (``p_A = T_A_B @ p_B``), i.e. the pose of frame B expressed in frame A. ``R_A_B`` and ``p_A`` likewise.
- Frames: ``W`` world (gravity along -z), ``B`` body = IMU frame, ``C``/``Ci`` camera i, ``S`` any sensor.
  ASL/EuRoC's ``T_BS`` is our ``T_B_S``; Kalibr's ``T_cam_imu`` is ``T_C_B``.
- Quaternions are Hamilton, stored ``(w, x, y, z)``; TUM files write ``x y z w`` and readers convert.
- Images are loaded lazily: a frame holds :class:`ImageSource` objects and decodes only on ``load()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

# --------------------------------------------------------------------------------------------- errors


class DataError(ValueError):
    """Bad input data. The message names the file and the line or field, so users can fix it."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = str(path) if path is not None else ""
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f" [{field}]" if where else f"[{field}]"
        super().__init__(f"{where}: {message}" if where else message)


class CalibrationError(DataError):
    """A calibration value has the wrong shape, range or is not a rigid transform."""


# ----------------------------------------------------------------------------------------- helpers


def as_rigid_transform(value, field: str, path: str | Path | None = None, tol: float = 1e-3) -> np.ndarray:
    """Return ``value`` as a float64 4x4 rigid transform, or raise CalibrationError naming ``field``.

    Files print rotations to a few digits, so a rotation within ``tol`` of orthonormal is accepted and
    re-orthonormalized (nearest rotation, via SVD); anything further off is an error.
    """
    try:
        T = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError("expected a 4x4 matrix of numbers", path, field=field) from None
    if T.size == 16 and T.ndim == 1:
        T = T.reshape(4, 4)
    if T.shape == (3, 4):
        T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
    if T.shape != (4, 4):
        raise CalibrationError(f"expected a 4x4 (or 3x4) matrix, got shape {T.shape}", path, field=field)
    if not np.all(np.isfinite(T)):
        raise CalibrationError("contains NaN or inf", path, field=field)
    R = T[:3, :3]
    if not np.allclose(T[3], [0, 0, 0, 1], atol=tol):
        raise CalibrationError(f"last row must be [0 0 0 1], got {T[3].tolist()}", path, field=field)
    ortho_err = float(np.abs(R @ R.T - np.eye(3)).max())
    if ortho_err > tol or np.linalg.det(R) < 0:
        raise CalibrationError(
            f"rotation part is not a proper rotation (|R R^T - I| = {ortho_err:.2e}, det = "
            f"{np.linalg.det(R):.4f}); the transform must be rigid", path, field=field)
    U, _, Vt = np.linalg.svd(R)
    T = T.copy()
    T[:3, :3] = U @ Vt
    T[3] = [0.0, 0.0, 0.0, 1.0]
    return T


def _vector(value, n: int, field: str, path=None, positive: bool = False) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CalibrationError(f"expected {n} numbers", path, field=field) from None
    if v.size != n:
        raise CalibrationError(f"expected {n} numbers, got {v.size}", path, field=field)
    if not np.all(np.isfinite(v)):
        raise CalibrationError("contains NaN or inf", path, field=field)
    if positive and np.any(v <= 0):
        raise CalibrationError(f"must be positive, got {v.tolist()}", path, field=field)
    return v


def _positive(value, field: str, path=None) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"expected a number, got {value!r}", path, field=field) from None
    if not (math.isfinite(x) and x > 0):
        raise CalibrationError(f"must be a positive number, got {value!r}", path, field=field)
    return x


# ------------------------------------------------------------------------------------- calibration

DISTORTION_COEFFS = {"none": 0, "radtan": 4, "radtan5": 5, "equidistant": 4}
_DISTORTION_ALIASES = {"radial-tangential": "radtan", "radial_tangential": "radtan", "plumb_bob": "radtan",
                       "fisheye": "equidistant", "equi": "equidistant", "kannala_brandt": "equidistant"}


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    """Pinhole camera with radial-tangential (k1 k2 p1 p2 [k3]) or equidistant (k1..k4) distortion."""

    width: int
    height: int
    intrinsics: np.ndarray  # fx, fy, cx, cy [px]
    distortion_model: str = "none"  # none | radtan | radtan5 | equidistant
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))
    T_B_C: np.ndarray = field(default_factory=lambda: np.eye(4))  # camera pose in the body (IMU) frame
    rate_hz: float | None = None
    time_offset_s: float = 0.0  # t_imu = t_cam + time_offset_s (Kalibr's timeshift_cam_imu)
    name: str = "cam0"
    source: str | None = None  # file it came from, for error messages

    def __post_init__(self):
        src = self.source
        for key in ("width", "height"):
            v = getattr(self, key)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise CalibrationError(f"must be a positive integer, got {v!r}", src, field=f"{self.name}.{key}")
        set_ = object.__setattr__
        set_(self, "intrinsics", _vector(self.intrinsics, 4, f"{self.name}.intrinsics", src, positive=True))
        model = _DISTORTION_ALIASES.get(str(self.distortion_model).lower(), str(self.distortion_model).lower())
        if model not in DISTORTION_COEFFS:
            raise CalibrationError(f"unknown distortion model {self.distortion_model!r}; expected one of "
                                   f"{sorted(DISTORTION_COEFFS)}", src, field=f"{self.name}.distortion_model")
        coeffs = np.asarray(self.distortion if self.distortion is not None else [], dtype=np.float64).reshape(-1)
        if model == "radtan" and coeffs.size == 5:
            model = "radtan5"
        set_(self, "distortion_model", model)
        set_(self, "distortion", _vector(coeffs, DISTORTION_COEFFS[model], f"{self.name}.distortion", src))
        set_(self, "T_B_C", as_rigid_transform(self.T_B_C, f"{self.name}.T_B_C", src))
        if self.rate_hz is not None:
            set_(self, "rate_hz", _positive(self.rate_hz, f"{self.name}.rate_hz", src))

    @property
    def K(self) -> np.ndarray:
        fx, fy, cx, cy = self.intrinsics
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.width), int(self.height)


@dataclass(frozen=True, eq=False)
class ImuCalibration:
    """Continuous-time IMU noise (Kalibr/EuRoC convention) and the IMU pose in the body frame."""

    gyro_noise_density: float  # rad/s/sqrt(Hz)
    gyro_random_walk: float  # rad/s^2/sqrt(Hz)
    accel_noise_density: float  # m/s^2/sqrt(Hz)
    accel_random_walk: float  # m/s^3/sqrt(Hz)
    rate_hz: float
    T_B_S: np.ndarray = field(default_factory=lambda: np.eye(4))
    source: str | None = None

    def __post_init__(self):
        for key in ("gyro_noise_density", "gyro_random_walk", "accel_noise_density", "accel_random_walk",
                    "rate_hz"):
            object.__setattr__(self, key, _positive(getattr(self, key), f"imu.{key}", self.source))
        object.__setattr__(self, "T_B_S", as_rigid_transform(self.T_B_S, "imu.T_B_S", self.source))


@dataclass(frozen=True, eq=False)
class Calibration:
    """Sensor rig: cameras (cam0 first) and the IMU (None for vision-only data)."""

    cameras: tuple[CameraCalibration, ...]
    imu: ImuCalibration | None = None

    @property
    def stereo(self) -> bool:
        return len(self.cameras) >= 2


# ------------------------------------------------------------------------------------------ images


class ImageSource(Protocol):
    """Something that yields an image when asked; frames carry these so images load lazily."""

    def load(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ImageFile:
    """An image on disk, decoded on ``load()`` (grayscale uint8 by default; depth PNGs as uint16)."""

    path: Path
    grayscale: bool = True

    def load(self) -> np.ndarray:
        import cv2

        flags = cv2.IMREAD_GRAYSCALE if self.grayscale else cv2.IMREAD_UNCHANGED
        try:
            img = cv2.imread(str(self.path), flags)
        except cv2.error as exc:  # pragma: no cover - depends on the OpenCV build
            raise DataError(f"cannot decode image: {exc}", self.path) from None
        if img is None:
            reason = "file is missing" if not Path(self.path).exists() else "unreadable or corrupt image"
            raise DataError(reason, self.path)
        return img


@dataclass(frozen=True)
class ImageArray:
    """An image already in memory (live sources, tests)."""

    array: np.ndarray

    def load(self) -> np.ndarray:
        return self.array


@dataclass(frozen=True)
class EncodedImage:
    """Compressed bytes (JPEG/PNG, e.g. a ROS CompressedImage) decoded on ``load()``."""

    data: bytes
    origin: str = "<memory>"  # e.g. "bag.db3 topic /cam0 #12", for error messages

    def load(self) -> np.ndarray:
        import cv2

        img = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DataError("unreadable or corrupt compressed image", self.origin)
        return img


# ---------------------------------------------------------------------------------------- messages


@dataclass(frozen=True, eq=False)
class ImuSample:
    """One IMU reading in the IMU sensor frame S: angular rate [rad/s] and specific force [m/s^2]."""

    t_ns: int
    gyro: np.ndarray  # (3,)
    accel: np.ndarray  # (3,)


@dataclass(frozen=True, eq=False)
class CameraFrame:
    """Images taken at one instant: ``images[i]`` belongs to ``calibration.cameras[i]``."""

    t_ns: int
    images: tuple[ImageSource, ...]
    depth: ImageSource | None = None  # RGB-D depth aligned with images[0] (uint16, see depth_scale)
    depth_scale: float = 1.0  # metres per depth unit
    index: int = 0  # frame number within the sequence

    @property
    def stereo(self) -> bool:
        return len(self.images) >= 2


@dataclass(frozen=True, eq=False)
class FeatureFrame:
    """Tracked feature observations of one camera at one instant (for backend-only runs).

    ``uv`` are undistorted normalized image coordinates (x/z, y/z) when ``normalized`` is True,
    else distorted pixels. ``ids`` identify the landmark across frames.
    """

    t_ns: int
    camera: int
    ids: np.ndarray  # (N,) int64
    uv: np.ndarray  # (N, 2) float64
    normalized: bool = True
    index: int = 0


Message = ImuSample | CameraFrame | FeatureFrame


@dataclass(frozen=True, eq=False)
class StateEstimate:
    """The estimator's output for one camera frame (or one IMU sample, when propagated).

    ``status``: "tracking", "initializing" (no pose yet), "propagated" (IMU only) or "reset" (the estimator
    lost track here and restarts; poses before and after stay continuous, the gap is reported).
    """

    t_ns: int
    T_W_B: np.ndarray  # (4, 4)
    v_W: np.ndarray  # (3,)
    bias_gyro: np.ndarray  # (3,)
    bias_accel: np.ndarray  # (3,)
    keyframe: bool = False
    status: str = "tracking"
    n_landmarks: int = 0  # landmarks observed in this frame that the estimator uses
    n_features: int = 0  # features the frontend tracked in cam0 in this frame


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Timestamped poses ``T_W_B`` as arrays; optional velocity and IMU biases (ground truth, estimates)."""

    t_ns: np.ndarray  # (N,) int64
    p_W: np.ndarray  # (N, 3) position of the body in the world
    q_W_B: np.ndarray  # (N, 4) orientation, (w, x, y, z)
    v_W: np.ndarray | None = None  # (N, 3)
    bias_gyro: np.ndarray | None = None  # (N, 3)
    bias_accel: np.ndarray | None = None  # (N, 3)

    def __post_init__(self):
        n = len(self.t_ns)
        object.__setattr__(self, "t_ns", np.asarray(self.t_ns, dtype=np.int64).reshape(n))
        for key, width in (("p_W", 3), ("q_W_B", 4), ("v_W", 3), ("bias_gyro", 3), ("bias_accel", 3)):
            value = getattr(self, key)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (n, width):
                raise DataError(f"expected shape ({n}, {width}), got {arr.shape}", field=f"Trajectory.{key}")
            object.__setattr__(self, key, arr)

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def t_s(self) -> np.ndarray:
        return self.t_ns.astype(np.float64) * 1e-9

    def subset(self, index) -> Trajectory:
        pick = (lambda a: None if a is None else a[index])
        return Trajectory(self.t_ns[index], self.p_W[index], self.q_W_B[index], pick(self.v_W),
                          pick(self.bias_gyro), pick(self.bias_accel))
