"""VIO accuracy and speed: one table over the real data and the synthetic benchmark set.

Rows: the real EuRoC V1_01 feature tracks (mono-inertial, backend only), the real EuRoC V1_01 micro images
(stereo-inertial, nearly still: gravity error and drift), and each synthetic benchmark sequence in
stereo-inertial and mono-inertial. Columns: ATE (SE3 and 4-DoF aligned), drift (KITTI-style: mean
translation error over every 10 m of path, in %), real-time factor and milliseconds per frame by stage.

Issue targets: real tracks ATE <= 0.08 m (aim 0.04); static gravity < 1 deg, drift < 3 cm; synthetic
stereo-inertial ATE <= 0.03 m in the room, drift <= 0.5 % on the loop, mono within 2x of stereo;
stereo-inertial >= 1.5x real time.

Usage: python benchmarks/bench_vio.py [--sequences room_mav,hall_loop] [--modes stereo_inertial,mono_inertial]
       [--seconds N] [--out DIR] [--set tracker.extractor=learned ...]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from slam.datasets import open_sequence
from slam.datasets.synthetic.benchmark_set import BENCHMARK_SET, ensure_sequence
from slam.geometry import quat_to_rot
from slam.pipeline import load_pipeline_config
from slam.run import run_sequence
from slam.trajectory_io import read_tum

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FEATURES = SHARED / "euroc_V1_01_easy_features_30s" / "eqvio_processed_30s.csv"
MICRO = SHARED / "euroc_V1_01_easy_micro"
GT = MICRO / "groundtruth_openvins" / "V1_01_easy.csv"
DRIFT_SEGMENT_M = 10.0


def drift_percent(run_dir: Path, gt, segment_m: float = DRIFT_SEGMENT_M) -> float:
    """KITTI-style odometry drift: mean translation error over every stretch of ``segment_m`` metres of the
    reference path, in % of that length (relative errors: no global alignment can hide drift)."""
    from slam.evaluation import rpe

    return 100 * rpe(read_tum(run_dir / "trajectory.tum"), gt, segment_m, "m").trans["mean"] / segment_m


def static_checks(run_dir: Path, gt) -> tuple[float, float]:
    """(gravity direction error [deg] at the first pose, largest distance from the first position [m])."""
    est = read_tum(run_dir / "trajectory.tum")
    i = int(np.argmin(np.abs(gt.t_ns - est.t_ns[0])))
    up_est = quat_to_rot(est.q_W_B[0]).T @ [0, 0, 1]
    up_gt = quat_to_rot(gt.q_W_B[i]).T @ [0, 0, 1]
    return (float(np.degrees(np.arccos(np.clip(up_est @ up_gt, -1, 1)))),
            float(np.linalg.norm(est.p_W - est.p_W[0], axis=1).max()))


def _run(path: Path, mode: str, overrides: list[str], out: Path, ground_truth: Path | None,
         max_seconds: float | None):
    logging.basicConfig(level=logging.WARNING)
    sequence = open_sequence(path, ground_truth=ground_truth) if ground_truth else open_sequence(path)
    return run_sequence(sequence, load_pipeline_config(mode, overrides), out, progress=False,
                        max_seconds=max_seconds)


def isolated(path: Path, mode: str, overrides: list[str], out: Path, ground_truth: Path | None = None,
             max_seconds: float | None = None):
    """One run in a fresh process, so each row is what ``slam run`` prints for it. Within one process,
    gtsam's iSAM2 returned different estimates for identical inputs from one run to the next (up to 1.4 mm
    on an 8 s mono stream; fresh processes agree bit for bit), and mono on hall_loop amplifies such
    differences: 0.2 to 1.5 m of ATE with plain KLT tracks, 0.08 to 0.13 m with aligned ones (session 9,
    backend.pixel_sigma 1 +- 2 %)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run, path, mode, overrides, out, ground_truth, max_seconds).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", default=",".join(BENCHMARK_SET))
    parser.add_argument("--modes", default="stereo_inertial,mono_inertial")
    parser.add_argument("--seconds", type=float, default=None, help="limit each synthetic run")
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override a setting of every run, e.g. tracker.extractor=learned (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_vio_"))

    table = Table(title="VIO accuracy and speed (2-core CPU)"
                        + (f", {', '.join(args.overrides)}" if args.overrides else ""))
    for col in ("sequence", "mode", "frames", "tracked", "resets", "ATE se3 (m)", "ATE 4dof (m)", f"drift % ({DRIFT_SEGMENT_M:g} m)",
                "gravity (deg)", "x real time", "frontend ms", "backend ms"):
        table.add_column(col, justify="right")

    def row(name, mode, summary, drift="", gravity=""):
        m, t = summary.metrics, summary.timing
        stages = t["stages_ms_per_frame"]
        table.add_row(name, mode, str(m["frames"]), str(m["frames_tracked"]), str(m["resets"]),
                      f"{m['ate']['rmse']:.4f}" if "ate" in m else "-",
                      f"{m['ate_4dof_rmse']:.4f}" if "ate_4dof_rmse" in m else "-", drift, gravity,
                      f"{t['real_time_factor']:.2f}", f"{stages.get('frontend', 0):.1f}",
                      f"{stages.get('backend', 0):.1f}")

    if FEATURES.exists():
        row("euroc_V1_01 tracks (real)", "mono_inertial",
            isolated(FEATURES, "mono_inertial", args.overrides, out / "features", ground_truth=GT))
    if MICRO.exists():
        summary = isolated(MICRO, "stereo_inertial", args.overrides, out / "micro", ground_truth=GT)
        gravity, wander = static_checks(summary.out, open_sequence(MICRO, ground_truth=GT).ground_truth())
        row("euroc_V1_01 micro (real, still)", "stereo_inertial", summary, drift=f"{100 * wander:.1f} cm moved",
            gravity=f"{gravity:.2f}")
    for name in args.sequences.split(","):
        path = ensure_sequence(name)
        for mode in args.modes.split(","):
            summary = isolated(path, mode, args.overrides, out / f"{name}_{mode}", max_seconds=args.seconds)
            row(name, mode, summary, drift=f"{drift_percent(summary.out, open_sequence(path).ground_truth()):.2f}")
    console = Console(width=200)
    console.print(table)
    console.print(f"run folders: {out}")


if __name__ == "__main__":
    main()
