"""Why the native affine patch alignment exists: speed-up over its NumPy twin at the tracker's sizes.

The tracker aligns every cam0 track (up to 120) each frame with 17x17 patches and 5 Gauss-Newton steps
(TrackerConfig.affine_*); the NumPy twin takes several times the whole KLT step for that.

Run: python benchmarks/bench_patch_align.py   (prints one table)
"""

from __future__ import annotations

import timeit

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from slam.frontend import TrackerConfig
from slam.frontend.patch_align import align_patches, align_patches_numpy, extract_templates, identity_warps


def best_ms(fn, repeat: int) -> float:
    return 1e3 * min(timeit.repeat(fn, number=1, repeat=repeat))


def main() -> None:
    rng = np.random.default_rng(0)
    texture = np.zeros((480, 752), np.float32)
    for sigma, weight in ((1.5, 1.0), (4.0, 2.0), (10.0, 3.0)):
        texture += weight * cv2.GaussianBlur(rng.standard_normal((480, 752)).astype(np.float32), (0, 0), sigma)
    source = cv2.normalize(texture, None, 20, 235, cv2.NORM_MINMAX).astype(np.uint8)
    A = np.array([[1.02, 0.01, 1.5], [-0.01, 0.99, -0.8]])  # one frame of zoom, turn and shift
    target = cv2.warpAffine(source, A, (752, 480), flags=cv2.INTER_CUBIC)
    config = TrackerConfig()
    table = Table(title=f"affine patch alignment, 752x480, {2 * config.affine_radius + 1} px patches, "
                        f"{config.affine_iterations} iterations")
    for column in ("tracks", "numpy ms", "native ms", "speed-up", "max difference px", "median error px"):
        table.add_column(column, justify="right")
    for n in (30, 120, 300):
        xy = rng.uniform([40, 40], [712, 440], (n, 2))
        truth = xy @ A[:, :2].T + A[:, 2]
        args = (target, extract_templates(source, xy, config.affine_radius),
                identity_warps(truth + rng.normal(0, 0.3, truth.shape)), config.affine_iterations)
        native = best_ms(lambda: align_patches(*args), 30)
        twin = best_ms(lambda: align_patches_numpy(*args), 5)
        a, b = align_patches(*args)[0], align_patches_numpy(*args)[0]
        error = np.linalg.norm(a[:, :, 2] - truth, axis=1)
        table.add_row(str(n), f"{twin:.2f}", f"{native:.2f}", f"{twin / native:.0f}x",
                      f"{np.abs(a - b)[:, :, 2].max():.1e}", f"{np.median(error):.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
