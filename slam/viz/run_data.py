"""Load a run folder for plotting, tolerant of missing and partial files.

Every file is optional. What cannot be read is listed in ``RunData.problems`` (one line each, naming the
file and what is lost) and the rest is still loaded, so a crashed or hand-edited run still gets plots.

Besides the files ``slam run`` writes (see :mod:`slam.results`), a run folder may hold ``loops.csv``:
one loop closure per row, ``t_ns_a,t_ns_b`` (integer nanosecond stamps of the two matched frames, an
optional header line, ``#`` comments). Plots draw them as edges and events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slam.messages import DataError, Trajectory

STATE_FLOATS = ("px", "py", "pz", "qw", "qx", "qy", "qz", "vx", "vy", "vz", "bgx", "bgy", "bgz",
                "bax", "bay", "baz")


@dataclass
class States:
    """Columns of ``states.csv``: one entry per processed frame (every status, not only tracked ones)."""

    t_ns: np.ndarray  # (N,) int64
    values: dict[str, np.ndarray]  # STATE_FLOATS and integer columns (n_landmarks, n_features, ...) -> (N,)
    keyframe: np.ndarray  # (N,) bool
    status: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.t_ns)

    def tracked(self) -> Trajectory:
        """Rows with status ``tracking`` as a trajectory with velocity and biases."""
        ok = self.status == "tracking"
        col = (lambda *names: np.stack([self.values[n][ok] for n in names], axis=1))
        q = col("qw", "qx", "qy", "qz")
        return Trajectory(self.t_ns[ok], col("px", "py", "pz"), q / np.linalg.norm(q, axis=1, keepdims=True),
                          col("vx", "vy", "vz"), col("bgx", "bgy", "bgz"), col("bax", "bay", "baz"))


@dataclass
class RunData:
    run_dir: Path
    trajectory: Trajectory | None = None  # trajectory.tum (or the tracked rows of states.csv)
    keyframes: Trajectory | None = None  # keyframes.tum
    states: States | None = None
    metrics: dict | None = None
    timing: dict | None = None
    config_text: str | None = None
    mode: str | None = None  # stereo_inertial | mono_inertial | stereo, from metrics.json or config.yaml
    map_points: np.ndarray | None = None  # (M, 3) landmarks in the estimator's world frame
    loops: np.ndarray | None = None  # (K, 2) int64 stamps
    ground_truth: Trajectory | None = None
    ground_truth_path: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def t0_ns(self) -> int:
        """Stamp shown as time 0 in plots: the first processed frame."""
        for source in (self.states, self.trajectory):
            if source is not None and len(source):
                return int(source.t_ns[0])
        return 0


def load_run(run_dir: str | Path, gt: str | Path | None = None) -> RunData:
    """Read what exists of a run folder. ``gt``: ground truth (TUM/EuRoC file or a sequence folder); else
    the path recorded in ``metrics.json["ground_truth"]`` when it still exists; else none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError("run folder not found", run_dir)
    run = RunData(run_dir)
    run.metrics = _json(run_dir / "metrics.json", run.problems, "no metrics table")
    run.timing = _json(run_dir / "timing.json", run.problems, "no timing plot")
    config = run_dir / "config.yaml"
    if config.exists():
        run.config_text = config.read_text(encoding="utf-8", errors="replace")
    else:
        run.problems.append("config.yaml missing: the report shows no settings")
    run.mode = (run.metrics or {}).get("mode") or _mode_from_config(run.config_text)
    run.states = _states(run_dir / "states.csv", run.problems)
    run.trajectory = _trajectory(run_dir / "trajectory.tum", run.problems)
    if run.trajectory is None and run.states is not None and np.any(run.states.status == "tracking"):
        run.trajectory = run.states.tracked()
        run.problems.append("trajectory.tum unusable: using the tracked rows of states.csv instead")
    run.keyframes = _trajectory(run_dir / "keyframes.tum", run.problems, what="keyframes")
    run.map_points = _map(run_dir / "map.ply", run.problems)
    run.loops = _loops(run_dir / "loops.csv", run.problems)
    run.ground_truth, run.ground_truth_path = _ground_truth(gt, run.metrics, run.problems)
    if not any((run.metrics, run.timing, run.states, run.trajectory, run.map_points is not None)):
        raise DataError("no run files here (trajectory.tum, states.csv, metrics.json, timing.json, map.ply)",
                        run_dir)
    return run


def _json(path: Path, problems: list[str], loss: str) -> dict | None:
    if not path.exists():
        problems.append(f"{path.name} missing: {loss}")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name} unreadable ({exc}): {loss}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object: {loss}")
        return None
    return data


def _mode_from_config(text: str | None) -> str | None:
    if not text:
        return None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data.get("mode") if isinstance(data, dict) else None


def _states(path: Path, problems: list[str]) -> States | None:
    """Parse ``states.csv`` by its header; a short or malformed row is skipped and reported."""
    if not path.exists():
        problems.append("states.csv missing: no velocity, bias or tracking plots")
        return None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = lines[0].split(",") if lines else []
    needed = ("t_ns", *STATE_FLOATS, "keyframe", "status")
    if any(name not in header for name in needed):
        missing = [name for name in needed if name not in header]
        problems.append(f"states.csv: header lacks {', '.join(missing)}: no velocity, bias or tracking plots")
        return None
    rows, bad = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(header):
            bad.append(f"line {number} has {len(fields)} of {len(header)} fields")
            continue
        rows.append(fields)
    if bad:
        problems.append(f"states.csv: skipped {len(bad)} incomplete row(s) ({bad[0]})")
    column = {name: i for i, name in enumerate(header)}
    text = np.array(rows, dtype=str).reshape(len(rows), len(header))
    numeric = [name for name in header if name != "status"]
    values, finite = {}, np.ones(len(rows), bool)
    for name in numeric:
        parsed = np.array([_number(x) for x in text[:, column[name]]], dtype=float).reshape(len(rows))
        finite &= np.isfinite(parsed)
        values[name] = parsed
    if not finite.all():
        problems.append(f"states.csv: skipped {int((~finite).sum())} row(s) with non-numeric values")
    t_ns = np.array([_int(x) for x in text[finite, column["t_ns"]]], dtype=np.int64).reshape(-1)
    values = {name: v[finite] for name, v in values.items() if name not in ("t_ns", "keyframe")}
    if len(t_ns) == 0:
        problems.append("states.csv has no complete rows: no velocity, bias or tracking plots")
        return None
    return States(t_ns, values, text[finite, column["keyframe"]] == "1", text[finite, column["status"]])


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _int(text: str) -> int:
    return int(text) if text.lstrip("-").isdigit() else int(float(text))


def _trajectory(path: Path, problems: list[str], what: str = "trajectory") -> Trajectory | None:
    """``read_tum`` when the file is clean; otherwise keep the well-formed lines and say what was dropped."""
    from slam.trajectory_io import read_tum

    if not path.exists():
        problems.append(f"{path.name} missing: no {what} from it")
        return None
    try:
        return read_tum(path)
    except DataError as exc:
        if path.stat().st_size == 0:
            problems.append(f"{path.name} is empty: no {what} from it")
            return None
        problems.append(f"{exc} (kept the well-formed lines)")
    t_ns, values = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) != 8 or line.startswith("#"):
            continue
        try:
            row = [float(x) for x in fields]
        except ValueError:
            continue
        stamp = round(row[0] * 1e9)
        if np.all(np.isfinite(row)) and (not t_ns or stamp > t_ns[-1]) and abs(np.linalg.norm(row[4:]) - 1) < 1e-2:
            t_ns.append(stamp)
            values.append(row[1:])
    if not t_ns:
        return None
    v = np.array(values)
    return Trajectory(np.array(t_ns, np.int64), v[:, :3], v[:, [6, 3, 4, 5]])


def _map(path: Path, problems: list[str]) -> np.ndarray | None:
    if not path.exists():
        problems.append("map.ply missing: no landmarks in the map views")
        return None
    import open3d as o3d

    if b"\nelement vertex 0\n" in path.read_bytes()[:512]:  # a run that never tracked writes an empty map
        problems.append("map.ply holds no landmarks")
        return np.zeros((0, 3))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):  # we report it ourselves
        points = np.asarray(o3d.io.read_point_cloud(str(path)).points, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        problems.append("map.ply unreadable: no landmarks in the map views")
        return None
    return points[np.all(np.isfinite(points), axis=1)]


def _loops(path: Path, problems: list[str]) -> np.ndarray | None:
    """Optional ``loops.csv``: ``t_ns_a,t_ns_b`` per loop closure."""
    if not path.exists():
        return None
    pairs, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if not line.strip() or line.startswith("#"):
            continue
        if len(fields) == 2 and all(f.isdigit() for f in fields):
            pairs.append((int(fields[0]), int(fields[1])))
        elif not pairs and not any(f.isdigit() for f in fields):
            continue  # header
        else:
            bad += 1
    if bad:
        problems.append(f"loops.csv: skipped {bad} row(s) that are not 't_ns_a,t_ns_b'")
    return np.array(pairs, np.int64).reshape(-1, 2)


def _ground_truth(gt, metrics: dict | None, problems: list[str]) -> tuple[Trajectory | None, Path | None]:
    recorded = (metrics or {}).get("ground_truth")
    path = Path(gt) if gt else Path(recorded) if recorded else None
    if path is None:
        return None, None
    if not path.exists():
        origin = "--gt" if gt else "metrics.json ground_truth"
        problems.append(f"ground truth {path} ({origin}) not found: plots without ground truth")
        return None, None
    try:
        if path.is_dir():
            from slam.datasets import open_sequence

            traj = open_sequence(path).ground_truth()
            if traj is None:
                problems.append(f"sequence {path} has no ground truth: plots without it")
            return traj, path
        from slam.trajectory_io import read_trajectory

        return read_trajectory(path), path
    except DataError as exc:
        problems.append(f"ground truth unreadable: {exc}")
        return None, None
