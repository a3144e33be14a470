"""Render a coloured point-cloud PLY to a PNG with open3d's offscreen (headless) renderer.

Run as a child process by :func:`slam.viz.map_export.render_map`:
``python -m slam.viz.open3d_render MAP.ply OUT.png WIDTH HEIGHT``. Kept apart because the renderer can
abort its process when no EGL/Vulkan device works.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

VFOV_DEG = 50.0
VIEW_DIR = np.array([-0.55, -0.75, 0.65])  # from the map centre towards the camera: above, at an angle


def render(ply: Path, png: Path, width: int, height: int) -> None:
    import open3d as o3d
    from open3d.visualization import rendering

    from slam.viz.map_export import view_box

    cloud = o3d.io.read_point_cloud(str(ply))
    points = np.asarray(cloud.points)
    if len(points) == 0:
        raise SystemExit(f"{ply}: no points to render")
    center, extent = view_box(points)
    renderer = rendering.OffscreenRenderer(width, height)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    renderer.scene.view.set_post_processing(False)  # keep the PLY colours and the white background exact
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    material.point_size = 4.0
    renderer.scene.add_geometry("map", cloud, material)
    radius = 0.5 * float(np.linalg.norm(extent))
    distance = 0.9 * radius / np.tan(np.radians(VFOV_DEG / 2))
    eye = center + distance * VIEW_DIR / np.linalg.norm(VIEW_DIR)
    renderer.setup_camera(VFOV_DEG, center, eye, [0.0, 0.0, 1.0])
    image = renderer.render_to_image()
    if not o3d.io.write_image(str(png), image):
        raise SystemExit(f"could not write {png}")


if __name__ == "__main__":
    ply_arg, png_arg, w, h = sys.argv[1:5]
    render(Path(ply_arg), Path(png_arg), int(w), int(h))
