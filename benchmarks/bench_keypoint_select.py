"""Why the native keypoint selection exists: speed-up over its NumPy twin at frontend sizes.

Run: python benchmarks/bench_keypoint_select.py   (prints one table)
"""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.table import Table

from slam.frontend.keypoint_select import select_keypoints, select_keypoints_numpy


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    table = Table(title="grid-bucketed keypoint selection, 752x480, cell 32 px, 4/cell, min distance 8 px")
    for column in ("candidates", "kept", "numpy ms", "native ms", "speed-up", "identical"):
        table.add_column(column, justify="right")
    for n, keep in ((1000, 300), (5000, 1000), (20000, 1500)):
        xy = rng.uniform([0, 0], [752, 480], (n, 2))
        score = rng.random(n)
        args = (xy, score, 752, 480, 32.0, 4, 8.0, keep)
        native = best_ms(lambda: select_keypoints(*args), 50)
        twin = best_ms(lambda: select_keypoints_numpy(*args), 5)
        same = np.array_equal(select_keypoints(*args), select_keypoints_numpy(*args))
        table.add_row(str(n), str(len(select_keypoints(*args))), f"{twin:.2f}", f"{native:.3f}",
                      f"{twin / native:.0f}x", "yes" if same else "NO")
    Console().print(table)


if __name__ == "__main__":
    main()
