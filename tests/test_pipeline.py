"""End-to-end runs on rendered synthetic images and real EuRoC images: result files, faults, interruption."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import EUROC_GT, EUROC_MICRO, require
from slam.datasets import open_sequence
from slam.geometry import quat_to_rot
from slam.messages import CameraFrame, ImageArray, ImuSample
from slam.pipeline import load_pipeline_config
from slam.run import run_sequence
from slam.trajectory_io import read_tum


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from slam.datasets.synthetic import generate

    return generate("room_mav", tmp_path_factory.mktemp("syn") / "room", seconds=8.0, seed=1, progress=False)


class Faulty:
    """A sequence whose stream is altered by ``edit(message, t_s) -> message | None``."""

    def __init__(self, sequence, edit):
        self.sequence, self.edit = sequence, edit
        self.path, self.calibration = sequence.path, sequence.calibration

    def ground_truth(self):
        return self.sequence.ground_truth()

    def messages(self):
        t0 = None
        for m in self.sequence.messages():
            t0 = m.t_ns if t0 is None else t0
            if (m := self.edit(m, (m.t_ns - t0) * 1e-9)) is not None:
                yield m


def test_run_writes_every_result_file(room, tmp_path):
    summary = run_sequence(open_sequence(room), load_pipeline_config("stereo_inertial"), tmp_path, progress=False)
    for name in ("trajectory.tum", "keyframes.tum", "states.csv", "map.ply", "metrics.json", "timing.json",
                 "config.yaml", "run.log"):
        assert (tmp_path / name).stat().st_size > 0, name
    traj = read_tum(tmp_path / "trajectory.tum")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(traj) == metrics["frames_tracked"] > 140
    assert metrics["ate"]["rmse"] == pytest.approx(summary.ate_rmse)
    assert summary.ate_rmse < 0.03
    assert metrics["map_points"] > 100
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert {"frontend", "backend"} <= set(timing["stages_ms_per_frame"])
    states = np.genfromtxt(tmp_path / "states.csv", delimiter=",", names=True, dtype=None, encoding=None)
    tracked = states["status"] == "tracking"
    assert np.all(states["n_features"][tracked] >= states["n_landmarks"][tracked])
    assert np.median(states["n_features"][tracked]) > 100  # the tracker keeps ~150 features
    assert load_pipeline_config(tmp_path / "config.yaml").mode == "stereo_inertial"  # the resolved config reloads


def test_faults_are_survived_with_complete_output(room, tmp_path):
    frame = {"n": 0}

    def edit(m, t):
        if isinstance(m, ImuSample):
            if 3.0 < t < 3.3:
                return None  # 0.3 s IMU gap
            if int(t * 200) % 50 == 7:
                return ImuSample(m.t_ns, np.full(3, np.nan), m.accel)  # NaN rows
            return m
        frame["n"] += 1
        if frame["n"] % 5 == 0 or 2.0 < t < 2.5:
            return None  # every 5th frame missing; a 0.5 s image gap
        if 4.5 < t < 5.5:  # a textureless stretch
            flat = np.full((480, 752), 128, np.uint8)
            return CameraFrame(m.t_ns, [ImageArray(flat), ImageArray(flat)], index=m.index)
        return m

    summary = run_sequence(Faulty(open_sequence(room), edit), load_pipeline_config("stereo_inertial"), tmp_path,
                           progress=False)
    metrics = summary.metrics
    assert metrics["resets"] >= 1 and metrics["gaps"], "the textureless stretch resets the estimator"
    traj = read_tum(tmp_path / "trajectory.tum")
    assert len(traj) == metrics["frames_tracked"]
    assert traj.t_s[-1] - traj.t_s[0] > 7.0, "tracking resumes after the faults"
    assert summary.ate_rmse < 0.1


def test_interrupted_run_keeps_what_it_estimated(room, tmp_path):
    def edit(m, t):
        if t > 3.0:
            raise KeyboardInterrupt
        return m

    with pytest.raises(KeyboardInterrupt):
        run_sequence(Faulty(open_sequence(room), edit), load_pipeline_config("stereo_inertial"), tmp_path,
                     progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    assert len(read_tum(tmp_path / "trajectory.tum")) == metrics["frames_tracked"] > 40


def test_real_euroc_static_start():
    """Real EuRoC V1_01 images (4.7 s, nearly still): initializes, gravity within 1 deg, drift under 3 cm."""
    seq = open_sequence(require(EUROC_MICRO), ground_truth=require(EUROC_GT))
    summary = run_sequence(seq, load_pipeline_config("stereo_inertial"), _tmp(), progress=False)
    est = read_tum(summary.out / "trajectory.tum")
    assert len(est) > 80
    gt = seq.ground_truth()
    i = int(np.argmin(np.abs(gt.t_ns - est.t_ns[0])))
    up_est = quat_to_rot(est.q_W_B[0]).T @ [0, 0, 1]
    up_gt = quat_to_rot(gt.q_W_B[i]).T @ [0, 0, 1]
    assert np.degrees(np.arccos(np.clip(up_est @ up_gt, -1, 1))) < 1.0
    assert np.linalg.norm(est.p_W - est.p_W[0], axis=1).max() < 0.03


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="slam_euroc_"))
