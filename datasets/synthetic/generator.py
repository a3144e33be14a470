"""``generate()``: render a preset (scene + motion + rig + IMU) into an ASL/EuRoC folder with ground truth.

Images are stamped at mid-exposure. With ``exposure_s > 0`` each image is the mean of sub-renders at poses
spread over the exposure (motion blur), before sensor noise; each sub-render costs a full render (up to
MAX_BLUR_SAMPLES per fast frame, about 4x the time for 10 ms on room_handheld). ``cameras=1`` writes only
cam0 (monocular).

IMU noise: zero noise densities (``ImuNoise(gyro_noise_density=0, ...)``) are written to
``imu0/sensor.yaml`` as 1e-12, not 0, because a zero density would give an estimator infinite information
(a division by zero in its IMU factor weights). ``ImuNoise(enabled=False)`` writes exact readings but keeps
the configured densities in sensor.yaml, so estimators keep sane weights.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from slam.geometry import rot_to_quat
from slam.messages import Calibration, DataError, ImuSample, Trajectory

from . import imu as imu_model
from .render import render, sensor, vignetting
from .rig import imu_calibration, stereo_rig
from .scene import SCENES
from .trajectory import MOTIONS

T0_NS = 1_500_000_000_000_000_000  # first stamp (EuRoC-like epoch nanoseconds)
MIN_CLEARANCE_M = 0.5
GENERATOR_VERSION = 2  # bump when the same config and seed would produce different files (cached sets regenerate)
MAX_BLUR_SAMPLES = 9
NEAR_DEPTH_M = 1.0  # depth assumed for the image smear caused by translation (walls are >= 0.5 m away)


@dataclass(frozen=True)
class SequenceConfig:
    scene: str = "room"  # room | hall
    motion: str = "mav"  # mav | handheld | loop
    seconds: float = 60.0
    camera_rate_hz: float = 20.0
    imu_rate_hz: float = 200.0
    width: int = 752
    height: int = 480
    baseline: float | None = None  # None: EuRoC's 0.110 m
    cameras: int = 2  # 2: stereo, 1: monocular (cam0 only)
    static_s: float = 1.5  # still at the start (0: moving from the first sample)
    imu: imu_model.ImuNoise = field(default_factory=imu_model.ImuNoise)
    image_noise_sigma: float = 2.0  # grey levels
    exposure_variation: float = 0.12  # relative amplitude of the slow gain change
    vignetting: float = 0.3  # relative darkening at the corners
    blur_sigma: float = 0.6  # optics / anti-aliasing [px]
    exposure_s: float = 0.0  # exposure time for motion blur; 0: off (sharp images)
    texture_px_per_m: float = 120.0
    workers: int = 0  # render processes; 0: one per CPU core (at most 4)


PRESETS: dict[str, SequenceConfig] = {
    "room_mav": SequenceConfig(scene="room", motion="mav"),
    "room_handheld": SequenceConfig(scene="room", motion="handheld"),
    "hall_loop": SequenceConfig(scene="hall", motion="loop", seconds=75.0),
}


def make_config(preset: str, seconds: float | None = None, **overrides) -> SequenceConfig:
    """The preset with overrides applied, validated (DataError with the field name otherwise)."""
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}",
                        field="preset")
    names = {f.name for f in fields(SequenceConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise DataError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    if seconds is not None:
        overrides["seconds"] = seconds
    config = replace(PRESETS[preset], **overrides)
    validate(config)
    return config


def _number(config, name, minimum=0.0, strict=True):
    value = getattr(config, name)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"must be a number, got {value!r}", field=name) from None
    if not math.isfinite(x) or (x <= minimum if strict else x < minimum):
        raise DataError(f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}", field=name)


def validate(config: SequenceConfig) -> None:
    if config.scene not in SCENES:
        raise DataError(f"unknown scene {config.scene!r}; valid: {', '.join(sorted(SCENES))}", field="scene")
    if config.motion not in MOTIONS:
        raise DataError(f"unknown motion {config.motion!r}; valid: {', '.join(sorted(MOTIONS))}", field="motion")
    for name in ("seconds", "camera_rate_hz", "imu_rate_hz", "texture_px_per_m"):
        _number(config, name)
    for name in ("static_s", "image_noise_sigma", "exposure_variation", "blur_sigma", "exposure_s"):
        _number(config, name, strict=False)
    _number(config, "vignetting", strict=False)
    if config.vignetting >= 1:
        raise DataError(f"must be in [0, 1), got {config.vignetting!r}", field="vignetting")
    if config.exposure_variation >= 1:
        raise DataError(f"must be in [0, 1), got {config.exposure_variation!r}", field="exposure_variation")
    if config.imu_rate_hz < config.camera_rate_hz:
        raise DataError(f"IMU rate ({config.imu_rate_hz:g} Hz) must not be below the camera rate "
                        f"({config.camera_rate_hz:g} Hz)", field="imu_rate_hz")
    if config.exposure_s * config.camera_rate_hz >= 1:
        raise DataError(f"exposure ({config.exposure_s:g} s) must be shorter than the frame period "
                        f"({1 / config.camera_rate_hz:g} s)", field="exposure_s")
    cameras = config.cameras
    if not isinstance(cameras, (int, np.integer)) or isinstance(cameras, bool) or cameras not in (1, 2):
        raise DataError(f"must be 1 (monocular) or 2 (stereo), got {config.cameras!r}", field="cameras")
    for name in ("width", "height"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 16 <= value <= 4096:
            raise DataError(f"must be an integer number of pixels in [16, 4096], got {value!r}", field=name)
    if config.baseline is not None and not (isinstance(config.baseline, (int, float))
                                            and math.isfinite(config.baseline) and config.baseline > 0):
        raise DataError(f"stereo baseline must be a positive distance in metres, got {config.baseline!r}",
                        field="baseline")
    noise = config.imu
    for name in ("gyro_noise_density", "accel_noise_density", "gyro_random_walk", "accel_random_walk"):
        value = getattr(noise, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise DataError(f"must be a number >= 0, got {value!r}", field=f"imu.{name}")
    if not isinstance(config.workers, int) or config.workers < 0:
        raise DataError(f"must be an integer >= 0, got {config.workers!r}", field="workers")


@dataclass(eq=False)
class Sequence:
    """Everything needed to produce a sequence (pure functions of config, seed and texture folder)."""

    config: SequenceConfig
    seed: int
    scene: object
    motion: object
    cameras: tuple
    imu_t_ns: np.ndarray
    frame_t_ns: np.ndarray

    def t_s(self, t_ns) -> np.ndarray:
        return (np.asarray(t_ns, dtype=np.int64) - T0_NS) * 1e-9

    def T_W_C(self, k: int, cam: int) -> np.ndarray:
        """Exact pose of camera ``cam`` at frame ``k`` (mid-exposure)."""
        return self.T_W_C_at(float(self.t_s(self.frame_t_ns[k])), cam)

    def T_W_C_at(self, t_s: float, cam: int) -> np.ndarray:
        """Exact pose of camera ``cam`` at ``t_s`` seconds after the first stamp."""
        state = self.motion.evaluate(np.array([t_s]))
        T_W_B = np.eye(4)
        T_W_B[:3, :3] = state.R_W_B[0]
        T_W_B[:3, 3] = state.p_W[0]
        return T_W_B @ self.cameras[cam].T_B_C

    def exposure_times(self, k: int) -> np.ndarray:
        """Times [s] of the sub-renders averaged into frame ``k``.

        Without exposure, or when the image smears by less than half a pixel, just the frame time. Else an
        odd number (the middle one at the frame time) spread uniformly over the exposure, about one per
        pixel of smear and at most MAX_BLUR_SAMPLES.
        """
        t = float(self.t_s(self.frame_t_ns[k]))
        exposure = self.config.exposure_s
        if exposure <= 0:
            return np.array([t])
        state = self.motion.evaluate(np.array([t]))
        focal = float(max(self.cameras[0].intrinsics[:2]))
        rate = np.linalg.norm(state.omega_B[0]) + np.linalg.norm(state.v_W[0]) / NEAR_DEPTH_M  # rad/s of view
        smear_px = focal * exposure * rate
        if smear_px < 0.5:
            return np.array([t])
        n = min(MAX_BLUR_SAMPLES, 2 * math.ceil(smear_px / 2) + 1)
        return t + exposure * (np.arange(n) / (n - 1) - 0.5)

    def gain(self, k: int) -> float:
        """Slow exposure change shared by both cameras."""
        t = float(self.t_s(self.frame_t_ns[k]))
        phase = (self.seed % 97) * 0.1
        return 1.0 + self.config.exposure_variation * math.sin(2 * math.pi * t / 17.0 + phase) * \
            (0.7 + 0.3 * math.sin(2 * math.pi * t / 5.3))

    def render_frame(self, k: int, with_depth: bool = False):
        """uint8 images of every camera at frame ``k`` (and float32 depths at mid-exposure when asked)."""
        c = self.config
        images, depths = [], []
        vignette = vignetting(c.width, c.height, c.vignetting) if c.vignetting > 0 else None
        times = self.exposure_times(k)
        for i, cam in enumerate(self.cameras):
            renders = [render(self.scene, cam, self.T_W_C_at(t, i)) for t in times]
            radiance = renders[0][0] if len(renders) == 1 else np.mean([r[0] for r in renders], 0, np.float32)
            rng = np.random.default_rng([self.seed, k, i])
            images.append(sensor(radiance, self.gain(k), vignette, c.image_noise_sigma, c.blur_sigma, rng))
            depths.append(renders[len(renders) // 2][1])
        return (images, depths) if with_depth else images


def build(config: SequenceConfig, seed: int = 0, texture_dir: Path | None = None) -> Sequence:
    """Scene, motion, rig and stamps for ``config`` (validated)."""
    validate(config)
    if texture_dir is not None and not Path(texture_dir).is_dir():
        raise DataError("texture folder not found", texture_dir)
    scene = SCENES[config.scene](seed=seed, texture_dir=texture_dir, px_per_m=config.texture_px_per_m)
    motion = MOTIONS[config.motion](seed, static_s=config.static_s)
    cameras = stereo_rig(config.width, config.height, config.camera_rate_hz, config.baseline)[:config.cameras]
    end_ns = int(round(config.seconds * 1e9))
    imu_dt = int(round(1e9 / config.imu_rate_hz))
    imu_t = T0_NS + np.arange(0, end_ns + 1, imu_dt, dtype=np.int64)
    n_frames = int(math.floor(config.seconds * config.camera_rate_hz + 1e-9)) + 1
    frame_t = T0_NS + np.round(np.arange(n_frames) * (1e9 / config.camera_rate_hz)).astype(np.int64)
    seq = Sequence(config, seed, scene, motion, cameras, imu_t, frame_t)
    clearance = float(scene.clearance(motion.evaluate(seq.t_s(imu_t)).p_W).min())
    if clearance < MIN_CLEARANCE_M:
        raise DataError(f"the {config.motion} motion comes within {clearance:.2f} m of the {config.scene} "
                        f"geometry (minimum {MIN_CLEARANCE_M} m)")
    return seq


_WORKER_SEQUENCE: Sequence | None = None


def _render_worker(k: int):
    return k, _WORKER_SEQUENCE.render_frame(k)


def _frames(seq: Sequence, workers: int):
    """(k, images) in order, rendered in ``workers`` forked processes (or in this one)."""
    global _WORKER_SEQUENCE
    ks = range(len(seq.frame_t_ns))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for k in ks:
            yield k, seq.render_frame(k)
        return
    import cv2

    _WORKER_SEQUENCE = seq
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # inherited by the render processes: one per core, no OpenCV threads on top
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_render_worker, ks, chunksize=2)
    finally:
        _WORKER_SEQUENCE = None
        cv2.setNumThreads(threads)


def generate(preset: str, out: Path, seconds: float | None = None, seed: int = 0, progress: bool = True,
             texture_dir: Path | None = None, overwrite: bool = False, tracks: bool = False, **overrides) -> Path:
    """Write the synthetic sequence ``preset`` to ``out`` (ASL/EuRoC layout, with ground truth); return it.

    ``overrides`` replace fields of :class:`SequenceConfig` (e.g. ``width=376, height=240,
    imu=ImuNoise(enabled=False), image_noise_sigma=0, cameras=1, exposure_s=0.01``). Deterministic for a
    given ``seed``. Surfaces show photos from ``texture_dir``, by default scikit-image's sample photos
    (procedural textures without scikit-image). Everything is written into a hidden ``.OUT.partial`` folder
    renamed to ``out`` at the end, so an interrupted run never leaves a folder that looks complete. With
    ``tracks``, ``out/exact_tracks.csv`` holds cam0's exact feature tracks and the IMU readings
    (:mod:`.tracks`), for runs of the backend alone.
    """
    from slam.datasets.asl_writer import AslWriter

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}", field="seed")
    config = make_config(preset, seconds, **overrides)
    seq = build(config, int(seed), Path(texture_dir) if texture_dir is not None else None)
    out = Path(out)

    state = seq.motion.evaluate(seq.t_s(seq.imu_t_ns))
    rng = np.random.default_rng([int(seed), 1])
    dt = 1.0 / config.imu_rate_hz
    readings = imu_model.simulate(state, dt, config.imu, rng)
    calibration = Calibration(seq.cameras, imu_calibration(config.imu, config.imu_rate_hz))
    workers = config.workers or min(4, os.cpu_count() or 1)

    with AslWriter(out, calibration, overwrite=overwrite) as writer:
        for j, t_ns in enumerate(seq.imu_t_ns):
            writer.add_imu(ImuSample(int(t_ns), readings.gyro[j], readings.accel[j]))
        writer.set_ground_truth(Trajectory(seq.imu_t_ns, state.p_W, rot_to_quat(state.R_W_B), state.v_W,
                                           readings.bias_gyro, readings.bias_accel))
        frames = _frames(seq, workers)
        try:
            if progress:
                from rich.progress import Progress

                with Progress() as bar:
                    task = bar.add_task(f"{preset} -> {out.name}", total=len(seq.frame_t_ns))
                    for k, images in frames:
                        writer.add_frame(int(seq.frame_t_ns[k]), images)
                        bar.advance(task)
            else:
                for k, images in frames:
                    writer.add_frame(int(seq.frame_t_ns[k]), images)
        finally:
            frames.close()  # stops the render processes at once, also when interrupted
        if tracks:  # inside the partial folder: complete with the sequence or not there at all
            from slam.datasets.feature_tracks import write_feature_csv

            from .tracks import exact_tracks

            samples = (ImuSample(int(t), readings.gyro[j], readings.accel[j]) for j, t in enumerate(seq.imu_t_ns))
            write_feature_csv(writer.tmp / "exact_tracks.csv", calibration.cameras[0], calibration.imu, samples,
                              exact_tracks(seq))
    return out
