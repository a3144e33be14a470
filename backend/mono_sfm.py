"""Up-to-scale structure from motion over a short window of cam0 feature tracks (monocular initialization).

:func:`visual_sfm`: a frame pair with enough rotation-compensated parallax (essential matrix, RANSAC), PnP for
the other frames, multi-view DLT triangulation, then a Huber bundle adjustment in GTSAM. Optional gyro
rotations (``relative_rotations``) guard the two ambiguities a small monocular window has: the essential
matrix of a planar scene (walls) has a second, wrong solution that fits the images as well, and a PnP from a
handful of points can flip. :func:`visual_gyro_bundle_adjustment` re-runs the BA with the relative rotations
tied to the gyro and the gyro bias as a variable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import gtsam
import numpy as np

from slam.geometry import invert_transform, make_transform, rotation_angle
from slam.messages import FeatureFrame

from .preintegration_np import Preintegrated, right_jacobian, so3_exp, so3_log

log = logging.getLogger(__name__)

DEFAULT_FOCAL_PX = 460.0  # converts pixel thresholds to normalized units (VINS-Mono's FOCAL_LENGTH)
POINT_PRIOR_SIGMA = 100.0  # median depths: keeps a barely seen point from making the BA singular


@dataclass(frozen=True, eq=False)
class SfmResult:
    """Up-to-scale reconstruction of a window; the unit of length is the median observation depth."""

    t_ns: np.ndarray  # (n,) frame stamps
    T_C0_C: np.ndarray  # (n, 4, 4) pose of camera k in the first camera frame (first = identity)
    point_ids: np.ndarray  # (m,) landmark ids
    points_C0: np.ndarray  # (m, 3) landmarks in the first camera frame
    reprojection_rms_px: float  # over the inlier observations after bundle adjustment
    reference_pair: tuple[int, int]  # frames of the two-view initialization
    pair_parallax_px: float  # median rotation-compensated parallax of that pair
    obs_frame: np.ndarray  # (K,) frame of each inlier observation
    obs_point: np.ndarray  # (K,) its row in points_C0
    obs_uv: np.ndarray  # (K, 2) its normalized coordinates
    focal_px: float = DEFAULT_FOCAL_PX  # the pixel scale of the thresholds and the RMS

    @property
    def num_points(self) -> int:
        return len(self.point_ids)

    @property
    def num_observations(self) -> int:
        return len(self.obs_frame)

    def reprojection_errors_px(self) -> np.ndarray:
        """(K,) reprojection error of every observation, pixels."""
        T_C_C0 = invert_transform(self.T_C0_C)[self.obs_frame]
        p_C = np.einsum("kij,kj->ki", T_C_C0[:, :3, :3], self.points_C0[self.obs_point]) + T_C_C0[:, :3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.linalg.norm(p_C[:, :2] / p_C[:, 2:] - self.obs_uv, axis=1) * self.focal_px
        return np.where(p_C[:, 2] > 0, err, np.inf)


class _SfmFailure(Exception):
    """Internal: carries the reason a window cannot be reconstructed."""


# ------------------------------------------------------------------------------ incremental SfM


@dataclass
class _Reconstruction:
    uv: np.ndarray  # (n, m, 2) normalized observations, NaN where a track is not seen
    usable: np.ndarray  # (n, m) observation seen and not rejected as an outlier
    T_C_R: list  # per frame: 4x4 reference-to-camera transform, or None while unregistered
    points: np.ndarray  # (m, 3) in the reference frame, NaN until triangulated
    angle: np.ndarray  # (m,) widest angle between the rays of each point [rad]
    threshold: float  # inlier threshold, normalized units
    R_C0_C: np.ndarray | None  # (n, 3, 3) gyro rotations of the cameras, or None
    max_prior_rad: float  # allowed disagreement with them, plus ...
    gyro_bias_bound: float  # ... the drift of a gyro bias up to this [rad/s] over the frames' time apart
    t_s: np.ndarray  # (n,) frame times
    focal_px: float  # for messages

    def registered(self) -> np.ndarray:
        return np.array([T is not None for T in self.T_C_R])

    def poses(self) -> np.ndarray:
        return np.stack([T if T is not None else np.full((4, 4), np.nan) for T in self.T_C_R])

    def prior_R_C_C(self, k: int, ref: int) -> np.ndarray | None:
        """Gyro rotation R_Ck_Cref, if any."""
        return None if self.R_C0_C is None else self.R_C0_C[k].T @ self.R_C0_C[ref]

    def prior_tolerance(self, k: int, ref: int) -> float:
        """How far [rad] a visual R_Ck_Cref may be from the gyro's (whose bias is not known yet)."""
        return self.max_prior_rad + self.gyro_bias_bound * abs(self.t_s[k] - self.t_s[ref])


def _track_table(frames: Sequence[FeatureFrame]) -> tuple[np.ndarray, np.ndarray]:
    """Landmark ids (m,) and a dense (n, m, 2) table of observations, NaN where a track is missing."""
    ids = np.unique(np.concatenate([np.asarray(f.ids, dtype=np.int64) for f in frames]))
    uv = np.full((len(frames), len(ids), 2), np.nan)
    for k, f in enumerate(frames):
        cols = np.searchsorted(ids, np.asarray(f.ids, dtype=np.int64))
        uv[k, cols] = np.asarray(f.uv, dtype=np.float64).reshape(-1, 2)
    return ids, uv


def _project(T_C_R: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized projections (n, m, 2) and depths (n, m) of points X (m, 3) in cameras T_C_R (n, 4, 4)."""
    Xc = np.einsum("nij,mj->nmi", T_C_R[:, :3, :3], X) + T_C_R[:, None, :3, 3]
    depth = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return Xc[..., :2] / depth[..., None], depth


def _triangulate(rec: _Reconstruction, tracks: np.ndarray, min_angle_rad: float) -> None:
    """Multi-view DLT of ``tracks`` (indices) from their usable observations in registered frames.

    Outlying observations are dropped one at a time (the worst first, so one bad observation does not
    discard a good track); points behind a camera or seen under too small an angle stay NaN.
    """
    reg = rec.registered()
    tracks = tracks[(rec.usable[:, tracks] & reg[:, None]).sum(axis=0) >= 2]
    if len(tracks) == 0:
        return
    P = np.nan_to_num(rec.poses()[:, :3, :])  # (n, 3, 4); unregistered rows are masked below
    T = np.where(reg[:, None, None], rec.poses(), np.eye(4))
    for _ in range(3):
        use = rec.usable[:, tracks] & reg[:, None]  # (n, t)
        uv = np.nan_to_num(rec.uv[:, tracks])
        rows_x = (uv[..., 0, None] * P[:, None, 2] - P[:, None, 0]) * use[..., None]  # (n, t, 4)
        rows_y = (uv[..., 1, None] * P[:, None, 2] - P[:, None, 1]) * use[..., None]
        # DLT: the null vector of A is the eigenvector of A^T A with the smallest eigenvalue.
        AtA = np.einsum("nti,ntj->tij", rows_x, rows_x) + np.einsum("nti,ntj->tij", rows_y, rows_y)
        Xh = np.linalg.eigh(AtA)[1][:, :, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            X = Xh[:, :3] / Xh[:, 3:]
        proj, depth = _project(T, X)
        err = np.linalg.norm(proj - rec.uv[:, tracks], axis=-1)
        err = np.where(use & (depth > 0), err, np.where(use, np.inf, 0.0))  # behind a camera = outlier
        worst = np.argmax(err, axis=0)
        bad = err[worst, np.arange(len(tracks))] > rec.threshold
        if not bad.any():
            break
        rec.usable[worst[bad], tracks[bad]] = False
    use = rec.usable[:, tracks] & reg[:, None]
    ok = (use.sum(axis=0) >= 2) & ~bad & np.all(np.isfinite(X), axis=1)
    # Triangulation angle: the widest pair of viewing rays.
    centers = np.stack([invert_transform(T)[:3, 3] if T is not None else np.zeros(3) for T in rec.T_C_R])
    with np.errstate(invalid="ignore"):
        rays = X[None] - centers[:, None]  # (n, t, 3)
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        cos = np.einsum("atk,btk->tab", rays, rays)
        both = use.T[:, :, None] & use.T[:, None, :]
        angle = np.arccos(np.clip(np.where(both, cos, 1.0).min(axis=(1, 2)), -1.0, 1.0))
    ok &= angle > min_angle_rad
    rec.points[tracks[ok]] = X[ok]
    rec.angle[tracks[ok]] = angle[ok]


def _translation_given_rotation(xi: np.ndarray, xj: np.ndarray, R: np.ndarray, threshold: float,
                                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit t of x_j ~ R x_i + t when R is known (gyro): each match gives (x_j x R x_i) . t = 0, linear, two
    matches fix t, and planar scenes are no special case. RANSAC, then least squares on the inliers.
    Returns t and the inlier mask."""
    hi, hj = np.c_[xi, np.ones(len(xi))], np.c_[xj, np.ones(len(xj))]
    Rhi = hi @ R.T
    a = np.cross(hj, Rhi)

    def epipolar_distance(t):  # of x_j to the epipolar line t x R x_i, for each t in (K, 3)
        lines = np.cross(t[:, None, :], Rhi[None])  # (K, N, 3)
        return np.abs(np.einsum("knj,nj->kn", lines, hj)) / (np.linalg.norm(lines[..., :2], axis=-1) + 1e-12)

    first = rng.integers(0, len(a), 64)
    second = (first + rng.integers(1, len(a), 64)) % len(a)  # never the same match twice
    hypotheses = np.cross(a[first], a[second])
    norms = np.linalg.norm(hypotheses, axis=1)
    hypotheses = hypotheses[norms > 1e-9] / norms[norms > 1e-9, None]
    if len(hypotheses) == 0:
        return np.array([0.0, 0.0, 1.0]), np.zeros(len(a), bool)
    inliers = epipolar_distance(hypotheses) < threshold
    best = int(np.argmax(inliers.sum(axis=1)))
    t, inliers = hypotheses[best], inliers[best]
    for _ in range(2):
        if inliers.sum() < 2:
            break
        # |a . t| is the epipolar distance up to |t x R x_i| ~ 1: no normalization of a, or matches without
        # parallax (a ~ 0, direction pure noise) would weigh as much as the informative ones.
        t = np.linalg.svd(a[inliers])[2][-1]
        inliers = epipolar_distance(t[None])[0] < threshold
    # Cheirality: the depth d_i of x_i in d_j x_j = d_i R x_i + t must be positive for most points.
    d_i = -np.einsum("ij,ij->i", np.cross(hj, t), a) / (np.einsum("ij,ij->i", a, a) + 1e-12)
    return (t if np.median(d_i[inliers]) > 0 else -t), inliers


def _two_view(rec: _Reconstruction, i: int, j: int, min_parallax: float, min_points: int,
              min_angle: float) -> float:
    """Relative pose of frames i (reference) and j, and the first points; returns the median parallax."""
    common = np.flatnonzero(rec.usable[i] & rec.usable[j])
    xi, xj = rec.uv[i, common], rec.uv[j, common]
    E, mask = cv2.findEssentialMat(xi, xj, np.eye(3), method=cv2.RANSAC, prob=0.99,
                                   threshold=rec.threshold / 2.0)
    R_prior = rec.prior_R_C_C(j, i)
    if E is not None and E.shape[0] >= 3:
        _, R, t, mask = cv2.recoverPose(E[:3], xi, xj, np.eye(3), mask=mask)
        inliers = mask.ravel() > 0
    elif R_prior is None:
        raise _SfmFailure(f"no essential matrix between frames {i} and {j}")
    if R_prior is not None and (E is None or E.shape[0] < 3 or
                                rotation_angle(R @ R_prior.T) > rec.prior_tolerance(i, j)):
        # A planar scene (walls) has two essential-matrix solutions that fit the images equally well and
        # RANSAC may return the wrong one: start from the gyro's rotation instead (the BA below refines it).
        R = R_prior
        t, inliers = _translation_given_rotation(xi, xj, R, rec.threshold, np.random.default_rng(i * 97 + j))
    # Rotation-compensated parallax: what is left of the flow once the rotation is undone is due to
    # translation; pure rotation leaves only noise however large the raw flow.
    rotated = np.c_[xi, np.ones(len(xi))] @ R.T
    parallax = np.linalg.norm(rotated[:, :2] / rotated[:, 2:] - xj, axis=1)[inliers]
    median_parallax = float(np.median(parallax)) if len(parallax) else 0.0
    if median_parallax < min_parallax:
        raise _SfmFailure(f"frames {i}-{j}: rotation-compensated parallax {median_parallax * rec.focal_px:.0f} px "
                          "is too small (too little translation, or pure rotation)")
    rec.T_C_R[i] = np.eye(4)
    rec.T_C_R[j] = make_transform(R, np.ravel(t))
    _triangulate(rec, common[inliers], min_angle)
    if np.isfinite(rec.points[:, 0]).sum() >= 6:
        # A two-view BA, then triangulate every shared track again: the essential matrix of a minimal sample
        # (or the gyro rotation with its bias) is off by a degree or so, which the later frames would inherit.
        _bundle_adjust_reconstruction(rec, i, j, rec.threshold / 3.0, 5)
        rec.points[:] = np.nan
        rec.usable[[i, j]] = np.isfinite(rec.uv[[i, j], :, 0])
        _triangulate(rec, common, min_angle)
    if R_prior is not None and rotation_angle(rec.T_C_R[j][:3, :3] @ R_prior.T) > rec.prior_tolerance(i, j):
        raise _SfmFailure(f"frames {i}-{j}: the two-view rotation disagrees with the gyro")
    num = int(np.isfinite(rec.points[:, 0]).sum())
    if num < min_points:
        raise _SfmFailure(f"frames {i}-{j}: only {num} points triangulated (need {min_points})")
    return median_parallax


def _pose_errors(obj: np.ndarray, img: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Normalized reprojection errors of points ``obj`` seen at ``img`` by the camera x ~ R X + t."""
    p = obj @ R.T + np.ravel(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.linalg.norm(p[:, :2] / p[:, 2:] - img, axis=1)
    return np.where(p[:, 2] > 0, err, np.inf)


def _pnp_errors(obj: np.ndarray, img: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    return _pose_errors(obj, img, cv2.Rodrigues(rvec)[0], tvec)


def _register(rec: _Reconstruction, k: int, ref: int, min_points: int, min_angle: float) -> None:
    """PnP of frame k against the triangulated points: Levenberg-Marquardt from the nearest registered
    neighbour's pose (keyframes are close; the gyro rotation when given), RANSAC if that leaves outliers."""
    sel = np.flatnonzero(rec.usable[k] & np.isfinite(rec.points[:, 0]))
    well_seen = sel[rec.angle[sel] > 3.0 * min_angle]  # short-baseline depths mislead a far view
    if len(well_seen) >= max(min_points, 0.5 * len(sel)):
        sel = well_seen
    R_prior = rec.prior_R_C_C(k, ref)
    obj, img = rec.points[sel], rec.uv[k, sel]
    if R_prior is not None and 3 <= len(sel) < min_points:  # too few for a PnP, enough for a position
        t, inl = _translation_given_points(obj, img, R_prior, rec.threshold)
        if len(inl) < 3:
            raise _SfmFailure(f"frame {k} sees only {len(sel)} triangulated points, {len(inl)} consistent")
        rec.usable[k, sel[np.setdiff1d(np.arange(len(sel)), inl)]] = False
        rec.T_C_R[k] = make_transform(R_prior, t)
        return
    if len(sel) < min_points:
        raise _SfmFailure(f"frame {k} sees only {len(sel)} triangulated points (need {min_points})")
    registered = np.flatnonzero(rec.registered())
    T0 = rec.T_C_R[int(registered[np.argmin(np.abs(registered - k))])].copy()
    if R_prior is not None:  # same camera centre as the neighbour, the gyro's rotation
        T0[:3, 3] = R_prior @ (T0[:3, :3].T @ T0[:3, 3])
        T0[:3, :3] = R_prior
    ok, rvec, tvec = cv2.solvePnP(obj, img, np.eye(3), None, cv2.Rodrigues(T0[:3, :3])[0], T0[:3, 3].copy(),
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    inl = np.flatnonzero(_pnp_errors(obj, img, rvec, tvec) < rec.threshold) if ok else np.zeros(0, int)
    if len(inl) < max(min_points, 0.8 * len(sel)):
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, np.eye(3), None, iterationsCount=100,
                                                 reprojectionError=rec.threshold, confidence=0.99,
                                                 flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None or len(inl) < min_points:
            raise _SfmFailure(f"frame {k}: PnP failed ({0 if inl is None else len(inl)} inliers)")
        inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], np.eye(3), None, rvec, tvec)
    inl = np.flatnonzero(_pnp_errors(obj, img, rvec, tvec) < rec.threshold)
    if len(inl) < min_points:
        raise _SfmFailure(f"frame {k}: PnP failed ({len(inl)} inliers)")
    R = cv2.Rodrigues(rvec)[0]
    if R_prior is not None and rotation_angle(R @ R_prior.T) > rec.prior_tolerance(k, ref):
        # A flipped PnP (few points, a plane): keep the gyro's rotation and solve the position alone.
        R = R_prior
        tvec, inl = _translation_given_points(obj, img, R, rec.threshold)
        if len(inl) < min_points:
            raise _SfmFailure(f"frame {k}: PnP disagrees with the gyro and the gyro's rotation fits only "
                              f"{len(inl)} points")
    rec.usable[k, sel[np.setdiff1d(np.arange(len(sel)), inl)]] = False
    rec.T_C_R[k] = make_transform(R, np.ravel(tvec))


def _translation_given_points(obj: np.ndarray, img: np.ndarray, R: np.ndarray, threshold: float
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Camera translation t with x ~ R X + t for a known rotation: two linear equations per point; least
    squares with outlier rejection. Returns t and the inlier indices."""
    RX = obj @ R.T
    u, v = img[:, 0], img[:, 1]
    A = np.concatenate([np.c_[-np.ones_like(u), np.zeros_like(u), u], np.c_[np.zeros_like(v), -np.ones_like(v), v]])
    b = np.concatenate([RX[:, 0] - u * RX[:, 2], RX[:, 1] - v * RX[:, 2]])
    keep = np.ones(len(obj), bool)
    for _ in range(3):
        t = np.linalg.lstsq(A[np.r_[keep, keep]], b[np.r_[keep, keep]], rcond=None)[0]
        keep = _pose_errors(obj, img, R, t) < 2.0 * threshold
        if keep.sum() < 3:
            break
    return t, np.flatnonzero(_pose_errors(obj, img, R, t) < threshold)


def _normalize_scale(rec: _Reconstruction) -> None:
    """Rescale so the median observation depth is 1 (any motion-independent unit would do)."""
    _, depth = _project(rec.poses(), np.nan_to_num(rec.points))
    valid = rec.usable & np.isfinite(rec.points[:, 0])[None] & (depth > 0)
    scale = 1.0 / float(np.median(depth[valid]))
    rec.points *= scale
    for T in rec.T_C_R:
        T[:3, 3] *= scale


def _reprojection_errors(rec: _Reconstruction) -> np.ndarray:
    """(n, m) normalized reprojection errors of usable observations of triangulated points, NaN elsewhere."""
    proj, depth = _project(rec.poses(), np.nan_to_num(rec.points))
    err = np.linalg.norm(proj - rec.uv, axis=-1)
    err[depth <= 0] = np.inf
    valid = rec.usable & np.isfinite(rec.points[:, 0])[None]
    return np.where(valid, err, np.nan)


def _bundle_adjust_reconstruction(rec: _Reconstruction, fixed: int, gauge: int, sigma: float,
                                  iterations: int) -> None:
    """BA of the registered frames and the triangulated points (``fixed``/``gauge``: frame indices)."""
    frames = np.flatnonzero(rec.registered())
    tracks = np.flatnonzero(np.isfinite(rec.points[:, 0]))
    row, col = np.nonzero(rec.usable[np.ix_(frames, tracks)])
    T_R_C = np.stack([invert_transform(rec.T_C_R[k]) for k in frames])
    poses, points, _ = bundle_adjust(T_R_C, rec.points[tracks], row, col, rec.uv[frames[row], tracks[col]],
                                     int(np.searchsorted(frames, fixed)), int(np.searchsorted(frames, gauge)),
                                     sigma, iterations)
    for k, T in zip(frames, poses):
        rec.T_C_R[k] = invert_transform(T)
    rec.points[tracks] = points


def solve_visual_sfm(frames: Sequence[FeatureFrame], min_parallax_px: float = 20.0,
                     focal_px: float = DEFAULT_FOCAL_PX, relative_rotations: np.ndarray | None = None,
                     inlier_threshold_px: float = 3.0, min_points: int = 20,
                     min_triangulation_angle_deg: float = 0.5, max_rotation_prior_deg: float = 2.0,
                     gyro_bias_bound: float = 0.1, ba_iterations: int = 10, max_pair_trials: int = 5,
                     final_ba: bool = True) -> tuple[SfmResult | None, str]:
    """:func:`visual_sfm` that also says why it failed: ``(result, "")`` or ``(None, reason)``.

    ``inlier_threshold_px``: reprojection/RANSAC threshold; ``min_points``: points the result needs;
    ``final_ba=False`` skips the last BA (when a visual-gyro BA follows anyway).
    """
    for f in frames:
        if f.camera != 0 or not f.normalized:
            raise ValueError("visual_sfm needs cam0 tracks in undistorted normalized coordinates")
    n = len(frames)
    if n < 3:
        return None, f"only {n} frames (need 3)"
    if np.any(np.diff([f.t_ns for f in frames]) <= 0):
        raise ValueError("frame stamps must be strictly increasing")
    R_C0_C = None
    if relative_rotations is not None:
        R_C0_C = np.empty((n, 3, 3))
        R_C0_C[0] = np.eye(3)
        for k in range(n - 1):
            R_C0_C[k + 1] = R_C0_C[k] @ relative_rotations[k]
    ids, uv = _track_table(frames)
    seen = np.isfinite(uv[..., 0])
    multi = seen.sum(axis=0) >= 2
    if multi.sum() < min_points:
        return None, f"only {int(multi.sum())} tracks seen in two or more frames (need {min_points})"
    threshold = inlier_threshold_px / focal_px
    min_parallax, min_angle = min_parallax_px / focal_px, math.radians(min_triangulation_angle_deg)

    def empty() -> _Reconstruction:
        return _Reconstruction(uv, seen.copy(), [None] * n, np.full((len(ids), 3), np.nan), np.zeros(len(ids)),
                               threshold, R_C0_C, math.radians(max_rotation_prior_deg), gyro_bias_bound,
                               np.array([f.t_ns for f in frames], dtype=np.float64) * 1e-9, focal_px)

    # Candidate pairs: the most separated frames that still share enough tracks (translation parallax grows
    # with separation, VINS-Mono's choice); the essential matrix then tells translation from pure rotation.
    min_pair_points = max(15, min_points // 2, int(0.3 * np.median(seen.sum(axis=1))))
    candidates = []
    for i in range(n):
        for j in range(i + 1, n):
            common = seen[i] & seen[j]
            if common.sum() >= min_pair_points:
                flow = float(np.median(np.linalg.norm(uv[i, common] - uv[j, common], axis=1)))
                candidates.append((j - i, int(common.sum()), flow, i, j))
    if not candidates:
        return None, f"no two frames share {min_pair_points} tracks"
    candidates.sort(reverse=True)
    reason, pair, rec, parallax = "", None, None, 0.0
    for _, _, flow, i, j in candidates[:max_pair_trials]:
        if flow < 0.5 * min_parallax:
            reason = reason or f"median flow {flow * focal_px:.1f} px: not enough parallax"
            continue
        trial = empty()
        try:
            parallax = _two_view(trial, i, j, min_parallax, min_pair_points, min_angle)
        except _SfmFailure as failure:
            reason = reason or str(failure)
            continue
        rec, pair = trial, (i, j)
        break
    if pair is None:
        return None, f"no frame pair to start from: {reason}"

    try:
        while not rec.registered().all():
            pending = np.flatnonzero(~rec.registered())
            has_point = np.isfinite(rec.points[:, 0])
            k = int(pending[np.argmax((rec.usable[pending] & has_point).sum(axis=1))])
            try:
                _register(rec, k, pair[0], 6, min_angle)
            except _SfmFailure:
                # Points triangulated from short baselines early on may be off: polish, then try once more.
                _bundle_adjust_reconstruction(rec, pair[0], pair[1], 1.0 / focal_px, ba_iterations)
                _register(rec, k, pair[0], 6, min_angle)
            # Every track the new frame sees, not only new ones: the new view lengthens old baselines too.
            _triangulate(rec, np.flatnonzero(rec.usable[k]), min_angle)
    except _SfmFailure as failure:
        return None, str(failure)
    except RuntimeError as exc:  # GTSAM: indeterminate system and the like
        return None, f"bundle adjustment failed: {exc}"
    return _finish(frames, rec, ids, pair, parallax, focal_px, inlier_threshold_px, min_points, final_ba,
                   ba_iterations)


def _finish(frames, rec: _Reconstruction, ids: np.ndarray, pair: tuple[int, int], parallax: float,
            focal_px: float, inlier_threshold_px: float, min_points: int, final_ba: bool,
            ba_iterations: int) -> tuple[SfmResult | None, str]:
    """Bundle adjustment, outlier removal and the checks on a reconstruction with every frame registered."""
    try:
        _normalize_scale(rec)
        if final_ba:
            _bundle_adjust_reconstruction(rec, pair[0], pair[1], 1.0 / focal_px, ba_iterations)
        outliers = _reprojection_errors(rec) > rec.threshold
        rec.usable &= ~outliers
        rec.points[rec.usable.sum(axis=0) < 2] = np.nan
        if final_ba and outliers.sum() > 0.05 * rec.usable.sum():  # Huber limited their pull
            _bundle_adjust_reconstruction(rec, pair[0], pair[1], 1.0 / focal_px, ba_iterations)
        _normalize_scale(rec)
    except RuntimeError as exc:  # GTSAM: indeterminate system and the like
        return None, f"bundle adjustment failed: {exc}"
    err = _reprojection_errors(rec)
    has_point = np.isfinite(rec.points[:, 0])
    if has_point.sum() < min_points:
        return None, f"only {int(has_point.sum())} points survived (need {min_points})"
    valid = np.isfinite(err)
    rms_px = float(np.sqrt(np.mean(err[valid] ** 2)) * focal_px)
    if not math.isfinite(rms_px) or rms_px > inlier_threshold_px:
        return None, f"reprojection RMS {rms_px:.2f} px is too large"
    T_C0_R = rec.T_C_R[0]
    T_C0_C = np.stack([T_C0_R @ invert_transform(T) for T in rec.T_C_R])
    points_C0 = rec.points[has_point] @ T_C0_R[:3, :3].T + T_C0_R[:3, 3]
    frame, track = np.nonzero(valid)
    row = np.cumsum(has_point) - 1  # track -> row in points_C0
    result = SfmResult(np.array([f.t_ns for f in frames], dtype=np.int64), T_C0_C, ids[has_point], points_C0,
                       rms_px, pair, float(parallax * focal_px), frame, row[track], rec.uv[frame, track], focal_px)
    return result, ""


def visual_sfm(frames: Sequence[FeatureFrame], min_parallax_px: float = 20.0,
               focal_px: float = DEFAULT_FOCAL_PX, **options) -> SfmResult | None:
    """Up-to-scale poses ``T_C0_Ck`` and points from cam0's normalized tracks, or None (reason logged; use
    :func:`solve_visual_sfm` to get it).

    ``min_parallax_px``: median rotation-compensated parallax the starting pair must have; ``focal_px``
    converts pixel thresholds to normalized units. ``relative_rotations`` (n-1, 3, 3), optional: gyro
    rotations R_Ck_Ck+1 between consecutive frames, used to reject the wrong essential-matrix or PnP
    solution; a visual rotation may differ from them by ``max_rotation_prior_deg`` plus the drift of a gyro
    bias up to ``gyro_bias_bound`` [rad/s] (the bias is not known yet).
    """
    result, reason = solve_visual_sfm(frames, min_parallax_px, focal_px, **options)
    if result is None:
        log.debug("visual SfM failed: %s", reason)
    return result


# --------------------------------------------------------------------------- bundle adjustment


@dataclass(frozen=True, eq=False)
class GyroTerms:
    """Gyro rotation constraints for :func:`bundle_adjust` (the gyro bias becomes a variable)."""

    R_C_B: np.ndarray  # camera-to-body rotation
    pre: Sequence[Preintegrated]  # between consecutive frames
    sigma_rad: np.ndarray  # (n-1,) rotation noise of each interval
    bias_start: np.ndarray  # initial value of the bias
    bias_prior: np.ndarray  # prior mean (the caller's value, not an estimate from these data)
    bias_prior_sigma: float  # rad/s


def _gyro_rotation_factor(key_i: int, key_j: int, key_bias: int, pre: Preintegrated, R_C_B: np.ndarray,
                          sigma: float) -> gtsam.CustomFactor:
    """Log(dR(bg)^T R_Bi^T R_Bj) on camera poses (R_Bk = R_Ck R_C_B), with analytic Jacobians."""
    R_B_C = R_C_B.T
    zeros = np.zeros((3, 3))

    def error(_, values, H):
        Ri = values.atPose3(key_i).rotation().matrix() @ R_C_B
        Rj = values.atPose3(key_j).rotation().matrix() @ R_C_B
        correction = pre.J_R_bg @ (values.atVector(key_bias) - pre.gyro_bias)
        M = (pre.dR @ so3_exp(correction)).T @ Ri.T @ Rj
        e = so3_log(M)
        if H is not None:
            Jr_inv = np.linalg.inv(right_jacobian(e))
            # Right perturbations: a camera rotation step d is a body step R_B_C d.
            H[0] = np.hstack([-Jr_inv @ Rj.T @ Ri @ R_B_C, zeros])
            H[1] = np.hstack([Jr_inv @ R_B_C, zeros])
            H[2] = -Jr_inv @ M.T @ right_jacobian(correction) @ pre.J_R_bg
        return e

    return gtsam.CustomFactor(gtsam.noiseModel.Isotropic.Sigma(3, float(sigma)), [key_i, key_j, key_bias], error)


def bundle_adjust(T_R_C: np.ndarray, points: np.ndarray, obs_frame: np.ndarray, obs_point: np.ndarray,
                  obs_uv: np.ndarray, fixed: int, gauge: int, sigma: float, iterations: int,
                  gyro: GyroTerms | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Huber BA of camera poses ``T_R_C`` (camera-to-reference) and ``points`` on normalized observations
    (``sigma``: pixel noise in normalized units); returns poses, points and the gyro bias (None without gyro).

    ``fixed`` is held; ``gauge`` gets a weak translation prior that only removes the scale freedom (far weaker
    than the reprojection terms). With ``gyro`` the relative rotations are also tied to the gyro: a single
    camera cannot tell a small rotation from a sideways shift, the gyro can.
    """
    X, L, B = gtsam.symbol_shorthand.X, gtsam.symbol_shorthand.L, gtsam.symbol_shorthand.B
    graph, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    calibration = gtsam.Cal3_S2(1.0, 1.0, 0.0, 0.0, 0.0)
    noise = gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Huber.Create(1.345),
                                           gtsam.noiseModel.Isotropic.Sigma(2, sigma))
    for k, T in enumerate(T_R_C):
        values.insert(X(k), gtsam.Pose3(T))
    graph.add(gtsam.PriorFactorPose3(X(fixed), gtsam.Pose3(T_R_C[fixed]), gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
    graph.add(gtsam.PriorFactorPose3(X(gauge), gtsam.Pose3(T_R_C[gauge]), gtsam.noiseModel.Diagonal.Sigmas(
        np.array([1e3, 1e3, 1e3, 1.0, 1.0, 1.0]))))
    point_prior = gtsam.noiseModel.Isotropic.Sigma(3, POINT_PRIOR_SIGMA * float(np.median(np.abs(points))))
    for j, p in enumerate(points):
        values.insert(L(j), p)
        graph.add(gtsam.PriorFactorPoint3(L(j), p, point_prior))
    for k, j, uv in zip(obs_frame.tolist(), obs_point.tolist(), obs_uv):
        graph.add(gtsam.GenericProjectionFactorCal3_S2(uv, noise, X(k), L(j), calibration))
    if gyro is not None:
        values.insert(B(0), np.asarray(gyro.bias_start, dtype=np.float64))
        graph.add(gtsam.PriorFactorVector(B(0), np.asarray(gyro.bias_prior, dtype=np.float64),
                                          gtsam.noiseModel.Isotropic.Sigma(3, gyro.bias_prior_sigma)))
        for k, (pre, sig) in enumerate(zip(gyro.pre, gyro.sigma_rad)):
            graph.add(_gyro_rotation_factor(X(k), X(k + 1), B(0), pre, gyro.R_C_B, sig))
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(iterations)
    params.setRelativeErrorTol(1e-5)
    result = gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()
    poses = np.stack([result.atPose3(X(k)).matrix() for k in range(len(T_R_C))])
    new_points = np.stack([result.atPoint3(L(j)) for j in range(len(points))])
    return poses, new_points, (result.atVector(B(0)) if gyro is not None else None)


def _with_geometry(sfm: SfmResult, T_C0_C: np.ndarray, points: np.ndarray, inlier_threshold_px: float
                   ) -> SfmResult:
    """``sfm`` with new poses and points: outlying observations dropped, points seen less than twice
    dropped, rescaled to a median observation depth of 1, RMS recomputed.

    Outliers: beyond ``inlier_threshold_px`` or 3.5 sigma of the error norms (Rayleigh: sigma = median /
    1.18; 0.2 % of good observations lost), whichever is smaller: a gross outlier the Huber BA half
    accommodated still biases the gyro bias and the scale later on."""
    moved = replace(sfm, T_C0_C=T_C0_C, points_C0=points)
    errors = moved.reprojection_errors_px()
    sigma = float(np.median(errors[np.isfinite(errors)])) / 1.18
    keep_obs = errors <= min(inlier_threshold_px, max(3.5 * sigma, 1.0))
    counts = np.bincount(sfm.obs_point[keep_obs], minlength=len(points))
    keep_obs &= counts[sfm.obs_point] >= 2
    keep_point = counts >= 2
    row = np.cumsum(keep_point) - 1
    moved = replace(moved, point_ids=sfm.point_ids[keep_point], points_C0=points[keep_point],
                    obs_frame=sfm.obs_frame[keep_obs], obs_point=row[sfm.obs_point[keep_obs]],
                    obs_uv=sfm.obs_uv[keep_obs])
    T_C_C0 = invert_transform(moved.T_C0_C)[moved.obs_frame]
    depth = np.einsum("kj,kj->k", T_C_C0[:, 2, :3], moved.points_C0[moved.obs_point]) + T_C_C0[:, 2, 3]
    unit = 1.0 / float(np.median(depth))
    T = moved.T_C0_C.copy()
    T[:, :3, 3] *= unit
    moved = replace(moved, T_C0_C=T, points_C0=moved.points_C0 * unit)
    errors = moved.reprojection_errors_px()
    return replace(moved, reprojection_rms_px=float(np.sqrt(np.mean(errors ** 2))))


def visual_gyro_bundle_adjustment(sfm: SfmResult, R_C_B: np.ndarray, pre: Sequence[Preintegrated],
                                  gyro_bias_start: np.ndarray, gyro_noise_density: float = 1.6968e-4,
                                  gyro_bias_prior_sigma: float = 0.1, rotation_sigma_floor: float = 1e-4,
                                  iterations: int = 10, inlier_threshold_px: float = 3.0
                                  ) -> tuple[SfmResult, np.ndarray]:
    """Re-run the window's BA with the relative rotations tied to the gyro and the gyro bias as a variable.

    ``pre``: preintegrations between consecutive frames; the bias prior is centred on their bias (the
    caller's), ``gyro_bias_start`` is only the starting value. ``rotation_sigma_floor`` [rad per interval]
    covers extrinsic-rotation and camera-IMU sync errors. Returns the refined reconstruction (same
    conventions, outliers dropped) and the gyro bias.
    """
    dts = np.array([p.dt for p in pre])
    sigma = np.sqrt(gyro_noise_density ** 2 * dts + rotation_sigma_floor ** 2)
    gyro = GyroTerms(R_C_B, list(pre), sigma, gyro_bias_start, pre[0].gyro_bias, gyro_bias_prior_sigma)
    gauge = int(np.argmax(np.linalg.norm(sfm.T_C0_C[:, :3, 3], axis=1)))
    poses, points, bias = bundle_adjust(sfm.T_C0_C, sfm.points_C0, sfm.obs_frame, sfm.obs_point, sfm.obs_uv,
                                        0, gauge, 1.0 / sfm.focal_px, iterations, gyro)
    return _with_geometry(sfm, poses, points, inlier_threshold_px), bias
