"""What a sequence holds: sensors, rates, durations, gaps, calibration, ground truth and warnings.

``describe()`` streams the messages once (images are not decoded, except the first of each camera to
check its size against the calibration), so it is cheap even for long sequences.
"""

from __future__ import annotations


import numpy as np

from slam.messages import CameraFrame, DataError, FeatureFrame, ImuSample


def stream_stats(stamps_ns: list[int] | np.ndarray, gap_factor: float = 2.5) -> dict:
    """Count, span, rate (from the median period) and gaps longer than ``gap_factor`` periods."""
    t = np.asarray(stamps_ns, dtype=np.int64)
    if len(t) < 2:
        return {"count": int(len(t)), "start_ns": int(t[0]) if len(t) else None, "duration_s": 0.0,
                "rate_hz": None, "gaps": 0, "max_gap_s": None}
    dt = np.diff(t)
    period = float(np.median(dt))
    return {"count": int(len(t)), "start_ns": int(t[0]), "end_ns": int(t[-1]),
            "duration_s": (int(t[-1]) - int(t[0])) * 1e-9, "rate_hz": 1e9 / period if period > 0 else None,
            "gaps": int(np.count_nonzero(dt > gap_factor * period)), "max_gap_s": float(dt.max()) * 1e-9}


def describe(sequence) -> dict:
    """A JSON-ready description of ``sequence`` (a :class:`slam.datasets.Sequence`)."""
    calib = sequence.calibration
    imu_t, frame_t, feature_t, feature_counts = [], [], [], []
    first_frame: CameraFrame | None = None
    for msg in sequence.messages():
        if isinstance(msg, ImuSample):
            imu_t.append(msg.t_ns)
        elif isinstance(msg, CameraFrame):
            frame_t.append(msg.t_ns)
            first_frame = first_frame or msg
        elif isinstance(msg, FeatureFrame):
            feature_t.append(msg.t_ns)
            feature_counts.append(len(msg.ids))

    cameras = []
    for i, cam in enumerate(calib.cameras):
        entry = {"name": cam.name, "resolution": list(cam.resolution), "intrinsics": cam.intrinsics.tolist(),
                 "distortion_model": cam.distortion_model, "distortion": cam.distortion.tolist(),
                 "T_B_C": cam.T_B_C.round(9).tolist(), "calibration_file": cam.source}
        if first_frame is not None and i < len(first_frame.images):
            image = first_frame.images[i].load()
            size = [int(image.shape[1]), int(image.shape[0])]
            if size != entry["resolution"]:
                sequence.warn(f"{cam.name}: images are {size[0]}x{size[1]} but the calibration says "
                              f"{cam.width}x{cam.height}")
        cameras.append(entry)

    info = {"path": str(sequence.path), "format": sequence.format_name, "cameras": cameras,
            "frames": stream_stats(frame_t) if frame_t else None,
            "stereo": bool(first_frame is not None and first_frame.stereo),
            "imu": None, "features": None, "ground_truth": None}
    if calib.imu is not None:
        imu = calib.imu
        info["imu"] = {"calibration_rate_hz": imu.rate_hz, "gyro_noise_density": imu.gyro_noise_density,
                       "gyro_random_walk": imu.gyro_random_walk, "accel_noise_density": imu.accel_noise_density,
                       "accel_random_walk": imu.accel_random_walk, "calibration_file": imu.source,
                       **stream_stats(imu_t)}
    if feature_t:
        info["features"] = {**stream_stats(feature_t), "mean_per_frame": float(np.mean(feature_counts))}
    try:
        gt = sequence.ground_truth()
    except DataError as exc:
        sequence.warn(f"ground truth unreadable: {exc}")
        gt = None
    if gt is not None:
        info["ground_truth"] = {"file": str(getattr(sequence, "ground_truth_path", "") or ""),
                                "has_velocity_and_biases": gt.v_W is not None, **stream_stats(gt.t_ns)}
        covered = _coverage(gt.t_ns, frame_t or feature_t or imu_t)
        if covered < 0.99:
            sequence.warn(f"ground truth covers only {covered:.0%} of the sensor time span")
    info["warnings"] = list(sequence.warnings)
    return info


def _coverage(gt_t: np.ndarray, sensor_t: list[int]) -> float:
    if not sensor_t:
        return 1.0
    t = np.asarray(sensor_t)
    return float(np.mean((t >= gt_t[0]) & (t <= gt_t[-1])))


def summary_rows(info: dict) -> list[tuple[str, str]]:
    """(label, text) rows for a terminal table."""
    def span(s):
        text = f"{s['count']} @ {s['rate_hz']:.1f} Hz over {s['duration_s']:.2f} s" if s["rate_hz"] else \
            f"{s['count']}"
        if s.get("gaps"):
            text += f", {s['gaps']} gaps (longest {s['max_gap_s']:.3f} s)"
        return text

    rows = [("format", info["format"]), ("path", info["path"])]
    for cam in info["cameras"]:
        fx, fy, cx, cy = cam["intrinsics"]
        rows.append((cam["name"], f"{cam['resolution'][0]}x{cam['resolution'][1]}, f=({fx:.1f}, {fy:.1f}) "
                                  f"c=({cx:.1f}, {cy:.1f}), {cam['distortion_model']}"))
    if info["frames"]:
        rows.append(("frames", ("stereo " if info["stereo"] else "mono ") + span(info["frames"])))
    if info["features"]:
        rows.append(("feature frames", span(info["features"]) +
                     f", {info['features']['mean_per_frame']:.0f} features/frame"))
    rows.append(("imu", span(info["imu"]) if info["imu"] else "none"))
    gt = info["ground_truth"]
    rows.append(("ground truth", f"{span(gt)} ({gt['file']})" if gt else "none"))
    for warning in info["warnings"]:
        rows.append(("warning", warning))
    return rows
