"""Seconds to generate N s of synthetic 752x480 stereo (20 Hz) + 200 Hz IMU, per preset.

Target (issue): 60 s of sequence in < 120 s on 2 cores. Wall time includes building the scene (loading the
photos) and writing the PNGs. The fixed benchmark set has its own table: benchmarks/benchmark_set.py.
Usage: python benchmarks/bench_synthetic.py [--seconds 60] [--presets room_mav,hall_loop]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slam.datasets.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--presets", default="room_mav")
    parser.add_argument("--texture-dir", type=Path, default=None)
    args = parser.parse_args()

    table = Table(title=f"synthetic generation, 752x480 stereo @ 20 Hz, {os.cpu_count()} cores")
    for col in ("preset", "sequence s", "frames", "wall s", "ms / stereo frame", "x real time"):
        table.add_column(col, justify="right")
    for preset in args.presets.split(","):
        tmp = Path(tempfile.mkdtemp(prefix="bench_synthetic_"))
        try:
            start = time.perf_counter()
            out = generate(preset, tmp / "seq", seconds=args.seconds, progress=False,
                           texture_dir=args.texture_dir)
            wall = time.perf_counter() - start
            frames = len(list((out / "mav0" / "cam0" / "data").iterdir()))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        table.add_row(preset, f"{args.seconds:g}", str(frames), f"{wall:.1f}", f"{1000 * wall / frames:.1f}",
                      f"{args.seconds / wall:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
