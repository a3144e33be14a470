"""Intel RealSense (D435i, D455, ...) as a live source: the two infrared imagers as cam0/cam1 (emitter off)
and the IMU, all stamped by the device (one clock). Needs ``pyrealsense2`` (``pip install pyrealsense2``).

Thin and untested here (no device on these machines): it only maps the SDK's callbacks onto
:class:`~slam.datasets.live.device.Device`. The accelerometer runs slower than the gyro; each gyro sample is
paired with the latest accelerometer reading. Calibrate the rig with Kalibr and pass it with ``--calib``.
"""

from __future__ import annotations

import time

import numpy as np

from slam.messages import DataError

from .camera import RawFrame
from .device import Device
from .imu import ImuReading


class RealSenseDevice(Device):
    def __init__(self, serial: str | None = None, width: int = 848, height: int = 480, fps: int = 30):
        try:
            import pyrealsense2  # noqa: F401
        except ImportError:
            raise DataError("RealSense cameras need pyrealsense2 (pip install pyrealsense2)",
                            field="--camera") from None
        super().__init__(2, f"realsense{':' + serial if serial else ''}")
        self.serial, self.width, self.height, self.fps = serial, width, height, fps
        self._accel = None
        self._pipeline = None

    def _open(self, sink) -> None:
        import pyrealsense2 as rs

        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        for index in (1, 2):
            config.enable_stream(rs.stream.infrared, index, self.width, self.height, rs.format.y8, self.fps)
        config.enable_stream(rs.stream.accel)
        config.enable_stream(rs.stream.gyro)
        self._pipeline = rs.pipeline()
        profile = self._pipeline.start(config, self._on_frame)
        depth = profile.get_device().first_depth_sensor()
        if depth.supports(rs.option.emitter_enabled):
            depth.set_option(rs.option.emitter_enabled, 0)  # the IR dot pattern would move with the camera

    def _on_frame(self, frame) -> None:
        import pyrealsense2 as rs

        received_ns = time.time_ns()
        t_ns = int(round(frame.get_timestamp() * 1e6))  # milliseconds, device/global clock
        if frame.is_frameset():
            frames = frame.as_frameset()
            for i, index in enumerate((1, 2)):
                image = np.asanyarray(frames.get_infrared_frame(index).get_data()).copy()
                self.deliver_frame(i, RawFrame(received_ns, t_ns, image))
            return
        motion = frame.as_motion_frame().get_motion_data()
        value = np.array([motion.x, motion.y, motion.z])
        if frame.get_profile().stream_type() == rs.stream.accel:
            self._accel = value
        elif self._accel is not None:
            self.deliver_imu(ImuReading(received_ns, t_ns, value, self._accel))

    def _close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
