"""PNG plots of one run (matplotlib's object API on the Agg canvas: no pyplot state, no display needed).

Each ``plot_*`` function draws one figure of ``PLOT_SIZE_PX`` pixels from a :class:`RunData` (and its
:class:`TrajectoryErrors` when ground truth exists) and returns a :class:`Plot` with the axis limits of
its main panel, or None when the run lacks the data for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slam.messages import Trajectory
from slam.viz.errors import TrajectoryErrors
from slam.viz.run_data import RunData

PLOT_SIZE_PX = (1200, 800)
DPI = 100
AXIS = {"x": 0, "y": 1, "z": 2}
GT_STYLE = dict(color="0.55", ls="--", lw=1.5, label="ground truth")
LOOP_COLOR = "#d62728"


@dataclass
class Plot:
    name: str
    path: Path
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)  # axis label -> (low, high)


def figure(rows: int = 1, cols: int = 1, **kw):
    """A fresh figure of ``PLOT_SIZE_PX`` on its own Agg canvas, and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(PLOT_SIZE_PX[0] / DPI, PLOT_SIZE_PX[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size stays exactly PLOT_SIZE_PX
    return path


def _floats(limits) -> tuple[float, float]:
    return float(limits[0]), float(limits[1])


def run_seconds(run: RunData, t_ns) -> np.ndarray:
    return (np.asarray(t_ns, np.int64) - run.t0_ns) * 1e-9


def _estimate(run: RunData, errors: TrajectoryErrors | None) -> Trajectory | None:
    return errors.estimate if errors is not None else run.trajectory


def _nearest(traj: Trajectory, t_ns: np.ndarray) -> np.ndarray:
    """Index of the pose nearest in time to each stamp."""
    i = np.clip(np.searchsorted(traj.t_ns, t_ns), 1, len(traj.t_ns) - 1)
    return np.where(np.abs(traj.t_ns[i] - t_ns) < np.abs(t_ns - traj.t_ns[i - 1]), i, i - 1)


def loop_segments(run: RunData, est: Trajectory | None) -> np.ndarray:
    """(K, 2, 3) positions of both ends of each loop closure, looked up at the nearest estimated poses."""
    if run.loops is None or len(run.loops) == 0 or est is None or len(est) < 2:
        return np.zeros((0, 2, 3))
    return est.p_W[_nearest(est, run.loops.reshape(-1))].reshape(-1, 2, 3)


def plot_trajectory(run: RunData, errors: TrajectoryErrors | None, path: Path, view: str = "xy") -> Plot | None:
    """Top (``xy``) or side (``xz``) view: the aligned estimate coloured by APE over the ground truth."""
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    est = _estimate(run, errors)
    if est is None or len(est) == 0:
        return None
    i, j = AXIS[view[0]], AXIS[view[1]]
    fig, axes = figure()
    ax = axes[0, 0]
    if errors is not None:
        gt = errors.ground_truth
        ax.plot(gt.p_W[:, i], gt.p_W[:, j], **GT_STYLE)
        ape = errors.ape_per_pose()
        xy = est.p_W[:, [i, j]]
        segments = np.stack([xy[:-1], xy[1:]], axis=1)
        cmap = colormaps["viridis"].with_extremes(bad="0.3")  # segments without a matched pose: dark grey
        lines = LineCollection(segments, cmap=cmap, lw=2.5, label="estimate (colour: APE)")
        lines.set_array(np.fmax(ape[:-1], ape[1:]))
        lines.set_clim(0.0, float(np.nanmax(ape)) if np.isfinite(ape).any() else 1.0)
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, label="APE [m]")
        title = f"SE3-aligned to ground truth, ATE RMSE {np.sqrt(np.mean(errors.ape_m ** 2)):.4f} m"
    else:
        ax.plot(est.p_W[:, i], est.p_W[:, j], color="C0", lw=2, label="estimate")
        title = "no ground truth: estimator frame"
    ax.plot(*est.p_W[0, [i, j]], "o", color="C2", ms=9, label="start")
    ax.plot(*est.p_W[-1, [i, j]], "s", color="C3", ms=9, label="end")
    if run.keyframes is not None and len(run.keyframes):
        kf = errors.align(run.keyframes.p_W) if errors is not None else run.keyframes.p_W
        ax.plot(kf[:, i], kf[:, j], ".", color="k", ms=4, label="keyframes")
    for k, (a, b) in enumerate(loop_segments(run, est)):
        ax.plot([a[i], b[i]], [a[j], b[j]], "-", color=LOOP_COLOR, lw=1.5, label="loop closures" if k == 0 else None)
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.set_xlabel(f"{view[0]} [m]")
    ax.set_ylabel(f"{view[1]} [m]")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    ax.set_title(f"{run.name}: {'top' if view == 'xy' else 'side'} view ({view[0]}-{view[1]}), {title}")
    save(fig, path)
    return Plot(path.stem, path, {view[0]: _floats(ax.get_xlim()), view[1]: _floats(ax.get_ylim())})


def plot_ape(run: RunData, errors: TrajectoryErrors, path: Path) -> Plot:
    """Absolute pose error over time: translation and rotation."""
    fig, axes = figure(2, 1, sharex=True)
    t = run_seconds(run, errors.ape_t_ns)
    for ax, values, unit, name in ((axes[0, 0], errors.ape_m, "m", "translation"),
                                   (axes[1, 0], errors.ape_rot_deg, "deg", "rotation")):
        rmse = float(np.sqrt(np.mean(values ** 2)))
        ax.plot(t, values, color="C0", lw=1.5, label=f"APE {name}")
        ax.axhline(rmse, color="C3", ls="--", lw=1, label=f"RMSE {rmse:.4g} {unit}")
        ax.axhline(float(np.median(values)), color="C2", ls=":", lw=1, label=f"median {np.median(values):.4g} {unit}")
        ax.set_ylabel(f"{name} error [{unit}]")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
    axes[1, 0].set_xlabel("time [s]")
    axes[0, 0].set_title(f"{run.name}: absolute pose error (SE3-aligned), {len(t)} poses")
    save(fig, path)
    return Plot(path.stem, path, {"t": _floats(axes[0, 0].get_xlim()), "ape": _floats(axes[0, 0].get_ylim())})


def plot_rpe(run: RunData, errors: TrajectoryErrors, path: Path) -> Plot | None:
    """Relative pose error of pose pairs ``delta`` apart, at the time of the first pose of each pair."""
    if not errors.rpe:
        return None
    fig, axes = figure(2, 1, sharex=True)
    for k, (result, t_ns) in enumerate(errors.rpe):
        t = run_seconds(run, t_ns)
        label = f"{result.delta:g} {result.unit}: RMSE"
        axes[0, 0].plot(t, result.trans_errors, color=f"C{k}", lw=1.2,
                        label=f"{label} {result.trans['rmse']:.4g} m ({result.n_pairs} pairs)")
        axes[1, 0].plot(t, result.rot_errors_deg, color=f"C{k}", lw=1.2,
                        label=f"{label} {result.rot_deg['rmse']:.4g} deg")
    axes[0, 0].set_ylabel("translation error [m]")
    axes[1, 0].set_ylabel("rotation error [deg]")
    axes[1, 0].set_xlabel("time of the first pose of the pair [s]")
    for ax in axes[:, 0]:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=9)
    axes[0, 0].set_title(f"{run.name}: relative pose error over distance and time deltas")
    save(fig, path)
    return Plot(path.stem, path, {"t": _floats(axes[0, 0].get_xlim())})


def _tracked_states(run: RunData, errors: TrajectoryErrors | None) -> Trajectory | None:
    if run.states is None or not np.any(run.states.status == "tracking"):
        return None
    tracked = run.states.tracked()
    return errors.alignment.apply(tracked) if errors is not None else tracked


def plot_velocity(run: RunData, errors: TrajectoryErrors | None, path: Path) -> Plot | None:
    """Estimated world-frame velocity per axis (rotated into the ground-truth frame), against ground truth."""
    est = _tracked_states(run, errors)
    if est is None:
        return None
    gt = errors.ground_truth if errors is not None and errors.ground_truth.v_W is not None else None
    fig, axes = figure(4, 1, sharex=True)
    t = run_seconds(run, est.t_ns)
    speed = np.linalg.norm(est.v_W, axis=1)
    for k, (ax, name) in enumerate(zip(axes[:, 0], ("v_x", "v_y", "v_z", "|v|"))):
        ax.plot(t, est.v_W[:, k] if k < 3 else speed, color="C0", lw=1.5, label="estimate")
        if gt is not None:
            ax.plot(run_seconds(run, gt.t_ns), gt.v_W[:, k] if k < 3 else np.linalg.norm(gt.v_W, axis=1), **GT_STYLE)
        ax.set_ylabel(f"{name} [m/s]")
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=9)
    axes[-1, 0].set_xlabel("time [s]")
    frame = "ground-truth frame" if errors is not None else "estimator world frame"
    axes[0, 0].set_title(f"{run.name}: velocity ({frame})" + ("" if gt is not None else ", no ground-truth velocity"))
    save(fig, path)
    return Plot(path.stem, path, {"t": _floats(axes[0, 0].get_xlim())})


def plot_biases(run: RunData, errors: TrajectoryErrors | None, path: Path) -> Plot | None:
    """Gyroscope and accelerometer bias estimates per axis, against ground truth when it has biases."""
    est = _tracked_states(run, errors)
    if est is None:
        return None
    gt = errors.ground_truth if errors is not None else None
    fig, axes = figure(2, 1, sharex=True)
    t = run_seconds(run, est.t_ns)
    for ax, key, unit in ((axes[0, 0], "bias_gyro", "rad/s"), (axes[1, 0], "bias_accel", "m/s²")):
        truth = getattr(gt, key) if gt is not None else None
        for k, axis in enumerate("xyz"):
            ax.plot(t, getattr(est, key)[:, k], color=f"C{k}", lw=1.5, label=f"{axis} estimate")
            if truth is not None:
                ax.plot(run_seconds(run, gt.t_ns), truth[:, k], color=f"C{k}", ls="--", lw=1,
                        label=f"{axis} ground truth")
        ax.set_ylabel(f"{key.replace('_', ' ')} [{unit}]")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncol=3)
    axes[1, 0].set_xlabel("time [s]")
    axes[0, 0].set_title(f"{run.name}: IMU biases")
    save(fig, path)
    return Plot(path.stem, path, {"t": _floats(axes[0, 0].get_xlim())})


def plot_timing(run: RunData, path: Path) -> Plot | None:
    """Mean milliseconds per frame of each pipeline stage, against the real-time budget per frame."""
    stages = (run.timing or {}).get("stages_ms_per_frame")
    if not stages:
        return None
    fig, axes = figure()
    ax = axes[0, 0]
    names = list(stages)
    ms = [float(stages[n]) for n in names]
    bars = ax.barh(names, ms, color=[f"C{k}" for k in range(len(names))])
    ax.bar_label(bars, labels=[f"{v:.1f} ms" for v in ms], padding=4)
    timing = run.timing
    if timing.get("frames") and timing.get("sequence_s"):
        budget = 1000.0 * timing["sequence_s"] / timing["frames"]
        ax.axvline(budget, color="k", ls="--", lw=1, label=f"real-time budget {budget:.1f} ms/frame")
        ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel("mean time per frame [ms]")
    ax.grid(True, axis="x", alpha=0.3)
    rtf = timing.get("real_time_factor")
    ax.set_title(f"{run.name}: time per stage, total {timing.get('ms_per_frame', sum(ms)):.1f} ms/frame"
                 + (f", {rtf:.2f}x real time" if rtf else ""))
    save(fig, path)
    return Plot(path.stem, path, {"ms": _floats(ax.get_xlim())})


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of consecutive True values."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


STATUS_COLORS = {"initializing": "0.85", "reset": "#f4a6a6", "propagated": "#fde2a7"}


def plot_tracking(run: RunData, path: Path) -> Plot | None:
    """Landmarks in use (and tracked features when states.csv has them) per frame; keyframes, estimator
    status and loop closures on the same time axis."""
    states = run.states
    if states is None:
        return None
    fig, axes = figure()
    ax = axes[0, 0]
    t = run_seconds(run, states.t_ns)
    for k, (column, label) in enumerate((("n_landmarks", "landmarks in use"), ("n_features", "tracked features"))):
        if column in states.values:
            ax.plot(t, states.values[column], color=f"C{k}", lw=1.5, label=label)
    top = max([float(np.max(states.values[c])) for c in ("n_landmarks", "n_features") if c in states.values] + [1.0])
    kf = t[states.keyframe]
    ax.plot(kf, np.full(len(kf), -0.03 * top), "|", color="k", ms=12, label=f"keyframes ({len(kf)})")
    half = 0.5 * (np.median(np.diff(t)) if len(t) > 1 else 0.05)
    for status, color in STATUS_COLORS.items():
        for k, (a, b) in enumerate(_runs(states.status == status)):
            ax.axvspan(t[a] - half, t[b] + half, color=color, lw=0, label=status if k == 0 else None)
    if run.loops is not None:
        for k, pair in enumerate(run.loops):
            ax.axvline(run_seconds(run, pair.max()), color=LOOP_COLOR, lw=1, label="loop closures" if k == 0 else None)
    ax.set_ylim(-0.08 * top, 1.1 * top)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("count")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title(f"{run.name}: tracking per frame, {int(np.sum(states.status == 'tracking'))} of {len(states)} "
                 "frames tracked")
    save(fig, path)
    return Plot(path.stem, path, {"t": _floats(ax.get_xlim())})
