"""Sequence readers (ASL/EuRoC, TUM-VI, KITTI, TUM RGB-D, ROS bags, feature tracks), one opener for all."""

from __future__ import annotations

from pathlib import Path

from slam.messages import DataError

from .base import Sequence

FORMATS = ("asl", "kitti", "tum-rgbd", "rosbag", "features")


def detect_format(path: str | Path) -> str:
    """Guess the format of a sequence path from its layout."""
    from .asl import find_mav0
    from .feature_tracks import is_feature_csv

    path = Path(path)
    if not path.exists():
        raise DataError("sequence not found", path)
    if path.is_file():
        if path.suffix in (".bag", ".db3", ".mcap"):
            return "rosbag"
        if is_feature_csv(path):
            return "features"
    elif find_mav0(path) is not None:
        return "asl"
    elif (path / "times.txt").exists() and (path / "image_0").is_dir():
        return "kitti"
    elif (path / "rgb.txt").exists() or (path / "rgb").is_dir():
        return "tum-rgbd"
    elif (path / "metadata.yaml").exists():
        return "rosbag"
    raise DataError("unrecognised sequence layout; expected an ASL/EuRoC or TUM-VI folder (mav0/), KITTI "
                    "odometry (image_0/, times.txt), TUM RGB-D (rgb.txt), a ROS bag (.bag, or a ROS 2 folder "
                    "with metadata.yaml) or a feature-track CSV", path)


def open_sequence(path: str | Path, fmt: str | None = None, calib: str | Path | None = None,
                  imu_calib: str | Path | None = None, ground_truth: str | Path | None = None,
                  **options) -> Sequence:
    """Open any supported sequence. ``calib``/``imu_calib`` are Kalibr YAMLs that override the sequence's own
    calibration (required for ROS bags); ``options`` go to the reader (e.g. ``image_topics`` for bags)."""
    fmt = fmt or detect_format(path)
    sequence = _open(path, fmt, calib, imu_calib, ground_truth, options)
    if ground_truth is not None and fmt != "kitti":  # KITTI reads its own 3x4 poses format
        if not Path(ground_truth).is_file():
            raise DataError("ground-truth file not found", ground_truth)
        sequence.ground_truth_path = Path(ground_truth)
    return sequence


def _open(path, fmt, calib, imu_calib, ground_truth, options) -> Sequence:
    if fmt == "asl":
        from .asl import AslSequence

        return AslSequence(path, calib=calib, imu_calib=imu_calib, **options)
    if fmt == "kitti":
        from .kitti import KittiSequence

        return KittiSequence(path, poses=ground_truth, **options)
    if fmt == "tum-rgbd":
        from .tum_rgbd import TumRgbdSequence

        return TumRgbdSequence(path, **options)
    if fmt == "rosbag":
        from .rosbag import RosbagSequence

        if calib is None:
            raise DataError("a ROS bag needs a Kalibr camchain YAML (--calib) for its calibration", path)
        return RosbagSequence(path, calib=calib, imu_calib=imu_calib, **options)
    if fmt == "features":
        from .feature_tracks import FeatureTrackSequence

        return FeatureTrackSequence(path, imu_calib=imu_calib, **options)
    raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}", path)


__all__ = ["FORMATS", "Sequence", "detect_format", "open_sequence"]
