"""Live runs over loopback: a synthetic sequence replayed as MJPEG-over-HTTP + UDP IMU lines into ``run_live``
(same pipeline as ``slam run``), the sensor faults a live run must survive, and a SIGINT of ``slam live``.

Every wait has a deadline: a bug makes a test fail, never hang.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from slam.datasets import open_sequence
from slam.datasets.live.camera import CameraSource
from slam.datasets.live.imu import ImuReading, SerialImuSource, UdpImuSource, parse_imu_line
from slam.datasets.live.source import LiveSource
from slam.live import run_live
from slam.pipeline import load_pipeline_config
from slam.replay import Replayer
from slam.run import run_sequence
from slam.trajectory_io import read_tum

RESULT_FILES = ("trajectory.tum", "keyframes.tum", "states.csv", "map.ply", "metrics.json", "timing.json",
                "config.yaml", "run.log")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    from slam.datasets.synthetic import generate

    return generate("room_mav", tmp_path_factory.mktemp("live") / "room", seconds=6.0, seed=0, progress=False)


@pytest.fixture(scope="module")
def offline(sequence, tmp_path_factory):
    return run_sequence(open_sequence(sequence), load_pipeline_config("stereo_inertial"),
                        tmp_path_factory.mktemp("offline"), progress=False)


def replay_live(sequence, out, seconds=None, faults=(), camera_prefix="", deadline_s=40.0, **camera_options):
    """Replay ``sequence`` at 1x into ``run_live``; ``faults``: (seconds after the replay starts, fn(replayer))."""
    seq = open_sequence(sequence)
    imu = UdpImuSource("127.0.0.1", 0)
    with Replayer(sequence, imu_udp=("127.0.0.1", imu.port), seconds=seconds) as replayer:
        cameras = [CameraSource(camera_prefix + url, f"cam{i}", **camera_options)
                   for i, url in enumerate(replayer.urls)]
        source = LiveSource(cameras, imu, image_sizes=[c.resolution for c in seq.calibration.cameras],
                            stereo_tolerance_s=0.02)
        stop = threading.Event()

        def direct():
            if replayer.started.wait(10):
                t0 = time.monotonic()
                for at, fault in sorted(faults, key=lambda f: f[0]):
                    time.sleep(max(0.0, t0 + at - time.monotonic()))
                    fault(replayer)
                replayer.wait(deadline_s)
                time.sleep(0.3)  # the last images are on their way
            stop.set()

        threading.Thread(target=direct, daemon=True).start()
        summary = run_live(source, seq.calibration, load_pipeline_config("stereo_inertial"), out, stop_event=stop,
                           ground_truth=seq.ground_truth_path)
        summary.sent = dict(replayer.sent)
    return summary


def assert_complete(out, metrics):
    for name in RESULT_FILES:
        assert (out / name).is_file(), name
    tum = read_tum(out / "trajectory.tum") if (out / "trajectory.tum").stat().st_size else []
    assert len(tum) == metrics["frames_tracked"]
    assert len((out / "states.csv").read_text().splitlines()) == metrics["frames"] + 1
    assert json.loads((out / "timing.json").read_text())["frames"] == metrics["frames"]


def tracked_after(out, t_ns) -> int:
    states = np.genfromtxt(out / "states.csv", delimiter=",", names=True, dtype=None, encoding=None)
    return int(np.sum((states["t_ns"] > t_ns) & (states["status"] == "tracking")))


# ------------------------------------------------------------------------------- the live path end to end

def test_replay_into_live_matches_offline(sequence, offline, tmp_path):
    summary = replay_live(sequence, tmp_path)
    metrics, live = summary.metrics, summary.metrics["live"]
    assert_complete(tmp_path, metrics)
    assert live["imu_samples"] == summary.sent["imu"] == 1201  # every IMU sample, none dropped
    assert live["frames_received"] == summary.sent["frames"] == 121
    assert live["frames_delivered"] + live["dropped_frames"] == 121  # every image accounted for
    assert metrics["frames_tracked"] >= 80  # a loaded machine drops some
    assert [c["stamps"] for c in live["cameras"]] == ["sensor", "sensor"]
    assert summary.ate_rmse <= max(1.2 * offline.ate_rmse, offline.ate_rmse + 0.003), \
        (summary.ate_rmse, offline.ate_rmse)
    latency = summary.timing["latency_ms"]
    assert latency["frames"] == live["frames_delivered"] and 0 < latency["p50"] <= latency["p95"]
    assert abs(live["cameras"][0]["arrives_after_imu_ms"]) < 50  # loopback: both arrive within ms


# ------------------------------------------------------------------------------- faults

def test_camera_stream_stalls_and_comes_back(sequence, tmp_path):
    summary = replay_live(sequence, tmp_path, seconds=4.5, faults=[(2.0, lambda r: r.pause_cameras(1.0, "stall"))],
                          read_timeout_s=0.3)
    live = summary.metrics["live"]
    assert_complete(tmp_path, summary.metrics)
    events = "\n".join(live["events"])
    assert "stream lost: no data for 0.3 s" in events and "stream back after" in events, events
    assert all(c["reconnects"] >= 1 for c in live["cameras"])
    assert tracked_after(tmp_path, _stamp(sequence, 3.1)) >= 8  # estimation goes on after the pause (of <= 28; frames drop under load)
    assert not live["failed"]


def test_imu_silent_for_one_second(sequence, tmp_path):
    summary = replay_live(sequence, tmp_path, seconds=5.0, faults=[(2.5, lambda r: r.silence_imu(1.0))])
    live = summary.metrics["live"]
    assert_complete(tmp_path, summary.metrics)
    events = "\n".join(live["events"])
    assert "silent for" in events and "IMU back after" in events, events
    assert live["dropped_no_imu"] >= 15 and live["dropped_unpaired"] == 0  # the silent second's images ...
    assert live["imu_samples"] == summary.sent["imu"]  # ... every sample that came is
    assert tracked_after(tmp_path, _stamp(sequence, 3.7)) >= 8  # recovered (of <= 26; frames drop under load)


def test_malformed_imu_lines_are_skipped_opencv_cameras_host_stamps(sequence, tmp_path):
    """Cameras through OpenCV VideoCapture (no part headers: host receive times mapped onto the IMU clock)."""
    bad = ["1.5 0.1 0.2", "abc,0,0,0,0,0,9.81", "1500000001.0 nan 0 0 0 0 9.81", "\x00\xff garbage"]
    faults = [(1.0 + 0.3 * i, lambda r, line=line: r.send_raw_imu(line + "\n")) for i, line in enumerate(bad)]
    summary = replay_live(sequence, tmp_path, seconds=4.0, faults=faults, camera_prefix="opencv:")
    live = summary.metrics["live"]
    assert_complete(tmp_path, summary.metrics)
    assert live["imu"]["malformed"] == len(bad) and live["imu"]["last_malformed"].startswith("\x00")
    assert "malformed IMU line #1 skipped" in "\n".join(live["events"])
    assert live["imu_samples"] == summary.sent["imu"]
    assert [c["stamps"] for c in live["cameras"]] == ["host receive time"] * 2
    assert summary.metrics["frames_tracked"] >= 55  # of 81
    # host receive stamps carry the transport's jitter (and FFmpeg's buffering): tracked, but less exact
    assert summary.ate_rmse < 0.05


@pytest.mark.parametrize("prefix", ["", "opencv:"])
def test_camera_url_that_never_answers(sequence, tmp_path, prefix):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel accepts connections; nobody ever answers
    url = f"{prefix}http://127.0.0.1:{server.getsockname()[1]}/cam"
    calibration = open_sequence(sequence).calibration
    cameras = [CameraSource(url + str(i), f"cam{i}", open_timeout_s=0.4, give_up_s=1.0) for i in range(2)]
    source = LiveSource(cameras, UdpImuSource("127.0.0.1", 0))
    stop = threading.Event()
    guard = threading.Timer(20.0, stop.set)  # fails the test instead of hanging it
    guard.start()
    start = time.monotonic()
    try:
        summary = run_live(source, calibration, load_pipeline_config("stereo_inertial"), tmp_path, stop_event=stop)
    finally:
        guard.cancel()
        server.close()
    live = summary.metrics["live"]
    assert time.monotonic() - start < 10 and not stop.is_set()
    assert live["failed"] and "never answered for 1 s" in live["ended"], live["ended"]
    assert_complete(tmp_path, summary.metrics)
    assert summary.metrics["frames"] == 0


def test_sigint_stops_slam_live_with_complete_files(sequence, tmp_path):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    imu_port = probe.getsockname()[1]
    probe.close()
    out = tmp_path / "run"
    with Replayer(sequence, imu_udp=("127.0.0.1", imu_port)) as replayer:
        command = ["slam", "live", "--camera", replayer.urls[0], "--camera1", replayer.urls[1], "--imu",
                   f"udp://127.0.0.1:{imu_port}", "--calib", str(sequence), "--out", str(out), "--pose-out", "-"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and proc.poll() is None and _lines(out / "states.csv") < 40:
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["live"]["stopped_by"] == "SIGINT" and metrics["interrupted"]
    assert_complete(out, metrics)
    poses = [json.loads(line) for line in stdout.splitlines()]
    assert len(poses) == metrics["frames"] >= 39 and {"t", "p", "q_wxyz", "status"} <= set(poses[-1])
    assert "capture-to-pose" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------------------- the parts alone

def test_imu_line_format():
    r = parse_imu_line("1403636579.763555527, 0.1, -0.2, 0.3, 0, 0, 9.81", 7)
    assert r.t_sensor_ns == 1403636579763555527 and r.received_ns == 7
    assert np.allclose(r.gyro, [0.1, -0.2, 0.3]) and np.allclose(r.accel, [0, 0, 9.81])
    assert parse_imu_line("1.5 1 2 3 4 5 6", 0).t_sensor_ns == 1_500_000_000
    assert parse_imu_line("1\t2 3  4 5 6", 0).t_sensor_ns is None  # six numbers: host time
    assert parse_imu_line(",1,2,3,4,5,6", 0).t_sensor_ns is None  # empty stamp: host time
    assert parse_imu_line("# t gx gy gz ax ay az", 0) is None and parse_imu_line("  ", 0) is None
    for bad in ("1 2 3", "1.0 a 2 3 4 5 6", "1 2 3 4 5 inf", "x,1,2,3,4,5,6", "-5 1 2 3 4 5 6"):
        with pytest.raises(ValueError):
            parse_imu_line(bad, 0)


def test_serial_imu_source_reads_lines_from_a_pty():
    master, slave = os.openpty()
    sink = _Sink()
    source = SerialImuSource(os.ttyname(slave), 115200)
    source.start(sink)
    try:
        os.write(master, b"1.000 0 0 0 0 0 9.81\r\n1.005 0.1 0 0 0 0 9.81\r\nbroken line\r\n")
        deadline = time.monotonic() + 5
        while (len(sink.readings) < 2 or source.malformed < 1) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        source.stop()
        os.close(master)
        os.close(slave)
    assert [r.t_sensor_ns for r in sink.readings] == [1_000_000_000, 1_005_000_000]
    assert source.malformed == 1 and "broken line" in sink.statuses[0]


def test_video_file_camera_plays_at_its_frame_rate_and_ends(tmp_path):
    import cv2

    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for k in range(12):
        writer.write(np.full((48, 64, 3), 20 * k, np.uint8))
    writer.release()
    source = LiveSource([CameraSource(path, "cam0")], image_sizes=[(64, 48)])
    stop = threading.Event()
    guard = threading.Timer(10.0, stop.set)  # fails the test instead of hanging it
    guard.start()
    start = time.monotonic()
    frames = list(source.messages(stop))
    guard.cancel()
    assert not stop.is_set() and len(frames) == 12 and 0.45 < time.monotonic() - start < 5  # 20 Hz, then the end
    assert np.all(np.diff([f.t_ns for f in frames]) > 30e6)  # host stamps at the file's pace
    assert source.ended == "end of the video" and not source.failed


def test_frames_are_dropped_when_behind_never_imu():
    cam0, cam1, imu = _FakeSensor("cam0"), _FakeSensor("cam1"), _FakeSensor("imu")
    source = LiveSource([cam0, cam1], imu, frame_queue=3, stereo_tolerance_s=0.005)
    source.start()
    now = time.time_ns()
    for k in range(401):  # 2 s of IMU at 200 Hz
        source.on_imu(ImuReading(now, k * 5_000_000, np.zeros(3), np.array([0, 0, 9.81])))
    for k in range(10):  # stereo pairs arrive while the estimator is busy; cam1 misses the last one
        source.on_frame(cam0, _raw(now, k * 100_000_000))
        if k < 9:
            source.on_frame(cam1, _raw(now, k * 100_000_000))
    for camera in (cam0, cam1):  # a pair beyond the IMU: held for it, dropped at the end
        source.on_frame(camera, _raw(now, 3_000_000_000))
    stop = threading.Event()
    stop.set()  # drain what is queued, then end
    messages = list(source.messages(stop))
    frames = [m for m in messages if hasattr(m, "images")]
    assert sum(1 for m in messages if not hasattr(m, "images")) == 401
    assert [f.t_ns for f in frames] == [800_000_000] and len(frames[0].images) == 2
    counts = source.stats()
    assert counts["dropped_behind"] == 8 and counts["dropped_unpaired"] == 1 and counts["dropped_no_imu"] == 1
    assert counts["frames_received"] == 11 and counts["imu_samples"] == 401 and counts["dropped_frames"] == 10


# ------------------------------------------------------------------------------- helpers

def _stamp(sequence, seconds: float) -> int:
    t0 = next(iter(open_sequence(sequence).messages())).t_ns
    return t0 + int(seconds * 1e9)


def _lines(path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def _raw(received_ns, t_ns):
    from slam.datasets.live.camera import RawFrame

    return RawFrame(received_ns, t_ns, np.zeros((4, 4), np.uint8))


class _Sink:
    def __init__(self):
        self.readings, self.statuses = [], []

    def on_imu(self, reading):
        self.readings.append(reading)

    def on_status(self, level, text):
        self.statuses.append(text)


class _FakeSensor:
    """Stands in for a reader thread; the test pushes data into the LiveSource itself."""

    give_up_s, read_timeout_s, open_timeout_s, last_frame_s, failed, finished = 10.0, 1.0, 1.0, None, None, False

    def __init__(self, name):
        self.spec = self.name = name

    def start(self, sink):
        pass

    def stop(self, timeout=0.0):
        pass

    def stats(self):
        return {"source": self.name}

    def describe(self):
        return self.name
