"""The ``slam`` command. Each subcommand parses, calls a library function, and prints; imports are lazy
so ``slam --help`` is instant. Bad input ends with a one-line error naming the file and line, exit code 2.
"""

from __future__ import annotations

import json
import logging
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Visual-inertial SLAM: process sequences, evaluate trajectories.")


def _console():
    from rich.console import Console

    return Console()


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_time=False, show_path=False, console=_console())])


def _fail_on_data_error(func):
    """Turn DataError into a clear one-line message instead of a traceback."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from slam.messages import DataError

        try:
            return func(*args, **kwargs)
        except DataError as exc:
            from rich.markup import escape

            _console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _write_json(data: dict, path: Path) -> None:
    from slam.trajectory_io import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


class Align(str, Enum):
    se3 = "se3"
    sim3 = "sim3"
    dof4 = "4dof"
    none = "none"


@app.command()
@_fail_on_data_error
def info(
    sequence: Annotated[Path, typer.Argument(help="Sequence folder or file (EuRoC/ASL, TUM-VI, KITTI, TUM "
                                                  "RGB-D, ROS bag, feature-track CSV).")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="Force a format: asl, kitti, tum-rgbd, "
                                                                 "rosbag, features.")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Kalibr camchain YAML (overrides; needed for bags).")] = None,
    imu_calib: Annotated[Optional[Path], typer.Option(help="Kalibr IMU YAML.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth file (TUM or EuRoC CSV).")] = None,
    image_topic: Annotated[Optional[list[str]], typer.Option(help="ROS bag image topic, cam0 first "
                                                                  "(repeatable).")] = None,
    imu_topic: Annotated[Optional[str], typer.Option(help="ROS bag IMU topic.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the description as JSON.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
):
    """Describe a sequence: sensors, rates, durations, gaps, calibration, ground truth, warnings."""
    from rich.table import Table

    from slam.datasets import open_sequence
    from slam.info import describe, summary_rows

    _setup_logging(verbose)
    logging.getLogger("slam.datasets").setLevel(logging.ERROR)  # warnings are shown in the table instead
    topics = {k: v for k, v in (("image_topics", image_topic), ("imu_topic", imu_topic)) if v}
    description = describe(open_sequence(sequence, fmt=fmt, calib=calib, imu_calib=imu_calib, ground_truth=gt,
                                         **topics))
    table = Table(show_header=False, title=f"[bold]{sequence}", title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for label, text in summary_rows(description):
        table.add_row(label, f"[yellow]{text}" if label == "warning" else text)
    _console().print(table)
    if json_out:
        _write_json(description, json_out)


@app.command(name="eval")
@_fail_on_data_error
def eval_(
    estimate: Annotated[Path, typer.Argument(help="Estimated trajectory (TUM or EuRoC CSV).")],
    reference: Annotated[Path, typer.Argument(help="Ground-truth trajectory (TUM or EuRoC CSV).")],
    align: Annotated[Align, typer.Option(help="Alignment before ATE: se3, sim3 (monocular), 4dof "
                                              "(yaw + translation: VIO), none.")] = Align.se3,
    rpe_m: Annotated[list[float], typer.Option(help="RPE distance deltas [m] (repeatable).")] = [1.0],
    rpe_s: Annotated[list[float], typer.Option(help="RPE time deltas [s] (repeatable).")] = [1.0],
    max_diff: Annotated[float, typer.Option(help="Timestamp association tolerance [s].")] = 0.01,
    out: Annotated[Optional[Path], typer.Option(help="Write metrics JSON here.")] = None,
):
    """ATE and RPE of an estimated trajectory against ground truth."""
    from rich.table import Table

    from slam.evaluation import evaluate_files

    result = evaluate_files(estimate, reference, align=align.value, rpe_deltas_m=tuple(rpe_m),
                            rpe_deltas_s=tuple(rpe_s), max_diff_s=max_diff)
    table = Table(title=f"{estimate.name} vs {reference.name}: {result['n_matched']} poses, "
                        f"{result['path_length_m']:.2f} m, align {align.value}", title_justify="left")
    for column in ("metric", "rmse", "mean", "median", "max"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    stats = ("rmse", "mean", "median", "max")
    ate = result["ate"]
    table.add_row("ATE (m)", *(f"{ate[k]:.4f}" for k in stats))
    for rpe in result["rpe"]:
        label = f"RPE {rpe['delta']:g} {rpe['unit']}"
        if not rpe["n_pairs"]:
            table.add_row(label, "no pose pairs this far apart", "", "", "")
            continue
        table.add_row(f"{label} trans (m)", *(f"{rpe['trans'][k]:.4f}" for k in stats))
        table.add_row(f"{label} rot (deg)", *(f"{rpe['rot_deg'][k]:.3f}" for k in stats))
    _console().print(table)
    if out:
        _write_json(result, out)
        _console().print(f"metrics written to {out}")


@app.command()
@_fail_on_data_error
def generate(
    preset: Annotated[str, typer.Argument(help="room_mav, room_handheld or hall_loop.")],
    out: Annotated[Path, typer.Argument(help="Output folder (ASL/EuRoC layout, with ground truth).")],
    seconds: Annotated[Optional[float], typer.Option(help="Duration in seconds (default: the preset's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: textures, motion phases, noise.")] = 0,
    texture_dir: Annotated[Optional[Path], typer.Option(help="Folder of photos for the surfaces (default: "
                                                             "scikit-image's sample photos).")] = None,
    mono: Annotated[bool, typer.Option("--mono", help="Only cam0 (monocular).")] = False,
    width: Annotated[Optional[int], typer.Option(help="Image width in pixels; the intrinsics scale with it.")] = None,
    height: Annotated[Optional[int], typer.Option(help="Image height in pixels.")] = None,
    no_imu_noise: Annotated[bool, typer.Option("--no-imu-noise", help="Exact IMU readings, zero biases.")] = False,
    exposure: Annotated[float, typer.Option(help="Exposure time in seconds, for motion blur (0: sharp).")] = 0.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT when it exists.")] = False,
    tracks: Annotated[bool, typer.Option("--tracks", help=(
        "Also write OUT/exact_tracks.csv: cam0's exact feature tracks and the IMU, for backend-only runs: slam run "
        "OUT/exact_tracks.csv --config mono_inertial --imu-calib OUT/mav0/imu0/sensor.yaml "
        "--gt OUT/mav0/state_groundtruth_estimate0/data.csv"))] = False,
):
    """Render a synthetic visual-inertial sequence (stereo or mono images, IMU, ground truth)."""
    import numpy as np
    from rich.table import Table

    from slam.datasets.asl import AslSequence
    from slam.datasets.synthetic import ImuNoise
    from slam.datasets.synthetic import generate as generate_sequence
    from slam.info import describe, summary_rows

    overrides = {"exposure_s": exposure}
    for name, value in (("width", width), ("height", height), ("cameras", 1 if mono else None),
                        ("imu", ImuNoise(enabled=False) if no_imu_noise else None)):
        if value is not None:
            overrides[name] = value
    path = generate_sequence(preset, out, seconds=seconds, seed=seed, texture_dir=texture_dir,
                             overwrite=overwrite, tracks=tracks, **overrides)
    sequence = AslSequence(path)
    p_W = sequence.ground_truth().p_W
    table = Table(show_header=False, title=f"[bold]wrote {path}", title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for label, text in summary_rows(describe(sequence)):
        table.add_row(label, text)
    table.add_row("motion", f"{preset}, seed {seed}, path {np.linalg.norm(np.diff(p_W, axis=0), axis=1).sum():.1f} m")
    _console().print(table)


def _print_run(summary, title: str) -> None:
    from rich.table import Table

    m, t = summary.metrics, summary.timing
    table = Table(show_header=False, title=f"[bold]{title}", title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("frames", f"{m['frames']} ({m['frames_tracked']} tracked, {m['keyframes']} keyframes, "
                            f"{m['resets']} resets)")
    if "ate" in m:
        dof4 = f"; 4-DoF {m['ate_4dof_rmse']:.4f} m" if "ate_4dof_rmse" in m else ""
        table.add_row("ATE", f"{m['ate']['rmse']:.4f} m RMSE (SE3 aligned{dof4}) over {m['path_length_m']:.1f} m")
    else:
        table.add_row("ATE", "no ground truth")
    stages = ", ".join(f"{k} {v:.1f}" for k, v in t["stages_ms_per_frame"].items())
    table.add_row("speed", f"{t['real_time_factor']:.2f}x real time, {t['ms_per_frame']:.1f} ms/frame ({stages})")
    table.add_row("results", str(summary.out))
    _console().print(table)


@app.command()
@_fail_on_data_error
def run(
    sequence: Annotated[Path, typer.Argument(help="Sequence folder or file (EuRoC/ASL, TUM-VI, KITTI, TUM "
                                                  "RGB-D, ROS bag, feature-track CSV).")],
    out: Annotated[Path, typer.Option(help="Result folder.")] = Path("slam_run"),
    config: Annotated[str, typer.Option(help="Preset (stereo_inertial, mono_inertial, stereo) or a YAML "
                                             "file.")] = "stereo_inertial",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting, e.g. "
                                                                    "backend.lag_s=2.5 (repeatable).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Force a format: asl, kitti, tum-rgbd, "
                                                                 "rosbag, features.")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Kalibr camchain YAML (overrides the sequence's).")] = None,
    imu_calib: Annotated[Optional[Path], typer.Option(help="Kalibr IMU YAML.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth file (TUM or EuRoC CSV) for metrics.")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Stop after this much of the sequence.")] = None,
    no_viz: Annotated[bool, typer.Option("--no-viz", help="Skip the plots, report and recording at the "
                                                          "end (see slam viz).")] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="Stream to a Rerun viewer while running.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
):
    """Estimate the trajectory of a recorded sequence; write trajectory, keyframes, map, metrics, timing, then plots."""
    from slam.datasets import open_sequence
    from slam.pipeline import load_pipeline_config
    from slam.run import run_sequence

    _setup_logging(verbose)
    pipeline_config = load_pipeline_config(config, set_ or [])
    seq = open_sequence(sequence, fmt=fmt, calib=calib, imu_calib=imu_calib, ground_truth=gt)
    observers = [_rerun_stream(seq)] if rerun else []
    try:
        summary = run_sequence(seq, pipeline_config, out, max_seconds=seconds, observers=observers)
    except KeyboardInterrupt:
        _console().print(f"interrupted; results so far are in {out}")
        raise typer.Exit(130) from None
    _print_run(summary, f"{seq.path} ({pipeline_config.mode})")
    if not no_viz:
        _visualize_after_run(out, gt)


@app.command()
@_fail_on_data_error
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the generated sequence and the results.")] = Path("slam_demo"),
    seconds: Annotated[float, typer.Option(help="Length of the generated sequence.")] = 20.0,
    preset: Annotated[str, typer.Option(help="Synthetic preset: room_mav, room_handheld, hall_loop.")] = "room_mav",
    seed: Annotated[int, typer.Option(help="Random seed of the generated sequence.")] = 0,
    no_viz: Annotated[bool, typer.Option("--no-viz", help="Skip the plots, report and recording.")] = False,
):
    """Generate a synthetic stereo-inertial sequence (no data needed), run the estimator on it, print its ATE."""
    from slam.run import demo as run_demo

    _setup_logging(False)
    summary = run_demo(out, seconds=seconds, preset=preset, seed=seed)
    _print_run(summary, f"demo: {preset}, {seconds:g} s, stereo-inertial")
    if not no_viz:
        _visualize_after_run(summary.out, None)


def _rerun_stream(seq):
    """A live Rerun view of ``seq`` (its ground truth drawn when it has one)."""
    from slam.messages import DataError
    from slam.viz.rerun_view import RerunStream

    try:
        ground_truth = seq.ground_truth()
    except DataError:
        ground_truth = None
    return RerunStream(spawn=True, ground_truth=ground_truth, calibration=seq.calibration)


def _visualize_after_run(run_dir: Path, gt: Optional[Path]) -> None:
    """slam viz at the end of a run: a failure only warns, the run's results are already written."""
    try:
        with _console().status("writing plots, report and recording"):
            from slam.viz import visualize_run

            result = visualize_run(run_dir, gt=gt)
    except Exception as exc:  # noqa: BLE001 - never lose a finished run to a plotting problem
        _console().print(f"[yellow]warning:[/] visualization failed ({type(exc).__name__}: {exc}); "
                         f"results are in {run_dir}; retry with: slam viz {run_dir}", highlight=False)
        return
    _print_viz(result)


def _print_viz(result) -> None:
    from rich.markup import escape

    console = _console()
    if result.report is not None:
        console.print(f"report: {result.report}", highlight=False, soft_wrap=True)
    names = ", ".join(result.plots) or "none"
    console.print(f"plots: {result.run_dir / 'plots'} ({names})", highlight=False, soft_wrap=True)
    for path in result.written:
        if path.suffix != ".png" or path.parent.name != "plots":
            if path != result.report:
                console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    for problem in result.problems:
        console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)


@app.command()
@_fail_on_data_error
def viz(
    run_dir: Annotated[Path, typer.Argument(help="Result folder of slam run.")],
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth (TUM/EuRoC file or sequence folder); default: "
                                                    "the one in metrics.json.")] = None,
    no_rerun: Annotated[bool, typer.Option("--no-rerun", help="Skip the Rerun recording.")] = False,
    no_map_render: Annotated[bool, typer.Option("--no-map-render", help="Export the map PLY but do not "
                                                                        "render it.")] = False,
):
    """Plots, HTML report, Rerun recording and map (PLY, PNG) of a run folder; lists what is missing."""
    from slam.viz import visualize_run

    with _console().status(f"visualizing {run_dir}"):
        result = visualize_run(run_dir, gt=gt, rerun=not no_rerun, map_render=not no_map_render)
    _print_viz(result)


@app.command()
@_fail_on_data_error
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Result folders of slam run (two or more).")],
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated names, one per run (default: folder "
                                                       "names).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for compare.png, compare.csv, compare.json.")] = Path(
        "slam_compare"),
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth for every run (default: each run's "
                                                    "metrics.json).")] = None,
):
    """Overlay several runs (methods, frontends, settings): one plot and one table."""
    from rich.markup import escape
    from rich.table import Table

    from slam.viz import compare_runs

    names = [x.strip() for x in labels.split(",")] if labels else None
    result = compare_runs(runs, names, out, gt=gt)
    table = Table(title=f"[bold]{len(result.rows)} runs", title_justify="left")
    columns = {"label": "run", "mode": "mode", "frames_tracked": "tracked", "resets": "resets",
               "ate_rmse_m": "ATE [m]", "ate_4dof_rmse_m": "ATE 4-DoF", "rpe_1m_trans_rmse_m": "RPE 1 m [m]",
               "real_time_factor": "x real time"}
    for column, header in columns.items():
        table.add_column(header, justify="left" if column in ("label", "mode") else "right",
                         no_wrap=column == "label")
    for row in result.rows:
        table.add_row(*(("-" if row[c] is None else f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]))
                        for c in columns))
    console = _console()
    console.print(table)
    for path in result.written:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    for problem in result.problems:
        console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)


# Command groups kept in their own modules; importing one adds its commands to `app`.
from slam import cli_live, cli_train  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
