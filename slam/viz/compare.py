"""``compare_runs()``: several runs (methods, frontends, settings) overlaid in one figure and one table,
like evo_traj + evo_res.

OUT/compare.png   top view of every estimate (each SE3-aligned to its ground truth), APE over time, APE spread
OUT/compare.csv   one row per run (also compare.json)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slam.messages import DataError
from slam.viz import plots
from slam.viz.run_data import load_run

COLUMNS = ("label", "mode", "frames", "frames_tracked", "keyframes", "resets", "ate_rmse_m", "ate_mean_m",
           "ate_median_m", "ate_max_m", "ate_4dof_rmse_m", "rpe_1m_trans_rmse_m", "rpe_1m_rot_rmse_deg",
           "real_time_factor", "ms_per_frame", "run")


@dataclass
class CompareResult:
    rows: list[dict]  # one per run, keys COLUMNS (None where unknown)
    plot: Path | None
    table: Path  # CSV
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _labels(run_dirs: list[Path], labels) -> list[str]:
    if labels:
        if len(labels) != len(run_dirs):
            raise DataError(f"{len(labels)} labels for {len(run_dirs)} runs", field="labels")
        return list(labels)
    names = [Path(d).resolve().name for d in run_dirs]
    # Runs are often RESULTS/<method>/run: then the parent tells them apart.
    return [Path(d).resolve().parent.name + "/" + n if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


def _row(label: str, run, errors) -> dict:
    m, t = run.metrics or {}, run.timing or {}
    row = dict.fromkeys(COLUMNS)
    row.update(label=label, run=str(run.run_dir), mode=run.mode,
               **{k: m.get(k) for k in ("frames", "frames_tracked", "keyframes", "resets")},
               ate_4dof_rmse_m=m.get("ate_4dof_rmse"), real_time_factor=t.get("real_time_factor"),
               ms_per_frame=t.get("ms_per_frame"))
    if errors is not None:  # recomputed, so runs with a partial metrics.json still compare
        e = errors.ape_m
        row.update(ate_rmse_m=float(np.sqrt(np.mean(e ** 2))), ate_mean_m=float(e.mean()),
                   ate_median_m=float(np.median(e)), ate_max_m=float(e.max()))
        rpe_1m = next((r for r, _ in errors.rpe if r.unit == "m" and r.delta == 1.0), None)
        if rpe_1m is not None:
            row.update(rpe_1m_trans_rmse_m=rpe_1m.trans["rmse"], rpe_1m_rot_rmse_deg=rpe_1m.rot_deg["rmse"])
    if row["frames_tracked"] is None and run.trajectory is not None:
        row["frames_tracked"] = len(run.trajectory)
    return row


def compare_runs(run_dirs, labels=None, out: str | Path = "slam_compare", gt=None) -> CompareResult:
    """Overlay ``run_dirs`` (each with its ground truth: ``gt``, else its metrics.json's) in one figure and
    one table written to ``out``. Runs that cannot be read are reported in ``problems`` and left out."""
    from slam.viz.errors import trajectory_errors

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise DataError("no runs to compare")
    names = _labels(run_dirs, labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    entries = []  # (label, run, errors)
    for label, run_dir in zip(names, run_dirs):
        try:
            run = load_run(run_dir, gt)
        except DataError as exc:
            problems.append(f"{label}: {exc}")
            continue
        problems += [f"{label}: {p}" for p in run.problems]
        errors = None
        if run.ground_truth is not None and run.trajectory is not None:
            try:
                errors = trajectory_errors(run.trajectory, run.ground_truth)
            except DataError as exc:
                problems.append(f"{label}: cannot align to ground truth: {exc}")
        entries.append((label, run, errors))
    if not entries:
        raise DataError("none of the runs could be read: " + "; ".join(problems))
    rows = [_row(label, run, errors) for label, run, errors in entries]
    table = _write_table(rows, out)
    plot = _plot(entries, out / "compare.png")
    written = [table, out / "compare.json"] + ([plot] if plot else [])
    return CompareResult(rows, plot, table, written, problems)


def _write_table(rows: list[dict], out: Path) -> Path:
    from slam.trajectory_io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    return atomic_write_text(out / "compare.csv", buffer.getvalue())


def _plot(entries, path: Path) -> Path | None:
    """Left: top view of every run (ground truth of the first run that has one). Right: APE over time and its
    spread per run (or, without ground truth, the side view)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(plots.PLOT_SIZE_PX[0] / plots.DPI, plots.PLOT_SIZE_PX[1] / plots.DPI), dpi=plots.DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    with_gt = [(label, run, e) for label, run, e in entries if e is not None]
    axes = fig.subplot_mosaic([["xy", "ape"], ["xy", "box"]] if with_gt else [["xy", "xz"]], width_ratios=[1.2, 1])
    top = axes["xy"]
    if with_gt:
        gt = with_gt[0][2].ground_truth
        top.plot(gt.p_W[:, 0], gt.p_W[:, 1], **plots.GT_STYLE)
    for k, (label, run, errors) in enumerate(entries):
        est = errors.estimate if errors is not None else run.trajectory
        if est is None:
            continue
        top.plot(est.p_W[:, 0], est.p_W[:, 1], color=f"C{k}", lw=1.5, label=label)
        if errors is not None:
            axes["ape"].plot(plots.run_seconds(run, errors.ape_t_ns), errors.ape_m, color=f"C{k}", lw=1.2, label=label)
        elif "xz" in axes:
            axes["xz"].plot(est.p_W[:, 0], est.p_W[:, 2], color=f"C{k}", lw=1.5, label=label)
    top.set_aspect("equal", adjustable="datalim")
    top.set(xlabel="x [m]", ylabel="y [m]", title="top view" + (" (SE3-aligned to ground truth)" if with_gt else ""))
    top.legend(fontsize=9)
    top.grid(True, alpha=0.3)
    if with_gt:
        axes["ape"].set(xlabel="time [s]", ylabel="APE [m]", title="absolute position error over time")
        axes["ape"].legend(fontsize=9)
        axes["ape"].grid(True, alpha=0.3)
        box = axes["box"]
        box.boxplot([e.ape_m for _, _, e in with_gt], showfliers=False)
        box.set_xticks(range(1, len(with_gt) + 1), [label for label, _, _ in with_gt])
        box.set(ylabel="APE [m]", title="APE spread (box: quartiles, whiskers: 1.5 IQR)")
        box.grid(True, axis="y", alpha=0.3)
    else:
        axes["xz"].set(xlabel="x [m]", ylabel="z [m]", title="side view (no ground truth: estimator frames)")
        axes["xz"].grid(True, alpha=0.3)
    return plots.save(fig, path)
