"""The fixed synthetic benchmark set (slam.datasets.synthetic.benchmark_set): what each sequence is, and with
--generate the seconds to generate it into the cache (or "cached" when it is already there and up to date).

Usage: python benchmarks/benchmark_set.py [--generate] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slam.datasets.synthetic import benchmark_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", action="store_true", help="generate missing or outdated sequences")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="default: $SLAM_CACHE/benchmark or ~/.cache/slam/benchmark")
    args = parser.parse_args()

    root = benchmark_set.cache_root(args.cache_dir)
    table = Table(title=f"synthetic benchmark set in {root} ({os.cpu_count()} cores)")
    for col in ("name", "preset", "seed", "duration s", "stereo frames", "path m", "mean speed m/s",
                "peak rate rad/s", "generation s"):
        table.add_column(col, justify="left" if col in ("name", "preset") else "right")
    for name, item in benchmark_set.BENCHMARK_SET.items():
        summary = benchmark_set.motion_summary(name)
        generation = "-"
        if args.generate:
            start = time.perf_counter()
            cached = benchmark_set.is_current(name, args.cache_dir)
            benchmark_set.ensure_sequence(name, args.cache_dir, progress=False)
            generation = "cached" if cached else f"{time.perf_counter() - start:.1f}"
        elif benchmark_set.is_current(name, args.cache_dir):
            generation = "cached"
        frames = str(summary["frames"]) if summary["cameras"] == 2 else f"{summary['frames']} (mono)"
        table.add_row(name, item.preset, str(item.seed), f"{summary['seconds']:g}", frames,
                      f"{summary['path_m']:.1f}", f"{summary['mean_speed']:.2f}", f"{summary['max_rate']:.2f}",
                      generation)
    Console().print(table)


if __name__ == "__main__":
    main()
