"""The classical frontend against exact synthetic geometry: track accuracy, stereo depth, ids, gyro prediction,
outlier rejection, graceful handling of bad frames, and the pluggable extractors."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import noise_texture

from slam.datasets.synthetic import build, make_config
from slam.datasets.synthetic.render import render, sensor
from slam.frontend import (FastExtractor, FeatureTracker, ShiTomasiExtractor, TrackerConfig, epipolar_inliers,
                           make_extractor, undistort_points)
from slam.messages import Calibration, CameraCalibration, CameraFrame, FeatureFrame, ImageArray

WIDTH, HEIGHT = 376, 240  # half the EuRoC resolution: fast to render, same optics
HALF = TrackerConfig(max_features=150, cell_size=24.0, min_distance=10.0)
FIRST = 70  # 3.5 s in: past the static start, the rig moves ~3 cm and ~0.3 deg per frame
N_FRAMES = 12


@pytest.fixture(scope="module")
def sequence():
    return build(make_config("room_mav", seconds=FIRST / 20 + 1.0, width=WIDTH, height=HEIGHT, workers=1), seed=0)


@pytest.fixture(scope="module")
def rendered(sequence):
    """(images, depths) of frames FIRST .. FIRST + N_FRAMES - 1."""
    return [sequence.render_frame(k, with_depth=True) for k in range(FIRST, FIRST + N_FRAMES)]


@pytest.fixture(scope="module")
def tracked(sequence, rendered):
    """Run the stereo tracker over the rendered frames once: per frame (output, last_pixels, stats)."""
    tracker = FeatureTracker(Calibration(sequence.cameras), HALF)
    runs = []
    for j, (images, _) in enumerate(rendered):
        out = tracker.process(_frame(sequence, FIRST + j, images))
        runs.append((out, dict(tracker.last_pixels), tracker.stats))
    return runs


def _frame(sequence, k, images) -> CameraFrame:
    return CameraFrame(int(sequence.frame_t_ns[k]), tuple(ImageArray(i) for i in images), index=k)


def _reliable_depth(depth: np.ndarray, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear depth at ``px`` and whether it is trustworthy (not on a depth edge, not a miss)."""
    z = cv2.remap(depth, px[:, :1].astype(np.float32), px[:, 1:].astype(np.float32), cv2.INTER_LINEAR).ravel()
    # Depth edges jump by tens of percent; a slanted floor changes by a few percent over 3x3 pixels.
    lo, hi = cv2.erode(depth, np.ones((3, 3), np.uint8)), cv2.dilate(depth, np.ones((3, 3), np.uint8))
    r, c = np.rint(px[:, 1]).astype(int), np.rint(px[:, 0]).astype(int)
    smooth = np.isfinite(hi[r, c]) & (hi[r, c] < 1.08 * lo[r, c])
    return z, smooth


def _reproject(sequence, k_from, k_to, normalized, depth) -> np.ndarray:
    """Normalized coordinates in cam0 at ``k_to`` of points seen at ``normalized`` with ``depth`` at ``k_from``."""
    points = np.hstack([normalized, np.ones((len(normalized), 1))]) * depth[:, None]
    T = np.linalg.inv(sequence.T_W_C(k_to, 0)) @ sequence.T_W_C(k_from, 0)
    points = points @ T[:3, :3].T + T[:3, 3]
    return points[:, :2] / points[:, 2:]


# --------------------------------------------------------------------------------------------- tracking


def test_tracks_agree_with_ground_truth_reprojection(sequence, rendered, tracked):
    (out0, pixels0, _), depth0 = tracked[0], rendered[0][1][0]
    ids0, px0 = pixels0[0]
    assert len(ids0) >= 120
    z, smooth = _reliable_depth(depth0, px0)
    ids0, n0, z = ids0[smooth], out0[0].uv[smooth], z[smooth]
    focal = sequence.cameras[0].intrinsics[0]
    # KLT drifts by a few hundredths of a pixel per frame as the patches change with the viewpoint
    for j, min_kept, max_median, max_share_off in ((1, 0.95, 0.15, 0.02), (5, 0.75, 0.35, 0.1),
                                                   (N_FRAMES - 1, 0.6, 0.5, 0.1)):
        frame = tracked[j][0][0]
        _, a, b = np.intersect1d(ids0, frame.ids, return_indices=True)
        expected = _reproject(sequence, FIRST, FIRST + j, n0[a], z[a])
        error_px = np.linalg.norm(frame.uv[b] - expected, axis=1) * focal
        assert len(a) >= min_kept * len(ids0), f"frame {j}: only {len(a)} of {len(ids0)} tracks survived"
        assert np.median(error_px) < max_median, f"frame {j}: median error {np.median(error_px):.3f} px"
        share_off = np.mean(error_px > 2.0)
        assert share_off < max_share_off, f"frame {j}: {share_off:.1%} of the tracks off by > 2 px"
    # the camera really moved: this is not a static scene check
    assert np.median(np.linalg.norm(expected - n0[a], axis=1) * focal) > 10


def test_stereo_matches_triangulate_to_rendered_depth(sequence, rendered, tracked):
    cam0, cam1 = sequence.cameras
    T_C1_C0 = np.linalg.inv(cam1.T_B_C) @ cam0.T_B_C
    P0, P1 = np.eye(3, 4), T_C1_C0[:3]
    relative = []
    for (out, pixels, stats), (_, depths) in zip(tracked, rendered):
        left, right = out
        assert right.camera == 1 and right.normalized and set(right.ids) <= set(left.ids)
        assert len(right.ids) >= 0.7 * len(left.ids)
        assert stats.stereo_matched == len(right.ids)
        rows = np.searchsorted(left.ids, right.ids)
        X = cv2.triangulatePoints(P0, P1, left.uv[rows].T, right.uv.T)
        z_stereo = X[2] / X[3]
        z_true, smooth = _reliable_depth(depths[0], pixels[0][1][rows])
        relative.append((np.abs(z_stereo - z_true) / z_true)[smooth])
    relative = np.concatenate(relative)
    assert len(relative) > 500
    assert np.median(relative) < 0.02, f"median relative depth error {np.median(relative):.2%}"
    assert np.mean(relative > 0.1) < 0.05


def test_ids_persist_are_fresh_and_ascending(tracked):
    seen_max = -1
    previous = None
    for out, pixels, stats in tracked:
        ids = out[0].ids
        assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0), "cam0 ids must be unique and ascending"
        assert out[0].uv.shape == (len(ids), 2) and out[0].normalized
        new = ids[ids > seen_max]
        if previous is not None:
            carried = np.intersect1d(previous, ids)
            assert len(carried) == stats.tracked
            assert set(ids) == set(carried) | set(new), "an id came back after being dropped, or was reused"
            assert len(carried) >= 0.8 * len(previous)
        assert len(new) == stats.new
        np.testing.assert_array_equal(pixels[0][0], ids)
        seen_max = max(seen_max, int(ids.max()))
        previous = ids


def test_new_features_keep_away_from_tracks_and_out_of_full_cells(sequence, rendered):
    """Tracks only on the left half (the right one was black), then the full view: the top-up must fill
    the gaps without landing on a track or in a cell that already holds ``max_per_cell`` tracks."""
    config = replace(HALF, min_new_features=1, cell_size=48.0, max_per_cell=2, min_distance=8.0)  # room in cells
    tracker = FeatureTracker(Calibration(sequence.cameras[:1]), config)
    left_only = rendered[0][0][0].copy()
    left_only[:, WIDTH // 2:] = 0
    first = tracker.process(CameraFrame(0, (ImageArray(left_only),)))[0]
    tracker.process(_frame(sequence, FIRST + 1, rendered[1][0][:1]))
    ids, px = tracker.last_pixels[0]
    new = np.arange(len(ids)) >= tracker.stats.tracked  # ascending ids: the new ones come last
    assert tracker.stats.tracked >= 15 and tracker.stats.new >= 15
    assert set(ids[~new]) <= set(first.ids) and ids[new].min() > first.ids.max(), "new ids must be fresh"
    gaps = np.linalg.norm(px[new][:, None] - px[~new][None], axis=2)
    assert gaps.min() >= config.min_distance - 1.0, "a new feature sits on an existing track"
    cell = (px[:, 1] // config.cell_size).astype(int) * 1000 + (px[:, 0] // config.cell_size).astype(int)
    full = {c for c in cell[~new] if np.count_nonzero(cell[~new] == c) >= config.max_per_cell}
    assert len(full) >= 3 and not full & set(cell[new]), "a new feature in a full cell"


def test_outputs_match_last_pixels(sequence, tracked):
    out, pixels, _ = tracked[-1]
    for cam in (0, 1):
        ids, px = pixels[cam]
        np.testing.assert_array_equal(ids, out[cam].ids)
        np.testing.assert_allclose(undistort_points(sequence.cameras[cam], px), out[cam].uv, atol=1e-9)


def test_ids_are_never_reused_after_reset(sequence, rendered):
    tracker = FeatureTracker(Calibration(sequence.cameras[:1]), HALF)
    first = tracker.process(_frame(sequence, FIRST, rendered[0][0][:1]))[0].ids
    tracker.reset()
    again = tracker.process(_frame(sequence, FIRST + 1, rendered[1][0][:1]))
    assert len(again) == 1, "a mono calibration gives one frame"
    assert tracker.stats.tracked == 0 and again[0].ids.min() > first.max()


# ------------------------------------------------------------------------------------------ gyro prediction


def _rotated_pair(yaw_deg: float, width=752, height=480):
    """Two full-size cam0 images from one spot, the body turned by ``yaw_deg`` (plus some tilt) in between."""
    seq = build(make_config("room_mav", seconds=3.5, width=width, height=height, workers=1), seed=0)
    cam = seq.cameras[0]
    T_W_B = seq.T_W_C(60, 0) @ np.linalg.inv(cam.T_B_C)
    axis = np.array([1.0, 0.25, 0.15])  # body x is up: mostly yaw
    R_Bprev_Bcur = cv2.Rodrigues(axis / np.linalg.norm(axis) * np.deg2rad(yaw_deg))[0]
    T_W_B2 = T_W_B.copy()
    T_W_B2[:3, :3] = T_W_B[:3, :3] @ R_Bprev_Bcur
    rng = np.random.default_rng(0)
    images = [sensor(render(seq.scene, cam, T @ cam.T_B_C)[0], 1.0, None, 2.0, 0.6, rng) for T in (T_W_B, T_W_B2)]
    return cam, R_Bprev_Bcur, images


def test_gyro_prediction_keeps_tracks_through_fast_rotation():
    cam, R_Bprev_Bcur, (a, b) = _rotated_pair(12.0)  # 12 deg in one frame: ~240 deg/s at 20 Hz
    R_C = cam.T_B_C[:3, :3].T @ R_Bprev_Bcur @ cam.T_B_C[:3, :3]
    correct = {}
    for predict in (False, True):
        tracker = FeatureTracker(Calibration((cam,)))
        first = tracker.process(CameraFrame(0, (ImageArray(a),)))[0]
        second = tracker.process(CameraFrame(50_000_000, (ImageArray(b),)), R_Bprev_Bcur if predict else None)[0]
        rays = np.hstack([first.uv, np.ones((len(first.uv), 1))]) @ R_C  # pure rotation: exact truth
        expected = rays[:, :2] / rays[:, 2:]
        _, i, j = np.intersect1d(first.ids, second.ids, return_indices=True)
        error_px = np.linalg.norm(second.uv[j] - expected[i], axis=1) * cam.intrinsics[0]
        correct[predict] = int(np.count_nonzero(error_px < 2.0))
        if predict:
            assert np.median(error_px) < 1.2  # patches deform under a 12 degree turn
            assert correct[True] >= 0.7 * len(first.ids), f"{correct[True]} of {len(first.ids)} tracks kept"
    assert correct[True] >= 3 * max(correct[False], 1), correct


def test_rotation_prior_is_validated(sequence, rendered):
    tracker = FeatureTracker(Calibration(sequence.cameras[:1]), HALF)
    with pytest.raises(ValueError, match="R_Bprev_Bcur"):
        tracker.process(_frame(sequence, FIRST, rendered[0][0][:1]), np.eye(4))


# ----------------------------------------------------------------------------------------- outlier rejection


def _two_views(R_Cb_Ca: np.ndarray, p_Ca_Cb: np.ndarray, n=200, seed=0):
    """Normalized coordinates of random points 2-6 m away in view a and in view b (pose of b in a)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 6.0, n)
    points_a = np.stack([rng.uniform(-0.6, 0.6, n) * z, rng.uniform(-0.4, 0.4, n) * z, z], axis=1)
    points_b = (points_a - p_Ca_Cb) @ R_Cb_Ca.T
    return points_a[:, :2] / points_a[:, 2:], points_b[:, :2] / points_b[:, 2:]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ransac_rejects_outliers_and_keeps_inliers(seed):
    focal = 458.0
    R = cv2.Rodrigues(np.array([0.02, -0.05, 0.01]))[0]
    p = np.array([0.25, 0.03, 0.1])
    xa, xb = _two_views(R, p, seed=seed)
    rng = np.random.default_rng(seed + 100)
    xb = xb + rng.normal(0, 0.3 / focal, xb.shape)  # KLT noise
    outlier = rng.random(len(xb)) < 0.25
    angle = rng.uniform(0, 2 * np.pi, outlier.sum())
    xb[outlier] += np.stack([np.cos(angle), np.sin(angle)], axis=1) * rng.uniform(4, 12, (outlier.sum(), 1)) / focal
    # an outlier that happens to slide along its own epipolar line cannot be told apart: judge by distance
    t = -R @ p  # T_Cb_Ca
    E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ R
    lines = np.hstack([xa, np.ones((len(xa), 1))]) @ E.T
    off_px = (np.abs(np.sum(np.hstack([xb, np.ones((len(xb), 1))]) * lines, axis=1))
              / np.hypot(lines[:, 0], lines[:, 1]) * focal)
    inliers = epipolar_inliers(xa, xb, 1.0, focal)
    assert inliers.dtype == bool and inliers.shape == (len(xa),)
    assert np.mean(inliers[~outlier]) > 0.97
    assert not np.any(inliers[off_px > 3.0]), f"kept {np.count_nonzero(inliers[off_px > 3])} clear outliers"
    assert np.count_nonzero(off_px[outlier] > 3.0) > 30


@pytest.mark.parametrize("motion", ["rotation", "none"])
def test_ransac_keeps_everything_without_translation(motion):
    R = cv2.Rodrigues(np.array([0.03, 0.08, -0.02]))[0] if motion == "rotation" else np.eye(3)
    xa, xb = _two_views(R, np.zeros(3))
    assert epipolar_inliers(xa, xb, 1.0, 458.0).all()
    assert epipolar_inliers(xa[:7], xb[:7] + 1.0, 1.0, 458.0).all(), "too few points to judge"


def test_tracker_drops_what_ransac_rejects(sequence, rendered, monkeypatch):
    """The wiring: RANSAC sees the previous and current normalized points of the same tracks, row for row,
    and the tracks it rejects are gone."""
    import slam.frontend.tracker as tracker_module

    calls = []

    def reject_every_third(prev_normalized, normalized, threshold_px, focal_px, confidence):
        calls.append((prev_normalized.copy(), normalized.copy(), threshold_px, focal_px))
        return np.arange(len(normalized)) % 3 != 0

    monkeypatch.setattr(tracker_module, "epipolar_inliers", reject_every_third)
    tracker = FeatureTracker(Calibration(sequence.cameras[:1]), HALF)
    first = tracker.process(_frame(sequence, FIRST, rendered[0][0][:1]))[0]
    second = tracker.process(_frame(sequence, FIRST + 1, rendered[1][0][:1]))[0]
    (prev_normalized, normalized, threshold_px, focal_px), = calls
    assert threshold_px == HALF.ransac_threshold_px and focal_px == pytest.approx(sequence.cameras[0].intrinsics[0],
                                                                                 rel=0.01)
    carried = second.ids[second.ids <= first.ids.max()]
    assert len(carried) == tracker.stats.tracked and tracker.stats.rejected_ransac == len(normalized) - len(carried)
    rows = np.searchsorted(first.ids, carried)
    np.testing.assert_array_equal(prev_normalized[np.arange(len(normalized)) % 3 != 0], first.uv[rows])
    np.testing.assert_array_equal(normalized[np.arange(len(normalized)) % 3 != 0], second.uv[:len(carried)])


PLANE_W, PLANE_H, PLANE_F = 376, 240, 300.0  # an image-plane scene: what each track should follow is known exactly


def _plane_tracks(images, config: TrackerConfig) -> list[FeatureFrame]:
    calibration = Calibration([CameraCalibration(PLANE_W, PLANE_H, np.array([PLANE_F, PLANE_F, PLANE_W / 2,
                                                                                PLANE_H / 2]))])
    tracker = FeatureTracker(calibration, config)
    return [tracker.process(CameraFrame(int(k * 5e7), (ImageArray(image),), index=k))[0]
            for k, image in enumerate(images)]


def _pixels(frame: FeatureFrame) -> np.ndarray:
    return frame.uv * PLANE_F + [PLANE_W / 2, PLANE_H / 2]


def _u8(image: np.ndarray, rng) -> np.ndarray:
    return np.clip(np.rint(image + rng.normal(0, 1.0, image.shape)), 0, 255).astype(np.uint8)


def test_affine_alignment_keeps_tracks_on_their_points_where_klt_drifts():
    """A textured plane zooming in (1 % a frame), turning (0.5 deg) and sliding: after 40 frames plain KLT's
    tracks sit about a pixel from where their points went, the aligned ones a few hundredths."""
    texture, centre, rng = noise_texture(0, (600, 800)), np.array([400.0, 300.0]), np.random.default_rng(1)
    maps, images = [], []
    for k in range(41):
        scale, angle = 1 + 0.01 * k, np.radians(0.5 * k)
        R = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        M = np.hstack([R, (np.array([PLANE_W / 2 + 1.3 * k, PLANE_H / 2 + 0.4 * k]) - R @ centre)[:, None]])
        maps.append(np.vstack([M, [0, 0, 1]]))
        images.append(_u8(cv2.warpAffine(texture, M, (PLANE_W, PLANE_H), flags=cv2.INTER_CUBIC), rng))
    first_to_last = maps[-1] @ np.linalg.inv(maps[0])
    median_px = {}
    for radius in (0, TrackerConfig().affine_radius):
        frames = _plane_tracks(images, TrackerConfig(affine_radius=radius, max_features=80))
        _, a, b = np.intersect1d(frames[0].ids, frames[-1].ids, return_indices=True)
        expected = _pixels(frames[0])[a] @ first_to_last[:2, :2].T + first_to_last[:2, 2]
        error = np.linalg.norm(_pixels(frames[-1])[b] - expected, axis=1)
        assert len(a) >= 30, f"radius {radius}: only {len(a)} tracks lasted 40 frames"
        median_px[radius] = np.median(error)
    assert median_px[0] > 0.5, median_px  # the drift this removes
    assert median_px[TrackerConfig().affine_radius] < 0.05, median_px


def test_tracks_covered_by_a_sliding_foreground_are_dropped_not_dragged():
    """A textured foreground slides over a still background, 3 px a frame: the corners where its edge crosses
    background texture slide with it. Plain KLT follows them tens of pixels; aligned tracks of the background
    stay where they are or end."""
    background, foreground = noise_texture(2, (PLANE_H, PLANE_W)), noise_texture(3, (PLANE_H, PLANE_W))
    rng = np.random.default_rng(4)
    images = []
    for k in range(30):
        image, edge = background.copy(), 60 + 3 * k
        image[:, :edge] = foreground[:, PLANE_W - edge:]
        images.append(_u8(image, rng))
    largest = {}
    for radius in (0, TrackerConfig().affine_radius):
        frames = _plane_tracks(images, TrackerConfig(affine_radius=radius, max_features=150, min_distance=10.0,
                                                     cell_size=24.0))
        start = {i: p for i, p in zip(frames[0].ids.tolist(), _pixels(frames[0])) if p[0] > 72}  # background
        moved = [np.linalg.norm(p - start[i]) for f in frames[1:] for i, p in zip(f.ids.tolist(), _pixels(f))
                 if i in start]
        assert len(moved) > 1000
        largest[radius] = max(moved)
    assert largest[0] > 20, largest
    assert largest[TrackerConfig().affine_radius] < 3.0, largest


def _render_cam1_at(sequence, k, T_C0_C1) -> np.ndarray:
    """cam1's image at frame ``k`` as if cam1 sat at ``T_C0_C1`` from cam0 (a miscalibrated rig)."""
    cam1 = sequence.cameras[1]
    radiance, _ = render(sequence.scene, cam1, sequence.T_W_C(k, 0) @ T_C0_C1)
    return sensor(radiance, 1.0, None, 2.0, 0.6, np.random.default_rng(1))


def test_stereo_rejects_epipolar_violations(sequence, rendered):
    """cam1 really 11 cm below cam0 while the calibration says beside it: matches leave the epipolar lines."""
    cam0, cam1 = sequence.cameras
    T_C0_C1 = np.linalg.inv(cam0.T_B_C) @ cam1.T_B_C
    T_C0_C1[:3, 3] = [0.0, np.linalg.norm(T_C0_C1[:3, 3]), 0.0]
    image1 = _render_cam1_at(sequence, FIRST, T_C0_C1)
    tracker = FeatureTracker(Calibration(sequence.cameras), HALF)
    out = tracker.process(CameraFrame(0, (ImageArray(rendered[0][0][0]), ImageArray(image1))))
    assert tracker.stats.rejected_epipolar >= 0.5 * len(out[0].ids)
    # a few floor features find another tile of the repetitive floor that happens to lie on the line
    assert len(out[1].ids) <= 0.15 * len(out[0].ids)


def test_stereo_rejects_matches_behind_the_rig(sequence, rendered):
    """cam1 really on the other side of cam0: on the epipolar lines, but the depths come out negative."""
    cam0, cam1 = sequence.cameras
    T_C0_C1 = np.linalg.inv(cam0.T_B_C) @ cam1.T_B_C
    T_C0_C1[:3, 3] *= -1
    image1 = _render_cam1_at(sequence, FIRST, T_C0_C1)
    tracker = FeatureTracker(Calibration(sequence.cameras), HALF)
    out = tracker.process(CameraFrame(0, (ImageArray(rendered[0][0][0]), ImageArray(image1))))
    assert tracker.stats.rejected_depth >= 0.4 * len(out[0].ids)  # the others fail KLT or forward-backward
    assert len(out[1].ids) <= 0.05 * len(out[0].ids)


# --------------------------------------------------------------------------------------- awkward frames


@pytest.mark.parametrize("value", [0, 128, 255])
def test_textureless_images_give_empty_frames(sequence, rendered, value):
    tracker = FeatureTracker(Calibration(sequence.cameras), HALF)
    flat = np.full((HEIGHT, WIDTH), value, np.uint8)
    out = tracker.process(CameraFrame(7, (ImageArray(flat), ImageArray(flat)), index=3))
    assert [(f.camera, len(f.ids), f.uv.shape, f.t_ns, f.index) for f in out] == [(0, 0, (0, 2), 7, 3),
                                                                                 (1, 0, (0, 2), 7, 3)]
    assert out[0].ids.dtype == np.int64
    # texture after the blank frame: tracking starts; blank again: every track is lost, quietly
    textured = tracker.process(_frame(sequence, FIRST, rendered[0][0]))
    assert len(textured[0].ids) > 100 and len(textured[1].ids) > 50
    out = tracker.process(CameraFrame(8, (ImageArray(flat), ImageArray(flat))))
    assert len(out[0].ids) == 0 and len(out[1].ids) == 0 and tracker.stats.tracked == 0


def test_missing_cam1_image_gives_empty_cam1_frame(sequence, rendered):
    tracker = FeatureTracker(Calibration(sequence.cameras), HALF)
    out = tracker.process(_frame(sequence, FIRST, rendered[0][0][:1]))
    assert len(out) == 2 and len(out[0].ids) > 100 and len(out[1].ids) == 0
    out = tracker.process(_frame(sequence, FIRST + 1, rendered[1][0]))  # and back to stereo
    assert len(out[1].ids) > 0.7 * len(out[0].ids)


def test_stereo_can_be_switched_off(sequence, rendered):
    tracker = FeatureTracker(Calibration(sequence.cameras), TrackerConfig(stereo=False, cell_size=24.0))
    out = tracker.process(_frame(sequence, FIRST, rendered[0][0]))
    assert len(out) == 1 and out[0].camera == 0 and 1 not in tracker.last_pixels


@pytest.mark.parametrize("camera", [0, 1])
def test_image_size_mismatch_names_camera_and_sizes(sequence, rendered, camera):
    images = list(rendered[0][0])
    images[camera] = cv2.resize(images[camera], (WIDTH // 2, HEIGHT // 2))
    tracker = FeatureTracker(Calibration(sequence.cameras), HALF)
    with pytest.raises(ValueError, match=rf"cam{camera} image .* is 188x120 px .* says 376x240"):
        tracker.process(_frame(sequence, FIRST, images))


def test_non_grayscale_image_is_rejected(sequence, rendered):
    tracker = FeatureTracker(Calibration(sequence.cameras[:1]), HALF)
    color = cv2.cvtColor(rendered[0][0][0], cv2.COLOR_GRAY2BGR)
    with pytest.raises(ValueError, match="cam0 image .* uint8 HxW"):
        tracker.process(CameraFrame(0, (ImageArray(color),)))


@pytest.mark.parametrize("field, value", [("max_features", 0), ("klt_window", 20), ("fb_threshold_px", -1.0),
                                          ("pyramid_levels", -1), ("ransac_confidence", 1.0), ("affine_radius", -1),
                                          ("affine_iterations", 0), ("affine_max_residual", 0.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**{field: value})


# ------------------------------------------------------------------------------------------- extractors


@pytest.mark.parametrize("name, cls", [("shi_tomasi", ShiTomasiExtractor), ("fast", FastExtractor)])
def test_extractors_respect_mask_count_and_spread(rendered, name, cls):
    image = rendered[0][0][0]
    extractor = make_extractor(name, cell_size=24.0, max_per_cell=2, min_distance=8.0)
    assert isinstance(extractor, cls) and extractor.name == name
    xy, score = extractor.detect(image, None, 100)
    assert xy.dtype == np.float32 and score.dtype == np.float32 and xy.shape == (100, 2) and score.shape == (100,)
    assert np.all(np.diff(score) <= 0), "strongest first"
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    assert gaps.min() >= 8.0
    cells = (xy[:, 1] // 24).astype(int) * 16 + (xy[:, 0] // 24).astype(int)
    assert np.bincount(cells).max() <= 2
    # spread: the same number of features over more grid cells than goodFeaturesToTrack (no grid) covers
    plain = cv2.goodFeaturesToTrack(image, 100, 0.01, 8.0).reshape(-1, 2)
    occupied = len(np.unique(cells))
    assert occupied > len(np.unique((plain[:, 1] // 24).astype(int) * 16 + (plain[:, 0] // 24).astype(int)))
    mask = np.zeros_like(image)
    mask[:, : WIDTH // 2] = 255
    xy, _ = extractor.detect(image, mask, 40)
    assert 0 < len(xy) <= 40 and np.all(xy[:, 0] < WIDTH // 2)
    assert len(extractor.detect(np.zeros_like(image), None, 50)[0]) == 0
    assert len(extractor.detect(image, None, 0)[0]) == 0


def test_extractor_registry_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown extractor 'sift'.*fast, learned, shi_tomasi"):
        make_extractor("sift")
    with pytest.raises(ValueError, match="shi_tomasi"):
        make_extractor("shi_tomasi", threshold=3)
    with pytest.raises(ValueError, match="FastConfig.cell_size"):
        make_extractor("fast", cell_size=0.5)
    with pytest.raises(ValueError, match="mask"):
        make_extractor("fast").detect(np.zeros((10, 10), np.uint8), np.zeros((5, 5), np.uint8), 5)


def test_tracker_accepts_any_extractor_with_the_protocol(sequence, rendered):
    class StubNet:
        """Stands in for a learned net: only the protocol matters to the tracker."""

        name = "stub"

        def __init__(self):
            self.calls = []

        def detect(self, image, mask, max_count):
            self.calls.append((image.shape, None if mask is None else mask.dtype, max_count))
            xy, score = ShiTomasiExtractor().detect(image, mask, max_count)
            return xy, score

    stub = StubNet()
    tracker = FeatureTracker(Calibration(sequence.cameras[:1]), HALF, extractor=stub)
    out = tracker.process(_frame(sequence, FIRST, rendered[0][0][:1]))
    assert stub.calls == [((HEIGHT, WIDTH), np.uint8, HALF.max_features)] and len(out[0].ids) > 50
    assert isinstance(out[0], FeatureFrame)


def test_tracker_with_fast_extractor_tracks(sequence, rendered):
    tracker = FeatureTracker(Calibration(sequence.cameras), TrackerConfig(extractor="fast", cell_size=24.0,
                                                                          min_distance=10.0))
    for j in range(3):
        out = tracker.process(_frame(sequence, FIRST + j, rendered[j][0]))
    assert tracker.stats.tracked > 80 and len(out[1].ids) > 0.6 * len(out[0].ids)

