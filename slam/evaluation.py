"""Trajectory accuracy: association, alignment (SE3 / Sim3 / 4-DoF), ATE and RPE, in plain NumPy.

Association and SE3/Sim3 alignment follow evo (``sync.associate_trajectories``, ``geometry.umeyama_alignment``)
so numbers agree with ``evo_ape``/``evo_rpe`` on the same data. 4-DoF (translation + yaw about gravity) is the
fair alignment for VIO, whose roll and pitch are observable and must not be aligned away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slam.geometry import quat_multiply, quat_to_rot, rot_to_quat, rot_z
from slam.messages import DataError, Trajectory
from slam.trajectory_io import read_trajectory

ALIGN_MODES = ("se3", "sim3", "4dof", "none")
MIN_MATCHES = {"none": 1, "4dof": 2, "se3": 3, "sim3": 3}  # fewest poses that determine the alignment


def path_length(traj: Trajectory) -> float:
    """Length [m] of the polyline through the positions."""
    return float(np.linalg.norm(np.diff(traj.p_W, axis=0), axis=1).sum())


def _time_range(traj: Trajectory) -> str:
    return "no poses" if len(traj) == 0 else f"[{traj.t_s[0]:.3f}, {traj.t_s[-1]:.3f}] s"


def associate(est: Trajectory, ref: Trajectory, max_diff_s: float = 0.01,
              offset_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i_est, i_ref) of nearest stamps within ``max_diff_s``; ``t_est + offset_s`` ~ ``t_ref``.

    Like evo: every pose of the shorter trajectory looks up its nearest neighbour in the longer one (ties go
    to the earlier stamp). Unlike evo, a pose of the longer one is never used twice: the closest claim wins.
    """
    offset_ns, tol_ns = round(offset_s * 1e9), round(max_diff_s * 1e9)
    t_est, t_ref = est.t_ns + offset_ns, ref.t_ns
    swap = len(ref) > len(est)  # start from the shorter trajectory, as evo does, so none of it is lost
    short, long_ = (t_est, t_ref) if swap else (t_ref, t_est)
    if len(short) == 0 or len(long_) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    upper = np.clip(np.searchsorted(long_, short, side="right"), 0, len(long_) - 1)
    lower = np.maximum(upper - 1, 0)
    d_up, d_lo = np.abs(long_[upper] - short), np.abs(short - long_[lower])
    best = np.where(d_up < d_lo, upper, lower)
    diff = np.minimum(d_up, d_lo)
    i_short = np.flatnonzero(diff <= tol_ns)
    i_long = best[i_short]
    # One-to-one: among claims on the same pose keep the closest (a stable sort keeps the earliest tie).
    order = np.lexsort((diff[i_short], i_long))
    keep = np.sort(order[np.diff(i_long[order], prepend=-1) != 0])
    i_short, i_long = i_short[keep], i_long[keep]
    return (i_short, i_long) if swap else (i_long, i_short)


@dataclass(frozen=True, eq=False)
class Alignment:
    """Similarity ``p_ref = s R p_est + t`` that maps the estimate onto the reference."""

    R: np.ndarray
    t: np.ndarray
    s: float
    mode: str

    def apply(self, traj: Trajectory) -> Trajectory:
        """Transformed copy: positions, orientations and velocities (biases are body-frame, unchanged)."""
        q = quat_multiply(rot_to_quat(self.R), traj.q_W_B)
        v = None if traj.v_W is None else self.s * traj.v_W @ self.R.T
        return Trajectory(traj.t_ns, self.s * traj.p_W @ self.R.T + self.t, q, v, traj.bias_gyro,
                          traj.bias_accel)

    def as_dict(self) -> dict:
        yaw = float(np.degrees(np.arctan2(self.R[1, 0], self.R[0, 0])))
        return {"mode": self.mode, "R": self.R.tolist(), "t": self.t.tolist(), "s": float(self.s),
                "yaw_deg": yaw}


def align_umeyama(src_p: np.ndarray, dst_p: np.ndarray, mode: str = "se3") -> Alignment:
    """Least-squares alignment of (N, 3) ``src_p`` onto ``dst_p`` (Umeyama 1991 for se3/sim3)."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown alignment mode {mode!r}; expected one of {ALIGN_MODES}")
    x, y = np.asarray(src_p, dtype=np.float64), np.asarray(dst_p, dtype=np.float64)
    if mode == "none":
        return Alignment(np.eye(3), np.zeros(3), 1.0, mode)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    if mode == "4dof":
        # Maximise sum y_i . Rz(yaw) x_i over the horizontal components: yaw = atan2(sum x cross y, sum x . y).
        a = np.sum(xc[:, 0] * yc[:, 0] + xc[:, 1] * yc[:, 1])
        b = np.sum(xc[:, 0] * yc[:, 1] - xc[:, 1] * yc[:, 0])
        spread = np.sum(xc[:, :2] ** 2) + np.sum(yc[:, :2] ** 2)
        if spread == 0.0 or np.hypot(a, b) <= 1e-12 * spread:
            raise DataError("4-DoF alignment is degenerate: the trajectory does not move horizontally")
        R = rot_z(np.arctan2(b, a))
        return Alignment(R, my - R @ mx, 1.0, mode)
    # Same steps as evo.core.geometry.umeyama_alignment, so results agree to rounding.
    cov = yc.T @ xc / len(x)
    u, d, vt = np.linalg.svd(cov)
    if d[1] <= 1e-12 * d[0]:  # evo's test is absolute (d > eps); a relative one also catches exact lines
        raise DataError(f"{mode} alignment is degenerate: the matched positions are (nearly) collinear")
    S = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0.0:
        S[2, 2] = -1.0  # reflection -> proper rotation
    R = u @ S @ vt
    s = float(np.trace(np.diag(d) @ S) / np.mean(np.sum(xc**2, axis=1))) if mode == "sim3" else 1.0
    return Alignment(R, my - s * R @ mx, s, mode)


def _angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angles [deg] of (..., 3, 3) matrices; atan2 keeps precision near zero, unlike arccos."""
    sin = 0.5 * np.linalg.norm(np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                                         R[..., 1, 0] - R[..., 0, 1]], axis=-1), axis=-1)
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    return np.degrees(np.arctan2(sin, cos))


def _stats(e: np.ndarray) -> dict:
    return {"rmse": float(np.sqrt(np.mean(e**2))), "mean": float(np.mean(e)), "median": float(np.median(e)),
            "std": float(np.std(e)), "min": float(np.min(e)), "max": float(np.max(e))}


def _matched(est: Trajectory, ref: Trajectory, align: str, max_diff_s: float):
    """Associate, check there are enough pairs, align: (aligned est subset, ref subset, alignment)."""
    if align not in ALIGN_MODES:
        raise ValueError(f"unknown alignment mode {align!r}; expected one of {ALIGN_MODES}")
    i_est, i_ref = associate(est, ref, max_diff_s)
    if len(i_est) < MIN_MATCHES[align]:
        raise DataError(
            f"only {len(i_est)} of {len(est)} estimated poses match one of the {len(ref)} reference poses within "
            f"{max_diff_s * 1e3:g} ms (need {MIN_MATCHES[align]} for {align!r} alignment); estimate spans "
            f"{_time_range(est)}, reference spans {_time_range(ref)}. Check for a clock offset or mismatched "
            "time units (seconds vs nanoseconds).")
    e, r = est.subset(i_est), ref.subset(i_ref)
    alignment = align_umeyama(e.p_W, r.p_W, align)
    return alignment.apply(e), r, alignment


@dataclass(frozen=True, eq=False)
class AteResult:
    """Absolute trajectory error after alignment: translation stats [m] and rotation RMSE [deg]."""

    rmse: float
    mean: float
    median: float
    std: float
    min: float
    max: float
    rot_rmse_deg: float
    n: int
    alignment: Alignment
    errors: np.ndarray  # (n,) translation error per matched pose [m]
    rot_errors_deg: np.ndarray  # (n,)
    t_ns: np.ndarray  # (n,) reference stamps of the matched poses


def ate(est: Trajectory, ref: Trajectory, align: str = "se3", max_diff_s: float = 0.01) -> AteResult:
    """Align the matched estimate onto the reference, then compare positions and orientations pose by pose."""
    e, r, alignment = _matched(est, ref, align, max_diff_s)
    err = np.linalg.norm(e.p_W - r.p_W, axis=1)
    rot = _angle_deg(np.swapaxes(quat_to_rot(r.q_W_B), -1, -2) @ quat_to_rot(e.q_W_B))
    return AteResult(**_stats(err), rot_rmse_deg=float(np.sqrt(np.mean(rot**2))), n=len(err),
                     alignment=alignment, errors=err, rot_errors_deg=rot, t_ns=r.t_ns)


@dataclass(frozen=True, eq=False)
class RpeResult:
    """Relative pose error over pose pairs ``delta`` metres (of reference path) or seconds apart."""

    delta: float
    unit: str
    n_pairs: int
    trans: dict  # rmse/mean/median/std/min/max [m]
    rot_deg: dict  # the same [deg]
    pairs: np.ndarray  # (n_pairs, 2) indices into the matched poses
    trans_errors: np.ndarray
    rot_errors_deg: np.ndarray

    def as_dict(self) -> dict:
        return {"delta": float(self.delta), "unit": self.unit, "n_pairs": int(self.n_pairs),
                "trans": self.trans, "rot_deg": self.rot_deg}


def _pairs(ref: Trajectory, delta: float, unit: str, max_diff_s: float) -> np.ndarray:
    """Start at every matched pose i; end j is the first pose >= delta metres of path further on (KITTI),
    or the pose nearest to delta seconds later, accepted within the association tolerance ``max_diff_s``."""
    if len(ref) < 2:
        return np.zeros((0, 2), np.int64)
    i = np.arange(len(ref))
    if unit == "m":
        dist = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(ref.p_W, axis=0), axis=1))]
        j = np.searchsorted(dist, dist + delta, side="left")
        ok = j < len(ref)
    else:
        target = ref.t_ns + round(delta * 1e9)
        up = np.clip(np.searchsorted(ref.t_ns, target), 1, len(ref) - 1)
        j = np.where(np.abs(ref.t_ns[up] - target) < np.abs(target - ref.t_ns[up - 1]), up, up - 1)
        ok = np.abs(ref.t_ns[j] - target) <= round(max_diff_s * 1e9)
    ok &= j > i
    return np.stack([i[ok], j[ok]], axis=1)


def rpe(est: Trajectory, ref: Trajectory, delta: float, unit: str = "m", align: str = "se3",
        max_diff_s: float = 0.01) -> RpeResult:
    """RPE on the matched poses: E = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j), as evo. Only the Sim3 scale matters:
    a rigid alignment cancels in the relative poses, so aligning first is harmless and fixes mono scale."""
    if unit not in ("m", "s") or not delta > 0:
        raise ValueError(f"RPE needs unit 'm' or 's' and a positive delta, got {delta!r} {unit!r}")
    e, r, _ = _matched(est, ref, align, max_diff_s)
    pairs = _pairs(r, delta, unit, max_diff_s)
    if len(pairs) == 0:
        raise DataError(f"no pose pairs {delta:g} {unit} apart: the matched reference spans "
                        f"{r.t_s[-1] - r.t_s[0]:.3f} s and {path_length(r):.3f} m")
    i, j = pairs.T

    def relative(traj):  # T_i^-1 T_j as (R, t)
        R = quat_to_rot(traj.q_W_B)
        Ri_T = np.swapaxes(R[i], -1, -2)
        return Ri_T @ R[j], np.einsum("nab,nb->na", Ri_T, traj.p_W[j] - traj.p_W[i])

    Rq, tq = relative(r)
    Rp, tp = relative(e)
    trans = np.linalg.norm(tp - tq, axis=1)  # |t(E)| = |Rq^T (tp - tq)|, and a rotation keeps the norm
    rot = _angle_deg(np.swapaxes(Rq, -1, -2) @ Rp)
    return RpeResult(delta, unit, len(pairs), _stats(trans), _stats(rot), pairs, trans, rot)


def evaluate(est: Trajectory, ref: Trajectory, align: str = "se3", rpe_deltas_m=(1.0,), rpe_deltas_s=(1.0,),
             max_diff_s: float = 0.01) -> dict:
    """ATE and RPE as a JSON-ready dict. An RPE delta longer than the run gives ``n_pairs: 0``."""
    a = ate(est, ref, align, max_diff_s)
    matched_ref = ref.subset(associate(est, ref, max_diff_s)[1])
    rpes = []
    for unit, deltas in (("m", rpe_deltas_m), ("s", rpe_deltas_s)):
        for delta in deltas:
            try:
                rpes.append(rpe(est, ref, delta, unit, align, max_diff_s).as_dict())
            except DataError:
                rpes.append({"delta": float(delta), "unit": unit, "n_pairs": 0, "trans": None, "rot_deg": None})
    ate_dict = {k: getattr(a, k) for k in ("rmse", "mean", "median", "std", "min", "max", "rot_rmse_deg")}
    return {"ate": {**ate_dict, "n": a.n}, "rpe": rpes, "alignment": a.alignment.as_dict(),
            "n_est": len(est), "n_ref": len(ref), "n_matched": a.n,
            "duration_s": float(matched_ref.t_s[-1] - matched_ref.t_s[0]),
            "path_length_m": path_length(matched_ref)}


def evaluate_files(est_path: str | Path, ref_path: str | Path, **kw) -> dict:
    """:func:`evaluate` on two trajectory files (TUM or EuRoC CSV, detected by content)."""
    result = evaluate(read_trajectory(est_path), read_trajectory(ref_path), **kw)
    return {"est_path": str(est_path), "ref_path": str(ref_path), **result}
