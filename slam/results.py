"""Result files of a run, written incrementally: every few seconds the new rows are appended as whole lines
and flushed, so an interrupted run keeps everything estimated so far. Appending (not rewriting) keeps the
cost and the memory of a long live run flat; the summary files (metrics, timing, map, config) are written
whole through a temporary file and a rename.

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
import os
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
        self._files = {name: self.out / name for name in ("trajectory.tum", "keyframes.tum", "states.csv")}
        self._pending: dict[str, list[str]] = {name: [] for name in self._files}
        for name, path in self._files.items():  # a fresh run starts fresh files
            atomic_write_text(path, STATES_HEADER + "\n" if name == "states.csv" else "")
        # tracked states for the final metrics: 17 numbers a frame (about 160 kB a minute at 20 Hz)
        self._t_ns = np.zeros(1024, np.int64)
        self._rows = np.zeros((1024, 16))  # p, q (w x y z), v, bias gyro, bias accel
        self._count = 0
        self.keyframe_count = 0

    def add(self, state: StateEstimate) -> None:
        q = rot_to_quat(state.T_W_B[:3, :3])
        p = state.T_W_B[:3, 3]
        values = np.concatenate([p, q, state.v_W, state.bias_gyro, state.bias_accel])
        if state.status in TRACKED:
            line = format_tum_line(state.t_ns, p, q)
            self._pending["trajectory.tum"].append(line)
            if state.keyframe:
                self._pending["keyframes.tum"].append(line)
                self.keyframe_count += 1
            self._keep(state.t_ns, values)
        self._pending["states.csv"].append(f"{state.t_ns}," + ",".join(f"{x:.9g}" for x in values)
                                           + f",{int(state.keyframe)},{state.status},{state.n_landmarks},"
                                           f"{state.n_features}")
        if time.monotonic() - self._last_flush > self.flush_every_s:
            self.flush()

    def _keep(self, t_ns: int, values: np.ndarray) -> None:
        if self._count == len(self._t_ns):
            self._t_ns = np.resize(self._t_ns, 2 * self._count)
            self._rows = np.resize(self._rows, (2 * self._count, self._rows.shape[1]))
        self._t_ns[self._count], self._rows[self._count] = t_ns, values
        self._count += 1

    def flush(self) -> None:
        """Append the rows added since the last flush, whole lines only, and push them to the disk."""
        for name, lines in self._pending.items():
            if lines:
                with open(self._files[name], "a", encoding="utf-8") as handle:
                    handle.write("".join(line + "\n" for line in lines))
                    handle.flush()
                    os.fsync(handle.fileno())
                lines.clear()
        self._last_flush = time.monotonic()

    def trajectory(self) -> Trajectory:
        rows, n = self._rows, self._count
        return Trajectory(self._t_ns[:n].copy(), rows[:n, 0:3].copy(), rows[:n, 3:7].copy(),
                          rows[:n, 7:10].copy(), rows[:n, 10:13].copy(), rows[:n, 13:16].copy())

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
