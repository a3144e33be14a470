"""The result writer: rows reach the disk as they come (appended, never rewritten), the files exist from
the start, and the trajectory kept for the final metrics is exactly what was written."""

import numpy as np

from slam.geometry import quat_to_rot
from slam.messages import StateEstimate
from slam.results import STATES_HEADER, ResultWriter
from slam.trajectory_io import read_tum


def _state(i: int, status: str = "tracking") -> StateEstimate:
    T = np.eye(4)
    T[:3, :3] = quat_to_rot(np.array([np.cos(0.01 * i), 0.0, 0.0, np.sin(0.01 * i)]))
    T[:3, 3] = [0.1 * i, -0.2 * i, 1.0]
    return StateEstimate(1_000_000_000 + i * 50_000_000, T, np.full(3, 0.5), np.full(3, 1e-3), np.full(3, 2e-2),
                         keyframe=i % 5 == 0, status=status, n_landmarks=i, n_features=2 * i)


def test_files_exist_from_the_start_and_grow_by_appending(tmp_path):
    writer = ResultWriter(tmp_path, flush_every_s=3600)
    assert (tmp_path / "trajectory.tum").read_text() == ""
    assert (tmp_path / "states.csv").read_text() == STATES_HEADER + "\n"
    for i in range(10):
        writer.add(_state(i, "initializing" if i < 2 else "tracking"))
    writer.flush()
    first = (tmp_path / "trajectory.tum").read_text()
    assert len(first.splitlines()) == 8
    for i in range(10, 2500):  # past the arrays' first growth
        writer.add(_state(i))
    writer.flush()
    text = (tmp_path / "trajectory.tum").read_text()
    assert text.startswith(first), "earlier rows are kept as written"
    states = (tmp_path / "states.csv").read_text().splitlines()
    assert states[0] == STATES_HEADER and len(states) == 2501
    assert states[1].endswith(",1,initializing,0,0") and states[-1].endswith(f",0,tracking,2499,{2 * 2499}")
    assert len((tmp_path / "keyframes.tum").read_text().splitlines()) == writer.keyframe_count == 499

    on_disk, kept = read_tum(tmp_path / "trajectory.tum"), writer.trajectory()
    assert len(kept) == 2498 and np.array_equal(kept.t_ns, on_disk.t_ns)
    np.testing.assert_allclose(kept.p_W, on_disk.p_W, atol=1e-6)
    np.testing.assert_allclose(kept.q_W_B, on_disk.q_W_B, atol=1e-6)
    np.testing.assert_allclose(kept.v_W, 0.5)
    np.testing.assert_allclose(kept.bias_accel, 2e-2)


def test_rows_reach_the_disk_between_flush_intervals_only(tmp_path):
    writer = ResultWriter(tmp_path, flush_every_s=0.0)  # every add flushes
    writer.add(_state(3))
    assert len((tmp_path / "trajectory.tum").read_text().splitlines()) == 1
    lazy = ResultWriter(tmp_path / "lazy", flush_every_s=3600)
    lazy.add(_state(3))
    assert (tmp_path / "lazy" / "trajectory.tum").read_text() == ""
