"""Monocular visual-inertial initialization: metric scale, gravity, velocities and IMU biases from a short window.

Pipeline (VINS-Mono's initializer, Qin et al. 2018, finished like ORB-SLAM3 with a full inertial BA):

1. :func:`~slam.backend.mono_sfm.visual_sfm` - up-to-scale SfM on cam0's normalized tracks (the gyro's
   rotations guard it against the wrong essential-matrix solution of a planar scene).
2. :func:`align_visual_inertial` -
   (a) gyro bias from visual vs preintegrated rotations (linear least squares), then a BA with the relative
       rotations tied to the gyro: a monocular camera trades a small rotation for a sideways shift, the gyro
       does not, and the linear step below is only as good as the poses it gets;
   (b) linear solve for velocities, gravity (free 3-vector) and scale;
   (c) gravity refined on the sphere |g| = 9.81 (2-DoF tangent steps), jointly with
   (d) the accelerometer bias under a prior (it is barely observable in 1-2 s);
   (e) a joint visual-inertial BA (GTSAM ImuFactor + projection factors) from that solution, whose marginal
       covariance gives the scale's and gravity's uncertainty; self-checks on every stage make a bad or
       unobservable window fail with a reason, so the caller waits for more motion and retries.

:func:`initialize_mono_inertial` runs both and never raises on degenerate data.

Frames: ``C0`` is the first camera of the window, ``B0`` the body (IMU) frame at the same instant, ``W`` the
gravity-aligned world (z up): the smallest rotation from ``B0`` that takes gravity to (0, 0, -|g|), so the
heading of ``B0`` is kept and ``p_W_B0 = 0``. IMU samples must be in the body frame (T_B_S = identity).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import gtsam
import numpy as np

from slam.geometry import invert_transform, make_transform
from slam.messages import FeatureFrame, ImuSample

from .mono_sfm import DEFAULT_FOCAL_PX, SfmResult, solve_visual_sfm, visual_gyro_bundle_adjustment, visual_sfm
from .preintegration_np import (ImuArrays, Preintegrated, as_imu_arrays, preintegrate, samples_between, so3_exp,
                                so3_exp_batch, so3_log)

__all__ = ["ImuNoiseModel", "InitChecks", "Preintegrated", "SfmResult", "ViInitResult", "align_visual_inertial",
           "gravity_aligned_rotation", "initialize_mono", "initialize_mono_inertial", "preintegrate",
           "solve_visual_sfm", "visual_sfm"]

ImuInput = ImuArrays | Sequence[ImuSample] | tuple


@dataclass(frozen=True)
class ImuNoiseModel:
    """Continuous-time IMU noise (ImuCalibration's fields; defaults: EuRoC's ADIS16448) and bias priors."""

    gyro_noise_density: float = 1.6968e-4  # rad/s/sqrt(Hz)
    accel_noise_density: float = 2.0e-3  # m/s^2/sqrt(Hz)
    gyro_bias_prior_sigma: float = 0.1  # rad/s, about the caller's starting value (EuRoC's is 0.08)
    accel_bias_prior_sigma: float = 0.1  # m/s^2, about the caller's starting value


@dataclass(frozen=True)
class InitChecks:
    """Thresholds of the self-checks; a window failing any of them is rejected."""

    min_frames: int = 5
    min_points: int = 20
    max_rotation_residual_deg: float = 2.0  # RMS visual-vs-gyro rotation mismatch per interval, bias removed
    max_reprojection_rms_px: float = 2.0  # after the visual-gyro and the visual-inertial BA
    max_gravity_error: float = 0.10  # | |g| / gravity_magnitude - 1 | of the unconstrained linear solve
    min_translation_m: float = 0.05  # largest displacement of the camera in the window
    min_accel_excitation: float = 0.03  # m/s^2, std over the window of the gravity-free acceleration
    min_scale: float = 1e-3  # metres per SfM unit (= median observation depth)
    max_scale: float = 1e3
    # Of the visual-inertial BA. Its marginals are calibrated on synthetic data (error/std RMS ~1); on EuRoC
    # V1_01 the errors were ~1.7x the std (unmodelled vibration, sync, calibration), and 1.5 % kept them < 5 %.
    max_scale_rel_std: float = 0.015
    max_gravity_std_deg: float = 1.0
    max_scale_change: float = 0.5  # linear vs visual-inertial BA: larger means one of them is lost
    max_imu_chi2: float = 1.0  # mean chi^2 of an IMU factor after the BA: 0.01-0.3 when the model fits,
    # 1-2 with a camera-IMU rotation 5 deg off (the BA bends everything else to absorb it)
    max_gyro_bias: float = 0.2  # rad/s
    max_accel_bias: float = 0.5  # m/s^2


@dataclass(frozen=True, eq=False)
class ViInitResult:
    """Outcome of an initialization attempt; on failure ``reason`` says why, and whatever was estimated
    before the failing check is filled in (NaN / None otherwise) for diagnostics."""

    success: bool
    reason: str
    t_ns: np.ndarray | None = None  # (n,) frame stamps
    scale: float = math.nan  # metres per SfM unit of ``sfm`` (= metric median observation depth)
    gravity: np.ndarray | None = None  # (3,) gravity in the first body frame B0, m/s^2
    R_W_B0: np.ndarray | None = None  # (3, 3) first body frame in the gravity-aligned world
    T_W_Bk: np.ndarray | None = None  # (n, 4, 4) metric body poses, p_W_B0 = 0
    v_W: np.ndarray | None = None  # (n, 3) body velocities in the world
    gyro_bias: np.ndarray | None = None  # (3,) rad/s
    accel_bias: np.ndarray | None = None  # (3,) m/s^2 (close to the prior when the motion does not reveal it)
    diagnostics: dict = field(default_factory=dict)
    sfm: SfmResult | None = None  # the reconstruction used (refined with the gyro when that was on)

    @property
    def T_W_B(self) -> np.ndarray | None:
        """Alias of ``T_W_Bk`` (the estimator's name)."""
        return self.T_W_Bk


# ------------------------------------------------------------------------------ linear alignment


def _gyro_bias_solve(R_B: np.ndarray, pre: Sequence[Preintegrated], bg: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Bias update minimizing Log(dR(bg)^T R_Bk^T R_Bk+1) over the intervals (first order in the bias);
    returns it and the RMS residual before/after [rad]."""
    A = np.concatenate([p.J_R_bg for p in pre])
    r = np.concatenate([so3_log(p.corrected(bg, p.accel_bias)[0].T @ R_B[k].T @ R_B[k + 1])
                        for k, p in enumerate(pre)])
    delta = np.linalg.lstsq(A, r, rcond=None)[0]

    def rms(x):
        return float(np.sqrt(np.mean(np.sum(x.reshape(-1, 3) ** 2, axis=1))))

    return delta, rms(r), rms(r - A @ delta)


def _tangent_basis(g: np.ndarray) -> np.ndarray:
    """Two unit vectors orthogonal to g (3x2)."""
    a = g / np.linalg.norm(g)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    b1 = np.cross(a, helper)
    b1 /= np.linalg.norm(b1)
    return np.stack([b1, np.cross(a, b1)], axis=1)


def _alignment_system(R_B, R_C, p_bar, lever_C, pre, sigma_p, sigma_v, g_fixed, with_ba, ba_prior_sigma):
    """Whitened linear system for x = [v_0..v_n-1 (C0 frame), gravity terms, s, (dba)].

    Per interval k (C0 frame, R_k = R_C0_Bk, p_Bk = s p_bar_k + R_C0_Ck lever_C):
        s (p_bar_k+1 - p_bar_k) - dt v_k - dt^2/2 g - R_k J_p_ba dba = R_k dp_k - (R_C0_Ck+1 - R_C0_Ck) lever_C
        v_k+1 - v_k - dt g - R_k J_v_ba dba = R_k dv_k
    rows whitened by ``sigma_p[k]`` [m] and ``sigma_v[k]`` [m/s]. With ``g_fixed`` None gravity is 3 free
    unknowns; else g = g_fixed + B w with w the 2-DoF tangent step. The deltas are exactly linear in the
    accelerometer bias (it does not touch the rotations), so its Jacobians need no re-integration.
    """
    n = len(R_B)
    ng = 3 if g_fixed is None else 2
    G = np.eye(3) if g_fixed is None else _tangent_basis(g_fixed)
    g0 = np.zeros(3) if g_fixed is None else g_fixed
    i_g, i_s, i_ba = 3 * n, 3 * n + ng, 3 * n + ng + 1
    A = np.zeros((6 * (n - 1) + (3 if with_ba else 0), i_ba + (3 if with_ba else 0)))
    b = np.zeros(len(A))
    for k, p in enumerate(pre):
        dt, rp, rv = p.dt, slice(6 * k, 6 * k + 3), slice(6 * k + 3, 6 * k + 6)
        A[rp, i_s] = p_bar[k + 1] - p_bar[k]
        A[rp, 3 * k:3 * k + 3] = -dt * np.eye(3)
        A[rp, i_g:i_g + ng] = -0.5 * dt * dt * G
        b[rp] = R_B[k] @ p.dp - (R_C[k + 1] - R_C[k]) @ lever_C + 0.5 * dt * dt * g0
        A[rv, 3 * k + 3:3 * k + 6] = np.eye(3)
        A[rv, 3 * k:3 * k + 3] = -np.eye(3)
        A[rv, i_g:i_g + ng] = -dt * G
        b[rv] = R_B[k] @ p.dv + dt * g0
        if with_ba:
            A[rp, i_ba:] = -R_B[k] @ p.J_p_ba
            A[rv, i_ba:] = -R_B[k] @ p.J_v_ba
        A[rp], b[rp] = A[rp] / sigma_p[k], b[rp] / sigma_p[k]
        A[rv], b[rv] = A[rv] / sigma_v[k], b[rv] / sigma_v[k]
    if with_ba:  # prior dba ~ N(0, sigma^2) about the caller's bias
        A[-3:, i_ba:] = np.eye(3) / ba_prior_sigma
    return A, b, (i_g, ng, i_s, i_ba)


def _solve(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Least squares with column equilibration; returns x, covariance (a posteriori, never below the assumed
    noise), condition number and whitened residual RMS."""
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    As = A / norms
    x_s, _, _, sv = np.linalg.lstsq(As, b, rcond=None)
    x = x_s / norms
    residual = b - A @ x
    variance = float(residual @ residual) / max(len(b) - A.shape[1], 1)
    cond = float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf
    try:
        cov = np.linalg.inv(As.T @ As) / np.outer(norms, norms) * max(variance, 1.0)
    except np.linalg.LinAlgError:
        cov = np.full((A.shape[1],) * 2, np.inf)
    return x, cov, cond, math.sqrt(float(residual @ residual) / len(b))


def gravity_aligned_rotation(gravity_B: np.ndarray) -> np.ndarray:
    """R_W_B: the smallest rotation taking ``gravity_B`` to (0, 0, -1) |g| (keeps the body's heading)."""
    a = gravity_B / np.linalg.norm(gravity_B)
    target = np.array([0.0, 0.0, -1.0])
    axis = np.cross(a, target)
    s, c = np.linalg.norm(axis), float(a @ target)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])  # upside down: half turn about x
    return so3_exp(axis / s * math.atan2(s, c))


# ------------------------------------------------------------------------- visual-inertial BA


def _gtsam_preintegration(imu: ImuArrays, t0_ns: int, t1_ns: int, params, bias) -> gtsam.PreintegratedImuMeasurements:
    """GTSAM's preintegration over [t0, t1] fed with the same interpolated, midpoint-averaged samples."""
    stamps, gyro, accel = samples_between(imu, t0_ns, t1_ns)
    pim = gtsam.PreintegratedImuMeasurements(params, bias)
    steps = np.diff(stamps) * 1e-9
    omega = 0.5 * (gyro[1:] + gyro[:-1])
    # GTSAM rotates each step's specific force by the rotation at the step's start; turning it by half a step
    # first gives the midpoint rotation (10x smaller velocity error when turning at ~1 rad/s).
    acc = np.einsum("nij,nj->ni", so3_exp_batch(0.5 * steps[:, None] * omega), 0.5 * (accel[1:] + accel[:-1]))
    for a, w, h in zip(acc, omega, steps.tolist()):
        if h > 0:
            pim.integrateMeasurement(a, w, h)
    return pim


def _visual_inertial_ba(sfm: SfmResult, T_B_C: np.ndarray, imu: ImuArrays, T_W_B: np.ndarray, v_W: np.ndarray,
                        points_W: np.ndarray, bg: np.ndarray, ba: np.ndarray, bg_prior: np.ndarray,
                        ba_prior: np.ndarray, gravity_magnitude: float, noise: ImuNoiseModel,
                        iterations: int) -> dict:
    """Joint BA of metric body poses, velocities, one bias pair and the landmarks (ORB-SLAM3's full inertial BA
    after its initialization). Position and yaw of the first pose are held (unobservable); roll and pitch are
    free, so gravity's direction is estimated. The bias prior is centred on the caller's values, not on the
    linear estimate, which came from these same measurements. Returns estimates and uncertainties."""
    X, V, L, B = (gtsam.symbol_shorthand.X, gtsam.symbol_shorthand.V, gtsam.symbol_shorthand.L,
                  gtsam.symbol_shorthand.B)
    n = len(T_W_B)
    params = gtsam.PreintegrationParams.MakeSharedU(gravity_magnitude)
    params.setAccelerometerCovariance(noise.accel_noise_density ** 2 * np.eye(3))
    params.setGyroscopeCovariance(noise.gyro_noise_density ** 2 * np.eye(3))
    params.setIntegrationCovariance(1e-8 * np.eye(3))
    bias0 = gtsam.imuBias.ConstantBias(ba, bg)
    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    for k in range(n):
        values.insert(X(k), gtsam.Pose3(T_W_B[k]))
        values.insert(V(k), v_W[k])
    values.insert(B(0), bias0)
    for k in range(n - 1):  # first in the graph: factor k is interval k
        pim = _gtsam_preintegration(imu, int(sfm.t_ns[k]), int(sfm.t_ns[k + 1]), params, bias0)
        graph.add(gtsam.ImuFactor(X(k), V(k), X(k + 1), V(k + 1), B(0), pim))
    graph.add(gtsam.PriorFactorConstantBias(B(0), gtsam.imuBias.ConstantBias(ba_prior, bg_prior),
                                            gtsam.noiseModel.Diagonal.Sigmas(np.r_[
                                                np.full(3, noise.accel_bias_prior_sigma),
                                                np.full(3, noise.gyro_bias_prior_sigma)])))
    # Gauge: hold the position and the yaw (rotation about world z = body axis R_W_B0^T e_z) of the first pose.
    up_B0 = T_W_B[0, :3, :3].T @ np.array([0.0, 0.0, 1.0])
    info = np.zeros((6, 6))
    info[:3, :3] = np.outer(up_B0, up_B0) / 1e-6 ** 2 + (np.eye(3) - np.outer(up_B0, up_B0))
    info[3:, 3:] = np.eye(3) / 1e-6 ** 2
    graph.add(gtsam.PriorFactorPose3(X(0), gtsam.Pose3(T_W_B[0]), gtsam.noiseModel.Gaussian.Information(info)))
    calibration = gtsam.Cal3_S2(1.0, 1.0, 0.0, 0.0, 0.0)
    pixel = gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Huber.Create(1.345),
                                           gtsam.noiseModel.Isotropic.Sigma(2, 1.0 / sfm.focal_px))
    point_prior = gtsam.noiseModel.Isotropic.Sigma(3, 100.0 * float(np.median(np.abs(points_W - T_W_B[0, :3, 3]))))
    body_P_camera = gtsam.Pose3(T_B_C)
    for j, p in enumerate(points_W):
        values.insert(L(j), p)
        graph.add(gtsam.PriorFactorPoint3(L(j), p, point_prior))  # keeps a barely seen point from singularity
    for k, j, uv in zip(sfm.obs_frame.tolist(), sfm.obs_point.tolist(), sfm.obs_uv):
        graph.add(gtsam.GenericProjectionFactorCal3_S2(uv, pixel, X(k), L(j), calibration, body_P_camera))
    lm = gtsam.LevenbergMarquardtParams()
    lm.setMaxIterations(iterations)
    lm.setRelativeErrorTol(1e-6)
    optimizer = gtsam.LevenbergMarquardtOptimizer(graph, values, lm)
    result = optimizer.optimize()

    T_W_B = np.stack([result.atPose3(X(k)).matrix() for k in range(n)])
    bias = result.atConstantBias(B(0))
    imu_chi2 = [2.0 * graph.at(k).error(result) for k in range(n - 1)]
    # Uncertainty of what the checks judge: the scale (the displacement to the farthest frame) and gravity's
    # direction (roll and pitch of the first pose).
    marginals = gtsam.Marginals(graph, result)
    far = int(np.argmax(np.linalg.norm(T_W_B[:, :3, 3] - T_W_B[0, :3, 3], axis=1)))
    d = T_W_B[far, :3, 3] - T_W_B[0, :3, 3]
    cov_p = T_W_B[far, :3, :3] @ marginals.marginalCovariance(X(far))[3:, 3:] @ T_W_B[far, :3, :3].T
    tilt = np.eye(3) - np.outer(up_B0, up_B0)
    cov_tilt = tilt @ marginals.marginalCovariance(X(0))[:3, :3] @ tilt
    cov_bias = marginals.marginalCovariance(B(0))  # (accelerometer, gyroscope)
    return dict(T_W_B=T_W_B, v_W=np.stack([result.atVector(V(k)) for k in range(n)]),
                points_W=np.stack([result.atPoint3(L(j)) for j in range(len(points_W))]),
                gyro_bias=bias.gyroscope(), accel_bias=bias.accelerometer(),
                scale_rel_std=float(math.sqrt(d @ cov_p @ d) / (d @ d)),
                gravity_std_deg=float(math.degrees(math.sqrt(np.linalg.eigvalsh(cov_tilt).max()))),
                gyro_bias_std=np.sqrt(np.diag(cov_bias)[3:]), accel_bias_std=np.sqrt(np.diag(cov_bias)[:3]),
                imu_chi2=float(np.mean(imu_chi2)), iterations=optimizer.iterations())


# ---------------------------------------------------------------------------------------- API


def align_visual_inertial(sfm: SfmResult, T_B_C: np.ndarray, imu: ImuInput, gravity_magnitude: float = 9.81,
                          gyro_bias: np.ndarray | None = None, accel_bias: np.ndarray | None = None,
                          imu_noise: ImuNoiseModel = ImuNoiseModel(), checks: InitChecks = InitChecks(),
                          estimate_accel_bias: bool = True, refine_with_gyro: bool = True,
                          refine_visual_inertial: bool = True, gravity_iterations: int = 4,
                          vi_ba_iterations: int = 20, preintegrated: Sequence[Preintegrated] | None = None
                          ) -> ViInitResult:
    """Metric scale, gravity, velocities and biases from an up-to-scale SfM window and body-frame IMU samples.

    ``T_B_C``: cam0's pose in the body (IMU) frame; its lever arm enters the position equations.
    ``gyro_bias``/``accel_bias``: prior means and starting values (zero if None). ``imu_noise``: densities
    and bias priors. ``preintegrated``: the IMU between consecutive frames at those biases, if already at
    hand. The stages (see the module doc) can be switched off for comparison; the default runs all.
    """
    start = time.perf_counter()
    diag: dict = {"sfm_rms_px": sfm.reprojection_rms_px, "sfm_points": sfm.num_points}
    n = len(sfm.t_ns)

    def fail(reason: str, **partial) -> ViInitResult:
        diag["align_ms"] = 1e3 * (time.perf_counter() - start)
        return ViInitResult(False, reason, sfm.t_ns, diagnostics=diag, sfm=sfm, **partial)

    if n < checks.min_frames:
        return fail(f"only {n} frames (need {checks.min_frames})")
    if sfm.num_points < checks.min_points:
        return fail(f"only {sfm.num_points} points (need {checks.min_points})")
    imu = as_imu_arrays(imu)
    if len(imu.t_ns) < 2 or imu.t_ns[0] > sfm.t_ns[0] or imu.t_ns[-1] < sfm.t_ns[-1]:
        return fail("IMU data does not cover the frame window")
    T_B_C = np.asarray(T_B_C, dtype=np.float64)
    R_B_C, R_C_B = T_B_C[:3, :3], T_B_C[:3, :3].T
    lever_C = -R_C_B @ T_B_C[:3, 3]  # body origin in the camera frame
    bg_prior = np.zeros(3) if gyro_bias is None else np.asarray(gyro_bias, dtype=np.float64).reshape(3)
    ba_prior = np.zeros(3) if accel_bias is None else np.asarray(accel_bias, dtype=np.float64).reshape(3)

    # (a) Gyro bias: the gyro must reproduce the visual relative rotations.
    pre = list(preintegrated) if preintegrated is not None else [
        preintegrate(imu, sfm.t_ns[k], sfm.t_ns[k + 1], bg_prior, ba_prior) for k in range(n - 1)]
    R_B = sfm.T_C0_C[:, :3, :3] @ R_C_B  # R_C0_Bk
    delta, rot_before, rot_after = _gyro_bias_solve(R_B, pre, bg_prior)
    bg = bg_prior + delta
    diag.update(rotation_rms_deg_before=math.degrees(rot_before), rotation_rms_deg=math.degrees(rot_after))
    if math.degrees(rot_after) > checks.max_rotation_residual_deg:
        return fail(f"visual and gyro rotations disagree by {math.degrees(rot_after):.2f} deg RMS "
                    "(wrong reconstruction, extrinsic or time offset?)", gyro_bias=bg)
    if refine_with_gyro:
        sfm, bg = visual_gyro_bundle_adjustment(sfm, R_C_B, pre, bg, imu_noise.gyro_noise_density,
                                                imu_noise.gyro_bias_prior_sigma)
        diag.update(gyro_ba_rms_px=sfm.reprojection_rms_px, gyro_ba_points=sfm.num_points)
        if sfm.reprojection_rms_px > checks.max_reprojection_rms_px or sfm.num_points < checks.min_points:
            return fail(f"visual-gyro BA: reprojection RMS {sfm.reprojection_rms_px:.2f} px with "
                        f"{sfm.num_points} points", gyro_bias=bg)
    if np.linalg.norm(bg) > checks.max_gyro_bias:
        return fail(f"implausible gyro bias {np.linalg.norm(bg):.3f} rad/s", gyro_bias=bg)
    pre = [p.rebiased(bg, ba_prior) for p in pre]  # the bias moved by mrad/s: first order is exact enough
    R_C = sfm.T_C0_C[:, :3, :3]
    R_B = R_C @ R_C_B
    p_bar = sfm.T_C0_C[:, :3, 3]
    _, _, rot_final = _gyro_bias_solve(R_B, pre, bg)
    diag["final_rotation_rms_deg"] = math.degrees(rot_final)

    # Excitation: without acceleration changes scale and gravity cannot be told apart (constant velocity).
    accel_C0 = np.array([R_B[k] @ p.dv / p.dt for k, p in enumerate(pre)])
    excitation = float(np.sqrt(np.sum(np.var(accel_C0, axis=0))))
    diag["accel_excitation"] = excitation

    # Weights: the remaining rotation residual measures the rotation noise, which tilts each dv by that
    # angle; the visual position noise is that angle times the scene depth (= scale: the SfM unit is the
    # median depth), as rotation and translation trade off in a camera pose.
    sigma_rot = max(rot_final / math.sqrt(2.0), 1e-4)
    dts = np.array([p.dt for p in pre])
    dv_norm = np.array([np.linalg.norm(p.dv) for p in pre])
    sigma_v = np.sqrt(imu_noise.accel_noise_density ** 2 * dts + (sigma_rot * dv_norm) ** 2)
    if not estimate_accel_bias:  # an unmodelled bias of the prior's size
        sigma_v = np.hypot(sigma_v, imu_noise.accel_bias_prior_sigma * dts)

    def sigma_p(scale):
        return np.full(n - 1, max(math.sqrt(2.0) * sigma_rot * scale, 1e-3))

    # (b) Linear solve: velocities, free gravity, scale (position weights assume a 3 m deep scene).
    A, b, (i_g, _, i_s, _) = _alignment_system(R_B, R_C, p_bar, lever_C, pre, sigma_p(3.0), sigma_v, None,
                                               False, 1.0)
    x, _, cond, _ = _solve(A, b)
    g_linear, s_linear = x[i_g:i_g + 3], float(x[i_s])
    diag.update(linear_condition=cond, linear_scale=s_linear, linear_gravity_norm=float(np.linalg.norm(g_linear)))
    if not s_linear > 0:
        return fail(f"linear alignment gave a non-positive scale {s_linear:.3g}", gyro_bias=bg)
    g_error = abs(np.linalg.norm(g_linear) / gravity_magnitude - 1.0)
    if g_error > checks.max_gravity_error:
        return fail(f"linear alignment gravity |g| = {np.linalg.norm(g_linear):.2f} m/s^2 is "
                    f"{100 * g_error:.0f} % off {gravity_magnitude}", gyro_bias=bg, scale=s_linear)

    # (c, d) Gravity on the sphere (2-DoF tangent steps) with the accelerometer bias under its prior.
    g = g_linear / np.linalg.norm(g_linear) * gravity_magnitude
    for _ in range(gravity_iterations):
        A, b, (i_g, _, i_s, i_ba) = _alignment_system(R_B, R_C, p_bar, lever_C, pre, sigma_p(s_linear), sigma_v,
                                                      g, estimate_accel_bias, imu_noise.accel_bias_prior_sigma)
        x, cov, cond, whitened_rms = _solve(A, b)
        g = g + _tangent_basis(g) @ x[i_g:i_g + 2]
        g = g / np.linalg.norm(g) * gravity_magnitude
    ba = ba_prior + (x[i_ba:i_ba + 3] if estimate_accel_bias else 0.0)
    scale = float(x[i_s])
    diag.update(refined_condition=cond, refined_whitened_rms=whitened_rms, refined_scale=scale,
                refined_scale_rel_std=float(math.sqrt(cov[i_s, i_s]) / abs(scale)))

    # Linear solution in the output frames: body B0 first, then the gravity-aligned world.
    g_B0 = R_B_C @ g
    R_W_B0 = gravity_aligned_rotation(g_B0)
    R_W_C0 = R_W_B0 @ R_B_C
    p_C0_B = scale * p_bar + R_C @ lever_C  # body positions in C0, metric
    T_W_Bk = make_transform(R_W_C0 @ R_B, (p_C0_B - p_C0_B[0]) @ R_W_C0.T)
    v_W = x[:3 * n].reshape(n, 3) @ R_W_C0.T
    translation = float(np.max(np.linalg.norm(scale * (p_bar - p_bar[0]), axis=1)))
    diag["translation_m"] = translation
    estimate = dict(scale=scale, gravity=g_B0, R_W_B0=R_W_B0, T_W_Bk=T_W_Bk, v_W=v_W, gyro_bias=bg, accel_bias=ba)
    if excitation < checks.min_accel_excitation:
        return fail(f"too little acceleration change ({excitation:.3f} m/s^2): scale not observable", **estimate)
    if not checks.min_scale <= scale <= checks.max_scale:
        return fail(f"implausible scale {scale:.3g}", **estimate)
    if translation < checks.min_translation_m:
        return fail(f"camera moved only {100 * translation:.1f} cm", **estimate)
    scale_rel_std, gravity_std_deg = diag["refined_scale_rel_std"], math.nan

    # (e) Joint visual-inertial BA from the linear solution.
    if refine_visual_inertial:
        points_W = (scale * sfm.points_C0 - p_C0_B[0]) @ R_W_C0.T
        try:
            vba = _visual_inertial_ba(sfm, T_B_C, imu, T_W_Bk, v_W, points_W, bg, ba, bg_prior, ba_prior,
                                      gravity_magnitude, imu_noise, vi_ba_iterations)
        except RuntimeError as exc:  # GTSAM: indeterminate system (a variable without constraint)
            return fail(f"visual-inertial BA failed: {str(exc).strip().splitlines()[0]}", **estimate)
        R_W_B0_ba = vba["T_W_B"][0, :3, :3]
        g_B0 = R_W_B0_ba.T @ np.array([0.0, 0.0, -gravity_magnitude])
        R_W_B0 = gravity_aligned_rotation(g_B0)
        yaw_fix = make_transform(R_W_B0 @ R_W_B0_ba.T, np.zeros(3))  # keep the heading convention exactly
        T_W_Bk = yaw_fix @ vba["T_W_B"]
        T_C_W = invert_transform(T_W_Bk @ T_B_C)[sfm.obs_frame]
        points_W = vba["points_W"] @ yaw_fix[:3, :3].T
        p_C = np.einsum("kij,kj->ki", T_C_W[:, :3, :3], points_W[sfm.obs_point]) + T_C_W[:, :3, 3]
        rms_px = float(np.sqrt(np.mean(np.sum((p_C[:, :2] / p_C[:, 2:] - sfm.obs_uv) ** 2, axis=1)))) * sfm.focal_px
        scale_ba = float(np.median(p_C[:, 2]))  # the SfM unit is the median observation depth
        cos = float(g_B0 @ estimate["gravity"]) / gravity_magnitude ** 2
        scale_rel_std, gravity_std_deg = vba["scale_rel_std"], vba["gravity_std_deg"]
        diag.update(vi_ba_rms_px=rms_px, vi_ba_imu_chi2=vba["imu_chi2"], vi_ba_iterations=vba["iterations"],
                    gyro_bias_std=vba["gyro_bias_std"], accel_bias_std=vba["accel_bias_std"],
                    scale_change=abs(scale_ba / scale - 1.0),
                    gravity_change_deg=math.degrees(math.acos(min(1.0, cos))))
        estimate = dict(scale=scale_ba, gravity=g_B0, R_W_B0=R_W_B0, T_W_Bk=T_W_Bk,
                        v_W=vba["v_W"] @ yaw_fix[:3, :3].T, gyro_bias=vba["gyro_bias"], accel_bias=vba["accel_bias"])
        if rms_px > checks.max_reprojection_rms_px:
            return fail(f"visual-inertial BA: reprojection RMS {rms_px:.2f} px", **estimate)
        if vba["imu_chi2"] > checks.max_imu_chi2:
            return fail(f"visual-inertial BA: IMU residuals too large (chi2 {vba['imu_chi2']:.1f})", **estimate)
        if diag["scale_change"] > checks.max_scale_change:
            return fail(f"linear and visual-inertial scale differ by {100 * diag['scale_change']:.0f} %", **estimate)
    diag.update(scale_rel_std=scale_rel_std, gravity_std_deg=gravity_std_deg)

    if scale_rel_std > checks.max_scale_rel_std:
        return fail(f"scale too uncertain ({100 * scale_rel_std:.1f} % std): needs more acceleration", **estimate)
    if gravity_std_deg > checks.max_gravity_std_deg:
        return fail(f"gravity direction too uncertain ({gravity_std_deg:.2f} deg std)", **estimate)
    if np.linalg.norm(estimate["gyro_bias"]) > checks.max_gyro_bias:
        return fail(f"implausible gyro bias {np.linalg.norm(estimate['gyro_bias']):.3f} rad/s", **estimate)
    if np.linalg.norm(estimate["accel_bias"]) > checks.max_accel_bias:
        return fail(f"implausible accelerometer bias {np.linalg.norm(estimate['accel_bias']):.2f} m/s^2", **estimate)
    diag["align_ms"] = 1e3 * (time.perf_counter() - start)
    return ViInitResult(True, "", sfm.t_ns, diagnostics=diag, sfm=sfm, **estimate)


def initialize_mono_inertial(frames: Sequence[FeatureFrame], imu: ImuInput, T_B_C: np.ndarray,
                             gravity_magnitude: float = 9.81, gyro_bias: np.ndarray | None = None,
                             focal_px: float = DEFAULT_FOCAL_PX, min_parallax_px: float = 20.0,
                             **align_options) -> ViInitResult:
    """Visual SfM on cam0's tracks (guarded by the gyro's rotations), then :func:`align_visual_inertial`.

    Never raises on degenerate input: ``success=False`` and a ``reason`` instead. ``diagnostics["time_ms"]``
    is the wall time of the call.
    """
    start = time.perf_counter()
    try:
        imu = as_imu_arrays(imu)
        t_ns = [f.t_ns for f in frames]
        if len(frames) < 2 or len(imu.t_ns) < 2 or imu.t_ns[0] > t_ns[0] or imu.t_ns[-1] < t_ns[-1]:
            result = ViInitResult(False, f"IMU data does not cover the {len(frames)} frames" if len(frames) >= 2
                                  else f"only {len(frames)} frames")
        else:
            R_C_B = np.asarray(T_B_C, dtype=np.float64)[:3, :3].T
            accel_bias = align_options.pop("accel_bias", None)
            pre = [preintegrate(imu, t_ns[k], t_ns[k + 1], gyro_bias, accel_bias) for k in range(len(frames) - 1)]
            relative_rotations = np.stack([R_C_B @ p.dR @ R_C_B.T for p in pre])
            # No final visual BA here: the visual-gyro BA in the alignment does that job better.
            sfm, reason = solve_visual_sfm(frames, min_parallax_px, focal_px, relative_rotations=relative_rotations,
                                           final_ba=False)
            if sfm is None:
                result = ViInitResult(False, f"visual SfM: {reason}")
            else:
                result = align_visual_inertial(sfm, T_B_C, imu, gravity_magnitude, gyro_bias, accel_bias,
                                               preintegrated=pre, **align_options)
    except (cv2.error, np.linalg.LinAlgError, RuntimeError) as exc:  # numerical breakdown on odd input
        result = ViInitResult(False, f"numerical failure: {str(exc).strip().splitlines()[0]}")
    result.diagnostics["time_ms"] = 1e3 * (time.perf_counter() - start)
    return result


def initialize_mono(window: Sequence[tuple[int, dict]], T_B_C: np.ndarray, imu, focal_px: float,
                    **options) -> ViInitResult:
    """:func:`initialize_mono_inertial` for the estimator: ``window`` holds ``(t_ns, {camera: (ids, uv)})`` per
    keyframe (normalized cam0 coordinates), ``imu`` anything with ``window(t0_ns, t1_ns) -> (t_ns, [gyro |
    accel])`` (the estimator's ImuBuffer) or what :func:`initialize_mono_inertial` takes."""
    frames = [FeatureFrame(int(t), 0, np.asarray(feats[0][0], np.int64), np.asarray(feats[0][1], float), True, k)
              for k, (t, feats) in enumerate(window) if 0 in feats]
    if hasattr(imu, "window") and frames:
        margin = int(0.1e9)
        t, data = imu.window(frames[0].t_ns - margin, frames[-1].t_ns + margin)
        imu = ImuArrays(np.asarray(t, np.int64), np.asarray(data)[:, :3], np.asarray(data)[:, 3:6])
    return initialize_mono_inertial(frames, imu, T_B_C, focal_px=focal_px, **options)
