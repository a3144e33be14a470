"""Live IMU sources: plain text lines over UDP or a serial port, one reader thread each.

Line format (UTF-8, one sample per line; a UDP datagram may hold several lines)::

    t gx gy gz ax ay az

separated by commas or whitespace. ``t`` is the sensor time in decimal seconds (``1403636579.763555527``),
or left out (six numbers) / empty (``,gx,...`` with commas) to use the host receive time. Gyro in rad/s,
accelerometer in m/s^2, both in the IMU frame. Lines starting with ``#`` and blank lines are ignored.
Malformed lines are counted and reported with their text, never fatal.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from slam.messages import DataError

log = logging.getLogger("slam.live")

_SPLIT = re.compile(r"[,\s]+")
_MAX_REPORTED = 5  # malformed lines logged one by one; after that every 100th


@dataclass(frozen=True)
class ImuReading:
    """One parsed line: host receive time, sensor time (None: the line had none), gyro, accel."""

    received_ns: int
    t_sensor_ns: int | None
    gyro: np.ndarray
    accel: np.ndarray


def parse_imu_line(text: str, received_ns: int) -> ImuReading | None:
    """Parse one line (see the module docstring); None for blank/comment lines, ValueError when malformed."""
    text = text.strip()
    if not text or text.startswith("#"):
        return None
    if "," in text:
        fields = [f.strip() for f in text.split(",")]
    else:
        fields = _SPLIT.split(text)
    if len(fields) == 7 and fields[0] == "":
        fields = fields[1:]
    if len(fields) not in (6, 7):
        raise ValueError(f"expected 7 fields (t gx gy gz ax ay az) or 6 without t, got {len(fields)}")
    t_ns = None
    if len(fields) == 7:
        try:
            seconds = Decimal(fields[0])
        except InvalidOperation:
            raise ValueError(f"time {fields[0]!r} is not a number of seconds") from None
        if not seconds.is_finite() or not 0 <= seconds < 9e9:
            raise ValueError(f"time {fields[0]!r} s is out of range")
        t_ns = int((seconds * 1_000_000_000).to_integral_value())
        fields = fields[1:]
    try:
        values = np.array([float(f) for f in fields])
    except ValueError:
        raise ValueError("gyro/accel values must be numbers") from None
    if not np.all(np.isfinite(values)):
        raise ValueError("gyro/accel values must be finite")
    return ImuReading(received_ns, t_ns, values[:3], values[3:])


class LineImuSource:
    """Base of the line readers: parses lines, counts malformed ones, hands readings to ``sink.on_imu()``."""

    name = "imu"

    def __init__(self):
        self.received = 0
        self.malformed = 0
        self.last_malformed: str | None = None
        self._sink = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink) -> None:
        """``sink`` has ``on_imu(reading)`` and ``on_status(level, text)``."""
        self._sink = sink
        self._thread = threading.Thread(target=self._run_safely, name=f"live-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict:
        return {"source": self.describe(), "lines": self.received, "malformed": self.malformed,
                "last_malformed": self.last_malformed}

    def describe(self) -> str:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a reader bug must surface as a status, not a silent dead thread
            self._sink.on_status("error", f"{self.describe()}: reader stopped: {exc}")

    def _handle_line(self, raw: bytes | str, received_ns: int) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            reading = parse_imu_line(text, received_ns)
        except ValueError as exc:
            self.malformed += 1
            self.last_malformed = text.strip()[:200]
            if self.malformed <= _MAX_REPORTED or self.malformed % 100 == 0:
                self._sink.on_status("warning", f"{self.describe()}: malformed IMU line #{self.malformed} skipped "
                                             f"({exc}): {self.last_malformed!r}")
            return
        if reading is not None:
            self.received += 1
            self._sink.on_imu(reading)


class UdpImuSource(LineImuSource):
    """Listens on ``host:port`` (port 0 picks a free one; see ``.port``) for IMU line datagrams."""

    def __init__(self, host: str = "0.0.0.0", port: int = 0):
        super().__init__()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # bursts while we are busy
        try:
            self.sock.bind((host, int(port)))
        except OSError as exc:
            self.sock.close()
            raise DataError(f"cannot listen for IMU lines on udp://{host}:{port}: {exc.strerror}",
                            field="--imu") from None
        self.sock.settimeout(0.2)  # lets the thread notice stop()
        self.host, self.port = host, self.sock.getsockname()[1]

    def describe(self) -> str:
        return f"udp://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                received_ns = time.time_ns()
                for line in data.splitlines():
                    self._handle_line(line, received_ns)
        finally:
            self.sock.close()


class SerialImuSource(LineImuSource):
    """Reads IMU lines from a serial port (pyserial); reopens it when the device goes away."""

    def __init__(self, port: str, baud: int = 115200):
        super().__init__()
        try:
            import serial  # noqa: F401  (pyserial: checked here, used in _open)
        except ImportError:
            raise DataError("serial IMU sources need pyserial (pip install pyserial)", field="--imu") from None
        self.port, self.baud = port, int(baud)
        self._serial = self._open()  # fail early and clearly when the port does not exist

    def describe(self) -> str:
        return f"serial://{self.port}@{self.baud}"

    def _open(self):
        import serial

        try:
            return serial.Serial(self.port, self.baud, timeout=0.2)
        except (serial.SerialException, OSError) as exc:
            raise DataError(f"cannot open serial port: {exc}", self.port, field="--imu") from None

    def _run(self) -> None:
        import serial

        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self._serial is None:
                    self._serial = self._open()
                    self._sink.on_status("info", f"{self.describe()}: reopened")
                    backoff = 0.2
                line = self._serial.readline()
                if line:
                    self._handle_line(line, time.time_ns())
            except (serial.SerialException, OSError, DataError) as exc:
                if self._serial is not None:
                    self._sink.on_status("warning", f"{self.describe()}: {exc}; reopening")
                    self._close()
                self._stop.wait(backoff)
                backoff = min(2 * backoff, 2.0)
        self._close()

    def _close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # noqa: BLE001  (closing a vanished device may fail; nothing to do)
                pass
            self._serial = None


def open_imu(spec: str) -> LineImuSource:
    """An IMU source from ``udp://HOST:PORT``, ``udp:PORT``, ``serial:///dev/ttyUSB0?baud=921600`` or a
    device path (``/dev/ttyACM0``, ``COM3``, optionally ``@BAUD``)."""
    text = spec.strip()
    if text.startswith("udp:"):
        rest = text[4:].lstrip("/")
        host, _, port = rest.rpartition(":")
        try:
            return UdpImuSource(host or "0.0.0.0", int(port))
        except ValueError:
            raise DataError(f"bad UDP address {spec!r}; expected udp://HOST:PORT or udp:PORT",
                            field="--imu") from None
    if text.startswith("realsense") or text.startswith("oak"):
        raise DataError(f"{spec!r}: RealSense/OAK IMUs come with their camera (--camera {text}); "
                        "leave --imu out", field="--imu")
    baud = 115200
    if text.startswith("serial:"):
        text = text[len("serial:"):].lstrip("/")
        text = "/" + text if not text.upper().startswith("COM") else text
        if "?baud=" in text:
            text, _, b = text.partition("?baud=")
            baud = b
    elif "@" in text:
        text, _, baud = text.rpartition("@")
    try:
        baud = int(baud)
    except ValueError:
        raise DataError(f"bad baud rate in {spec!r}", field="--imu") from None
    return SerialImuSource(text, baud)
