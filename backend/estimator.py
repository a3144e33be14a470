"""Sliding-window visual-inertial estimator on GTSAM's ``IncrementalFixedLagSmoother``.

States live at keyframes: pose ``X(i)``, velocity ``V(i)`` and IMU bias ``B(i)`` joined by
``CombinedImuFactor``s; landmarks ``L(n)`` are world points with robust projection factors in every camera
that saw them (stereo is two projection factors through each camera's ``T_B_C``, so unrectified rigs
work). Landmarks enter once triangulated (from a stereo pair, or from keyframes with enough parallax) and
checked; observations are gated on the predicted reprojection before they enter and removed after the
optimization when they disagree. Keys older than the lag are marginalized, so time and memory per frame
stay bounded. Frames between keyframes get the IMU-propagated pose of the last optimized keyframe.

Initialization (checked, retried rather than accepted when wrong):
  static: the platform stood still (visual standstill; real IMUs vibrate too much for a variance test):
          gravity and gyro bias from the mean IMU readings;
  stereo: moving with a stereo rig: attitude from the mean specific force, velocity left loose;
  mono:   moving with one camera: visual SfM + IMU alignment (:mod:`.vi_init`).
Divergence (too few landmarks, speed or bias out of range, a failed solve, the whole window jumping) resets
the estimator, which re-initializes from the last good pose so the trajectory stays continuous; the gap is
recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import gtsam
import numpy as np
from gtsam.symbol_shorthand import B, L, V, X

from slam.messages import Calibration, FeatureFrame, ImuSample, StateEstimate

from .imu import ImuBuffer, ImuNoiseConfig, preintegration_params
from .triangulation import max_parallax, project, reprojection_px, triangulate_stereo, triangulate_views
from .vi_init import gravity_aligned_rotation

log = logging.getLogger(__name__)


@dataclass
class BackendConfig:
    lag_s: float = 3.0  # smoother window [s]; older keyframes and landmarks are marginalized
    pixel_sigma: float = 1.0  # measurement noise [px]
    robust_kernel: str = "huber"  # huber | cauchy
    robust_k: float = 1.345  # kernel width in sigmas
    gate_px: float = 6.0  # observations this far from the predicted projection do not enter
    outlier_px: float = 3.0  # observations this far after optimization are removed
    min_parallax_deg: float = 1.5  # monocular triangulation
    min_stereo_angle_deg: float = 0.15  # stereo triangulation (about 40 m at an 11 cm baseline)
    triangulation_max_px: float = 2.0
    min_depth_m: float = 0.1
    max_depth_m: float = 60.0
    landmark_prior_sigma_m: float = 10.0  # keeps a landmark determined after its factors are removed
    static_px: float = 1.0  # median feature motion [px] below this since the standstill began
    static_init_s: float = 0.4  # standstill needed for a static initialization
    zero_velocity_updates: bool = True
    # Extra ISAM2 iterations (each removes the outliers found before it) unless the keyframe is stereo,
    # predicted by the IMU, and the first iteration moved it less than `reiterate_shift_m` with at most
    # `reiterate_fraction` of the window's factors disagreeing. A poor prediction (no IMU, an IMU silence,
    # a jolt) or a weakly observed scale (one camera) needs Gauss-Newton to converge; in the usual stereo
    # case (99 % of keyframes on room_mav) the few outliers leave with the next keyframe's update instead,
    # which halves the backend time.
    extra_iterations: int = 1
    reiterate_fraction: float = 0.02
    reiterate_shift_m: float = 0.02
    relinearize_threshold: float = 0.001  # 0.01 stalled 1.6 % above the batch optimum (test_backend)
    factorization: str = "CHOLESKY"  # 9x faster than QR here; QR survives near-singular systems
    min_landmarks: int = 6  # fewer features in this many consecutive keyframes -> reset
    lost_keyframes: int = 4
    lost_s: float = 3.0  # ... or fewer usable landmarks than min_landmarks for this long
    max_speed_mps: float = 15.0
    max_window_shift_m: float = 0.3  # every earlier keyframe of the window moved more in one update -> reset
    max_gyro_bias: float = 0.5  # rad/s
    max_accel_bias: float = 2.0  # m/s^2
    max_imu_gap_s: float = 0.5  # a longer IMU silence resets (shorter ones are bridged by interpolation)
    bridge_s: float = 3.0  # after a loss this short, restart from the IMU-propagated last good state
    # A PnP correction of the IMU prediction larger than this is a wrong solution (a planar scene has a
    # mirrored one behind the camera), not a wrong prediction.
    pnp_max_shift_m: float = 1.0
    pnp_max_turn_deg: float = 10.0
    max_outlier_fraction: float = 0.5  # more of the window's visual factors disagreeing -> the estimate is wrong
    mono_init_frames: int = 16  # frames gathered for the monocular visual-inertial alignment
    mono_init_spacing_s: float = 0.25  # ... at least this far apart (a 4 s window: scale needs acceleration)
    imu: ImuNoiseConfig = field(default_factory=ImuNoiseConfig)


@dataclass
class _Keyframe:
    index: int
    t_ns: int
    T_W_B: np.ndarray
    v_W: np.ndarray
    bias: gtsam.imuBias.ConstantBias
    features: dict[int, tuple[np.ndarray, np.ndarray]]  # camera -> (ids, uv)
    still: bool = False
    imu_gap: bool = False  # made during an IMU silence (a motion prior instead of an IMU factor)


@dataclass
class _Track:
    obs: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (keyframe, camera, uv)
    landmark: int | None = None
    rejected: bool = False


@dataclass
class _Factor:
    landmark: int
    keyframe: int
    camera: int
    uv: np.ndarray


def _bias(b) -> gtsam.imuBias.ConstantBias:
    return gtsam.imuBias.ConstantBias(np.asarray(b[3:], float), np.asarray(b[:3], float))  # (accel, gyro)


def level_attitude(accel_mean: np.ndarray, yaw: float = 0.0) -> np.ndarray:
    """R_W_B with world z up and heading ``yaw``, from the specific force measured at rest (it points up)."""
    R = gravity_aligned_rotation(-np.asarray(accel_mean, float))
    return gtsam.Rot3.Rz(yaw - np.arctan2(R[1, 0], R[0, 0])).matrix() @ R


class VioBackend:
    """Feed IMU samples with :meth:`add_imu` and per-frame features with :meth:`add_frame`."""

    def __init__(self, calibration: Calibration, config: BackendConfig | None = None, use_imu: bool = True,
                 stereo: bool = True):
        self.config = config or BackendConfig()
        self.calibration = calibration
        self.use_imu = use_imu and calibration.imu is not None
        self.stereo = stereo and len(calibration.cameras) > 1
        cams = calibration.cameras[:2 if self.stereo else 1]
        self.T_B_C = [np.asarray(c.T_B_C, float) for c in cams]
        self.focal = float(cams[0].intrinsics[0])
        self._K = gtsam.Cal3_S2(self.focal, self.focal, 0.0, 0.0, 0.0)
        self._body_P_cam = [gtsam.Pose3(T) for T in self.T_B_C]
        self._T_C0_C1 = np.linalg.inv(self.T_B_C[0]) @ self.T_B_C[1] if self.stereo else None
        self._pixel_noise = self._robust(gtsam.noiseModel.Isotropic.Sigma(2, self.config.pixel_sigma))
        self._landmark_prior = gtsam.noiseModel.Isotropic.Sigma(3, self.config.landmark_prior_sigma_m)
        self.imu = ImuBuffer()
        self._params = preintegration_params(calibration.imu, self.config.imu) if self.use_imu else None
        self._next_kf = 0
        self._next_landmark = 0
        self._t0_ns: int | None = None
        self.gaps: list[tuple[int, int]] = []  # (last good stamp, re-initialized stamp)
        self.n_resets = 0
        # The last good keyframe as it was accepted, re-initialization continues from it. A copy: the window's
        # own keyframe is overwritten by every later update, the failed one included.
        self._anchor: _Keyframe | None = None
        self._map: dict[int, np.ndarray] = {}  # track id -> last estimate, kept after marginalization
        self._prev_frame: FeatureFrame | None = None
        self._still_since_ns: int | None = None
        self._still_anchor: FeatureFrame | None = None
        self._reset_state()

    # ------------------------------------------------------------------ public
    @property
    def initialized(self) -> bool:
        return bool(self._kfs)

    @property
    def bias(self) -> np.ndarray:
        """Current (gyro, accel) bias estimate, zeros before initialization."""
        if not self._kfs:
            return np.zeros(6)
        b = self._kfs[-1].bias
        return np.concatenate([b.gyroscope(), b.accelerometer()])

    @property
    def last_keyframe(self) -> _Keyframe | None:
        return self._kfs[-1] if self._kfs else None

    def add_imu(self, sample: ImuSample) -> None:
        if self.use_imu:
            self.imu.add(sample)

    def landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        """(track ids, world positions (N, 3)) of the landmarks in the window."""
        ids = [i for i, tr in self._tracks.items() if tr.landmark is not None and tr.landmark in self._points]
        return np.array(ids, np.int64), np.array([self._points[self._tracks[i].landmark] for i in ids]).reshape(-1, 3)

    def map_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(track ids, world positions) of every landmark ever estimated, at its last estimate: the map."""
        ids = np.array(list(self._map), np.int64)
        return ids, np.array([self._map[i] for i in ids.tolist()]).reshape(-1, 3)

    def predict(self, t_ns: int) -> StateEstimate | None:
        """IMU-propagated state at ``t_ns`` from the last keyframe (constant velocity without IMU)."""
        kf = self.last_keyframe
        if kf is None:
            return None
        if not self.use_imu or self._imu_missing(kf.t_ns, t_ns):
            T = self._constant_velocity(t_ns)
            return StateEstimate(t_ns, T, kf.v_W, kf.bias.gyroscope(), kf.bias.accelerometer(), status="propagated")
        nav, _ = self._propagate(kf, t_ns)
        b = kf.bias
        return StateEstimate(t_ns, nav.pose().matrix(), nav.velocity(), b.gyroscope(), b.accelerometer(),
                             status="propagated")

    def add_frame(self, t_ns: int, features: list[FeatureFrame], keyframe: bool) -> StateEstimate:
        """One camera frame's features (cam0 first; cam1 holds the stereo matches); returns its state."""
        if self._t0_ns is None:
            self._t0_ns = t_ns
        feats = {f.camera: (np.asarray(f.ids, np.int64), np.asarray(f.uv, float)) for f in features
                 if f.camera < len(self.T_B_C)}
        self._update_standstill(t_ns, features)
        if not self._kfs:
            return self._initialize(t_ns, feats)
        if not keyframe and not self._needs_keyframe(t_ns):
            state = self.predict(t_ns)
            return StateEstimate(t_ns, state.T_W_B, state.v_W, state.bias_gyro, state.bias_accel, False,
                                 "tracking", self._count_known(feats))
        return self._add_keyframe(t_ns, feats)

    # ------------------------------------------------------------------ helpers
    def _robust(self, base):
        c = self.config
        kernel = (gtsam.noiseModel.mEstimator.Cauchy.Create(c.robust_k) if c.robust_kernel == "cauchy"
                  else gtsam.noiseModel.mEstimator.Huber.Create(c.robust_k))
        return gtsam.noiseModel.Robust.Create(kernel, base)

    def _reset_state(self) -> None:
        params = gtsam.ISAM2Params()
        params.setFactorization(self.config.factorization)
        params.relinearizeSkip = 1  # the default (10) stalled short of the optimum
        # Reuse the slots of removed and marginalized factors: without it ISAM2's factor list grows by ~90k
        # slots a minute and the process by ~20 MB a minute (room_mav).
        params.findUnusedFactorSlots = True
        params.setRelinearizeThreshold(self.config.relinearize_threshold)
        self._smoother = gtsam.IncrementalFixedLagSmoother(self.config.lag_s, params)
        self._kfs: list[_Keyframe] = []
        self._tracks: dict[int, _Track] = {}
        self._points: dict[int, np.ndarray] = {}  # landmark -> world position
        self._factors: dict[int, _Factor] = {}  # smoother factor index -> what it measures
        self._pending_removal: list[int] = []
        self._lost = 0
        self._last_seen_ns = 0
        self._init_window: list[tuple[int, dict]] = []

    def _stamp(self, t_ns: int) -> float:
        return (t_ns - self._t0_ns) * 1e-9

    def _count_known(self, feats) -> int:
        ids = feats.get(0, (np.zeros(0, np.int64), None))[0]
        return sum(1 for i in ids if (tr := self._tracks.get(int(i))) and tr.landmark is not None)

    def _update_standstill(self, t_ns: int, features: list[FeatureFrame]) -> None:
        """Still while the features stay within ``static_px`` (median) of where they were when it began;
        comparing with that anchor frame rather than the previous one also catches slow drifts."""
        cam0 = next((f for f in features if f.camera == 0), None)
        anchor = self._still_anchor
        still = False
        if cam0 is not None and anchor is not None:
            _, a, b = np.intersect1d(anchor.ids, cam0.ids, return_indices=True)
            if len(a) >= 5:
                still = float(np.median(np.linalg.norm(anchor.uv[a] - cam0.uv[b], axis=1))) * self.focal \
                    < self.config.static_px
        if still:
            self._still_since_ns = anchor.t_ns
        else:
            self._still_since_ns = None
            self._still_anchor = cam0
        self._prev_frame = cam0

    def _imu_missing(self, t0_ns: int, t1_ns: int) -> bool:
        """The IMU went silent for longer than ``max_imu_gap_s`` somewhere in [t0, t1]. Integrating across the
        hole would invent the motion, so the keyframes carry on visually (a constant-velocity motion prior;
        the landmarks in the window hold the scale, also with one camera) until the IMU is back."""
        return self.use_imu and self.imu.largest_gap_ns(t0_ns, t1_ns) > self.config.max_imu_gap_s * 1e9

    def _needs_keyframe(self, t_ns: int) -> bool:
        """Keep standstills anchored: a keyframe at least every half second."""
        return t_ns - self._kfs[-1].t_ns > 0.5e9

    def _propagate(self, kf: _Keyframe, t_ns: int):
        pim = gtsam.PreintegratedCombinedMeasurements(self._params, kf.bias)
        self.imu.integrate(pim, kf.t_ns, t_ns)
        return pim.predict(gtsam.NavState(gtsam.Pose3(kf.T_W_B), kf.v_W), kf.bias), pim

    def _constant_velocity(self, t_ns: int) -> np.ndarray:
        if len(self._kfs) < 2:
            return self._kfs[-1].T_W_B.copy()
        a, b = self._kfs[-2], self._kfs[-1]
        delta = np.linalg.inv(a.T_W_B) @ b.T_W_B
        frac = (t_ns - b.t_ns) / max(b.t_ns - a.t_ns, 1)
        xi = gtsam.Pose3.Logmap(gtsam.Pose3(delta)) * frac
        return b.T_W_B @ gtsam.Pose3.Expmap(xi).matrix()

    def _estimate(self, kf: _Keyframe, status: str = "tracking", n_landmarks: int = 0) -> StateEstimate:
        return StateEstimate(kf.t_ns, kf.T_W_B.copy(), kf.v_W.copy(), kf.bias.gyroscope(),
                             kf.bias.accelerometer(), True, status, n_landmarks)

    # ------------------------------------------------------------------ initialization
    def _initialize(self, t_ns: int, feats) -> StateEstimate:
        c = self.config
        n0 = len(feats.get(0, ((), ()))[0])
        p0, yaw0 = np.zeros(3), 0.0
        anchor = self._anchor
        if anchor is not None:
            p0, yaw0 = anchor.T_W_B[:3, 3], float(np.arctan2(anchor.T_W_B[1, 0], anchor.T_W_B[0, 0]))
        waiting = StateEstimate(t_ns, np.eye(4), np.zeros(3), np.zeros(3), np.zeros(3), status="initializing")
        if n0 < c.min_landmarks:
            return waiting
        if not self.use_imu:
            T = anchor.T_W_B.copy() if anchor is not None else np.eye(4)
            return self._start(t_ns, feats, T, np.zeros(3), np.zeros(6), rot_sigma=1e-3, v_sigma=None)
        if not self.imu.covers(t_ns - int(0.2e9), t_ns):
            return waiting
        if anchor is not None and t_ns - anchor.t_ns < c.bridge_s * 1e9 and self.imu.covers(anchor.t_ns, t_ns) \
                and self.imu.largest_gap_ns(anchor.t_ns, t_ns) <= c.max_imu_gap_s * 1e9:
            # a short loss: the IMU carries the last good state across it, so the trajectory stays continuous
            nav, _ = self._propagate(anchor, t_ns)
            b = anchor.bias
            return self._start(t_ns, feats, nav.pose().matrix(), nav.velocity(),
                               np.concatenate([b.gyroscope(), b.accelerometer()]), rot_sigma=0.05, v_sigma=0.5,
                               gyro_bias_sigma=0.01, status="bridged")
        still_s = (t_ns - self._still_since_ns) * 1e-9 if self._still_since_ns is not None else 0.0
        if still_s >= c.static_init_s:
            gyro, accel, _ = self.imu.mean(self._still_since_ns, t_ns)
            T = np.eye(4)
            T[:3, :3] = level_attitude(accel, yaw0)
            T[:3, 3] = p0
            bias = np.concatenate([gyro, np.zeros(3)])
            return self._start(t_ns, feats, T, np.zeros(3), bias, rot_sigma=0.02, v_sigma=0.01,
                               gyro_bias_sigma=0.005, status="static")
        moving = self._still_since_ns is None and self._prev_frame is not None
        n_stereo = len(feats.get(1, ((), ()))[0])
        if self.stereo and moving and n_stereo >= c.min_landmarks:
            _, accel, _ = self.imu.mean(t_ns - int(0.5e9), t_ns)
            T = np.eye(4)
            T[:3, :3] = level_attitude(accel, yaw0)
            T[:3, 3] = p0
            return self._start(t_ns, feats, T, np.zeros(3), np.zeros(6), rot_sigma=0.1, v_sigma=2.0,
                               gyro_bias_sigma=0.1, status="stereo")
        if not self.stereo and moving:
            return self._mono_initialize(t_ns, feats) or waiting
        return waiting

    def _mono_initialize(self, t_ns: int, feats) -> StateEstimate | None:
        """Gather frames while moving, then align a visual SfM with the IMU (scale, gravity, velocity, biases).

        A failed attempt (too little motion or parallax, a check that did not pass) slides the window on and
        tries again with the next frames instead of accepting a doubtful start.
        """
        from .vi_init import initialize_mono

        c = self.config
        if self._init_window and t_ns - self._init_window[-1][0] < c.mono_init_spacing_s * 1e9:
            return None
        self._init_window.append((t_ns, feats))
        if len(self._init_window) < c.mono_init_frames:
            return None
        window = self._init_window
        result = initialize_mono(window, self.T_B_C[0], self.imu, self.focal)
        if not result.success:
            log.info("monocular initialization at %.2f s not accepted: %s", self._stamp(t_ns), result.reason)
            self._init_window = window[len(window) // 4:]
            return None
        self._init_window = []
        bias = np.concatenate([result.gyro_bias, result.accel_bias])
        state = self._start(window[0][0], window[0][1], result.T_W_Bk[0], result.v_W[0], bias, rot_sigma=0.02,
                            v_sigma=0.1, gyro_bias_sigma=0.01, status="mono")
        for t, f in window[1:]:
            state = self._add_keyframe(t, f)
        return state

    def _start(self, t_ns, feats, T_W_B, v_W, bias6, rot_sigma, v_sigma, gyro_bias_sigma=0.1,
               status="started") -> StateEstimate:
        log.info("initialized (%s) at %.3f s", status, self._stamp(t_ns))
        prior = (T_W_B, v_W, bias6, rot_sigma, v_sigma, gyro_bias_sigma)
        if self._anchor is not None and self._anchor.t_ns < t_ns:
            self.gaps.append((self._anchor.t_ns, t_ns))
        return self._add_keyframe(t_ns, feats, prior=prior)

    # ------------------------------------------------------------------ keyframes
    def _add_keyframe(self, t_ns: int, feats, prior=None) -> StateEstimate:
        c = self.config
        i = self._next_kf
        self._next_kf += 1
        graph, values, stamps = gtsam.NonlinearFactorGraph(), gtsam.Values(), {}
        stamp = self._stamp(t_ns)
        imu_predicted = False  # else a weaker prediction: always iterate twice (see `extra_iterations`)
        imu_gap = False
        if prior is not None:
            T_W_B, v_W, bias6, rot_sigma, v_sigma, bg_sigma = prior
            bias = _bias(bias6)
            sig = np.array([rot_sigma] * 3 + [1e-3] * 3)
            graph.add(gtsam.PriorFactorPose3(X(i), gtsam.Pose3(T_W_B), gtsam.noiseModel.Diagonal.Sigmas(sig)))
            if self.use_imu:
                graph.add(gtsam.PriorFactorVector(V(i), v_W, gtsam.noiseModel.Isotropic.Sigma(3, v_sigma)))
                graph.add(gtsam.PriorFactorConstantBias(B(i), bias, gtsam.noiseModel.Diagonal.Sigmas(
                    np.array([0.1] * 3 + [bg_sigma] * 3))))
            still = False
        else:
            prev = self._kfs[-1]
            still = (c.zero_velocity_updates and self._still_since_ns is not None
                     and self._still_since_ns <= prev.t_ns)
            if self._imu_missing(prev.t_ns, t_ns):
                T_W_B, bias, imu_gap = self._constant_velocity(t_ns), prev.bias, True
                v_W = (T_W_B[:3, 3] - prev.T_W_B[:3, 3]) / max((t_ns - prev.t_ns) * 1e-9, 1e-3)
                self._motion_prior(graph, prev, i, T_W_B)
                graph.add(gtsam.PriorFactorVector(V(i), v_W, gtsam.noiseModel.Isotropic.Sigma(3, 1.0)))
                graph.add(gtsam.BetweenFactorConstantBias(B(prev.index), B(i), gtsam.imuBias.ConstantBias(),
                                                          gtsam.noiseModel.Isotropic.Sigma(6, 1e-3)))
            elif self.use_imu:
                nav, pim = self._propagate(prev, t_ns)
                T_W_B, v_W, bias = nav.pose().matrix(), nav.velocity(), prev.bias
                # while the window still holds keyframes of a silence, the estimate is poorly conditioned
                imu_predicted = not any(k.imu_gap for k in self._kfs)
                graph.add(gtsam.CombinedImuFactor(X(prev.index), V(prev.index), X(i), V(i), B(prev.index), B(i),
                                                  pim))
                if still:
                    graph.add(gtsam.PriorFactorVector(V(i), np.zeros(3), gtsam.noiseModel.Isotropic.Sigma(3, 0.01)))
            else:
                T_W_B, v_W, bias = self._constant_velocity(t_ns), np.zeros(3), gtsam.imuBias.ConstantBias()
                self._motion_prior(graph, prev, i, T_W_B)
            if still:
                graph.add(gtsam.BetweenFactorPose3(X(prev.index), X(i), gtsam.Pose3(),
                                                   gtsam.noiseModel.Isotropic.Sigma(6, 1e-3)))
                T_W_B = prev.T_W_B.copy()
        if prior is None and not still:
            T_W_B = self._pnp_refine(T_W_B, feats)
        values.insert(X(i), gtsam.Pose3(T_W_B))
        stamps[X(i)] = stamp
        if self.use_imu:
            values.insert(V(i), np.asarray(v_W, float))
            values.insert(B(i), bias)
            stamps[V(i)] = stamps[B(i)] = stamp
        kf = _Keyframe(i, t_ns, T_W_B, np.asarray(v_W, float), bias, feats, still, imu_gap)
        before = {k.index: k.T_W_B[:3, 3].copy() for k in self._kfs}
        self._kfs.append(kf)
        new_factors = self._visual_factors(kf, graph, values, stamps)
        try:
            self._smoother.update(graph, values, stamps, self._pending_removal)
            indices = list(self._smoother.getISAM2Result().getNewFactorsIndices())
            self._pending_removal = []
            for position, meta in new_factors:
                self._factors[indices[position]] = meta
            self._refresh()
            removal = self._find_outliers(kf)
            if len(removal) > max(20, c.max_outlier_fraction * len(self._factors)):
                return self._reset(t_ns, f"{len(removal)} of {len(self._factors)} landmark observations disagree "
                                         "with the estimate")
            moved = (not (imu_predicted and self.stereo)
                     or len(removal) > c.reiterate_fraction * len(self._factors)
                     or np.linalg.norm(kf.T_W_B[:3, 3] - T_W_B[:3, 3]) > c.reiterate_shift_m)
            for _ in range(c.extra_iterations if moved else 0):
                self._smoother.update(gtsam.NonlinearFactorGraph(), gtsam.Values(), {}, removal)
                for idx in removal:
                    self._factors.pop(idx, None)
                removal = []
                self._refresh()
            self._pending_removal = removal  # without an extra iteration, they leave with the next update
            for idx in removal:
                self._factors.pop(idx, None)
        except RuntimeError as error:  # gtsam: indeterminant system, cheirality, ...
            return self._reset(t_ns, f"optimization failed: {error}")
        n_obs = self._count_known(feats)
        if n_obs >= c.min_landmarks or kf.still or prior is not None:
            self._last_seen_ns = t_ns
        # lost: the frontend sees too little, or no landmark has been usable for a while (a monocular
        # start needs parallax before its first landmarks, so a short wait is normal)
        few = len(feats.get(0, ((),))[0]) < c.min_landmarks or t_ns - self._last_seen_ns > c.lost_s * 1e9
        self._lost = self._lost + 1 if few else 0
        problem = self._health(kf) or self._window_jump(before)
        if problem:
            return self._reset(t_ns, problem)
        self._anchor = replace(kf, T_W_B=kf.T_W_B.copy(), v_W=np.array(kf.v_W, float))
        return self._estimate(kf, "tracking", n_obs)

    @staticmethod
    def _motion_prior(graph, prev: _Keyframe, i: int, T_W_B: np.ndarray) -> None:
        """Without IMU data: a weak constant-velocity prior between keyframes (vision does the rest)."""
        delta = gtsam.Pose3(np.linalg.inv(prev.T_W_B) @ T_W_B)
        graph.add(gtsam.BetweenFactorPose3(X(prev.index), X(i), delta, gtsam.noiseModel.Diagonal.Sigmas(
            np.array([0.3] * 3 + [1.0] * 3))))

    def _window_jump(self, before: dict[int, np.ndarray]) -> str | None:
        """Every keyframe already in the window moved far in one update. A new keyframe can correct itself,
        but what the window's older keyframes saw was settled over many updates; all of them moving together
        is a bad step along the weakly observed directions (position, yaw, and with one camera the scale).
        Seen on mono hall_loop: 0.3, 0.9, then 3 m in three keyframes, back at a 15 % wrong scale."""
        shifts = [np.linalg.norm(k.T_W_B[:3, 3] - before[k.index]) for k in self._kfs if k.index in before]
        if shifts and min(shifts) > self.config.max_window_shift_m:
            return f"the whole window moved by {min(shifts):.2f} m or more in one update"
        return None

    def _health(self, kf: _Keyframe) -> str | None:
        c = self.config
        if self._lost >= c.lost_keyframes:
            return f"fewer than {c.min_landmarks} landmarks tracked in {self._lost} keyframes"
        if not np.all(np.isfinite(kf.T_W_B)):
            return "pose estimate is not finite"
        if self.use_imu:
            if np.linalg.norm(kf.v_W) > c.max_speed_mps:
                return f"speed {np.linalg.norm(kf.v_W):.1f} m/s exceeds {c.max_speed_mps} m/s"
            if np.linalg.norm(kf.bias.gyroscope()) > c.max_gyro_bias:
                return "gyro bias out of range"
            if np.linalg.norm(kf.bias.accelerometer()) > c.max_accel_bias:
                return "accelerometer bias out of range"
        return None

    def _reset(self, t_ns: int, reason: str) -> StateEstimate:
        log.warning("estimator reset at %.3f s: %s", self._stamp(t_ns), reason)
        self.n_resets += 1
        self._reset_state()
        last = self._anchor.T_W_B if self._anchor is not None else np.eye(4)
        return StateEstimate(t_ns, last, np.zeros(3), np.zeros(3), np.zeros(3), status="reset")

    def _refresh(self) -> None:
        """Read the estimate back; forget what the smoother marginalized."""
        est = self._smoother.calculateEstimate()
        alive = set(self._smoother.timestamps().keys())
        self._kfs = [kf for kf in self._kfs if X(kf.index) in alive]
        for kf in self._kfs:
            kf.T_W_B = est.atPose3(X(kf.index)).matrix()
            if self.use_imu:
                kf.v_W = est.atVector(V(kf.index))
                kf.bias = est.atConstantBias(B(kf.index))
        alive_kf = {kf.index for kf in self._kfs}
        self._points = {n: est.atPoint3(L(n)) for n in self._points if L(n) in alive}
        self._factors = {k: f for k, f in self._factors.items() if f.keyframe in alive_kf and f.landmark in self._points}
        for tid in list(self._tracks):
            tr = self._tracks[tid]
            tr.obs = [o for o in tr.obs if o[0] in alive_kf]
            if tr.landmark is not None and tr.landmark not in self._points:
                tr.landmark = None
            elif tr.landmark is not None:
                self._map[tid] = self._points[tr.landmark]
            if not tr.obs and tr.landmark is None:
                del self._tracks[tid]

    # ------------------------------------------------------------------ vision
    def _T_W_C(self, kf: _Keyframe, cam: int) -> np.ndarray:
        return kf.T_W_B @ self.T_B_C[cam]

    def _projection_factor(self, n: int, kf: int, cam: int, uv: np.ndarray):
        return gtsam.GenericProjectionFactorCal3_S2(uv * self.focal, self._pixel_noise, X(kf), L(n), self._K,
                                                    self._body_P_cam[cam])

    def _visual_factors(self, kf: _Keyframe, graph, values, stamps) -> list[tuple[int, _Factor]]:
        """Projection factors of this keyframe (and of newly triangulated landmarks): (graph position, meta)."""
        c = self.config
        new: list[tuple[int, _Factor]] = []
        for cam, (ids, uv) in kf.features.items():
            for tid, x in zip(ids.tolist(), uv):
                self._tracks.setdefault(tid, _Track()).obs.append((kf.index, cam, x))
        by_index = {k.index: k for k in self._kfs}
        stamp = stamps[X(kf.index)]
        for tid in kf.features.get(0, (np.zeros(0, np.int64), None))[0].tolist():
            tr = self._tracks[tid]
            if tr.rejected:
                continue
            fresh = tr.landmark is None
            if fresh:
                point = self._triangulate(tr, kf, by_index)
                if point is None:
                    continue
                n, observations = self._next_landmark, tr.obs
            else:
                n, point = tr.landmark, self._points[tr.landmark]
                observations = [o for o in tr.obs if o[0] == kf.index]
            factors = []
            for kf_index, cam, x in observations:
                proj, z = project(self._T_W_C(by_index[kf_index], cam), point)
                if z[0] > c.min_depth_m and np.linalg.norm(proj[0] - x) * self.focal <= c.gate_px:
                    factors.append(_Factor(n, kf_index, cam, x))
            if not factors:
                continue
            if fresh:
                self._next_landmark += 1
                values.insert(L(n), point)
                graph.add(gtsam.PriorFactorPoint3(L(n), point, self._landmark_prior))
                tr.landmark, self._points[n] = n, point
            for f in factors:
                new.append((graph.size(), f))
                graph.add(self._projection_factor(n, f.keyframe, f.camera, f.uv))
            stamps[L(n)] = stamp
        return new

    def _pnp_refine(self, T_W_B: np.ndarray, feats) -> np.ndarray:
        """The predicted pose, corrected by RANSAC PnP on the landmarks seen in cam0 when they agree.

        A wrong velocity (a stereo start while moving, an image gap) shifts every prediction by more than
        the gate; without this, no landmark would be re-observed and the keyframe would float.
        """
        import cv2

        ids, uv = feats.get(0, (np.zeros(0, np.int64), np.zeros((0, 2))))
        known = [(self._points[tr.landmark], x) for tid, x in zip(ids.tolist(), uv)
                 if (tr := self._tracks.get(tid)) is not None and tr.landmark is not None]
        if len(known) < 8:
            return T_W_B
        points = np.array([k[0] for k in known])
        obs = np.array([k[1] for k in known])
        T_W_C = T_W_B @ self.T_B_C[0]
        T_C_W = np.linalg.inv(T_W_C)
        rvec, _ = cv2.Rodrigues(T_C_W[:3, :3])
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            points, obs, np.eye(3), None, rvec.copy(), T_C_W[:3, 3].copy(), useExtrinsicGuess=True,
            iterationsCount=50, reprojectionError=self.config.outlier_px / self.focal, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or inliers is None or len(inliers) < max(8, len(known) // 2):
            return T_W_B
        T_C_W = np.eye(4)
        T_C_W[:3, :3], T_C_W[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.ravel()
        depth = points[inliers.ravel()] @ T_C_W[2, :3] + T_C_W[2, 3]
        refined = np.linalg.inv(T_C_W) @ np.linalg.inv(self.T_B_C[0])
        shift = np.linalg.norm(refined[:3, 3] - T_W_B[:3, 3])
        turn = np.degrees(np.linalg.norm(gtsam.Rot3.Logmap(gtsam.Rot3(T_W_B[:3, :3].T @ refined[:3, :3]))))
        if np.any(depth <= self.config.min_depth_m) or shift > self.config.pnp_max_shift_m or \
                turn > self.config.pnp_max_turn_deg:
            return T_W_B
        return refined

    def _triangulate(self, tr: _Track, kf: _Keyframe, by_index) -> np.ndarray | None:
        c = self.config
        here = {cam: x for k, cam, x in tr.obs if k == kf.index}
        if self.stereo and 0 in here and 1 in here:
            p_C0, angle = triangulate_stereo(here[0][None], here[1][None], self._T_C0_C1)
            if np.degrees(angle[0]) >= c.min_stereo_angle_deg and c.min_depth_m < p_C0[0, 2] < c.max_depth_m:
                T_W_C0 = self._T_W_C(kf, 0)
                p_W = T_W_C0[:3, :3] @ p_C0[0] + T_W_C0[:3, 3]
                errors, _ = reprojection_px([T_W_C0, self._T_W_C(kf, 1)], np.array([here[0], here[1]]), p_W,
                                            self.focal)
                if np.all(errors < c.triangulation_max_px):
                    return p_W
        views = [(self._T_W_C(by_index[k], cam), x) for k, cam, x in tr.obs if k in by_index]
        if len({k for k, _, _ in tr.obs}) < 2 or len(views) < 2:
            return None
        poses, uvs = [v[0] for v in views], np.array([v[1] for v in views])
        if np.degrees(max_parallax(poses, uvs)) < c.min_parallax_deg:
            return None
        p_W = triangulate_views(poses, uvs)
        if not np.all(np.isfinite(p_W)):
            return None
        errors, depths = reprojection_px(poses, uvs, p_W, self.focal)
        if np.all(errors < c.triangulation_max_px) and np.all((depths > c.min_depth_m) & (depths < c.max_depth_m)):
            return p_W
        return None

    def _find_outliers(self, kf: _Keyframe) -> list[int]:
        """Smoother indices of the factors whose reprojection error is above ``outlier_px`` (vectorized)."""
        if not self._factors:
            return []
        poses = {(k.index, cam): self._T_W_C(k, cam) for k in self._kfs for cam in range(len(self.T_B_C))}
        idx = np.array(list(self._factors))
        metas = [self._factors[i] for i in idx]
        T = np.array([poses[m.keyframe, m.camera] for m in metas])
        p = np.array([self._points[m.landmark] for m in metas])
        uv = np.array([m.uv for m in metas])
        p_C = np.einsum("nji,nj->ni", T[:, :3, :3], p - T[:, :3, 3])
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.linalg.norm(p_C[:, :2] / p_C[:, 2:3] - uv, axis=1) * self.focal
        bad = ~(err <= self.config.outlier_px) | (p_C[:, 2] <= self.config.min_depth_m)
        return [int(i) for i in idx[bad]]
