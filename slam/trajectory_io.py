"""Trajectory files: TUM (``t[s] x y z qx qy qz qw``) and ASL/EuRoC CSV (ns, p, q wxyz[, v, bg, ba]).

Writes are atomic (temporary file + rename), so a reader never sees a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from slam.messages import DataError, Trajectory
from slam.parsing import csv_rows, format_seconds, parse_ns, seconds_to_ns


def _parse_rows(path: Path, delimiter: str | None, min_cols: int, what: str):
    rows, lines = [], []
    for line, fields in csv_rows(path, delimiter):
        if len(fields) < min_cols:
            raise DataError(f"expected at least {min_cols} columns ({what}), found {len(fields)}", path, line)
        rows.append(fields)
        lines.append(line)
    if not rows:
        raise DataError(f"no trajectory rows found ({what})", path)
    return rows, lines


def _check_stamps_and_values(t_ns: np.ndarray, values: np.ndarray, lines: list[int], path: Path) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
    if bad.size:
        raise DataError("pose contains NaN or inf", path, lines[bad[0]])
    step = np.diff(t_ns)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        i = bad[0] + 1
        kind = "duplicated" if step[bad[0]] == 0 else "out-of-order"
        raise DataError(f"{kind} timestamp (previous row at line {lines[i - 1]}); timestamps must strictly "
                        "increase", path, lines[i])


def _floats(rows, lines, cols: slice, path: Path) -> np.ndarray:
    try:
        return np.array([[float(x) for x in r[cols]] for r in rows])
    except ValueError:
        for r, line in zip(rows, lines):  # find the offending row for the message
            for x in r[cols]:
                try:
                    float(x)
                except ValueError:
                    raise DataError(f"{x!r} is not a number", path, line) from None
        raise


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM trajectory: ``timestamp[s] tx ty tz qx qy qz qw`` per line, '#' comments."""
    path = Path(path)
    rows, lines = _parse_rows(path, None, 8, "timestamp tx ty tz qx qy qz qw")
    t_ns = np.array([seconds_to_ns(r[0], path, ln) for r, ln in zip(rows, lines)], dtype=np.int64)
    values = _floats(rows, lines, slice(1, 8), path)
    _check_stamps_and_values(t_ns, values, lines, path)
    q_xyzw = values[:, 3:7]
    return Trajectory(t_ns, values[:, :3], _normalized(q_xyzw[:, [3, 0, 1, 2]], path, lines))


def read_euroc(path: str | Path) -> Trajectory:
    """Read an ASL/EuRoC state CSV: ``t[ns], p xyz, q wxyz`` and optionally ``v xyz, bg xyz, ba xyz``."""
    path = Path(path)
    rows, lines = _parse_rows(path, ",", 8, "timestamp[ns], p xyz, q wxyz")
    t_ns = np.array([parse_ns(r[0], path, ln) for r, ln in zip(rows, lines)], dtype=np.int64)
    full = all(len(r) >= 17 for r in rows)
    values = _floats(rows, lines, slice(1, 17 if full else 8), path)
    _check_stamps_and_values(t_ns, values, lines, path)
    q = _normalized(values[:, 3:7], path, lines)
    if full:
        return Trajectory(t_ns, values[:, :3], q, values[:, 7:10], values[:, 10:13], values[:, 13:16])
    return Trajectory(t_ns, values[:, :3], q)


def read_trajectory(path: str | Path) -> Trajectory:
    """Read a TUM or EuRoC trajectory, chosen by content (a comma in the first data row means EuRoC)."""
    path = Path(path)
    for _, fields in csv_rows(path, None):
        return read_euroc(path) if "," in fields[0] else read_tum(path)
    raise DataError("no trajectory rows found", path)


def _normalized(q: np.ndarray, path: Path, lines: list[int]) -> np.ndarray:
    norm = np.linalg.norm(q, axis=1)
    bad = np.flatnonzero(np.abs(norm - 1.0) > 1e-2)
    if bad.size:
        raise DataError(f"quaternion norm {norm[bad[0]]:.4f} is far from 1", path, lines[bad[0]])
    return q / norm[:, None]


def format_tum_line(t_ns: int, p: np.ndarray, q_wxyz: np.ndarray) -> str:
    w, x, y, z = q_wxyz
    return (f"{format_seconds(t_ns)} {p[0]:.9f} {p[1]:.9f} {p[2]:.9f} "
            f"{x:.9f} {y:.9f} {z:.9f} {w:.9f}")


def write_tum(traj: Trajectory, path: str | Path) -> Path:
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    lines += [format_tum_line(t, p, q) for t, p, q in zip(traj.t_ns, traj.p_W, traj.q_W_B)]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_euroc(traj: Trajectory, path: str | Path) -> Path:
    header = "#timestamp [ns],p_x [m],p_y [m],p_z [m],q_w,q_x,q_y,q_z"
    cols = [traj.p_W, traj.q_W_B]
    if traj.v_W is not None and traj.bias_gyro is not None and traj.bias_accel is not None:
        header += ",v_x [m/s],v_y [m/s],v_z [m/s],bg_x,bg_y,bg_z,ba_x,ba_y,ba_z"
        cols += [traj.v_W, traj.bias_gyro, traj.bias_accel]
    values = np.hstack(cols)
    body = "\n".join(f"{t}," + ",".join(f"{v:.17g}" for v in row) for t, row in zip(traj.t_ns, values))
    return atomic_write_text(path, header + "\n" + body + "\n")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
