"""Result files of a run, written incrementally and atomically: every few seconds the files are rewritten
whole through a temporary file and a rename, so an interrupted run keeps everything estimated so far and
no reader ever sees half a file.

RUN_DIR/trajectory.tum   every tracked frame (TUM: t x y z qx qy qz qw)
        keyframes.tum    keyframes
        states.csv       per frame: pose, velocity, biases, keyframe flag, status, landmarks in use
        map.ply          landmark positions (world frame)
        metrics.json     summary + ATE/RPE when ground truth exists
        timing.json      per-stage milliseconds and the real-time factor
        config.yaml      the resolved estimator settings
        run.log          the log
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from slam.geometry import rot_to_quat
from slam.messages import StateEstimate, Trajectory
from slam.trajectory_io import atomic_write_text, format_tum_line

STATES_HEADER = ("t_ns,px,py,pz,qw,qx,qy,qz,vx,vy,vz,bgx,bgy,bgz,bax,bay,baz,keyframe,status,n_landmarks,"
                 "n_features")
TRACKED = ("tracking",)
EMPTY_PLY = "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n"


class ResultWriter:
    def __init__(self, out: Path, flush_every_s: float = 2.0):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        self.tum: list[str] = []
        self.keyframes: list[str] = []
        self.states: list[str] = [STATES_HEADER]
        self.estimates: list[StateEstimate] = []

    def add(self, state: StateEstimate) -> None:
        q = rot_to_quat(state.T_W_B[:3, :3])
        p = state.T_W_B[:3, 3]
        if state.status in TRACKED:
            line = format_tum_line(state.t_ns, p, q)
            self.tum.append(line)
            if state.keyframe:
                self.keyframes.append(line)
            self.estimates.append(state)
        values = np.concatenate([p, q, state.v_W, state.bias_gyro, state.bias_accel])
        self.states.append(f"{state.t_ns}," + ",".join(f"{x:.9g}" for x in values)
                           + f",{int(state.keyframe)},{state.status},{state.n_landmarks},{state.n_features}")
        if time.monotonic() - self._last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        atomic_write_text(self.out / "trajectory.tum", "".join(line + "\n" for line in self.tum))
        atomic_write_text(self.out / "keyframes.tum", "".join(line + "\n" for line in self.keyframes))
        atomic_write_text(self.out / "states.csv", "\n".join(self.states) + "\n")
        self._last_flush = time.monotonic()

    def trajectory(self) -> Trajectory:
        est = self.estimates
        return Trajectory(np.array([e.t_ns for e in est], np.int64),
                          np.array([e.T_W_B[:3, 3] for e in est]).reshape(-1, 3),
                          rot_to_quat(np.array([e.T_W_B[:3, :3] for e in est]).reshape(-1, 3, 3)),
                          np.array([e.v_W for e in est]).reshape(-1, 3),
                          np.array([e.bias_gyro for e in est]).reshape(-1, 3),
                          np.array([e.bias_accel for e in est]).reshape(-1, 3))

    def write_json(self, name: str, data: dict) -> Path:
        return atomic_write_text(self.out / name, json.dumps(data, indent=2) + "\n")

    def write_map(self, points: np.ndarray) -> Path:
        """Landmarks as a PLY point cloud (open3d writes it; the rename keeps it atomic)."""
        import open3d as o3d

        path = self.out / "map.ply"
        if len(points) == 0:  # open3d refuses to write an empty cloud; a run that never tracked gets one too
            return atomic_write_text(path, EMPTY_PLY)
        tmp = path.with_name(".map.partial.ply")
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, float).reshape(-1, 3)))
        o3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False)
        tmp.replace(path)
        return path
