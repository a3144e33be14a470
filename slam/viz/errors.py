"""The estimate aligned onto ground truth, with its errors over time, for plotting.

Alignment and errors come from :mod:`slam.evaluation` (SE3, the same as ``metrics.json``), so the plots
show exactly the numbers of the metrics table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.evaluation import Alignment, RpeResult, associate, ate, rpe
from slam.messages import DataError, Trajectory

ALIGN = "se3"  # metrics.json is SE3-aligned in every mode (monocular-inertial scale is observable)


@dataclass(frozen=True, eq=False)
class TrajectoryErrors:
    alignment: Alignment
    estimate: Trajectory  # every estimated pose, mapped into the ground-truth frame
    ground_truth: Trajectory  # ground truth over the estimate's time span
    ape_t_ns: np.ndarray  # (n,) stamps of the matched poses
    ape_m: np.ndarray  # (n,) translation error after alignment [m]
    ape_rot_deg: np.ndarray  # (n,)
    ape_index: np.ndarray  # (n,) index of each matched pose in ``estimate``
    rpe: list[tuple[RpeResult, np.ndarray]]  # per delta: result, stamps of the pair starts

    def ape_per_pose(self) -> np.ndarray:
        """APE for every estimated pose (NaN where no ground-truth pose matched)."""
        out = np.full(len(self.estimate), np.nan)
        out[self.ape_index] = self.ape_m
        return out

    def align(self, points_W: np.ndarray) -> np.ndarray:
        """Map (N, 3) points of the estimator's world frame (landmarks) into the ground-truth frame."""
        a = self.alignment
        return a.s * np.asarray(points_W, float).reshape(-1, 3) @ a.R.T + a.t


def trajectory_errors(est: Trajectory, gt: Trajectory, rpe_deltas=((1.0, "m"), (1.0, "s")),
                      max_diff_s: float = 0.01) -> TrajectoryErrors:
    """Align ``est`` onto ``gt`` and compute APE per pose and RPE per pose pair. Raises DataError when too
    few poses match."""
    result = ate(est, gt, ALIGN, max_diff_s)
    i_est, i_ref = associate(est, gt, max_diff_s)
    rpes = []
    for delta, unit in rpe_deltas:
        try:
            r = rpe(est, gt, delta, unit, ALIGN, max_diff_s)
        except DataError:
            continue  # shorter than delta: no pairs to plot
        rpes.append((r, gt.t_ns[i_ref][r.pairs[:, 0]]))
    margin = 1_000_000_000  # keep 1 s of ground truth around the estimate for context
    span = (gt.t_ns >= est.t_ns[0] - margin) & (gt.t_ns <= est.t_ns[-1] + margin)
    return TrajectoryErrors(result.alignment, result.alignment.apply(est), gt.subset(np.flatnonzero(span)),
                            result.t_ns, result.errors, result.rot_errors_deg, i_est, rpes)
