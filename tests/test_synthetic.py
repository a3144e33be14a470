"""Synthetic visual-inertial sequences: exact IMU, consistent geometry, readable output, clean errors."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from slam.datasets.asl import AslSequence
from slam.datasets.synthetic import PRESETS, ImuNoise, build, generate, make_config
from slam.datasets.synthetic import benchmark_set, textures
from slam.datasets.synthetic import generator as generate_module
from slam.datasets.synthetic.render import ray_table
from slam.datasets.synthetic.scene import SCENES
from slam.datasets.synthetic.trajectory import MOTIONS
from slam.cli import app
from slam.geometry import invert_transform, quat_to_rot
from slam.info import describe
from slam.messages import DataError, ImuSample

SMALL = dict(width=96, height=64, workers=1)
CLEAN = dict(image_noise_sigma=0.0, exposure_variation=0.0, vignetting=0.0)


# ------------------------------------------------------------------------------------------- motion


@pytest.mark.parametrize("name", sorted(MOTIONS))
def test_motion_derivatives_are_analytic_and_smooth(name):
    motion = MOTIONS[name](3)
    t = np.linspace(0.0, 40.0, 4001)
    s, a, b = motion.evaluate(t), motion.evaluate(t + 1e-5), motion.evaluate(t - 1e-5)
    assert np.abs((a.p_W - b.p_W) / 2e-5 - s.v_W).max() < 1e-6
    assert np.abs((a.v_W - b.v_W) / 2e-5 - s.a_W).max() < 1e-4
    W = np.swapaxes(s.R_W_B, -1, -2) @ ((a.R_W_B - b.R_W_B) / 2e-5)
    assert np.abs(np.stack([W[:, 2, 1], W[:, 0, 2], W[:, 1, 0]], 1) - s.omega_B).max() < 1e-6
    # C2 where the static start blends into the motion: acceleration is continuous at both ends of the ramp
    for joint in (motion.static_s, motion.static_s + motion.ramp_s):
        before, after = motion.evaluate(joint - 1e-9), motion.evaluate(joint + 1e-9)
        assert np.abs(after.a_W - before.a_W).max() < 1e-6 and np.abs(after.v_W - before.v_W).max() < 1e-8
    still = t < motion.static_s
    assert np.abs(s.v_W[still]).max() == 0 and np.abs(s.omega_B[still]).max() == 0


# preset: (mean speed range while moving, peak speed, peak angular rate range, peak yaw rate) in m/s and rad/s
MOTION_LIMITS = {
    "room_mav": ((0.5, 1.0), 1.2, (0.3, 1.2), 1.0),  # EuRoC-like MAV flight
    "room_handheld": ((0.4, 1.5), 2.0, (2.0, 4.0), 4.0),  # walking, fast turns and shake
    "hall_loop": ((0.5, 1.0), 1.5, (0.05, 1.0), 1.0),  # walking / MAV speed around the pillars
}


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_move_like_their_kind(preset, seed):
    seq = build(make_config(preset, width=64, height=48, texture_px_per_m=5.0), seed)
    t = seq.t_s(seq.imu_t_ns)
    state = seq.motion.evaluate(t)
    assert seq.scene.clearance(state.p_W).min() > 0.5
    moving = t > seq.motion.static_s + seq.motion.ramp_s
    speed = np.linalg.norm(state.v_W, axis=1)
    rate = np.linalg.norm(state.omega_B, axis=1)
    yaw_rate = np.abs(np.einsum("nij,nj->ni", state.R_W_B, state.omega_B)[:, 2])  # about world z
    (mean_lo, mean_hi), peak_speed, (rate_lo, rate_hi), peak_yaw = MOTION_LIMITS[preset]
    stats = dict(mean=speed[moving].mean(), peak=speed.max(), rate=rate.max(), yaw=yaw_rate.max())
    assert mean_lo <= stats["mean"] <= mean_hi and stats["peak"] <= peak_speed, stats
    assert rate_lo <= stats["rate"] <= rate_hi and stats["yaw"] <= peak_yaw, stats
    up = state.R_W_B[:, :, 0] @ np.array([0.0, 0.0, 1.0])  # body x points up (EuRoC mounting)
    assert up.min() > 0.8


def test_hall_loop_revisits_its_start():
    seq = build(make_config("hall_loop", width=64, height=48, texture_px_per_m=5.0), 3)
    t = seq.t_s(seq.imu_t_ns)
    p_W = seq.motion.evaluate(t).p_W
    start = p_W[np.searchsorted(t, seq.motion.static_s + seq.motion.ramp_s)]
    far = np.linalg.norm(p_W - start, axis=1)
    assert far.max() > 15.0  # went around the hall ...
    assert far[t > 40.0].min() < 0.5  # ... and came back past the start


_CLEARANCE_SCENES = {}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), motion=st.sampled_from(["mav", "handheld", "loop"]))
def test_any_seed_keeps_half_a_metre_from_the_geometry(seed, motion):
    scene_name = "hall" if motion == "loop" else "room"
    if scene_name not in _CLEARANCE_SCENES:
        _CLEARANCE_SCENES[scene_name] = SCENES[scene_name](px_per_m=5.0)
    p_W = MOTIONS[motion](seed).evaluate(np.arange(0.0, 200.0, 0.05)).p_W
    assert _CLEARANCE_SCENES[scene_name].clearance(p_W).min() > 0.5


def test_static_start_can_be_disabled():
    seq = build(make_config("room_mav", static_s=0.0, width=64, height=48))
    state = seq.motion.evaluate(np.array([0.5]))
    assert np.linalg.norm(state.v_W) > 0.01


# ---------------------------------------------------------------------------------------------- IMU


def _rk4_position_error(path):
    seq = AslSequence(path)
    imu = [m for m in seq.messages() if isinstance(m, ImuSample)]
    t = np.array([m.t_ns for m in imu]) * 1e-9
    gyro = np.array([m.gyro for m in imu])
    accel = np.array([m.accel for m in imu])
    gt = seq.ground_truth()
    assert np.array_equal(gt.t_ns, [m.t_ns for m in imu])
    g = np.array([0.0, 0.0, -9.81])

    def skew(w):
        return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])

    def f(state, w, a):
        R, v = state[0], state[1]
        return (R @ skew(w), R @ a + g, v)

    R, v, p = quat_to_rot(gt.q_W_B[0]), gt.v_W[0].copy(), gt.p_W[0].copy()
    worst = 0.0
    for k in range(0, len(t) - 2, 2):  # RK4 with h = 2 dt, the middle sample as midpoint
        h = t[k + 2] - t[k]
        x = (R, v, p)
        k1 = f(x, gyro[k], accel[k])
        k2 = f(tuple(xi + h / 2 * ki for xi, ki in zip(x, k1)), gyro[k + 1], accel[k + 1])
        k3 = f(tuple(xi + h / 2 * ki for xi, ki in zip(x, k2)), gyro[k + 1], accel[k + 1])
        k4 = f(tuple(xi + h * ki for xi, ki in zip(x, k3)), gyro[k + 2], accel[k + 2])
        R, v, p = (xi + h / 6 * (a + 2 * b + 2 * c + d) for xi, a, b, c, d in zip(x, k1, k2, k3, k4))
        U, _, Vt = np.linalg.svd(R)
        R = U @ Vt
        worst = max(worst, float(np.linalg.norm(p - gt.p_W[k + 2])))
    return worst, t[-1] - t[0]


@pytest.mark.parametrize("preset", ["room_handheld", "hall_loop"])
def test_noise_free_imu_integrates_to_ground_truth(tmp_path, preset):
    out = generate(preset, tmp_path / "seq", seconds=10, progress=False, imu=ImuNoise(enabled=False),
                   static_s=0.5, camera_rate_hz=2, **SMALL)
    error, duration = _rk4_position_error(out)
    assert duration == pytest.approx(10.0)
    assert error < 1e-3


def test_noisy_imu_has_biases_and_noise_in_ground_truth(tmp_path):
    out = generate("room_mav", tmp_path / "seq", seconds=2, progress=False, camera_rate_hz=2, **SMALL)
    seq = AslSequence(out)
    gt = seq.ground_truth()
    assert np.abs(gt.bias_gyro[0] - ImuNoise().gyro_bias).max() < 1e-8
    assert np.abs(gt.bias_accel[0] - ImuNoise().accel_bias).max() < 1e-8
    assert np.abs(np.diff(gt.bias_accel, axis=0)).max() > 0  # random walk
    imu = seq.calibration.imu
    assert imu.gyro_noise_density == pytest.approx(1.6968e-4) and imu.accel_random_walk == pytest.approx(3.0e-3)
    gyro = np.array([m.gyro for m in seq.messages() if isinstance(m, ImuSample)])
    still = gyro[:200]  # static first second: bias + white noise of std density * sqrt(rate)
    assert np.std(still[:, 0]) == pytest.approx(1.6968e-4 * np.sqrt(200), rel=0.3)
    assert np.mean(still, axis=0) == pytest.approx(ImuNoise().gyro_bias, abs=5e-4)


# ----------------------------------------------------------------------------------------- geometry


def _sample(image, uv):
    """Bilinear intensity at float pixel coordinates (N, 2)."""
    m = cv2.remap(image.astype(np.float32), uv[:, 0].astype(np.float32).reshape(-1, 1),
                  uv[:, 1].astype(np.float32).reshape(-1, 1), cv2.INTER_LINEAR)
    return m.ravel()


def _project(points_W, T_W_C, cam):
    T_C_W = invert_transform(T_W_C)
    rvec, _ = cv2.Rodrigues(T_C_W[:3, :3])
    uv, _ = cv2.projectPoints(points_W.reshape(-1, 1, 3), rvec, T_C_W[:3, 3], cam.K, cam.distortion)
    z = points_W @ T_C_W[:3, :3].T[:, 2] + T_C_W[2, 3]
    return uv.reshape(-1, 2), z


@pytest.fixture(scope="module")
def clean_room():
    return build(make_config("room_handheld", seconds=4, width=376, height=240, **CLEAN))


def _photometric(seq, k, src, dst, T_B_C_src=None, T_B_C_dst=None):
    """Median |I_src(p) - I_dst(proj(p))| for rendered surface points, and for random pixel pairs."""
    rng = np.random.default_rng(1)
    cams = seq.cameras
    images = {}
    depth_src = None
    for kk in {k, dst[0]}:
        imgs, depths = seq.render_frame(kk, with_depth=True)
        images[kk] = imgs
        if kk == k:
            depth_src = depths[src]

    def pose(kk, i, T_B_C):
        T_W_C = seq.T_W_C(kk, i)
        return T_W_C if T_B_C is None else T_W_C @ invert_transform(cams[i].T_B_C) @ T_B_C

    cam = cams[src]
    w, h = cam.width, cam.height
    uv = np.stack([rng.integers(8, w - 8, 4000), rng.integers(8, h - 8, 4000)], 1)
    idx = uv[:, 1] * w + uv[:, 0]
    depth = depth_src.ravel()[idx].astype(np.float64)
    rays = ray_table(cam).rays[:, idx].astype(np.float64)
    T = pose(k, src, T_B_C_src)
    points = (T[:3, :3] @ (rays * depth) + T[:3, 3:4]).T
    kk, i = dst
    proj, z = _project(points, pose(kk, i, T_B_C_dst), cams[i])
    inside = (z > 0.1) & np.all((proj >= 1) & (proj <= [w - 2, h - 2]), axis=1)
    assert inside.mean() > 0.5
    a = _sample(images[k][src], uv[inside].astype(np.float64))
    b = _sample(images[kk][i], proj[inside])
    rand = rng.integers([8, 8], [w - 8, h - 8], (int(inside.sum()), 2)).astype(np.float64)
    return float(np.median(np.abs(a - b))), float(np.median(np.abs(a - _sample(images[kk][i], rand))))


def test_stereo_and_temporal_reprojection_is_photometrically_consistent(clean_room):
    k = 50  # 2.5 s: moving
    stereo, stereo_random = _photometric(clean_room, k, 0, (k, 1))
    temporal, temporal_random = _photometric(clean_room, k, 0, (k + 1, 0))
    assert stereo < 0.1 * stereo_random and stereo < 2.5, (stereo, stereo_random)
    assert temporal < 0.1 * temporal_random and temporal < 2.5, (temporal, temporal_random)


def test_wrong_extrinsics_break_the_consistency(clean_room):
    k = 50
    good, _ = _photometric(clean_room, k, 0, (k, 1))
    cams = clean_room.cameras
    inverted, _ = _photometric(clean_room, k, 0, (k, 1), invert_transform(cams[0].T_B_C),
                               invert_transform(cams[1].T_B_C))
    flipped = cams[1].T_B_C.copy()
    flipped[:3, 3] = 2 * cams[0].T_B_C[:3, 3] - cams[1].T_B_C[:3, 3]  # baseline negated
    negated, _ = _photometric(clean_room, k, 0, (k, 1), None, flipped)
    assert inverted > 8 * good and negated > 8 * good, (good, inverted, negated)


def test_rendered_depth_agrees_between_cameras(clean_room):
    k = 60
    (_, _), (d0, d1) = clean_room.render_frame(k, with_depth=True)
    cam0, cam1 = clean_room.cameras
    rng = np.random.default_rng(2)
    idx = rng.integers(0, d0.size, 3000)
    rays = ray_table(cam0).rays[:, idx].astype(np.float64)
    T0 = clean_room.T_W_C(k, 0)
    points = (T0[:3, :3] @ (rays * d0.ravel()[idx]) + T0[:3, 3:4]).T
    proj, z = _project(points, clean_room.T_W_C(k, 1), cam1)
    px = np.rint(proj).astype(int)
    ok = np.all((px >= 0) & (px < [cam1.width, cam1.height]), axis=1)
    rendered = d1[px[ok, 1], px[ok, 0]]
    assert np.mean(np.abs(rendered - z[ok]) < 0.03 * z[ok]) > 0.85


def test_exact_tracks_are_the_true_projections_of_scene_points(clean_room):
    from slam.datasets.synthetic.tracks import exact_tracks

    frames = list(exact_tracks(clean_room, max_tracks=60))
    assert [f.t_ns for f in frames] == clean_room.frame_t_ns.tolist()
    assert all(30 <= len(f.ids) <= 60 and np.all(np.diff(f.ids) > 0) for f in frames)
    seen = {}
    for k, f in enumerate(frames):
        for i, uv in zip(f.ids.tolist(), f.uv):
            seen.setdefault(i, []).append((k, uv))
    long = [obs for obs in seen.values() if len(obs) >= 10]
    assert len(long) >= 20
    for obs in long[:20]:  # triangulated from the first and last views with the true poses (DLT) ...
        rows = []
        for k, uv in (obs[0], obs[-1]):
            P = invert_transform(clean_room.T_W_C(k, 0))[:3]
            rows += [uv[0] * P[2] - P[0], uv[1] * P[2] - P[1]]
        X = np.linalg.svd(np.array(rows))[2][-1]
        for k, uv in obs:  # ... every observation is that point's exact projection
            T = clean_room.T_W_C(k, 0)
            p = (X[:3] / X[3] - T[:3, 3]) @ T[:3, :3]
            np.testing.assert_allclose(p[:2] / p[2], uv, atol=1e-7)


def test_feature_csv_written_reads_back_exactly(clean_room, tmp_path):
    from slam.datasets.feature_tracks import FeatureTrackSequence, write_feature_csv
    from slam.datasets.synthetic.rig import imu_calibration
    from slam.datasets.synthetic.tracks import exact_tracks
    from slam.geometry import make_transform

    frames = list(exact_tracks(clean_room, max_tracks=40))[:5]
    samples = [ImuSample(int(t), np.array([0.1, -0.2, 0.3]) * j, np.array([0.0, 0.1, 9.81])) for j, t in
               enumerate(clean_room.imu_t_ns[:30])]
    T_B_S = make_transform(quat_to_rot(np.array([0.9, 0.1, -0.3, 0.2]) / np.linalg.norm([0.9, 0.1, -0.3, 0.2])),
                           np.array([0.05, -0.02, 0.01]))
    imu = replace(imu_calibration(ImuNoise(), 200.0), T_B_S=T_B_S)
    cam = clean_room.cameras[0]
    path = write_feature_csv(tmp_path / "tracks.csv", cam, imu, samples, frames)
    sequence = FeatureTrackSequence(path, resolution=(cam.width, cam.height))
    messages = list(sequence.messages())
    back = [m for m in messages if not isinstance(m, ImuSample)]
    assert [m.t_ns for m in messages] == sorted(m.t_ns for m in messages)
    assert [m.t_ns for m in messages if isinstance(m, ImuSample)] == [s.t_ns for s in samples]
    assert len(back) == 5 and all(np.array_equal(a.ids, b.ids) and np.array_equal(a.uv, b.uv)
                                  for a, b in zip(frames, back))  # repr() round-trips every float
    np.testing.assert_allclose(sequence.calibration.cameras[0].intrinsics, cam.intrinsics)
    # the format holds the camera in the IMU frame
    np.testing.assert_allclose(sequence.calibration.cameras[0].T_B_C, invert_transform(T_B_S) @ cam.T_B_C,
                               atol=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == ["tracks.csv"]  # no temporary file left


def test_scenes_have_weak_and_repeated_textures():
    for name in SCENES:
        scene = SCENES[name](seed=0, px_per_m=40.0)
        stds = [float(f.texture.std()) for f in scene.faces]
        assert min(stds) < 10 < max(stds)
        assert len(scene.faces) >= 6 + 4 * 5


def test_photos_are_used_as_textures(tmp_path):
    stripes = np.repeat(np.random.default_rng(0).integers(0, 256, 20), 10).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "stripes.png"), np.tile(stripes, (150, 1)))  # 200 x 150, constant down columns
    scene = SCENES["room"](seed=0, texture_dir=tmp_path, px_per_m=40.0)
    columns = [f.texture for f in scene.faces if np.abs(np.diff(f.texture, axis=0)).max() < 1e-3]
    assert columns  # vertical stripes (crops of the photo), not noise


def test_scikit_image_photos_are_the_default_with_a_procedural_fallback(monkeypatch):
    folder = textures.skimage_photo_dir()
    assert folder is not None and (folder / "astronaut.png").exists()
    photos = textures.load_photos(None)
    assert len(photos) >= 10 and all(min(p.shape) >= textures.MIN_PHOTO_SIDE for p in photos)
    default = SCENES["room"](seed=0, px_per_m=20.0)
    explicit = SCENES["room"](seed=0, texture_dir=folder, px_per_m=20.0)
    assert all(np.array_equal(a.texture, b.texture) for a, b in zip(default.faces, explicit.faces))

    monkeypatch.setitem(sys.modules, "skimage", None)  # as if scikit-image were not installed
    textures._default_photos.cache_clear()
    try:
        assert textures.skimage_photo_dir() is None and textures.load_photos(None) == []
        fallback = SCENES["room"](seed=0, px_per_m=20.0)
    finally:
        textures._default_photos.cache_clear()
    assert len(fallback.faces) == len(default.faces)
    assert not np.array_equal(fallback.faces[0].texture, default.faces[0].texture)


def test_small_uniform_and_drawn_images_are_not_used_as_photos(tmp_path):
    rng = np.random.default_rng(0)
    assert textures.usable(rng.integers(0, 256, (200, 300)).astype(np.uint8))
    assert not textures.usable(rng.integers(0, 256, (100, 300)).astype(np.uint8))  # too small
    assert not textures.usable(np.full((200, 300), 128, np.uint8) + rng.integers(0, 3, (200, 300)).astype(np.uint8))
    board = (np.indices((200, 300)).sum(0) // 25 % 2 * 255).astype(np.uint8)  # a drawing: two grey levels
    assert not textures.usable(board)
    cv2.imwrite(str(tmp_path / "flat.png"), np.full((200, 300), 90, np.uint8))
    with pytest.raises(DataError, match="no usable images"):
        generate("room_mav", tmp_path / "seq", progress=False, texture_dir=tmp_path, **SMALL)


# ------------------------------------------------------------------------------------------- blur


def _sharpness(image):
    return float(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F).var())


def test_motion_blur_softens_fast_frames_only():
    kwargs = dict(seconds=12, width=188, height=120, **CLEAN)
    sharp = build(make_config("room_handheld", **kwargs))
    blurred = build(make_config("room_handheld", exposure_s=0.02, **kwargs))
    t = sharp.t_s(sharp.frame_t_ns)
    fast = int(np.argmax(np.linalg.norm(sharp.motion.evaluate(t).omega_B, axis=1)))
    times = blurred.exposure_times(fast)
    assert len(times) % 2 == 1 and 3 <= len(times) <= generate_module.MAX_BLUR_SAMPLES
    assert times[len(times) // 2] == pytest.approx(t[fast]) and times[-1] - times[0] == pytest.approx(0.02)
    assert _sharpness(blurred.render_frame(fast)[0]) < 0.7 * _sharpness(sharp.render_frame(fast)[0])
    assert len(blurred.exposure_times(2)) == 1  # still at the start: one render, the same image
    assert np.array_equal(blurred.render_frame(2)[0], sharp.render_frame(2)[0])


# ------------------------------------------------------------------------------------- output files


def test_output_reads_back_and_describes_cleanly(tmp_path):
    out = generate("room_mav", tmp_path / "seq", seconds=2, progress=True, **SMALL)
    assert not list(tmp_path.glob(".*partial"))
    info = describe(AslSequence(out))
    assert info["format"] == "ASL/EuRoC" and info["stereo"] and len(info["cameras"]) == 2
    assert all(c["resolution"] == [96, 64] for c in info["cameras"])
    assert info["frames"]["rate_hz"] == pytest.approx(20.0) and info["frames"]["count"] == 41
    assert info["imu"]["rate_hz"] == pytest.approx(200.0) and info["imu"]["count"] == 401
    assert info["ground_truth"]["has_velocity_and_biases"] and info["ground_truth"]["count"] == 401
    assert info["warnings"] == []
    seq = AslSequence(out)
    cam1 = seq.calibration.cameras[1]
    assert np.linalg.norm(cam1.T_B_C[:3, 3] - seq.calibration.cameras[0].T_B_C[:3, 3]) == pytest.approx(0.11,
                                                                                                         abs=0.002)
    image = next(seq.frames()).images[0].load()
    assert image.shape == (64, 96) and image.std() > 10


def test_full_resolution_is_euroc_like(tmp_path):
    out = generate("hall_loop", tmp_path / "seq", seconds=0.05, progress=False, workers=1)
    seq = AslSequence(out)
    cam0 = seq.calibration.cameras[0]
    assert cam0.resolution == (752, 480) and cam0.intrinsics[0] == pytest.approx(458.654)
    assert cam0.distortion[0] == pytest.approx(-0.28340811)
    frame = next(seq.frames())
    assert frame.images[0].load().shape == (480, 752) and frame.images[1].load().std() > 10


def test_mono_output_reads_back_with_one_camera_and_scaled_intrinsics(tmp_path):
    out = generate("room_mav", tmp_path / "seq", seconds=0.2, progress=False, cameras=1, width=376, height=240,
                   workers=1)
    assert sorted(p.name for p in (out / "mav0").iterdir() if p.name.startswith("cam")) == ["cam0"]
    seq = AslSequence(out)
    (cam0,) = seq.calibration.cameras
    assert cam0.resolution == (376, 240)
    assert cam0.intrinsics == pytest.approx([458.654 / 2, 457.296 / 2, (367.215 + 0.5) / 2 - 0.5,
                                             (248.375 + 0.5) / 2 - 0.5])
    info = describe(seq)
    assert not info["stereo"] and len(info["cameras"]) == 1 and info["frames"]["count"] == 5
    assert info["warnings"] == []


def test_zero_imu_noise_is_written_as_a_tiny_density(tmp_path):
    silent = ImuNoise(gyro_noise_density=0.0, accel_noise_density=0.0, gyro_random_walk=0.0, accel_random_walk=0.0)
    out = generate("room_mav", tmp_path / "seq", seconds=0.1, progress=False, imu=silent, **SMALL)
    imu = AslSequence(out).calibration.imu
    assert imu.gyro_noise_density == imu.accel_noise_density == imu.gyro_random_walk == imu.accel_random_walk \
        == pytest.approx(1e-12)


def test_same_seed_same_output_other_seed_differs(tmp_path):
    kwargs = dict(seconds=0.5, progress=False, width=96, height=64)
    a = generate("room_handheld", tmp_path / "a", seed=5, workers=1, **kwargs)
    b = generate("room_handheld", tmp_path / "b", seed=5, workers=2, **kwargs)
    c = generate("room_handheld", tmp_path / "c", seed=6, workers=1, **kwargs)
    imu = lambda p: (p / "mav0" / "imu0" / "data.csv").read_bytes()  # noqa: E731
    first = lambda p: cv2.imread(str(sorted((p / "mav0" / "cam0" / "data").iterdir())[0]), 0)  # noqa: E731
    assert imu(a) == imu(b) and np.array_equal(first(a), first(b))
    assert imu(a) != imu(c) and not np.array_equal(first(a), first(c))


@pytest.mark.parametrize("kwargs, message", [
    (dict(preset="room_drone"), "unknown preset 'room_drone'; valid presets: hall_loop, room_handheld, room_mav"),
    (dict(camera_rate_hz=-20.0), "[camera_rate_hz]: must be > 0, got -20.0"),
    (dict(imu_rate_hz=0), "[imu_rate_hz]: must be > 0"),
    (dict(baseline=0.0), "baseline must be a positive distance"),
    (dict(seconds=-1.0), "[seconds]: must be > 0"),
    (dict(width=10), "[width]: must be an integer number of pixels"),
    (dict(colour=True), "unknown parameter(s) colour; valid:"),
    (dict(imu_rate_hz=10.0), "IMU rate (10 Hz) must not be below the camera rate (20 Hz)"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(baseline=-0.1), "baseline must be a positive distance"),
    (dict(exposure_s=-0.01), "[exposure_s]: must be >= 0"),
    (dict(exposure_s=0.05), "exposure (0.05 s) must be shorter than the frame period (0.05 s)"),
    (dict(cameras=3), "[cameras]: must be 1 (monocular) or 2 (stereo), got 3"),
    (dict(imu=ImuNoise(accel_noise_density=-1.0)), "[imu.accel_noise_density]: must be a number >= 0"),
])
def test_bad_parameters_raise_clear_data_errors(tmp_path, kwargs, message):
    preset = kwargs.pop("preset", "room_mav")
    with pytest.raises(DataError) as info:
        generate(preset, tmp_path / "seq", progress=False, **kwargs)
    assert message in str(info.value)
    assert not (tmp_path / "seq").exists() and not list(tmp_path.glob(".*partial"))


def test_unwritable_output_raises_data_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write output"):
        generate("room_mav", blocker / "seq", seconds=0.1, progress=False, **SMALL)
    (tmp_path / "done").mkdir()
    with pytest.raises(DataError, match="already exists"):
        generate("room_mav", tmp_path / "done", seconds=0.1, progress=False, **SMALL)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_raises_data_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DataError, match="cannot write output"):
            generate("room_mav", locked / "seq", seconds=0.1, progress=False, **SMALL)
    finally:
        locked.chmod(0o700)


def test_missing_texture_folder_raises(tmp_path):
    with pytest.raises(DataError, match="texture folder not found"):
        generate("room_mav", tmp_path / "seq", progress=False, texture_dir=tmp_path / "nope", **SMALL)


def test_interrupted_generation_leaves_nothing_complete_looking(tmp_path, monkeypatch):
    calls = []
    original = generate_module.Sequence.render_frame

    def flaky(self, k, with_depth=False):
        calls.append(k)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return original(self, k, with_depth)

    monkeypatch.setattr(generate_module.Sequence, "render_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate("room_mav", tmp_path / "seq", seconds=1, progress=False, **SMALL)
    assert list(tmp_path.iterdir()) == []


def _fail_after(monkeypatch, frames, error):
    original = generate_module.Sequence.render_frame

    def flaky(self, k, with_depth=False):
        if k >= frames:
            raise error
        return original(self, k, with_depth)

    monkeypatch.setattr(generate_module.Sequence, "render_frame", flaky)


def test_failure_in_a_render_process_leaves_nothing(tmp_path, monkeypatch):
    _fail_after(monkeypatch, 5, RuntimeError("render failed"))
    with pytest.raises(RuntimeError, match="render failed"):
        generate("room_mav", tmp_path / "seq", seconds=1, progress=False, width=96, height=64, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_previous_sequence(tmp_path, monkeypatch):
    out = generate("room_mav", tmp_path / "seq", seconds=0.2, progress=False, **SMALL)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    _fail_after(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        generate("room_mav", out, seconds=1, progress=False, overwrite=True, seed=3, **SMALL)
    assert list(tmp_path.iterdir()) == [out]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert describe(AslSequence(out))["frames"]["count"] == 5


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_generates_and_summarizes(tmp_path):
    out = tmp_path / "seq"
    result = CliRunner().invoke(app, ["generate", "room_mav", str(out), "--seconds", "0.3", "--width", "64",
                                      "--height", "48", "--mono", "--no-imu-noise", "--exposure", "0.01",
                                      "--seed", "4", "--tracks"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "mono 7 @ 20.0 Hz" in result.output and "seed 4" in result.output
    seq = AslSequence(out)
    assert len(seq.calibration.cameras) == 1 and seq.calibration.cameras[0].resolution == (64, 48)
    from slam.datasets.feature_tracks import FeatureTrackSequence
    tracks = list(FeatureTrackSequence(out / "exact_tracks.csv", resolution=(64, 48)).messages())
    assert sum(isinstance(m, ImuSample) for m in tracks) == sum(isinstance(m, ImuSample) for m in seq.messages())
    again = CliRunner().invoke(app, ["generate", "room_mav", str(out), "--seconds", "0.1", "--width", "64",
                                     "--height", "48", "--overwrite"])
    assert again.exit_code == 0, again.output
    assert describe(AslSequence(out))["stereo"]


@pytest.mark.parametrize("args, message", [
    (["room_drone", "{out}"], "unknown preset 'room_drone'"),
    (["room_mav", "{out}", "--seconds", "-1"], "must be > 0, got -1.0"),
    (["room_mav", "{out}", "--exposure", "-0.1"], "must be >= 0, got -0.1"),
    (["room_mav", "{out}", "--width", "8"], "must be an integer number of pixels"),
    (["room_mav", "{blocker}/seq", "--seconds", "0.1"], "cannot write output"),
    (["room_mav", "{out}", "--texture-dir", "{out}/nope"], "texture folder not found"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [a.format(out=tmp_path / "seq", blocker=blocker) for a in args]
    result = CliRunner().invoke(app, ["generate", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "seq").exists()


# -------------------------------------------------------------------------------------- benchmark set


def test_benchmark_set_is_small_and_valid():
    assert {"room_mav", "room_handheld", "hall_loop"} <= set(benchmark_set.BENCHMARK_SET)
    total = 0.0
    for name, item in benchmark_set.BENCHMARK_SET.items():
        make_config(item.preset, item.seconds, **item.overrides)  # valid
        summary = benchmark_set.motion_summary(name)
        assert summary["path_m"] > 10.0
        total += item.seconds
    assert total <= 180.0  # generates within a few minutes on two cores
    assert benchmark_set.motion_summary("hall_loop")["path_m"] > 45.0  # at least one loop


def test_ensure_sequence_generates_once_and_regenerates_on_change(tmp_path, monkeypatch):
    tiny = benchmark_set.BenchmarkSequence("room_mav", 1, 0.2, "tiny", dict(width=64, height=48, workers=1))
    monkeypatch.setitem(benchmark_set.BENCHMARK_SET, "tiny", tiny)
    first = benchmark_set.ensure_sequence("tiny", tmp_path, progress=False)
    assert first == tmp_path / "tiny" and describe(AslSequence(first))["frames"]["count"] == 5
    stamp = (first / benchmark_set.STAMP_FILE).read_text()
    mtime = (first / "mav0" / "imu0" / "data.csv").stat().st_mtime_ns

    assert benchmark_set.ensure_sequence("tiny", tmp_path, progress=False) == first  # reused
    assert (first / "mav0" / "imu0" / "data.csv").stat().st_mtime_ns == mtime

    monkeypatch.setitem(benchmark_set.BENCHMARK_SET, "tiny", tiny.__class__("room_mav", 1, 0.3, "tiny",
                                                                             tiny.overrides))
    benchmark_set.ensure_sequence("tiny", tmp_path, progress=False)  # other parameters: regenerated
    assert describe(AslSequence(first))["frames"]["count"] == 7
    assert (first / benchmark_set.STAMP_FILE).read_text() != stamp

    (first / benchmark_set.STAMP_FILE).unlink()  # e.g. interrupted before the stamp: regenerated
    benchmark_set.ensure_sequence("tiny", tmp_path, progress=False)
    assert (first / benchmark_set.STAMP_FILE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_ensure_sequence_rejects_unknown_names_and_uses_slam_cache(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown benchmark sequence 'nope'"):
        benchmark_set.ensure_sequence("nope", tmp_path)
    monkeypatch.setenv("SLAM_CACHE", str(tmp_path))
    assert benchmark_set.cache_root() == tmp_path / "benchmark"
    monkeypatch.delenv("SLAM_CACHE")
    assert benchmark_set.cache_root() == Path.home() / ".cache" / "slam" / "benchmark"
