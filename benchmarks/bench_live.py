"""Live vs offline over loopback: one table.

A synthetic benchmark sequence is served at 1x by ``slam replay --preload`` in its own process (MJPEG over
HTTP + UDP IMU lines, as a sensor driver would; its JPEGs encoded before the start) and estimated by
``run_live`` in this process; ``run_sequence`` on the same sequence is the offline reference. Rows: offline;
live with the cameras' sensor stamps (X-Timestamp); live with host receive stamps (mapped onto the IMU
clock by the estimated offset). With ``--minutes N`` a looped replay (stamps keep increasing; the trajectory
jumps back at each lap, so the estimator resets once per lap and no ATE is given) runs N minutes and the
resident memory of this process is printed over time.

Issue targets: live ATE within 20 % of offline; capture-to-pose latency p95 <= 100 ms on two cores; memory
flat over 5 minutes. The machine's load average is printed: other work on the two cores inflates latency.

Usage: python benchmarks/bench_live.py [--sequence room_mav] [--seconds 40] [--minutes 5] [--frame-queue 2]
       [--set backend.lag_s=2.5 ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slam.datasets import open_sequence
from slam.datasets.live.opener import open_live_source
from slam.datasets.synthetic.benchmark_set import BENCHMARK_SET, ensure_sequence
from slam.live import run_live
from slam.pipeline import load_pipeline_config
from slam.run import run_sequence

console = Console(width=170)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def start_replay(sequence: Path, seconds: float | None, loop: bool):
    """``slam replay`` in a subprocess; returns (process, camera URLs, IMU address)."""
    http_port, imu_port = free_port(), free_port(socket.SOCK_DGRAM)
    command = ["slam", "replay", str(sequence), "--http-port", str(http_port), "--imu-udp",
               f"127.0.0.1:{imu_port}", "--preload"]  # images encoded before the start: a camera costs no CPU here
    command += ["--seconds", str(seconds)] if seconds else []
    command += ["--loop"] if loop else []
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180  # preloading a 40 s sequence takes ~20 s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", http_port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"slam replay exited with {process.returncode}") from None
            time.sleep(0.2)
    n_cams = len(open_sequence(sequence).calibration.cameras)
    return process, [f"http://127.0.0.1:{http_port}/cam{i}" for i in range(n_cams)], f"udp://127.0.0.1:{imu_port}"


def live_run(sequence: Path, out: Path, seconds: float | None, host_stamps: bool = False,
             minutes: float | None = None, memory: list | None = None, frame_queue: int = 2, overrides=()):
    seq = open_sequence(sequence)
    process, urls, imu = start_replay(sequence, seconds, loop=minutes is not None)
    source = open_live_source(urls, imu, seq.calibration, sensor_stamps=not host_stamps, give_up_s=5.0,
                              frame_queue=frame_queue)
    stop = threading.Event()

    def watch():  # ends the live run when the replay is over; samples memory meanwhile
        start = time.monotonic()
        while not stop.wait(1.0):
            if memory is not None and (not memory or time.monotonic() - start - memory[-1][0] >= 30):
                memory.append((time.monotonic() - start, rss_mb()))
            if process.poll() is not None:
                time.sleep(0.5)
                stop.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        summary = run_live(source, seq.calibration, load_pipeline_config("stereo_inertial", list(overrides)), out,
                           max_seconds=minutes * 60 if minutes else None, stop_event=stop,
                           ground_truth=None if minutes else seq.ground_truth_path)
    finally:
        stop.set()
        process.terminate()
        process.wait(10)
    summary.rss_after_mb = rss_mb()  # after writing the results (open3d loaded for map.ply)
    return summary


def live_row(name: str, summary, offline_ate: float | None) -> list[str]:
    m, live, lat = summary.metrics, summary.metrics["live"], summary.timing["latency_ms"]
    ate = m.get("ate", {}).get("rmse")
    clock, cam0 = live["imu_clock"], live["cameras"][0]
    return [name, f"{ate:.4f}" if ate is not None else "-",
            f"{ate / offline_ate:.2f}x" if ate is not None and offline_ate else "-",
            f"{live['frames_delivered']}/{live['frames_received']}",
            f"{live['dropped_frames']} ({live['dropped_behind']}/{live['dropped_no_imu']})",
            *((f"{lat['p50']:.0f}", f"{lat['p95']:.0f}", f"{lat['max']:.0f}") if lat else ("-", "-", "-")),
            f"{clock['delay_above_min_ms_p95']:.1f}" if clock else "-",
            f"{cam0['arrives_after_imu_ms']:.1f}" if "arrives_after_imu_ms" in cam0 else "-",
            f"{summary.timing['real_time_factor']:.2f}x", str(m["resets"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequence", default="room_mav", choices=list(BENCHMARK_SET))
    parser.add_argument("--seconds", type=float, default=None, help="replay only this much of the sequence")
    parser.add_argument("--minutes", type=float, default=None, help="looped replay this long, with memory")
    parser.add_argument("--frame-queue", type=int, default=2, help="images queued per camera (slam live's default)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override an estimator setting of every run, e.g. backend.lag_s=2.5 (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sequence = ensure_sequence(args.sequence)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_live_"))
    load_before = os.getloadavg()
    table = Table(title=f"live vs offline on loopback: {args.sequence}"
                        f"{f' ({args.seconds:g} s)' if args.seconds else ''}, stereo-inertial, 1x replay, "
                        f"{args.frame_queue} images queued per camera"
                        + "".join(f", {o}" for o in args.overrides),
                  title_justify="left")
    for column in ("run", "ATE [m]", "vs offline", "frames est./recv.", "dropped (behind/no IMU)",
                   "latency p50 [ms]", "p95 [ms]", "max [ms]", "IMU delay jitter p95 [ms]", "cam0 after IMU [ms]",
                   "RTF (busy)", "resets"):
        table.add_column(column, justify="left" if column == "run" else "right")
    memory: list[tuple[float, float]] = []
    if args.minutes:
        with console.status(f"looped live replay, {args.minutes:g} min"):
            summary = live_run(sequence, out / "live_loop", None, minutes=args.minutes, memory=memory,
                               frame_queue=args.frame_queue, overrides=args.overrides)
        table.add_row(*live_row(f"live, looped {args.minutes:g} min", summary, None))
    else:
        with console.status("offline run"):
            offline = run_sequence(open_sequence(sequence), load_pipeline_config("stereo_inertial", args.overrides),
                                   out / "offline", progress=False, max_seconds=args.seconds)
        t = offline.timing
        table.add_row("offline (slam run)", f"{offline.ate_rmse:.4f}", "1.00x", f"{offline.metrics['frames']}", "-",
                      f"({t['ms_per_frame']:.0f}/frame)", "-", "-", "-", "-", f"{t['real_time_factor']:.2f}x",
                      str(offline.metrics["resets"]))
        for name, host in (("live, sensor stamps", False), ("live, host receive stamps", True)):
            with console.status(name):
                summary = live_run(sequence, out / name.replace(" ", "_").replace(",", ""), args.seconds,
                                   host_stamps=host, frame_queue=args.frame_queue, overrides=args.overrides)
            table.add_row(*live_row(name, summary, offline.ate_rmse))
    console.print(table)
    if memory:
        mem = Table(title="resident memory of the live process", title_justify="left")
        mem.add_column("minute", justify="right")
        mem.add_column("RSS [MB]", justify="right")
        for t_s, mb in memory:
            mem.add_row(f"{t_s / 60:.1f}", f"{mb:.0f}")
        console.print(mem)
        after_1min = [mb for t_s, mb in memory if t_s >= 60] or [memory[0][1]]
        minutes = max(memory[-1][0] / 60 - 1, 1e-9)
        console.print(f"RSS while running, from minute 1 to the end: {after_1min[0]:.0f} -> {memory[-1][1]:.0f} MB "
                      f"({(memory[-1][1] - after_1min[0]) / minutes:+.1f} MB/min; the trajectory, states and map "
                      f"are kept for the final files); {summary.rss_after_mb:.0f} MB after writing the results")
    console.print(f"load average (1 min) before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores; results in {out}")


if __name__ == "__main__":
    main()
