"""Live sensors without ROS: cameras through OpenCV (device, V4L2, video file, RTSP) or an own MJPEG-over-HTTP
reader, IMUs as text lines over UDP or a serial port, merged by :class:`LiveSource` into the same message
stream the recorded readers yield, so ``slam live`` drives the same pipeline as ``slam run``.

``open_live_source(["http://cam/cam0", "http://cam/cam1"], "udp://0.0.0.0:9000", calibration)`` builds one;
``realsense`` / ``oak`` as the camera open the thin optional adapters (:mod:`.realsense`, :mod:`.oak`).
The IMU line format is documented in :mod:`.imu`; clocks and time offsets in :mod:`.source`.
"""

from __future__ import annotations

# Code inside the project imports the submodules directly (slam.datasets.live.source, ...): an editable
# install made before this package existed sees it as a namespace package and never runs this file.
from .camera import CameraError, CameraSource, RawFrame, source_kind
from .clocks import ClockOffset
from .imu import ImuReading, SerialImuSource, UdpImuSource, open_imu, parse_imu_line
from .opener import open_live_source
from .source import LiveFrame, LiveSource

__all__ = ["CameraError", "CameraSource", "ClockOffset", "ImuReading", "LiveFrame", "LiveSource", "RawFrame",
           "SerialImuSource", "UdpImuSource", "open_imu", "open_live_source", "parse_imu_line", "source_kind"]
