"""``run_live()``: drive the same :class:`slam.pipeline.Pipeline` as ``slam run`` from a live source
(:class:`slam.datasets.live.source.LiveSource`), writing the same result files incrementally.

Only the source differs from an offline run. Extra here: capture-to-pose latency in ``timing.json``
(``latency_ms``: from cam0's capture stamp mapped onto the host clock, or its receive time when it has no
sensor stamp, to the moment its pose is estimated; ``receive_to_pose_ms`` from its arrival here), the
live source's counts (dropped frames, IMU samples, malformed lines, clock offsets, status messages) in
``metrics.json`` (``live``), an optional JSON-lines pose stream (:class:`PoseStream`), and a clean stop on
SIGINT/SIGTERM (a second signal stops at once; the result files are written either way).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from slam.geometry import rot_to_quat
from slam.messages import CameraFrame, Calibration, DataError
from slam.pipeline import Pipeline, PipelineConfig
from slam.run import RunRecorder, RunSummary

log = logging.getLogger("slam.live")


class LatencyStats:
    """Capture-to-pose latencies in milliseconds (the last 100 000 kept)."""

    def __init__(self, keep: int = 100_000):
        self.values = np.zeros(keep)
        self.count = 0

    def add(self, ms: float) -> None:
        self.values[self.count % len(self.values)] = ms
        self.count += 1

    def summary(self) -> dict | None:
        if not self.count:
            return None
        v = self.values[:min(self.count, len(self.values))]
        return {"frames": self.count, "p50": round(float(np.percentile(v, 50)), 2),
                "p95": round(float(np.percentile(v, 95)), 2), "max": round(float(v.max()), 2),
                "mean": round(float(v.mean()), 2)}


class PoseStream:
    """Observer that sends every estimate as one JSON line to stdout (``"-"``) and/or UDP (``HOST:PORT``).

    Line: ``{"t": seconds, "t_ns", "status", "keyframe", "p": [x,y,z], "q_wxyz": [...], "v": [...],
    "n_landmarks", "host_time": seconds}`` (positions in the world frame, ``T_W_B`` of the IMU body).
    """

    def __init__(self, targets: Sequence[str]):
        from slam.replay import parse_host_port

        self.stdout = "-" in targets
        self.addresses = [parse_host_port(t.removeprefix("udp://")) for t in targets if t != "-"]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if self.addresses else None

    def __call__(self, state, pipeline) -> None:
        q = rot_to_quat(state.T_W_B[:3, :3])
        line = json.dumps({"t": round(state.t_ns * 1e-9, 9), "t_ns": int(state.t_ns), "status": state.status,
                           "keyframe": bool(state.keyframe), "p": [round(float(x), 6) for x in state.T_W_B[:3, 3]],
                           "q_wxyz": [round(float(x), 7) for x in q], "v": [round(float(x), 5) for x in state.v_W],
                           "n_landmarks": int(state.n_landmarks), "host_time": round(time.time(), 6)})
        if self.stdout:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        for address in self.addresses:
            try:
                self.sock.sendto(line.encode(), address)
            except OSError as exc:  # nobody listening is fine for UDP; other errors are worth one line
                log.debug("pose stream to %s: %s", address, exc)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def load_live_calibration(calib: str | Path, imu_calib: str | Path | None = None) -> Calibration:
    """Calibration for a live run: a Kalibr camchain YAML (+ Kalibr IMU YAML), or an ASL sequence folder
    (its own calibration, e.g. the sequence being replayed)."""
    from slam.calibration_io import read_kalibr

    path = Path(calib)
    if path.is_dir():
        from slam.datasets import open_sequence

        return open_sequence(path, imu_calib=imu_calib).calibration
    if not path.is_file():
        raise DataError("calibration file not found", path)
    return read_kalibr(path, imu_calib)


class _Origin:
    """What the metrics name as the sequence, with optional ground truth (e.g. of a replayed sequence)."""

    def __init__(self, source, ground_truth: str | Path | None):
        self.path = source.describe() if hasattr(source, "describe") else str(source)
        self.ground_truth_path = Path(ground_truth) if ground_truth else None
        if self.ground_truth_path is not None and not self.ground_truth_path.is_file():
            raise DataError("ground-truth file not found", self.ground_truth_path)

    def ground_truth(self):
        from slam.trajectory_io import read_trajectory

        return read_trajectory(self.ground_truth_path) if self.ground_truth_path else None


@contextmanager
def stop_on_signals(stop_event: threading.Event):
    """SIGINT/SIGTERM set ``stop_event`` (a clean stop); a second one raises KeyboardInterrupt. Yields the
    list of signal names received. Only the main thread can install handlers; elsewhere this does nothing."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if received:
            raise KeyboardInterrupt
        received.append(name)
        stop_event.set()
        log.warning("%s: stopping; writing the results (again to stop at once)", name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_live(source, calibration: Calibration, config: PipelineConfig, out: str | Path, observers: Sequence = (),
             max_seconds: float | None = None, stop_event: threading.Event | None = None,
             ground_truth: str | Path | None = None) -> RunSummary:
    """Estimate the trajectory from ``source`` (a started or not yet started ``LiveSource``) until
    ``stop_event`` is set, SIGINT/SIGTERM arrives, ``max_seconds`` of wall time pass, or the source ends
    (end of a video file, or a sensor that failed for good: ``metrics["live"]["failed"]``).

    Writes the result files of ``slam run`` into ``out`` incrementally (every second) and completely at the
    end. ``ground_truth``: a trajectory file on the IMU's clock (e.g. of a replayed sequence) for ATE/RPE.
    """
    stop_event = stop_event or threading.Event()
    origin = _Origin(source, ground_truth)
    pipeline = Pipeline(calibration, config)
    recorder = RunRecorder(out, config, flush_every_s=1.0)
    latency, receive_latency = LatencyStats(), LatencyStats()
    first_ns = last_ns = None
    interrupted = False
    busy = 0.0  # seconds inside the estimator: wall time also counts the waiting for sensor data
    start = time.perf_counter()
    with stop_on_signals(stop_event) as signals:
        try:
            for message in source.messages(stop_event):
                if max_seconds is not None and time.perf_counter() - start > max_seconds:
                    stop_event.set()
                began = time.perf_counter()
                state = pipeline.process(message)
                busy += time.perf_counter() - began
                if isinstance(message, CameraFrame):
                    first_ns = message.t_ns if first_ns is None else first_ns
                    last_ns = message.t_ns
                    if state is not None and getattr(message, "received_ns", 0):
                        now_ns = time.time_ns()
                        latency.add((now_ns - source.host_time_ns(message.t_ns)) * 1e-6)
                        receive_latency.add((now_ns - message.received_ns) * 1e-6)
                if state is not None:
                    recorder.add(state, pipeline, observers)
            state = pipeline.finish()
            if state is not None:
                recorder.add(state, pipeline)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("stopped at once: writing what was estimated so far")
        finally:
            source.stop()
            wall = time.perf_counter() - start
            duration = (last_ns - first_ns) * 1e-9 if first_ns is not None else 0.0
            live = source.stats()
            live["stopped_by"] = _stop_reason(signals, live["ended"], max_seconds is not None and wall > max_seconds,
                                              stop_event.is_set())
            frames = max(recorder.frames, 1)
            speed = {"real_time_factor": round(duration / busy, 3) if busy > 0 else None,
                     "ms_per_frame": round(1000 * busy / frames, 3), "latency_ms": latency.summary(),
                     "receive_to_pose_ms": receive_latency.summary(),
                     "about": "live: real_time_factor and ms_per_frame count the estimator's busy time, not the "
                              "waiting for sensor data (wall_s); latency_ms runs from the image's capture stamp "
                              "on the host clock (its sensor stamp through the estimated IMU clock offset, or "
                              "its receive time) to its pose, receive_to_pose_ms from its arrival here"}
            summary = recorder.close(pipeline, origin, observers, wall, duration, interrupted or bool(signals),
                                     extra_timing=speed, extra_metrics={"live": live})
    return summary


def _stop_reason(signals: list[str], ended: str | None, timed_out: bool, requested: bool) -> str:
    if signals:
        return signals[0]
    if ended:
        return ended
    if timed_out:
        return "max_seconds"
    return "stop request" if requested else "end of stream"
