"""The pipeline object that offline runs and live runs both drive: messages in, state estimates out.

``Pipeline.process(message)`` takes the one time-ordered stream every source yields (IMU samples,
camera frames, or feature frames from a backend-only file). Camera frames go through the frontend
(KLT tracks, gyro-predicted), keyframe selection and the backend; feature frames skip the frontend.
Only the source differs between ``slam run`` and ``slam live``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from slam.backend.estimator import BackendConfig, VioBackend
from slam.frontend.keyframes import KeyframeConfig, KeyframeSelector
from slam.frontend.tracker import FeatureTracker, TrackerConfig
from slam.messages import Calibration, CameraFrame, DataError, FeatureFrame, ImuSample, Message, StateEstimate

MODES = ("stereo_inertial", "mono_inertial", "stereo")


@dataclass
class PipelineConfig:
    mode: str = "stereo_inertial"  # stereo_inertial | mono_inertial | stereo (visual odometry, no IMU)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)

    def __post_init__(self):
        if self.mode not in MODES:
            raise DataError(f"unknown mode {self.mode!r}; modes: {', '.join(MODES)}", field="mode")

    @property
    def use_imu(self) -> bool:
        return self.mode.endswith("inertial")

    @property
    def stereo(self) -> bool:
        return self.mode.startswith("stereo")


def load_pipeline_config(preset=None, overrides=None) -> PipelineConfig:
    from slam.config import load_config

    return load_config(PipelineConfig, preset, overrides)


@dataclass
class StageTimes:
    """Milliseconds per stage, summed over frames (``frames`` counts camera frames)."""

    totals: dict[str, float] = field(default_factory=dict)
    frames: int = 0

    def add(self, name: str, ms: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + ms

    def mean(self) -> dict[str, float]:
        return {k: v / max(self.frames, 1) for k, v in self.totals.items()}


class Pipeline:
    def __init__(self, calibration: Calibration, config: PipelineConfig | None = None):
        self.config = config or PipelineConfig()
        if self.config.use_imu and calibration.imu is None:
            raise DataError(f"mode {self.config.mode} needs an IMU calibration; the sequence has none "
                            "(use --config stereo for visual odometry)", field="mode")
        if self.config.stereo and len(calibration.cameras) < 2:
            raise DataError(f"mode {self.config.mode} needs two cameras; the sequence has one "
                            "(use --config mono_inertial)", field="mode")
        self.calibration = calibration
        n_cams = 2 if self.config.stereo else 1
        tracker_calib = Calibration(calibration.cameras[:n_cams], calibration.imu)
        self.tracker = FeatureTracker(tracker_calib, self.config.tracker)
        cam0 = calibration.cameras[0]
        self.keyframes = KeyframeSelector(self.config.keyframes, float(cam0.intrinsics[0]))
        self.backend = VioBackend(calibration, self.config.backend, use_imu=self.config.use_imu,
                                  stereo=self.config.stereo)
        self.T_B_C0 = np.asarray(cam0.T_B_C, float)
        self.time_offset_ns = int(round(cam0.time_offset_s * 1e9))  # t_imu = t_cam + offset
        self.times = StageTimes()
        self._pending: list[FeatureFrame] = []
        self._prev_frame_t_ns: int | None = None
        self.last_features: list[FeatureFrame] = []

    # --------------------------------------------------------------- input
    def process(self, message: Message) -> StateEstimate | None:
        """Feed one message; returns the state of a camera frame once its features are complete."""
        if isinstance(message, ImuSample):
            self.backend.add_imu(message)
            return None
        if isinstance(message, CameraFrame):
            done = self._flush()
            return self._camera_frame(message) or done
        if isinstance(message, FeatureFrame):
            done = None
            if self._pending and self._pending[0].t_ns != message.t_ns:
                done = self._flush()
            self._pending.append(message)
            if len(self._pending) >= (2 if self.config.stereo else 1):
                done = self._flush() or done
            return done
        raise TypeError(f"unsupported message {type(message).__name__}")

    def finish(self) -> StateEstimate | None:
        """End of stream: processes a feature frame still waiting for its partner."""
        return self._flush()

    def propagate(self, t_ns: int) -> StateEstimate | None:
        """IMU-rate pose at ``t_ns`` (for live use), from the last keyframe and the IMU since."""
        return self.backend.predict(t_ns)

    # --------------------------------------------------------------- stages
    def _camera_frame(self, frame: CameraFrame) -> StateEstimate:
        t_ns = frame.t_ns + self.time_offset_ns
        start = time.perf_counter()
        R = None
        if self.config.use_imu and self._prev_frame_t_ns is not None and self.backend.imu.last_t_ns is not None:
            R = self.backend.imu.rotation(self._prev_frame_t_ns, t_ns, self.backend.bias[:3])
        self._prev_frame_t_ns = t_ns
        try:
            features = self.tracker.process(frame, R)
        except ValueError as exc:  # wrong image size etc.: name the frame
            raise DataError(f"frame {frame.index} at {frame.t_ns} ns: {exc}") from None
        self.times.add("frontend", 1000 * (time.perf_counter() - start))
        features = [FeatureFrame(t_ns, f.camera, f.ids, f.uv, f.normalized, frame.index) for f in features]
        return self._features(t_ns, features)

    def _flush(self) -> StateEstimate | None:
        if not self._pending:
            return None
        frames, self._pending = self._pending, []
        if any(not f.normalized for f in frames):
            from slam.frontend.camera_model import undistort_points

            frames = [f if f.normalized else FeatureFrame(
                f.t_ns, f.camera, f.ids, undistort_points(self.calibration.cameras[f.camera], f.uv), True, f.index)
                for f in frames]
        t_ns = frames[0].t_ns + self.time_offset_ns
        return self._features(t_ns, [FeatureFrame(t_ns, f.camera, f.ids, f.uv, True, f.index) for f in frames])

    def _features(self, t_ns: int, features: list[FeatureFrame]) -> StateEstimate:
        start = time.perf_counter()
        self.last_features = features
        cam0 = next((f for f in features if f.camera == 0), None)
        keyframe = False
        if cam0 is not None and self.backend.initialized:
            keyframe = self.keyframes.is_keyframe(t_ns, cam0, self._camera_rotation(t_ns))
        t_kf = time.perf_counter()
        state = self.backend.add_frame(t_ns, features, keyframe)
        if cam0 is not None:
            state = dataclasses.replace(state, n_features=len(cam0.ids))
        if state.keyframe and cam0 is not None:
            self.keyframes.mark(t_ns, cam0)
        elif state.status == "reset":
            self.keyframes.reset()
        self.times.add("keyframe", 1000 * (t_kf - start))
        self.times.add("backend", 1000 * (time.perf_counter() - t_kf))
        self.times.frames += 1
        return state

    def _camera_rotation(self, t_ns: int) -> np.ndarray | None:
        """R_Ckf_Ccur from the last keyframe to now: IMU propagation, or constant velocity without an IMU."""
        kf = self.backend.last_keyframe
        if kf is None:
            return None
        now = self.backend.predict(t_ns)
        R_kf_cur = kf.T_W_B[:3, :3].T @ now.T_W_B[:3, :3]
        R_B_C = self.T_B_C0[:3, :3]
        return R_B_C.T @ R_kf_cur @ R_B_C
