"""Monocular visual-inertial initialization on synthetic windows (analytic motion, no rendering) and real tracks.

Landmarks lie on the walls, floor and ceiling of an 8 x 6 x 3 m room; cam0 of the EuRoC rig sees them as
undistorted normalized coordinates with 0.8 px noise and 3 % gross outliers, tracked like a KLT tracker
(features leave the view, new ones are added); the IMU has EuRoC noise and biases. A window that succeeds must
be accurate; degenerate or unobservable windows must fail with a reason and never raise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from conftest import EUROC_FEATURES, EUROC_GT, require
from slam.backend.preintegration_np import ImuArrays, as_imu_arrays, preintegrate, so3_exp, so3_log
from slam.backend.vi_init import (InitChecks, align_visual_inertial, gravity_aligned_rotation, initialize_mono,
                                  initialize_mono_inertial, solve_visual_sfm, visual_sfm)
from slam.datasets.synthetic.imu import GRAVITY_W, ImuNoise, ideal, simulate
from slam.datasets.synthetic.rig import stereo_rig
from slam.datasets.synthetic.trajectory import MOTIONS, MotionState
from slam.geometry import make_transform, quat_to_rot, rotation_angle
from slam.messages import FeatureFrame, ImuSample

CAM0 = stereo_rig()[0]
FX, FY, CX, CY = CAM0.intrinsics
T_B_C = CAM0.T_B_C
IMU_RATE_HZ = 200.0
LAX = InitChecks(max_scale_rel_std=1.0, max_gravity_std_deg=10.0)  # to look at estimates the checks refuse


# ------------------------------------------------------------------------------------ synthetic data


def room_landmarks(rng: np.random.Generator, count: int = 4000) -> np.ndarray:
    """Points spread over the six faces of the room x in [-4, 4], y in [-3, 3], z in [0, 3] (area-weighted)."""
    lo, hi = np.array([-4.0, -3.0, 0.0]), np.array([4.0, 3.0, 3.0])
    size = hi - lo
    faces = [(axis, side) for axis in range(3) for side in (0, 1)]
    areas = np.array([np.prod(np.delete(size, axis)) for axis, _ in faces])
    face = rng.choice(len(faces), count, p=areas / areas.sum())
    points = lo + rng.uniform(size=(count, 3)) * size
    for f, (axis, side) in enumerate(faces):
        points[face == f, axis] = (lo, hi)[side][axis]
    return points


def agile_mav(seed: int, speedup: float = 2.0):
    """The MAV preset played ``speedup`` times faster: ~1 m/s and ~1 m/s^2 instead of ~0.5 m/s and ~0.3 m/s^2,
    enough acceleration change for the scale to be observable within 2 s (the plain preset needs ~4 s)."""
    motion = MOTIONS["mav"](seed, static_s=0.0)

    def evaluate(t):
        s = motion.evaluate(np.asarray(t) * speedup)
        return MotionState(s.p_W, speedup * s.v_W, speedup ** 2 * s.a_W, s.R_W_B, speedup * s.omega_B)

    return evaluate


def static_motion(t: np.ndarray) -> MotionState:
    state = MOTIONS["mav"](0, static_s=0.0).evaluate(np.full(len(t), 5.0))
    zero = np.zeros((len(t), 3))
    return MotionState(state.p_W, zero, zero, state.R_W_B, zero)


def rotation_only_motion(t: np.ndarray) -> MotionState:
    """The MAV's attitude changes (about 1 rad in 1.5 s), the IMU centre stays put."""
    state = MOTIONS["mav"](1, static_s=0.0).evaluate(t)
    zero = np.zeros((len(t), 3))
    return MotionState(np.broadcast_to(state.p_W[:1], (len(t), 3)).copy(), zero, zero, state.R_W_B, state.omega_B)


def constant_velocity_motion(t: np.ndarray) -> MotionState:
    """Straight line at 0.8 m/s with the MAV's attitude changes: no acceleration, so no metric scale."""
    state = MOTIONS["mav"](2, static_s=0.0).evaluate(t)
    v = np.array([0.6, 0.5, 0.1])
    p = np.array([-1.0, -0.5, 1.3]) + (t - 8.0)[:, None] * v
    return MotionState(p, np.broadcast_to(v, (len(t), 3)).copy(), np.zeros((len(t), 3)), state.R_W_B, state.omega_B)


@dataclass
class Window:
    frames: list[FeatureFrame]
    imu: ImuArrays
    truth: MotionState  # at the frame stamps
    gyro_bias: np.ndarray  # true biases at the window start
    accel_bias: np.ndarray


def make_window(seed: int, start_s: float, duration_s: float = 2.0, num_frames: int = 10, motion=None,
                features: int = 120, noise_px: float = 0.8, outlier_fraction: float = 0.03,
                imu_noise: ImuNoise = ImuNoise()) -> Window:
    """A keyframe window of a simulated tracker: ``features`` tracks per frame, lost tracks replaced."""
    rng = np.random.default_rng(seed)
    evaluate = motion or agile_mav(seed)
    # Camera stamps deliberately off the 200 Hz IMU grid (interpolation at the ends of each interval).
    t_frames = start_s + np.linspace(0.0, duration_s, num_frames) + 0.0017
    t_ns = np.round(t_frames * 1e9).astype(np.int64)
    truth = evaluate(t_ns * 1e-9)

    landmarks = room_landmarks(rng)
    outlier_rng = np.random.default_rng(seed + 1000)  # own stream: the same window with and without outliers
    frames, active = [], np.zeros(0, dtype=np.int64)
    for k in range(num_frames):
        T_W_C = make_transform(truth.R_W_B[k], truth.p_W[k]) @ T_B_C
        p_C = (landmarks - T_W_C[:3, 3]) @ T_W_C[:3, :3]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = p_C[:, :2] / p_C[:, 2:]
        u, v = FX * xy[:, 0] + CX, FY * xy[:, 1] + CY
        visible = (p_C[:, 2] > 0.3) & (u > 10) & (u < CAM0.width - 10) & (v > 10) & (v < CAM0.height - 10)
        active = active[visible[active]]
        fresh = np.setdiff1d(np.flatnonzero(visible), active)
        active = np.concatenate([active, rng.permutation(fresh)[:max(features - len(active), 0)]])
        uv = xy[active] + rng.normal(0.0, noise_px, (len(active), 2)) / np.array([FX, FY])
        wrong = outlier_rng.uniform(size=len(active)) < outlier_fraction
        uv[wrong] = (outlier_rng.uniform([0, 0], [CAM0.width, CAM0.height], (wrong.sum(), 2)) - [CX, CY]) / [FX, FY]
        frames.append(FeatureFrame(int(t_ns[k]), 0, active.copy(), uv, True, k))

    t_imu = np.arange(t_frames[0] - 0.1, t_frames[-1] + 0.1, 1.0 / IMU_RATE_HZ)
    imu = simulate(evaluate(t_imu), 1.0 / IMU_RATE_HZ, imu_noise, rng)
    return Window(frames, ImuArrays(np.round(t_imu * 1e9).astype(np.int64), imu.gyro, imu.accel), truth,
                  imu.bias_gyro[0], imu.bias_accel[0])


def errors(result, window: Window) -> dict[str, float]:
    """Scale [%], gravity direction [deg], velocity [m/s] and gyro bias [rad/s] errors against the truth."""
    truth = window.truth
    d_true = np.linalg.norm(truth.p_W - truth.p_W[0], axis=1)
    d_est = np.linalg.norm(result.T_W_Bk[:, :3, 3] - result.T_W_Bk[0, :3, 3], axis=1)
    g_true = truth.R_W_B[0].T @ GRAVITY_W
    cos = g_true @ result.gravity / (np.linalg.norm(g_true) * np.linalg.norm(result.gravity))
    # Velocities compared in the first body frame (the world's yaw is a free choice).
    v_est = result.v_W @ result.R_W_B0
    v_true = truth.v_W @ truth.R_W_B[0]
    return dict(scale_pct=100 * abs(d_est.sum() / d_true.sum() - 1),
                gravity_deg=float(np.degrees(np.arccos(np.clip(cos, -1, 1)))),
                velocity_mps=float(np.linalg.norm(v_est - v_true, axis=1).max()),
                gyro_bias=float(np.linalg.norm(result.gyro_bias - window.gyro_bias)))


def summary(err: dict, result) -> str:
    return (f"scale {err['scale_pct']:.2f} % (std {100 * result.diagnostics['scale_rel_std']:.2f} %), gravity "
            f"{err['gravity_deg']:.2f} deg, velocity {err['velocity_mps']:.3f} m/s, gyro bias "
            f"{1e3 * err['gyro_bias']:.2f} mrad/s, {result.diagnostics['time_ms']:.0f} ms")


def assert_accurate(err: dict) -> None:
    assert err["scale_pct"] < 5.0
    assert err["gravity_deg"] < 1.5
    assert err["velocity_mps"] < 0.1
    assert err["gyro_bias"] < 0.01  # EuRoC-sized biases (3 mrad/s) are not observable to 20 % in 2 s


# ------------------------------------------------------------------------------------ preintegration


def test_preintegration_matches_analytic_motion():
    motion = MOTIONS["mav"](3, static_s=0.0).evaluate
    t_imu = np.arange(4.0, 6.0, 1.0 / IMU_RATE_HZ)
    gyro, accel = ideal(motion(t_imu))
    imu = ImuArrays(np.round(t_imu * 1e9).astype(np.int64), gyro, accel)
    t0, t1 = 4.2113, 4.9871  # not on the IMU grid
    pre = preintegrate(imu, int(t0 * 1e9), int(t1 * 1e9))
    s = motion(np.array([t0, t1]))
    dt = t1 - t0
    Ri = s.R_W_B[0]
    assert pre.dt == pytest.approx(dt, abs=1e-9)
    assert np.degrees(np.linalg.norm(so3_log(pre.dR.T @ Ri.T @ s.R_W_B[1]))) < 0.01
    np.testing.assert_allclose(pre.dv, Ri.T @ (s.v_W[1] - s.v_W[0] - GRAVITY_W * dt), atol=2e-4)
    np.testing.assert_allclose(pre.dp, Ri.T @ (s.p_W[1] - s.p_W[0] - s.v_W[0] * dt - 0.5 * GRAVITY_W * dt ** 2),
                               atol=1e-4)
    # The same from a list of ImuSample.
    samples = [ImuSample(int(t), g, a) for t, g, a in zip(imu.t_ns, gyro, accel)]
    np.testing.assert_allclose(preintegrate(samples, int(t0 * 1e9), int(t1 * 1e9)).dp, pre.dp)


def test_preintegration_bias_jacobians():
    motion = MOTIONS["mav"](4, static_s=0.0).evaluate
    t_imu = np.arange(5.0, 6.0, 1.0 / IMU_RATE_HZ)
    gyro, accel = ideal(motion(t_imu))
    imu = ImuArrays(np.round(t_imu * 1e9).astype(np.int64), gyro, accel)
    t0, t1 = int(5.1e9), int(5.4e9)
    bg, ba = np.array([0.01, -0.02, 0.015]), np.array([0.1, -0.05, 0.2])
    pre = preintegrate(imu, t0, t1)
    exact = preintegrate(imu, t0, t1, bg, ba)
    dR, dv, dp = pre.corrected(bg, ba)
    # First order: the error is a small fraction of the (not trivially small) change.
    for corrected, before, after in ((dv, pre.dv, exact.dv), (dp, pre.dp, exact.dp)):
        moved = np.linalg.norm(after - before)
        assert moved > 1e-3
        assert np.linalg.norm(corrected - after) < 0.01 * moved
    assert np.linalg.norm(so3_log(dR.T @ exact.dR)) < 1e-5
    np.testing.assert_allclose(pre.rebiased(bg, ba).dp, dp)


def test_preintegration_needs_coverage():
    imu = ImuArrays(np.arange(0, 10, dtype=np.int64) * 5_000_000, np.zeros((10, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="cover"):
        preintegrate(imu, 0, 60_000_000)


def test_gravity_aligned_rotation():
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = rng.normal(size=3)
        R = gravity_aligned_rotation(g)
        np.testing.assert_allclose(R @ g / np.linalg.norm(g), [0, 0, -1], atol=1e-12)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(gravity_aligned_rotation(np.array([0, 0, 9.81])) @ [0, 0, 1], [0, 0, -1])
    np.testing.assert_allclose(gravity_aligned_rotation(np.array([0, 0, -9.81])), np.eye(3))


# ------------------------------------------------------------------------------------------- SfM


def _camera_errors(sfm, window: Window) -> tuple[float, float]:
    """Largest camera position error (fraction of the path, after the best scale) and rotation error [deg]."""
    T_W_C = np.stack([make_transform(R, p) @ T_B_C for R, p in zip(window.truth.R_W_B, window.truth.p_W)])
    c_true = (T_W_C[:, :3, 3] - T_W_C[0, :3, 3]) @ T_W_C[0, :3, :3]
    c_est = sfm.T_C0_C[:, :3, 3]
    scale = (c_true * c_est).sum() / (c_est * c_est).sum()
    rotation = max(np.degrees(rotation_angle(T_W_C[0, :3, :3].T @ T_W_C[k, :3, :3] @ sfm.T_C0_C[k, :3, :3].T))
                   for k in range(len(c_est)))
    return float(np.abs(scale * c_est - c_true).max() / np.abs(c_true).max()), float(rotation)


def test_visual_sfm_recovers_shape():
    window = make_window(seed=5, start_s=6.0)
    sfm, reason = solve_visual_sfm(window.frames)
    assert sfm is not None, reason
    assert sfm.reprojection_rms_px < 1.5 and sfm.num_points >= 60
    np.testing.assert_allclose(sfm.T_C0_C[0], np.eye(4), atol=1e-9)
    assert np.all(sfm.reprojection_errors_px() <= 3.0)
    # A 2 s monocular window trades a slow rotation drift for a sideways shift (bas-relief ambiguity): a degree
    # or two by the end, not the tens of degrees of a wrong (planar) two-view solution.
    position, rotation = _camera_errors(sfm, window)
    assert position < 0.06 and rotation < 2.0
    assert visual_sfm(window.frames) is not None
    # With the gyro's rotations (what initialize_mono_inertial passes) the shape is as good.
    imu_rotations = [preintegrate(window.imu, a.t_ns, b.t_ns).dR for a, b in zip(window.frames, window.frames[1:])]
    R_C_B = T_B_C[:3, :3].T
    sfm, reason = solve_visual_sfm(window.frames, relative_rotations=[R_C_B @ R @ R_C_B.T for R in imu_rotations])
    assert sfm is not None, reason
    position, rotation = _camera_errors(sfm, window)
    assert position < 0.06 and rotation < 2.0


# ------------------------------------------------------------------------------------ initialization

# Agile-MAV windows of 2 s whose scale is observable (the checks accept them); found by a sweep.
ACCURACY_CASES = [(0, 6.0), (2, 2.5), (3, 4.0), (4, 4.0), (10, 8.0), (11, 2.5)]


@pytest.mark.parametrize("seed, start_s", ACCURACY_CASES)
def test_initialization_accuracy(seed, start_s):
    window = make_window(seed, start_s)
    result = initialize_mono_inertial(window.frames, window.imu, T_B_C)
    assert result.success, result.reason
    err = errors(result, window)
    print(f"seed {seed} t {start_s}: {summary(err, result)}")
    assert_accurate(err)
    # Outputs are consistent: world z up, gravity (0, 0, -g) in W, the first pose at the origin.
    np.testing.assert_allclose(result.R_W_B0 @ result.gravity, [0, 0, -9.81], atol=1e-9)
    np.testing.assert_allclose(result.T_W_Bk[0, :3, 3], 0.0, atol=1e-9)
    np.testing.assert_allclose(result.T_W_Bk[0, :3, :3], result.R_W_B0, atol=1e-9)
    assert len(result.T_W_Bk) == len(result.v_W) == len(window.frames)


def test_accepted_windows_are_accurate():
    """Whatever the motion, a window the checks accept is accurate; slow ones are refused, not guessed."""
    cases = [(20 + k, 2.0 + 1.7 * k, agile_mav(20 + k), 2.0) for k in range(5)]
    cases += [(30 + k, 4.0 + 2.3 * k, MOTIONS["handheld"](30 + k, static_s=0.0).evaluate, 2.0) for k in range(3)]
    cases += [(40 + k, 5.0 + 3.1 * k, MOTIONS["mav"](40 + k, static_s=0.0).evaluate, 2.0) for k in range(3)]
    accepted = 0
    for seed, start_s, motion, duration_s in cases:
        window = make_window(seed, start_s, duration_s, motion=motion)
        result = initialize_mono_inertial(window.frames, window.imu, T_B_C)
        if result.success:
            accepted += 1
            err = errors(result, window)
            print(f"seed {seed}: accepted, {summary(err, result)}")
            assert_accurate(err)
        else:
            print(f"seed {seed}: refused, {result.reason}")
            assert result.reason
    assert accepted >= 1  # not vacuous; the agile 2 s windows pass about one time in three


def test_large_gyro_bias_is_estimated():
    """A cheap-MEMS gyro bias (30 mrad/s) is found to 20 % (EuRoC's 3 mrad/s is below what 2 s resolve)."""
    noise = ImuNoise(gyro_bias=(0.02, -0.015, 0.018))
    window = make_window(seed=3, start_s=4.0, imu_noise=noise)
    result = initialize_mono_inertial(window.frames, window.imu, T_B_C)
    assert result.success, result.reason
    err = errors(result, window)
    print(summary(err, result))
    assert err["gyro_bias"] < 0.2 * np.linalg.norm(window.gyro_bias)
    assert err["scale_pct"] < 5.0 and err["gravity_deg"] < 1.5


def test_lever_arm_matters():
    """Dropping the camera-IMU lever arm (7 cm) must make the velocities worse: the term is not dead code."""
    window = make_window(seed=4, start_s=4.0)
    sfm, reason = solve_visual_sfm(window.frames)
    assert sfm is not None, reason
    no_lever = T_B_C.copy()
    no_lever[:3, 3] = 0.0
    good = align_visual_inertial(sfm, T_B_C, window.imu, checks=LAX)
    bad = align_visual_inertial(sfm, no_lever, window.imu, checks=LAX)
    assert good.success, good.reason
    assert errors(good, window)["velocity_mps"] < 0.5 * errors(bad, window)["velocity_mps"]


def test_estimator_entry_point():
    """``initialize_mono``: the estimator's keyframe window of (t_ns, {camera: (ids, uv)}) and an IMU buffer."""

    class Buffer:  # what the estimator's ImuBuffer offers: stamps and [gyro | accel] rows in a time range
        def __init__(self, imu: ImuArrays):
            self.t_ns, self.data = imu.t_ns, np.hstack([imu.gyro, imu.accel])

        def window(self, t0_ns, t1_ns):
            keep = (self.t_ns >= t0_ns) & (self.t_ns <= t1_ns)
            return self.t_ns[keep], self.data[keep]

    window = make_window(seed=3, start_s=4.0)
    keyframes = [(f.t_ns, {0: (f.ids, f.uv)}) for f in window.frames]
    result = initialize_mono(keyframes, T_B_C, Buffer(window.imu), FX)
    assert result.success, result.reason
    assert result.T_W_B is result.T_W_Bk and len(result.T_W_B) == len(keyframes)
    assert_accurate(errors(result, window))


# --------------------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize("name, window_args, expected", [
    ("static", dict(motion=static_motion), "parallax"),
    ("pure rotation", dict(motion=rotation_only_motion), "parallax"),
    ("constant velocity", dict(motion=constant_velocity_motion), "acceleration"),
    ("five tracks", dict(features=5), "tracks"),
])
def test_degenerate_windows_fail_with_reason(name, window_args, expected):
    window = make_window(seed=11, start_s=8.0, **window_args)
    result = initialize_mono_inertial(window.frames, window.imu, T_B_C)
    print(f"{name}: {result.reason}")
    assert not result.success
    assert expected in result.reason


def test_wrong_accelerometer_units_fail():
    """Specific force in g instead of m/s^2: gravity comes out ~1 m/s^2 and the check must catch it."""
    window = make_window(seed=3, start_s=4.0)
    imu = ImuArrays(window.imu.t_ns, window.imu.gyro, window.imu.accel / 9.81)
    result = initialize_mono_inertial(window.frames, imu, T_B_C)
    assert not result.success and "gravity" in result.reason


def test_wrong_extrinsic_fails():
    """A camera-IMU rotation off by 10 degrees cannot be reconciled (visual or IMU residuals, bias)."""
    window = make_window(seed=3, start_s=4.0)
    wrong = T_B_C.copy()
    wrong[:3, :3] = so3_exp(np.radians([10.0, 0.0, 0.0])) @ wrong[:3, :3]
    result = initialize_mono_inertial(window.frames, window.imu, wrong)
    print(result.reason)
    assert not result.success and result.reason


def test_short_imu_and_tiny_inputs_fail_without_raising():
    window = make_window(seed=3, start_s=4.0)
    cut = ImuArrays(window.imu.t_ns[:50], window.imu.gyro[:50], window.imu.accel[:50])
    result = initialize_mono_inertial(window.frames, cut, T_B_C)
    assert not result.success and "IMU" in result.reason
    result = initialize_mono_inertial(window.frames[:2], window.imu, T_B_C)
    assert not result.success and "frames" in result.reason
    empty = [FeatureFrame(f.t_ns, 0, np.zeros(0, np.int64), np.zeros((0, 2)), True, f.index) for f in window.frames]
    result = initialize_mono_inertial(empty, window.imu, T_B_C)
    assert not result.success and "tracks" in result.reason


def test_timing_10_frames_100_points():
    window = make_window(seed=3, start_s=4.0, num_frames=10, features=100)
    initialize_mono_inertial(window.frames, window.imu, T_B_C)  # warm-up (imports, caches)
    wall, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = initialize_mono_inertial(window.frames, window.imu, T_B_C)
        wall.append(1e3 * (time.perf_counter() - start))
        cpu.append(1e3 * (time.process_time() - start_cpu))
    assert result.reason is not None
    print(f"initialize_mono_inertial, 10 frames x 100 tracks: wall {min(wall):.0f} ms (best of 3), "
          f"cpu {min(cpu):.0f} ms")


# ------------------------------------------------------------------------------------------ real data


def test_euroc_v1_01_real_tracks():
    """EuRoC V1_01 tracks (about 25 per frame) with its 80 mrad/s gyro bias: accepted windows are accurate."""
    from slam.datasets import open_sequence

    seq = open_sequence(require(EUROC_FEATURES), ground_truth=require(EUROC_GT))
    messages = list(seq.messages())
    frames = [m for m in messages if isinstance(m, FeatureFrame)]
    imu = as_imu_arrays([m for m in messages if isinstance(m, ImuSample)])
    gt = seq.ground_truth()
    T_B_C_euroc = seq.calibration.cameras[0].T_B_C
    accepted = 0
    for start_s in (15.0, 17.5, 19.0, 24.0, 27.5):  # in flight; keyframes every 0.25 s for 2.25 s
        window = frames[int(start_s * 20):int(start_s * 20) + 50:5]
        result = initialize_mono_inertial(window, imu, T_B_C_euroc)
        if not result.success:
            print(f"t {start_s}: refused, {result.reason}")
            continue
        accepted += 1
        k = np.searchsorted(gt.t_ns, [f.t_ns for f in window])
        p, R_W_B = gt.p_W[k], quat_to_rot(gt.q_W_B[k])
        scale_pct = 100 * abs(np.linalg.norm(result.T_W_Bk[:, :3, 3], axis=1).sum()
                              / np.linalg.norm(p - p[0], axis=1).sum() - 1)
        gravity_deg = np.degrees(np.arccos(min(1.0, R_W_B[0].T @ GRAVITY_W @ result.gravity / 9.81 ** 2)))
        print(f"t {start_s}: scale {scale_pct:.2f} %, gravity {gravity_deg:.2f} deg, gyro bias "
              f"{np.round(result.gyro_bias, 4)} (truth {np.round(gt.bias_gyro[k[0]], 4)})")
        assert scale_pct < 5.0 and gravity_deg < 1.5
        np.testing.assert_allclose(result.gyro_bias, gt.bias_gyro[k[0]], atol=0.01)
    assert accepted >= 1
