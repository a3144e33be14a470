"""The map as a coloured PLY (landmarks grey, keyframe positions red; opens in any point-cloud viewer) and a
PNG of it rendered offscreen by open3d.

open3d's renderer needs EGL or Vulkan and can abort the process when neither works, so it runs in a child
process (:mod:`slam.viz.open3d_render`); when that fails, a matplotlib scatter stands in and the reason is
returned.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from slam.viz.run_data import RunData

LANDMARK_RGB = (0.45, 0.45, 0.45)
KEYFRAME_RGB = (0.85, 0.1, 0.1)


def export_map(run: RunData, path: Path) -> Path | None:
    """Landmarks and keyframe positions (estimator world frame, as ``map.ply``) as one coloured PLY."""
    import open3d as o3d

    landmarks = run.map_points if run.map_points is not None else np.zeros((0, 3))
    keyframes = run.keyframes.p_W if run.keyframes is not None else np.zeros((0, 3))
    if len(landmarks) + len(keyframes) == 0:
        return None
    points = np.vstack([landmarks, keyframes])
    colors = np.vstack([np.tile(LANDMARK_RGB, (len(landmarks), 1)), np.tile(KEYFRAME_RGB, (len(keyframes), 1))])
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.colors = o3d.utility.Vector3dVector(colors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.ply")
    if not o3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
        raise OSError(f"open3d could not write {tmp}")
    tmp.replace(path)
    return path


def view_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size of the box holding the bulk of ``points`` (1st-99th percentile per axis), so a few
    badly triangulated far landmarks do not shrink the map to a dot."""
    low, high = np.percentile(points, [1, 99], axis=0) if len(points) >= 20 else (points.min(0), points.max(0))
    return 0.5 * (low + high), np.maximum(high - low, 1e-3)


def render_map(ply: Path, png: Path, size: tuple[int, int], timeout_s: float = 120.0) -> str | None:
    """Render ``ply`` to ``png``; returns None, or why the matplotlib stand-in was drawn instead."""
    command = [sys.executable, "-m", "slam.viz.open3d_render", str(ply), str(png), str(size[0]), str(size[1])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        reason = None if done.returncode == 0 and png.exists() else (
            f"exit code {done.returncode}: {(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    except subprocess.TimeoutExpired:
        reason = f"no image after {timeout_s:g} s"
    if reason is None:
        return None
    render_map_matplotlib(ply, png, size)
    return f"open3d offscreen rendering failed ({reason}); map.png drawn with matplotlib instead"


def render_map_matplotlib(ply: Path, png: Path, size: tuple[int, int]) -> Path:
    import open3d as o3d

    from slam.viz.plots import DPI, save
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cloud = o3d.io.read_point_cloud(str(ply))
    points, colors = np.asarray(cloud.points), np.asarray(cloud.colors)
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="3d")
    ax.scatter(*points.T, c=colors if len(colors) == len(points) else "0.4", s=4, depthshade=False)
    center, extent = view_box(points)
    half = 0.55 * extent.max()
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), center):
        setter(c - half, c + half)
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_zlabel("z [m]")
    ax.set_title(f"{ply.name}: landmarks (grey), keyframes (red)")
    return save(fig, png)
