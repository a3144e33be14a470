"""``open_live_source()``: a :class:`LiveSource` from command-line style specs (what ``slam live`` calls)."""

from __future__ import annotations

from collections.abc import Sequence

from slam.messages import Calibration, DataError

from .camera import CameraSource
from .imu import open_imu
from .source import LiveSource


def open_live_source(cameras: Sequence[str], imu: str | None, calibration: Calibration | None = None, *,
                     use_imu: bool = True, time_offset_s: float = 0.0, frame_queue: int = 2,
                     open_timeout_s: float = 3.0, read_timeout_s: float = 2.0, give_up_s: float = 10.0,
                     sensor_stamps: bool = True, imu_wait_s: float = 0.2) -> LiveSource:
    """A :class:`LiveSource` from camera specs (cam0 first) and an IMU spec (see :func:`open_imu`).

    ``use_imu=False`` (visual odometry) ignores ``imu``. ``sensor_stamps=False`` ignores the stamps that
    cameras send and uses host receive times instead. The calibration gives the expected image sizes and
    the stereo pairing tolerance (40 % of a frame period).
    """
    cameras = [c for c in cameras if c]
    if not cameras:
        raise DataError("no camera given (--camera)", field="--camera")
    if cameras[0].split(":")[0] in ("realsense", "oak"):
        device = _device(cameras[0])
        camera_sources, imu_source = device.cameras, device.imu if use_imu else None
    else:
        camera_sources = [CameraSource(spec, f"cam{i}", open_timeout_s, read_timeout_s, give_up_s, sensor_stamps)
                          for i, spec in enumerate(cameras)]
        imu_source = None
        if use_imu:
            if not imu:
                raise DataError("an inertial mode needs an IMU source (--imu udp://0.0.0.0:9000 or a serial "
                                "port), or use --config stereo", field="--imu")
            imu_source = open_imu(imu)
    sizes = tolerance = None
    if calibration is not None:
        if len(camera_sources) > len(calibration.cameras):
            raise DataError(f"{len(camera_sources)} cameras given but the calibration has "
                            f"{len(calibration.cameras)}", field="--camera1")
        sizes = [c.resolution for c in calibration.cameras[:len(camera_sources)]]
        rate = calibration.cameras[0].rate_hz
        tolerance = 0.4 / rate if rate else None
    return LiveSource(camera_sources, imu_source, time_offset_s=time_offset_s, frame_queue=frame_queue,
                      imu_wait_s=imu_wait_s, give_up_s=give_up_s, stereo_tolerance_s=tolerance or 0.015,
                      image_sizes=sizes)


def _device(spec: str):
    kind, _, options = spec.partition(":")
    if kind == "realsense":
        from .realsense import RealSenseDevice

        return RealSenseDevice(serial=options or None)
    from .oak import OakDevice

    return OakDevice(device_id=options or None)
