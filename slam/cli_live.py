"""``slam live`` and ``slam replay``: run on live camera + IMU sources, and serve a recorded sequence over
loopback as if it were live. Commands register on :data:`slam.cli.app`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from slam.cli import _console, _fail_on_data_error, _print_run, _setup_logging, app


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _StatusLine:
    """Observer showing frames, drops, latency and tracking status on one refreshed line (stderr)."""

    def __init__(self, source, console):
        self.source, self.status, self.frames, self.last = source, console.status("live: connecting"), 0, 0.0
        self.status.start()

    def __call__(self, state, pipeline) -> None:
        import time

        self.frames += 1
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        counts = self.source.counts
        latency = (time.time_ns() - self.source.last_received_ns) * 1e-6 if self.source.last_received_ns else 0
        self.status.update(f"live: {self.frames} frames, {state.status}, {state.n_landmarks} landmarks, "
                           f"latency {latency:.0f} ms, dropped {counts['dropped_behind'] + counts['dropped_no_imu']}"
                           f" frames, IMU {counts['imu_samples']} samples")

    def close(self) -> None:
        self.status.stop()


def _print_live(summary, console) -> None:
    from rich.table import Table

    live, latency = summary.metrics["live"], summary.timing.get("latency_ms")
    table = Table(show_header=False, title="[bold]live", title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("latency", "no frames" if not latency else
                  f"capture-to-pose p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, max "
                  f"{latency['max']:.1f} ms over {latency['frames']} frames")
    table.add_row("frames", f"{live['frames_received']} received, {live['frames_delivered']} estimated, "
                            f"{live['dropped_frames']} dropped ({live['dropped_behind']} estimator behind, "
                            f"{live['dropped_no_imu']} without IMU, {live['dropped_unpaired']} without stereo "
                            f"partner)")
    if live["imu"] is not None:
        imu = live["imu"]
        table.add_row("IMU", f"{live['imu_samples']} samples, {imu['malformed']} malformed lines"
                             + (f" (last: {imu['last_malformed']!r})" if imu["malformed"] else ""))
    clock = live["imu_clock"]
    stamps = ", ".join(f"cam{i} {c['stamps']}" for i, c in enumerate(live["cameras"]))
    offset = f"IMU clock = host - {clock['offset_s']:.6f} s (min receive delay; jitter p95 " \
             f"{clock['delay_above_min_ms_p95']:.1f} ms)" if clock else "IMU on host time"
    arrive = [f"cam{i} arrives {c['arrives_after_imu_ms']:.1f} ms after the IMU"
              for i, c in enumerate(live["cameras"]) if "arrives_after_imu_ms" in c]
    table.add_row("clocks", f"stamps: {stamps}; {offset}; --time-offset {live['time_offset_s']:g} s"
                            + ("; " + ", ".join(arrive) if arrive else ""))
    table.add_row("ended", str(live["stopped_by"]))
    console.print(table)


@app.command()
@_fail_on_data_error
def live(
    camera: Annotated[str, typer.Option(help="cam0: device index (0), V4L2 path, video file, http:// MJPEG or "
                                             "rtsp:// URL, or realsense / oak.")],
    calib: Annotated[Path, typer.Option(help="Kalibr camchain YAML, or an ASL sequence folder (its "
                                             "calibration).")],
    camera1: Annotated[Optional[str], typer.Option(help="cam1 of a stereo rig (same kinds as --camera).")] = None,
    imu: Annotated[Optional[str], typer.Option(help="IMU lines: udp://HOST:PORT, udp:PORT or a serial port "
                                                    "(/dev/ttyUSB0@921600).")] = None,
    imu_calib: Annotated[Optional[Path], typer.Option(help="Kalibr IMU YAML.")] = None,
    config: Annotated[str, typer.Option(help="Preset (stereo_inertial, mono_inertial, stereo) or a YAML "
                                             "file.")] = "stereo_inertial",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a setting (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Result folder.")] = Path("slam_live"),
    time_offset: Annotated[float, typer.Option(help="Seconds added to image stamps on the IMU clock (t_imu = "
                                                    "t_cam + offset; negative for a camera that delivers "
                                                    "late).")] = 0.0,
    host_stamps: Annotated[bool, typer.Option("--host-stamps", help="Ignore stamps sent by the cameras; use "
                                                                    "host receive times.")] = False,
    frame_queue: Annotated[int, typer.Option(help="Images queued per camera; older ones are dropped when the "
                                                  "estimator falls behind.")] = 2,
    give_up: Annotated[float, typer.Option(help="Seconds a camera may be unreachable or the IMU silent before "
                                                "the run ends.")] = 10.0,
    open_timeout: Annotated[float, typer.Option(help="Seconds to wait for a camera to answer.")] = 3.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds without data before a stream is reopened.")] = 2.0,
    pose_out: Annotated[Optional[list[str]], typer.Option(help="Pose stream as JSON lines: '-' for stdout or "
                                                               "HOST:PORT for UDP (repeatable).")] = None,
    rerun: Annotated[bool, typer.Option("--rerun", help="Show the run live in the Rerun viewer.")] = False,
    rerun_save: Annotated[Optional[Path], typer.Option(help="Also record the Rerun view to this .rrd file.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth on the IMU clock (e.g. of a replayed "
                                                    "sequence) for ATE/RPE.")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
):
    """Estimate the trajectory live from a camera (or stereo pair) and an IMU; Ctrl-C stops and writes results."""
    from slam.datasets.live.opener import open_live_source
    from slam.live import PoseStream, load_live_calibration, run_live
    from slam.pipeline import load_pipeline_config

    poses_on_stdout = "-" in (pose_out or [])
    console = _stderr_console() if poses_on_stdout else _console()
    if poses_on_stdout:
        from rich.logging import RichHandler

        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                            handlers=[RichHandler(show_time=False, show_path=False, console=console)])
    else:
        _setup_logging(verbose)
    pipeline_config = load_pipeline_config(config, set_ or [])
    if pipeline_config.stereo and not camera1 and camera.split(":")[0] not in ("realsense", "oak"):
        from slam.messages import DataError

        raise DataError(f"mode {pipeline_config.mode} needs two cameras: add --camera1 (or use --config "
                        "mono_inertial)", field="--camera1")
    calibration = load_live_calibration(calib, imu_calib)
    source = open_live_source([camera, camera1] if camera1 else [camera], imu, calibration,
                              use_imu=pipeline_config.use_imu, time_offset_s=time_offset, frame_queue=frame_queue,
                              open_timeout_s=open_timeout, read_timeout_s=read_timeout, give_up_s=give_up,
                              sensor_stamps=not host_stamps)
    observers = []
    if pose_out:
        observers.append(PoseStream(pose_out))
    if rerun or rerun_save:
        try:
            from slam.viz.rerun_view import RerunStream
        except ImportError as exc:
            from slam.messages import DataError

            raise DataError(f"the Rerun view is not available: {exc}", field="--rerun") from None
        from slam.trajectory_io import read_trajectory

        observers.append(RerunStream(spawn=rerun, save=rerun_save, calibration=calibration,
                                     ground_truth=read_trajectory(gt) if gt else None))
    observers.append(_StatusLine(source, _stderr_console()))
    console.print(f"{source.describe()} -> {out} (Ctrl-C stops and writes the results)")
    summary = run_live(source, calibration, pipeline_config, out, observers=observers, max_seconds=seconds,
                       ground_truth=gt)
    if not poses_on_stdout:
        _print_run(summary, f"{source.describe()} ({pipeline_config.mode})")
    else:
        console.print(f"results in {summary.out}")
    _print_live(summary, console)
    if summary.metrics["live"]["failed"]:
        from rich.markup import escape

        console.print(f"[bold red]error:[/] {escape(summary.metrics['live']['ended'])}; results so far are in "
                      f"{summary.out}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
@_fail_on_data_error
def replay(
    sequence: Annotated[Path, typer.Argument(help="ASL/EuRoC sequence folder.")],
    speed: Annotated[float, typer.Option(help="Replay speed (1.0 = recorded pace).")] = 1.0,
    http_port: Annotated[int, typer.Option(help="Port of the MJPEG streams /cam0, /cam1 (0: any free one).")] = 8080,
    imu_udp: Annotated[str, typer.Option(help="Send IMU lines to HOST:PORT over UDP.")] = "127.0.0.1:9000",
    host: Annotated[str, typer.Option(help="Address the HTTP server listens on.")] = "127.0.0.1",
    loop: Annotated[bool, typer.Option("--loop", help="Repeat the sequence (stamps keep increasing).")] = False,
    seconds: Annotated[Optional[float], typer.Option(help="Replay only this much of the sequence.")] = None,
    no_timestamps: Annotated[bool, typer.Option("--no-timestamps", help="Leave out the X-Timestamp header "
                                                                        "(receivers use host time).")] = False,
    quality: Annotated[int, typer.Option(help="JPEG quality.")] = 95,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Start at once instead of when every camera "
                                                            "stream has a client.")] = False,
    preload: Annotated[bool, typer.Option("--preload", help="Encode every image before starting (memory: ~150 "
                                                            "kB per stereo frame; no CPU while serving).")] = False,
):
    """Serve a recorded sequence in real time as MJPEG HTTP stream(s) plus UDP IMU lines (for slam live)."""
    import time

    from slam.live import stop_on_signals
    from slam.replay import Replayer, parse_host_port

    _setup_logging(False)
    console = _console()
    if preload:
        console.print(f"encoding the images of {sequence} ...")
    replayer = Replayer(sequence, speed=speed, http_port=http_port, imu_udp=parse_host_port(imu_udp), host=host,
                        loop=loop, seconds=seconds, jpeg_quality=quality, start_on_connect=not no_wait,
                        timestamps=not no_timestamps, preload=preload)
    import threading

    stop = threading.Event()
    with replayer, stop_on_signals(stop):
        console.print(f"replaying {sequence} at {speed:g}x: " + ", ".join(replayer.urls) + f"; IMU lines to "
                      f"udp://{imu_udp}" + ("" if no_wait else " (starts when every stream has a client)"))
        cams = " ".join(f"--camera{'' if i == 0 else i} {u}" for i, u in enumerate(replayer.urls))
        console.print(f"try: slam live {cams} --imu udp://{imu_udp} --calib {sequence}")
        while not stop.is_set() and not replayer.finished.wait(0.2):
            pass
        time.sleep(0.5 if replayer.finished.is_set() else 0.0)  # let the last frame leave
    sent = replayer.sent
    console.print(f"sent {sent['frames']} frames and {sent['imu']} IMU lines; at most {sent['late_ms_max']:.1f} ms "
                  "behind schedule")
