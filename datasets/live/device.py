"""A sensor device that delivers both the cameras and the IMU on one clock (RealSense, OAK): its parts plug
into :class:`LiveSource` like separate camera and IMU sources, and the first part started starts the device.

Subclasses implement ``_open(sink)`` (start streaming; call ``self.deliver_frame(i, raw)`` and
``self.deliver_imu(reading)`` from any thread) and ``_close()``.
"""

from __future__ import annotations

import threading
import time


class DevicePart:
    """One camera or the IMU of a device, with the attributes LiveSource's watchdog reads."""

    def __init__(self, device, name: str, spec: str, give_up_s: float = 10.0):
        self.device, self.name, self.spec = device, name, spec
        self.give_up_s, self.read_timeout_s, self.open_timeout_s = give_up_s, 1.0, 5.0
        self.last_frame_s: float | None = None
        self.frames = 0
        self.finished = False
        self.failed: str | None = None

    def describe(self) -> str:
        return f"{self.name} ({self.spec})"

    def start(self, sink) -> None:
        self.device.start(sink)

    def stop(self, timeout: float = 2.0) -> None:
        self.device.stop()

    def stats(self) -> dict:
        return {"source": self.spec, "frames": self.frames, "failed": self.failed}


class Device:
    """Base of the device adapters: ``cameras`` (cam0 first) and ``imu`` parts, started once."""

    kind = "device"

    def __init__(self, n_cameras: int, label: str):
        self.cameras = [DevicePart(self, f"cam{i}", f"{label} cam{i}") for i in range(n_cameras)]
        self.imu = DevicePart(self, "imu", f"{label} imu")
        self._lock = threading.Lock()
        self._sink = None
        self._stopped = False

    def start(self, sink) -> None:
        with self._lock:
            if self._sink is not None:
                return
            self._sink = sink
        try:
            self._open(sink)
        except Exception as exc:  # noqa: BLE001  (vendor SDKs raise their own types)
            for part in self.cameras:
                part.failed = f"{part.describe()}: cannot start the device: {exc}"
            sink.on_status("error", self.cameras[0].failed)

    def stop(self) -> None:
        with self._lock:
            if self._stopped or self._sink is None:
                return
            self._stopped = True
        self._close()

    def deliver_frame(self, index: int, raw) -> None:
        part = self.cameras[index]
        part.frames += 1
        part.last_frame_s = time.monotonic()
        self._sink.on_frame(part, raw)

    def deliver_imu(self, reading) -> None:
        self.imu.frames += 1
        self._sink.on_imu(reading)

    def _open(self, sink) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError
