"""The fixed synthetic benchmark set: the sequences VIO, learned-frontend and loop-closure results report ATE on.

Each entry is a preset, a seed, a duration and overrides. ``ensure_sequence(name)`` generates it once into a
cache folder (``cache_dir``, else ``$SLAM_CACHE/benchmark``, else ``~/.cache/slam/benchmark``) and reuses it
while the stamp file inside matches: a hash of the generator version, the full config, the seed and the
photos. Not safe against two processes generating the same sequence at once. See benchmarks/README.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slam.messages import DataError

from .generator import GENERATOR_VERSION, Sequence, build, generate, make_config
from .textures import fingerprint, load_photos
from .trajectory import MOTIONS

STAMP_FILE = "synthetic_stamp.json"


@dataclass(frozen=True)
class BenchmarkSequence:
    preset: str
    seed: int
    seconds: float
    about: str = ""
    overrides: dict = field(default_factory=dict)  # SequenceConfig fields, as for generate()


# About 140 s of sequence: generates in about two minutes on two cores.
BENCHMARK_SET: dict[str, BenchmarkSequence] = {
    "room_mav": BenchmarkSequence("room_mav", 1, 40.0, "EuRoC-like flight in a textured room"),
    "room_handheld": BenchmarkSequence("room_handheld", 2, 30.0, "handheld walk in the room: fast turns, shake"),
    "hall_loop": BenchmarkSequence("hall_loop", 3, 70.0, "one loop around the hall's pillars, back past the "
                                                          "start (loop closure)"),
}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("SLAM_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "slam") / "benchmark"


def entry(name: str) -> BenchmarkSequence:
    if name not in BENCHMARK_SET:
        raise DataError(f"unknown benchmark sequence {name!r}; valid: {', '.join(BENCHMARK_SET)}", field="name")
    return BENCHMARK_SET[name]


def stamp(name: str) -> dict:
    """What the cached sequence must have been generated from, with its hash."""
    item = entry(name)
    config = make_config(item.preset, item.seconds, **item.overrides)
    params = {"name": name, "preset": item.preset, "seed": item.seed, "generator_version": GENERATOR_VERSION,
              "config": repr(config), "photos": fingerprint(load_photos(None))}
    params["hash"] = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return params


def _cached_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / STAMP_FILE).read_text()).get("hash")
    except (OSError, ValueError, AttributeError):
        return None


def is_current(name: str, cache_dir: str | Path | None = None) -> bool:
    """Whether the cached sequence ``name`` exists and was generated from the current parameters."""
    return _cached_hash(cache_root(cache_dir) / name) == stamp(name)["hash"]


def ensure_sequence(name: str, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The folder of benchmark sequence ``name``, generated first when missing or made from other parameters."""
    item = entry(name)
    folder = cache_root(cache_dir) / name
    expected = stamp(name)
    if _cached_hash(folder) == expected["hash"]:
        return folder
    generate(item.preset, folder, item.seconds, item.seed, progress=progress, overwrite=True, **item.overrides)
    try:  # written last: a folder without a matching stamp is regenerated
        (folder / STAMP_FILE).write_text(json.dumps(expected, indent=2) + "\n")
    except OSError as exc:
        raise DataError(f"cannot write the stamp file: {exc.strerror}", folder / STAMP_FILE) from None
    return folder


def ensure_all(cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Path]:
    return {name: ensure_sequence(name, cache_dir, progress) for name in BENCHMARK_SET}


def build_truth(name: str) -> Sequence:
    """The generator's model of benchmark sequence ``name`` (scene, motion, rig, stamps): the exact geometry
    behind its files, for ray casting and true poses."""
    item = entry(name)
    return build(make_config(item.preset, item.seconds, **item.overrides), item.seed)


def motion_summary(name: str) -> dict:
    """Duration, frame count, path length and speeds of a benchmark sequence, from its analytic motion."""
    item = entry(name)
    config = make_config(item.preset, item.seconds, **item.overrides)
    motion = MOTIONS[config.motion](item.seed, static_s=config.static_s)
    t = np.arange(0.0, config.seconds + 1e-9, 1.0 / config.imu_rate_hz)
    state = motion.evaluate(t)
    speed = np.linalg.norm(state.v_W, axis=1)
    return {"seconds": config.seconds, "frames": int(np.floor(config.seconds * config.camera_rate_hz + 1e-9)) + 1,
            "cameras": config.cameras, "path_m": float(np.linalg.norm(np.diff(state.p_W, axis=0), axis=1).sum()),
            "mean_speed": float(speed[t > motion.static_s].mean()), "max_speed": float(speed.max()),
            "max_rate": float(np.linalg.norm(state.omega_B, axis=1).max())}
