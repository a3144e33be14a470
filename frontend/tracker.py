"""The classical visual frontend: KLT feature tracks on cam0, stereo matches in cam1, fresh ids for new features.

Per frame (:meth:`FeatureTracker.process`):

1. temporal KLT of the previous cam0 features, started at the gyro prediction when the body rotation is
   given (infinite-depth homography), with a forward-backward check;
2. affine alignment of each track's first patch at the KLT position (:mod:`.patch_align`), which keeps the
   track on the point it began on; a track whose patch no longer matches is dropped;
3. RANSAC on a fundamental matrix over undistorted points (outliers: occlusions, repeated texture,
   independently moving objects);
4. top-up with new features from the extractor, away from existing tracks, grid-bucketed;
5. stereo: KLT of every cam0 feature into cam1, forward-backward, epipolar and depth checks with the
   calibrated extrinsics.

OpenCV's Python binding cannot take prebuilt pyramids (opencv/opencv#4777), so each of the four KLT calls
per frame builds its own; the backward passes of the forward-backward checks use only the two finest
levels, and the stereo pass one level less than the temporal one, which keeps that cheap.

cam0 features are ordered by ascending id, which is also their age (oldest first): new ids are appended
with increasing numbers and survivors keep their order. Ids are never reused, not even after ``reset()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from slam.messages import Calibration, CameraCalibration, CameraFrame, FeatureFrame

from .camera_model import project_points, undistort_points
from .extractor import FeatureExtractor, make_extractor
from .patch_align import align_patches, extract_templates, identity_warps, template_side

BORDER_PX = 4  # no new features this close to the image edge (KLT windows and FAST circles need room)


@dataclass(frozen=True)
class TrackerConfig:
    # cam0 tracks kept per frame; 120 beat 150 (VINS-Mono's default) on every sequence of the benchmark set,
    # stereo and mono, and cut the keyframe step by a quarter
    max_features: int = 120
    cell_size: float = 48.0  # px, grid bucketing of new features
    max_per_cell: int = 3
    min_distance: float = 20.0  # px between features (new ones keep this far from every track)
    # Detect only when at least this many tracks are missing: a detection costs about as much as the temporal
    # KLT (the learned net four times as much), and a few features less do not matter to the estimator. 20
    # rather than 10 was as accurate or better on every row of bench_vio (classical: room_mav stereo 0.0181 ->
    # 0.0164 m, room_handheld mono 0.0159 -> 0.0133, hall_loop stereo 0.0230 -> 0.0206) and faster; fewer
    # young tracks enter the window. With pixel_sigma 1 % off, the room_handheld rows came out ~10 % worse
    # instead and the others still better.
    min_new_features: int = 20
    extractor: str = "shi_tomasi"  # a name from extractor.EXTRACTORS
    extractor_options: dict = field(default_factory=dict)  # extra config fields of that extractor
    klt_window: int = 21  # px, odd
    pyramid_levels: int = 3  # coarsest level index for the temporal KLT
    klt_iterations: int = 30
    klt_epsilon: float = 0.01  # px
    fb_threshold_px: float = 1.0  # forward-backward round-trip error
    # Affine alignment against each track's first patch (0: off, plain frame-to-frame KLT). Measured with
    # benchmarks/bench_tracks.py on hall_loop: median error against the true projection after 10/40/100
    # frames 0.44/1.05/1.90 px with KLT alone, 0.09/0.10/0.11 px aligned; occlusion-boundary observations
    # 18 % -> 13 % of all, their median error 3.4 -> 0.5 px. bench_vio, stereo-inertial ATE: room_mav
    # 0.0164 -> 0.0065 m, room_handheld 0.0110 -> 0.0035, hall_loop 0.0206 -> 0.0088.
    affine_radius: int = 8  # px; the aligned patch is (2r + 1)^2
    affine_iterations: int = 5  # Gauss-Newton steps from the KLT position (converged after 3-4)
    # RMS difference of the zero-mean unit-variance patches (0.6 ~ normalized cross-correlation 0.82) above
    # which the track is dropped: what it follows is no longer what it began on
    affine_max_residual: float = 0.6
    affine_max_correction_px: float = 2.0  # further from the KLT position -> dropped
    ransac_threshold_px: float = 1.0  # epipolar distance, in pixels of a pinhole with cam0's focal length
    ransac_confidence: float = 0.99
    stereo: bool = True  # used only when the calibration has a second camera
    stereo_pyramid_levels: int = 2  # disparities are small next to temporal motion under fast rotation
    stereo_epipolar_px: float = 2.0  # distance of the cam1 point from the epipolar line of the cam0 point
    stereo_min_depth_m: float = 0.1
    stereo_max_depth_m: float = 100.0
    stereo_default_depth_m: float = 3.0  # disparity guess for features never matched before

    def __post_init__(self):
        for name in ("max_features", "max_per_cell", "klt_iterations", "min_new_features", "affine_iterations"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrackerConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("pyramid_levels", "stereo_pyramid_levels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value <= 8:
                raise ValueError(f"TrackerConfig.{name} must be an integer in [0, 8], got {value!r}")
        if not isinstance(self.affine_radius, (int, np.integer)) or isinstance(self.affine_radius, bool) \
                or self.affine_radius < 0:
            raise ValueError(f"TrackerConfig.affine_radius must be an integer >= 0, got {self.affine_radius!r}")
        if not isinstance(self.klt_window, (int, np.integer)) or self.klt_window < 5 or self.klt_window % 2 == 0:
            raise ValueError(f"TrackerConfig.klt_window must be an odd integer >= 5, got {self.klt_window!r}")
        for name in ("cell_size", "klt_epsilon", "fb_threshold_px", "affine_max_residual", "affine_max_correction_px",
                     "ransac_threshold_px", "stereo_epipolar_px",
                     "stereo_min_depth_m", "stereo_max_depth_m", "stereo_default_depth_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"TrackerConfig.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.min_distance, (int, float)) and self.min_distance >= 0):
            raise ValueError(f"TrackerConfig.min_distance must be a number >= 0, got {self.min_distance!r}")
        if not 0 < self.ransac_confidence < 1:
            raise ValueError(f"TrackerConfig.ransac_confidence must be in (0, 1), got {self.ransac_confidence!r}")
        if self.stereo_min_depth_m >= self.stereo_max_depth_m:
            raise ValueError("TrackerConfig.stereo_min_depth_m must be below stereo_max_depth_m")


@dataclass
class TrackerStats:
    """What the last :meth:`FeatureTracker.process` did (counts of cam0 features) and what it cost."""

    tracked: int = 0  # carried over from the previous frame, after every check
    new: int = 0  # detected in this frame
    stereo_matched: int = 0
    lost: int = 0  # KLT did not converge or the feature left the image
    rejected_fb: int = 0  # forward-backward error above threshold
    rejected_affine: int = 0  # the first patch no longer matches, or aligns far from the KLT position
    rejected_ransac: int = 0
    rejected_stereo: int = 0  # stereo KLT failed or forward-backward error above threshold
    rejected_epipolar: int = 0
    rejected_depth: int = 0  # stereo match triangulates behind, too close or too far
    ms_klt: float = 0.0
    ms_affine: float = 0.0
    ms_ransac: float = 0.0
    ms_detect: float = 0.0
    ms_stereo: float = 0.0
    ms_total: float = 0.0

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


class FeatureTracker:
    """Feature tracks of a mono or stereo camera; see the module docstring for the steps."""

    def __init__(self, calibration: Calibration, config: TrackerConfig = TrackerConfig(),
                 extractor: FeatureExtractor | None = None):
        if not calibration.cameras:
            raise ValueError("the calibration has no camera")
        self.calibration = calibration
        self.config = config
        self.extractor = extractor if extractor is not None else make_extractor(
            config.extractor, **{"cell_size": config.cell_size, "max_per_cell": config.max_per_cell,
                                 "min_distance": config.min_distance, **config.extractor_options})
        self.stereo = bool(config.stereo and calibration.stereo)
        cam0 = calibration.cameras[0]
        self._focal0 = float(np.mean(cam0.intrinsics[:2]))
        win = (config.klt_window, config.klt_window)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, config.klt_iterations, config.klt_epsilon)
        self._klt = dict(winSize=win, maxLevel=config.pyramid_levels, criteria=criteria,
                         flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        self._klt_stereo = dict(self._klt, maxLevel=config.stereo_pyramid_levels)
        # The backward pass of the forward-backward check starts at the origin (as VINS-Fusion does): it
        # asks whether the origin is where the reverse flow settles, which the fine levels answer alone.
        self._klt_back = dict(self._klt, maxLevel=min(config.pyramid_levels, 1))
        if self.stereo:
            cam1 = calibration.cameras[1]
            T_C1_C0 = np.linalg.inv(cam1.T_B_C) @ cam0.T_B_C
            self._R_C1_C0, self._t_C1_C0 = T_C1_C0[:3, :3], T_C1_C0[:3, 3]
            if np.linalg.norm(self._t_C1_C0) < 1e-6:
                raise ValueError("cam0 and cam1 share one optical centre (zero baseline); disable stereo")
            self._E_C1_C0 = _skew(self._t_C1_C0) @ self._R_C1_C0  # n1^T E n0 = 0
            self._focal1 = float(np.mean(cam1.intrinsics[:2]))
        self._next_id = 0
        self.stats = TrackerStats()
        self.reset()

    def reset(self) -> None:
        """Forget every track (e.g. after a tracking failure); new ids continue where they were."""
        self._prev_image = None
        self._ids = np.zeros(0, np.int64)
        self._px = np.zeros((0, 2), np.float32)  # distorted cam0 pixels
        self._normalized = np.zeros((0, 2))
        side = template_side(self.config.affine_radius)
        self._templates = np.zeros((0, side, side))  # per track: its first patch (see patch_align)
        self._warps = np.zeros((0, 2, 3))  # per track: template offsets -> pixels in the last image
        self._stereo_ids = np.zeros(0, np.int64)  # ids matched in cam1 in the last frame, ascending
        self._stereo_offset = np.zeros((0, 2), np.float32)  # their px1 - px0
        self._typical_depth = self.config.stereo_default_depth_m
        self.last_pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ----------------------------------------------------------------------------------------- public
    @property
    def last_image(self) -> np.ndarray | None:
        """The last cam0 image tracked (for viewers: draw ``last_pixels`` on it)."""
        return self._prev_image


    def process(self, frame: CameraFrame, R_Bprev_Bcur: np.ndarray | None = None) -> list[FeatureFrame]:
        """Track ``frame``; returns [cam0 FeatureFrame] plus a cam1 FeatureFrame when stereo is on.

        ``R_Bprev_Bcur`` (body rotation from the previous frame to this one, e.g. integrated gyro) seeds the
        KLT. cam0 ids are ascending (oldest first). The cam1 frame holds the subset of cam0 ids matched in
        cam1, in the same order (empty when the frame lacks a cam1 image). Both carry undistorted
        normalized coordinates. A black or textureless image gives empty frames.
        """
        start = time.perf_counter()
        stats = self.stats = TrackerStats()
        if not frame.images or frame.images[0] is None:
            raise ValueError(f"frame {frame.index} (t_ns={frame.t_ns}) has no cam0 image")
        R_Cprev_Ccur = self._camera_rotation(R_Bprev_Bcur)
        image0 = self._load(frame, 0)
        ids, px, normalized = self._track(image0, R_Cprev_Ccur, stats)
        stats.tracked = len(ids)
        ids, px, normalized = self._top_up(image0, ids, px, normalized, stats)
        self._prev_image = image0
        self._ids, self._px, self._normalized = ids, px, normalized
        self.last_pixels = {0: (ids, px)}
        frames = [FeatureFrame(frame.t_ns, 0, ids, normalized, True, frame.index)]

        if self.stereo:
            ids1, px1, normalized1 = self._stereo(frame, image0, stats)
            self.last_pixels[1] = (ids1, px1)
            frames.append(FeatureFrame(frame.t_ns, 1, ids1, normalized1, True, frame.index))
        stats.ms_total = _ms(start)
        return frames

    # ------------------------------------------------------------------------------------------ steps

    def _camera_rotation(self, R_Bprev_Bcur) -> np.ndarray | None:
        if R_Bprev_Bcur is None:
            return None
        R = np.asarray(R_Bprev_Bcur, dtype=np.float64)
        if R.shape != (3, 3) or not np.all(np.isfinite(R)):
            raise ValueError(f"R_Bprev_Bcur must be a finite 3x3 rotation matrix, got shape {R.shape}")
        R_B_C = self.calibration.cameras[0].T_B_C[:3, :3]
        return R_B_C.T @ R @ R_B_C

    def _load(self, frame: CameraFrame, i: int) -> np.ndarray:
        cam = self.calibration.cameras[i]
        image = frame.images[i].load()
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
            raise ValueError(f"{cam.name} image of frame {frame.index} must be uint8 HxW (grayscale), got "
                             f"{getattr(image, 'dtype', type(image))} with shape {getattr(image, 'shape', None)}")
        if image.shape != (cam.height, cam.width):
            raise ValueError(f"{cam.name} image of frame {frame.index} is {image.shape[1]}x{image.shape[0]} px "
                             f"but the calibration of {cam.name} says {cam.width}x{cam.height}")
        return image

    def _track(self, image0, R_Cprev_Ccur, stats: TrackerStats):
        """Previous cam0 features in the new image: KLT, forward-backward, affine alignment and RANSAC."""
        cam0 = self.calibration.cameras[0]
        if self._prev_image is None or len(self._ids) == 0:
            return self._ids[:0], self._px[:0], self._normalized[:0]
        t0 = time.perf_counter()
        prev_px = self._px
        guess = self._predict(R_Cprev_Ccur) if R_Cprev_Ccur is not None else prev_px.copy()
        cur, status, _ = cv2.calcOpticalFlowPyrLK(self._prev_image, image0, prev_px, guess, **self._klt)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(image0, self._prev_image, cur, prev_px.copy(),
                                                        **self._klt_back)
        converged = (status.ravel() == 1) & _inside(cur, cam0)
        round_trip = ((status_back.ravel() == 1)
                      & (np.linalg.norm(back - prev_px, axis=1) <= self.config.fb_threshold_px))
        keep = converged & round_trip
        stats.lost = int(np.count_nonzero(~converged))
        stats.rejected_fb = int(np.count_nonzero(converged & ~round_trip))
        ids, cur, self._templates, self._warps = self._ids[keep], cur[keep], self._templates[keep], self._warps[keep]
        prev_normalized = self._normalized[keep]
        stats.ms_klt = _ms(t0)

        if self.config.affine_radius > 0:
            t0 = time.perf_counter()
            aligned = self._align(image0, cur)
            stats.rejected_affine = int(np.count_nonzero(~aligned))
            ids, cur, prev_normalized = ids[aligned], cur[aligned], prev_normalized[aligned]
            self._templates, self._warps = self._templates[aligned], self._warps[aligned]
            stats.ms_affine = _ms(t0)
        normalized = undistort_points(cam0, cur)

        t0 = time.perf_counter()
        inliers = epipolar_inliers(prev_normalized, normalized, self.config.ransac_threshold_px, self._focal0,
                                   self.config.ransac_confidence)
        stats.rejected_ransac = int(np.count_nonzero(~inliers))
        self._templates, self._warps = self._templates[inliers], self._warps[inliers]
        stats.ms_ransac = _ms(t0)
        return ids[inliers], cur[inliers], normalized[inliers]

    def _align(self, image0, cur: np.ndarray) -> np.ndarray:
        """Align each track's first patch at its KLT position ``cur`` (refined in place); which to keep."""
        c = self.config
        warps = self._warps.copy()
        warps[:, :, 2] = cur  # the affine part carries over from the last image, the KLT gives the shift
        warps, residual = align_patches(image0, self._templates, warps, c.affine_iterations)
        aligned = ((residual <= c.affine_max_residual)
                   & (np.linalg.norm(warps[:, :, 2] - cur, axis=1) <= c.affine_max_correction_px)
                   & _inside(warps[:, :, 2], self.calibration.cameras[0]))
        cur[aligned] = warps[aligned, :, 2]
        self._warps = warps
        # Past a 2x change of the patch's area its first appearance is too little or too much detail to align
        # to: start again from the patch as it looks now.
        area = np.abs(np.linalg.det(warps[:, :, :2]))
        restart = aligned & ((area < 0.5) | (area > 2.0))
        if np.any(restart):
            self._templates[restart] = extract_templates(image0, cur[restart], c.affine_radius)
            self._warps[restart] = identity_warps(cur[restart])
        return aligned

    def _predict(self, R_Cprev_Ccur: np.ndarray) -> np.ndarray:
        """Pixels of the previous features after the rotation alone: x_cur ~ R_Ccur_Cprev x_prev."""
        guess = self._px.copy()
        rays = np.hstack([self._normalized, np.ones((len(self._normalized), 1))]) @ R_Cprev_Ccur
        ahead = rays[:, 2] > 1e-3  # a bearing rotated behind the camera has no pixel: keep the old one
        if np.any(ahead):
            guess[ahead] = project_points(self.calibration.cameras[0], rays[ahead, :2] / rays[ahead, 2:])
        return guess

    def _top_up(self, image0, ids, px, normalized, stats: TrackerStats):
        """Add new features where no track is, up to ``max_features``; fresh ids."""
        need = self.config.max_features - len(ids)
        if need < min(self.config.min_new_features, self.config.max_features):
            return ids, px, normalized
        t0 = time.perf_counter()
        cam0 = self.calibration.cameras[0]
        new_px, _ = self.extractor.detect(image0, self._detection_mask(image0.shape, px), need)
        new_px = np.asarray(new_px, np.float32).reshape(-1, 2)[:need]
        new_normalized = undistort_points(cam0, new_px)
        valid = np.all(np.isfinite(new_normalized), axis=1)  # fisheye pixels beyond 90 degrees
        new_px, new_normalized = new_px[valid], new_normalized[valid]
        new_ids = np.arange(self._next_id, self._next_id + len(new_px), dtype=np.int64)
        self._next_id += len(new_px)
        new_templates = extract_templates(image0, new_px, self.config.affine_radius)
        self._templates = np.concatenate([self._templates, new_templates])
        self._warps = np.concatenate([self._warps, identity_warps(new_px)])
        stats.new = len(new_ids)
        stats.ms_detect = _ms(t0)
        return (np.concatenate([ids, new_ids]), np.concatenate([px, new_px]),
                np.concatenate([normalized, new_normalized]))

    def _detection_mask(self, shape, px: np.ndarray) -> np.ndarray:
        """255 where a new feature may go: not near a track, not in a full grid cell, not at the border."""
        c = self.config
        height, width = shape
        mask = np.zeros(shape, np.uint8)
        mask[BORDER_PX:height - BORDER_PX, BORDER_PX:width - BORDER_PX] = 255
        if len(px) == 0:
            return mask
        radius = int(np.ceil(c.min_distance))
        if radius > 0:
            for x, y in np.rint(px).astype(np.int32):
                cv2.circle(mask, (int(x), int(y)), radius, 0, -1)
        cells_x = int(np.ceil(width / c.cell_size))
        cell = (px[:, 1] // c.cell_size).astype(np.int64) * cells_x + (px[:, 0] // c.cell_size).astype(np.int64)
        counts = np.bincount(cell, minlength=1)
        for full in np.flatnonzero(counts >= c.max_per_cell):
            gy, gx = divmod(int(full), cells_x)
            y0, x0 = int(gy * c.cell_size), int(gx * c.cell_size)
            mask[y0:int(y0 + c.cell_size), x0:int(x0 + c.cell_size)] = 0
        return mask

    def _stereo(self, frame: CameraFrame, image0, stats: TrackerStats):
        """cam0 features matched in cam1: (ids, cam1 pixels, cam1 normalized coordinates)."""
        empty = (self._ids[:0], np.zeros((0, 2), np.float32), np.zeros((0, 2)))
        if len(frame.images) < 2 or frame.images[1] is None:
            self._stereo_ids, self._stereo_offset = empty[0], empty[1]
            return empty
        t0 = time.perf_counter()
        image1 = self._load(frame, 1)
        ids, px0, normalized0 = self._ids, self._px, self._normalized
        if len(ids) == 0:
            self._stereo_ids, self._stereo_offset = empty[0], empty[1]
            return empty
        cam1 = self.calibration.cameras[1]
        guess = self._stereo_guess(ids, px0, normalized0)
        px1, status, _ = cv2.calcOpticalFlowPyrLK(image0, image1, px0, guess, **self._klt_stereo)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(image1, image0, px1, px0.copy(), **self._klt_back)
        ok = ((status.ravel() == 1) & (status_back.ravel() == 1) & _inside(px1, cam1)
              & (np.linalg.norm(back - px0, axis=1) <= self.config.fb_threshold_px))
        stats.rejected_stereo = int(np.count_nonzero(~ok))
        ids, px0, normalized0, px1 = ids[ok], px0[ok], normalized0[ok], px1[ok]
        normalized1 = undistort_points(cam1, px1)

        rays0 = np.hstack([normalized0, np.ones((len(ids), 1))])
        rays1 = np.hstack([normalized1, np.ones((len(ids), 1))])
        lines = rays0 @ self._E_C1_C0.T  # epipolar lines of the cam0 points in cam1 (normalized)
        with np.errstate(invalid="ignore", divide="ignore"):
            epipolar_px = np.abs(np.sum(rays1 * lines, axis=1)) / np.hypot(lines[:, 0], lines[:, 1]) * self._focal1
        on_line = epipolar_px <= self.config.stereo_epipolar_px  # NaN (fisheye edge) fails too
        depth0, depth1 = self._triangulate_depths(rays0, rays1)
        c = self.config
        plausible = (depth0 >= c.stereo_min_depth_m) & (depth0 <= c.stereo_max_depth_m) & (depth1 > 0)
        stats.rejected_epipolar = int(np.count_nonzero(~on_line))
        stats.rejected_depth = int(np.count_nonzero(on_line & ~plausible))
        keep = on_line & plausible
        ids, px0, px1, normalized1, depth0 = ids[keep], px0[keep], px1[keep], normalized1[keep], depth0[keep]
        stats.stereo_matched = len(ids)
        self._stereo_ids, self._stereo_offset = ids, px1 - px0
        if len(depth0) >= 5:
            self._typical_depth = float(np.median(depth0))
        stats.ms_stereo = _ms(t0)
        return ids, px1, normalized1

    def _stereo_guess(self, ids, px0, normalized0) -> np.ndarray:
        """Where cam1 should see each feature: last frame's offset, else the point at the typical depth."""
        guess = np.empty_like(px0)
        slot = np.searchsorted(self._stereo_ids, ids)
        slot = np.minimum(slot, max(len(self._stereo_ids) - 1, 0))
        known = (self._stereo_ids[slot] == ids) if len(self._stereo_ids) else np.zeros(len(ids), bool)
        guess[known] = px0[known] + self._stereo_offset[slot[known]]
        unknown = ~known
        if np.any(unknown):
            points = self._typical_depth * np.hstack([normalized0[unknown], np.ones((int(unknown.sum()), 1))])
            points = points @ self._R_C1_C0.T + self._t_C1_C0
            points[:, 2] = np.maximum(points[:, 2], 1e-6)
            guess[unknown] = project_points(self.calibration.cameras[1], points[:, :2] / points[:, 2:])
        return guess

    def _triangulate_depths(self, rays0: np.ndarray, rays1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depths (z in cam0, z in cam1) minimizing |d0 R r0 + t - d1 r1| for each pair of z=1 rays."""
        a = rays0 @ self._R_C1_C0.T  # R r0
        t = self._t_C1_C0
        aa, ab, bb = np.sum(a * a, 1), np.sum(a * rays1, 1), np.sum(rays1 * rays1, 1)
        at, bt = a @ t, rays1 @ t
        det = aa * bb - ab * ab  # 0 for parallel rays (point at infinity)
        with np.errstate(invalid="ignore", divide="ignore"):
            d0 = (ab * bt - bb * at) / det
            d1 = (aa * bt - ab * at) / det
        bad = ~(np.abs(det) > 1e-12)
        d0[bad], d1[bad] = np.inf, np.inf
        return d0, d1


def epipolar_inliers(prev_normalized: np.ndarray, normalized: np.ndarray, threshold_px: float = 1.0,
                     focal_px: float = 460.0, confidence: float = 0.99) -> np.ndarray:
    """Inlier mask of a fundamental-matrix RANSAC between two sets of undistorted normalized points.

    The points are scaled to the pixels of an ideal pinhole with ``focal_px`` so that ``threshold_px`` is an
    epipolar distance in pixels (as VINS-Mono does). Fundamental rather than essential: under pure rotation
    the 5-point solver's samples are degenerate and OpenCV's essential RANSAC then drops a third of the
    inliers, while the 7-point one keeps them; it is also several times faster. Below 8 points everything is
    an inlier. Like any two-view test it cannot see an outlier displaced along its own epipolar line.
    """
    n = len(normalized)
    if n < 8:
        return np.ones(n, bool)
    a = np.asarray(prev_normalized, np.float64) * focal_px
    b = np.asarray(normalized, np.float64) * focal_px
    _, mask = cv2.findFundamentalMat(a, b, cv2.FM_RANSAC, threshold_px, confidence, 1000)
    if mask is None:  # OpenCV found no model at all: nothing to reject against
        return np.ones(n, bool)
    inliers = mask.ravel().astype(bool)
    # OpenCV's mask comes from one 7-point sample, whose noise alone rejects ~7 % of the inliers at 0.3 px
    # of KLT noise: refit on the inliers (8-point, least squares) and threshold again, twice (-> ~0.2 %).
    for _ in range(2):
        if np.count_nonzero(inliers) < 8:
            break
        F, _ = cv2.findFundamentalMat(a[inliers], b[inliers], cv2.FM_8POINT)
        if F is None or F.shape != (3, 3):
            break
        inliers = _epipolar_distance(F, a, b) <= threshold_px
    return inliers


def _epipolar_distance(F: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Larger of the two point-to-epipolar-line distances of each pair (b^T F a = 0)."""
    ha, hb = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    lines_b, lines_a = ha @ F.T, hb @ F
    residual = np.abs(np.sum(hb * lines_b, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.maximum(residual / np.hypot(lines_b[:, 0], lines_b[:, 1]),
                          residual / np.hypot(lines_a[:, 0], lines_a[:, 1]))


def _inside(px: np.ndarray, cam: CameraCalibration) -> np.ndarray:
    return ((px[:, 0] >= 0) & (px[:, 1] >= 0) & (px[:, 0] <= cam.width - 1) & (px[:, 1] <= cam.height - 1))


def _ms(start: float) -> float:
    return 1e3 * (time.perf_counter() - start)
