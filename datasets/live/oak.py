"""Luxonis OAK-D (depthai) as a live source: the left/right mono cameras as cam0/cam1 and the IMU, stamped on
the host-synchronized device clock. Needs ``depthai`` (``pip install depthai``, the 2.x API).

Thin and untested here (no device on these machines): it builds the depthai pipeline and polls its queues in
one thread. Calibrate the rig with Kalibr and pass it with ``--calib``.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from slam.messages import DataError

from .camera import RawFrame
from .device import Device
from .imu import ImuReading


def _ns(timestamp) -> int:
    return int(round(timestamp.total_seconds() * 1e9))


class OakDevice(Device):
    def __init__(self, device_id: str | None = None, fps: int = 20, imu_rate_hz: int = 200):
        try:
            import depthai  # noqa: F401
        except ImportError:
            raise DataError("OAK cameras need depthai (pip install depthai)", field="--camera") from None
        super().__init__(2, f"oak{':' + device_id if device_id else ''}")
        self.device_id, self.fps, self.imu_rate_hz = device_id, fps, imu_rate_hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self, sink) -> None:
        import depthai as dai

        pipeline = dai.Pipeline()
        for name, socket in (("left", dai.CameraBoardSocket.CAM_B), ("right", dai.CameraBoardSocket.CAM_C)):
            mono = pipeline.create(dai.node.MonoCamera)
            mono.setBoardSocket(socket)
            mono.setResolution(dai.MonoCameraProperties.SensorResolution.THE_400_P)
            mono.setFps(self.fps)
            out = pipeline.create(dai.node.XLinkOut)
            out.setStreamName(name)
            mono.out.link(out.input)
        imu = pipeline.create(dai.node.IMU)
        imu.enableIMUSensor([dai.IMUSensor.ACCELEROMETER_RAW, dai.IMUSensor.GYROSCOPE_RAW], self.imu_rate_hz)
        imu.setBatchReportThreshold(1)
        imu.setMaxBatchReports(10)
        out = pipeline.create(dai.node.XLinkOut)
        out.setStreamName("imu")
        imu.out.link(out.input)
        device = dai.Device(pipeline, dai.DeviceInfo(self.device_id)) if self.device_id else dai.Device(pipeline)
        self._thread = threading.Thread(target=self._poll, args=(device,), name="live-oak", daemon=True)
        self._thread.start()

    def _poll(self, device) -> None:
        with device:
            queues = [device.getOutputQueue(name, maxSize=4, blocking=False) for name in ("left", "right", "imu")]
            while not self._stop.is_set():
                idle = True
                for i, queue in enumerate(queues[:2]):
                    frame = queue.tryGet()
                    if frame is not None:
                        idle = False
                        self.deliver_frame(i, RawFrame(time.time_ns(), _ns(frame.getTimestamp()),
                                                       np.ascontiguousarray(frame.getCvFrame())))
                data = queues[2].tryGet()
                if data is not None:
                    idle = False
                    for packet in data.packets:
                        gyro, accel = packet.gyroscope, packet.acceleroMeter
                        self.deliver_imu(ImuReading(time.time_ns(), _ns(gyro.getTimestamp()),
                                                    np.array([gyro.x, gyro.y, gyro.z]),
                                                    np.array([accel.x, accel.y, accel.z])))
                if idle:
                    time.sleep(0.001)

    def _close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
