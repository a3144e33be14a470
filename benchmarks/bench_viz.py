"""How long `slam viz` takes per step, and how big its outputs are.

Run: python benchmarks/bench_viz.py [RUN_DIR]   (prints one table; without RUN_DIR a 20 s demo run is made
first in a temporary folder, which takes about a minute)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    from slam.viz import plots
    from slam.viz.errors import trajectory_errors
    from slam.viz.map_export import export_map, render_map
    from slam.viz.rerun_view import write_recording
    from slam.viz.report import write_report
    from slam.viz.run_data import load_run
    from slam.viz.visualize import visualize_run

    if len(sys.argv) > 1:
        run_dir = Path(sys.argv[1])
    else:
        from slam.run import demo

        run_dir = demo(Path(tempfile.mkdtemp()) / "demo", seconds=20.0, progress=False).out
    rows = []
    run, s = timed(lambda: load_run(run_dir))
    rows.append(("load run folder", s, ""))
    errors, s = timed(lambda: trajectory_errors(run.trajectory, run.ground_truth) if run.ground_truth else None)
    rows.append(("align + APE/RPE", s, ""))
    out = Path(tempfile.mkdtemp())
    makers = {"trajectory_xy": lambda p: plots.plot_trajectory(run, errors, p, "xy"),
              "trajectory_xz": lambda p: plots.plot_trajectory(run, errors, p, "xz"),
              "ape": lambda p: plots.plot_ape(run, errors, p) if errors else None,
              "rpe": lambda p: plots.plot_rpe(run, errors, p) if errors else None,
              "velocity": lambda p: plots.plot_velocity(run, errors, p),
              "biases": lambda p: plots.plot_biases(run, errors, p),
              "tracking": lambda p: plots.plot_tracking(run, p), "timing": lambda p: plots.plot_timing(run, p)}
    for name, make in makers.items():
        plot, s = timed(lambda: make(out / f"{name}.png"))
        rows.append((f"plot {name}", s, f"{plot.path.stat().st_size / 1e3:.0f} kB" if plot else "skipped"))
    ply, s = timed(lambda: export_map(run, out / "map_keyframes.ply"))
    rows.append(("map PLY export", s, f"{ply.stat().st_size / 1e3:.0f} kB"))
    fallback, s = timed(lambda: render_map(ply, out / "map.png", plots.PLOT_SIZE_PX))
    rows.append(("map render (child process)", s, "matplotlib fallback" if fallback else "open3d offscreen"))
    rrd, s = timed(lambda: write_recording(run, errors, out / "recording.rrd"))
    rows.append(("Rerun recording", s, f"{rrd.stat().st_size / 1e3:.0f} kB"))
    images = [(p, p.stem) for p in sorted(out.glob("*.png"))]
    report, s = timed(lambda: write_report(run, images, [], out / "report.html"))
    rows.append(("HTML report", s, f"{report.stat().st_size / 1e6:.1f} MB, {len(images)} images"))
    result, s = timed(lambda: visualize_run(run_dir))
    rows.append(("visualize_run total (slam viz)", s, f"{len(result.written)} files, {len(result.problems)} problems"))

    frames = len(run.states) if run.states is not None else 0
    table = Table(title=f"slam viz on {run_dir} ({frames} frames, {len(run.trajectory or [])} poses)")
    for column, justify in (("step", "left"), ("seconds", "right"), ("output", "left")):
        table.add_column(column, justify=justify)
    for name, seconds, note in rows:
        table.add_row(name, f"{seconds:.2f}", note)
    Console().print(table)


if __name__ == "__main__":
    main()
