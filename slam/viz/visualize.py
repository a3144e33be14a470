"""``visualize_run()``: every picture of one run folder, written into it.

RUN/plots/*.png        trajectory top/side views, APE, RPE, velocity, biases, timing, tracking
RUN/map_keyframes.ply  landmarks (grey) + keyframe positions (red)
RUN/map.png            offscreen render of that map
RUN/recording.rrd      Rerun recording (open with ``rerun RUN/recording.rrd``)
RUN/report.html        one self-contained page with all of the above

Each output is attempted on its own: a missing file or a failing step is listed in ``problems`` and the
rest is still written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from slam.messages import DataError
from slam.viz import plots
from slam.viz.run_data import RunData, load_run

log = logging.getLogger(__name__)

CAPTIONS = {
    "trajectory_xy": "Top view (x-y): estimate coloured by absolute position error, ground truth dashed",
    "trajectory_xz": "Side view (x-z)",
    "ape": "Absolute pose error over time (translation, rotation)",
    "rpe": "Relative pose error over 1 m and 1 s",
    "velocity": "Velocity per axis and speed",
    "biases": "Gyroscope and accelerometer biases",
    "tracking": "Landmarks per frame, keyframes, estimator status, loop closures",
    "timing": "Time per pipeline stage",
    "map": "Map: landmarks (grey) and keyframe positions (red)",
}


@dataclass
class VizResult:
    run_dir: Path
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    plots: dict[str, plots.Plot] = field(default_factory=dict)  # name -> Plot (path, axis limits)
    report: Path | None = None
    recording: Path | None = None


def _attempt(what: str, problems: list[str], step):
    """Run one output step; a failure becomes a line in ``problems`` instead of ending the visualization."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - any failure of one picture must not cost the others
        log.debug("%s failed", what, exc_info=True)
        problems.append(f"{what} failed: {type(exc).__name__}: {exc}")
        return None


def visualize_run(run_dir: str | Path, gt: str | Path | None = None, rerun: bool = True,
                  map_render: bool = True) -> VizResult:
    """Plots, map export and render, Rerun recording and HTML report of ``run_dir``.

    ``gt``: ground-truth file or sequence folder; by default the one recorded in ``metrics.json``. Raises
    DataError only when ``run_dir`` is not a run folder at all.
    """
    from slam.viz.errors import trajectory_errors

    run = load_run(run_dir, gt)
    result = VizResult(run.run_dir, problems=run.problems)
    problems = run.problems
    errors = None
    if run.ground_truth is None:
        problems.append("no ground truth (none given, none recorded in metrics.json): plots show the estimate "
                        "alone, without errors")
    elif run.trajectory is not None:
        try:
            errors = trajectory_errors(run.trajectory, run.ground_truth)
        except DataError as exc:
            problems.append(f"cannot align to ground truth: {exc}")

    out = run.run_dir / "plots"
    steps = [("trajectory_xy", lambda p: plots.plot_trajectory(run, errors, p, "xy")),
             ("trajectory_xz", lambda p: plots.plot_trajectory(run, errors, p, "xz")),
             ("ape", lambda p: plots.plot_ape(run, errors, p) if errors is not None else None),
             ("rpe", lambda p: plots.plot_rpe(run, errors, p) if errors is not None else None),
             ("velocity", lambda p: plots.plot_velocity(run, errors, p)),
             ("biases", lambda p: plots.plot_biases(run, errors, p)),
             ("tracking", lambda p: plots.plot_tracking(run, p)),
             ("timing", lambda p: plots.plot_timing(run, p))]
    for name, make in steps:
        plot = _attempt(f"plot {name}", problems, lambda: make(out / f"{name}.png"))
        if plot is not None:
            result.plots[name] = plot
            result.written.append(plot.path)
        else:
            (out / f"{name}.png").unlink(missing_ok=True)  # a stale plot of an earlier pass would mislead
    images = [(p.path, CAPTIONS[name]) for name, p in result.plots.items()]

    map_png = _map(run, map_render, result)
    if map_png is not None:
        images.append((map_png, CAPTIONS["map"]))
    if rerun:
        from slam.viz.rerun_view import write_recording

        result.recording = _attempt("Rerun recording", problems,
                                    lambda: write_recording(run, errors, run.run_dir / "recording.rrd"))
        if result.recording is not None:
            result.written.append(result.recording)

    from slam.viz.report import write_report

    files = [p for p in result.written if p.suffix in (".rrd", ".ply")]
    result.report = _attempt("HTML report", problems,
                             lambda: write_report(run, images, files, run.run_dir / "report.html"))
    if result.report is not None:
        result.written.append(result.report)
    return result


def _map(run: RunData, render: bool, result: VizResult) -> Path | None:
    """Export the coloured map PLY and (optionally) render it; returns the PNG when one was drawn."""
    from slam.viz.map_export import export_map, render_map

    ply = _attempt("map export", result.problems, lambda: export_map(run, run.run_dir / "map_keyframes.ply"))
    if ply is None:
        return None
    result.written.append(ply)
    if not render:
        return None
    png = run.run_dir / "map.png"
    png.unlink(missing_ok=True)
    fallback = _attempt("map render", result.problems, lambda: render_map(ply, png, plots.PLOT_SIZE_PX))
    if fallback:
        result.problems.append(fallback)
    if not png.exists():
        return None
    result.written.append(png)
    return png
