"""Live camera sources: one reader thread per camera that reconnects with backoff and never hangs.

``CameraSource(spec)`` reads
- ``http://`` / ``https://`` MJPEG streams (``multipart/x-mixed-replace``) with its own small reader: OpenCV's
  ``VideoCapture`` decodes such streams too, but it hides the part headers, so a sensor stamp sent in an
  ``X-Timestamp`` header (mjpg-streamer, ``slam replay``) would be lost, and its HTTP timeouts depend on
  the FFmpeg build. Prefix ``opencv:`` (``opencv:http://...``) to use ``VideoCapture`` anyway.
- everything else through ``cv2.VideoCapture``: a device index (``0``), a V4L2 path (``/dev/video0``),
  a video file (played at its frame rate; its end ends the stream) and ``rtsp://`` URLs (open and read
  timeouts set through ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC``).

Frames are grayscale ``uint8`` with the host receive time (``time.time_ns()``) and the sensor stamp when
the source has one. A stream that stops is reopened with backoff (0.2 s doubling to 2 s); after
``give_up_s`` without a frame the source fails with a clear reason. A read stuck inside OpenCV cannot be
interrupted, so :class:`LiveSource`'s watchdog also fails a camera whose ``last_frame_s`` is too old.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

log = logging.getLogger("slam.live")


@dataclass(frozen=True)
class RawFrame:
    """One image as received: host receive time, sensor stamp (None when the source has none), gray image."""

    received_ns: int
    t_sensor_ns: int | None
    image: np.ndarray


class CameraError(Exception):
    """A stream could not be opened or stopped delivering (the reader retries)."""


def source_kind(spec: str) -> str:
    """``http`` (own MJPEG reader), ``network`` (VideoCapture URL), ``device`` or ``file``."""
    low = spec.lower()
    if low.startswith(("http://", "https://")):
        return "http"
    if low.startswith("opencv:") or "://" in low:
        return "network"
    if spec.isdigit() or spec.startswith("/dev/"):
        return "device"
    return "file"


class CameraSource:
    """A camera reader thread; frames and status messages go to ``sink.on_frame(self, raw)`` / ``sink.on_status``."""

    def __init__(self, spec: str, name: str = "cam0", open_timeout_s: float = 3.0, read_timeout_s: float = 2.0,
                 give_up_s: float = 10.0, use_sensor_stamps: bool = True):
        self.spec, self.name, self.kind = str(spec), name, source_kind(str(spec))
        self.open_timeout_s, self.read_timeout_s, self.give_up_s = open_timeout_s, read_timeout_s, give_up_s
        self.use_sensor_stamps = use_sensor_stamps
        self.frames = 0
        self.corrupt = 0
        self.reconnects = 0
        self.last_frame_s: float | None = None  # time.monotonic() of the last frame
        self.finished = False  # a video file reached its end
        self.failed: str | None = None  # why the source gave up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sink = None

    def describe(self) -> str:
        return f"{self.name} ({self.spec})"

    def start(self, sink) -> None:
        self._sink = sink
        if self.kind == "file" and not Path(self.spec).is_file():
            self.failed = f"{self.describe()}: video file not found"
            sink.on_status("error", self.failed)
            return
        self._thread = threading.Thread(target=self._run_safely, name=f"live-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)  # a thread stuck in OpenCV is a daemon and is left behind

    def stats(self) -> dict:
        return {"source": self.spec, "frames": self.frames, "corrupt": self.corrupt,
                "reconnects": self.reconnects, "failed": self.failed}

    # ------------------------------------------------------------------ reader thread
    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a reader bug must end the run with a reason, not leave it waiting
            self.failed = f"{self.describe()}: reader stopped: {exc!r}"
            self._sink.on_status("error", self.failed)

    def _run(self) -> None:
        backoff = 0.2
        waiting_since = time.monotonic()  # since start, or since the stream was lost
        connected_once = False
        reported = False
        while not self._stop.is_set():
            stream = None
            try:
                stream = self._open()
                for raw in stream.frames(self._stop):
                    if waiting_since is not None:
                        if connected_once:
                            self.reconnects += 1
                            self._sink.on_status("info", f"{self.describe()}: stream back after "
                                                      f"{time.monotonic() - waiting_since:.1f} s")
                        else:
                            self._sink.on_status("info", f"{self.describe()}: connected")
                        waiting_since, connected_once, reported, backoff = None, True, False, 0.2
                    self.frames += 1
                    self.last_frame_s = time.monotonic()
                    self._sink.on_frame(self, raw)
                if self._stop.is_set():
                    break
                if self.kind == "file":
                    self.finished = True
                    self._sink.on_status("info", f"{self.describe()}: end of video file")
                    return
                raise CameraError("stream ended")
            except CameraError as exc:
                reason = str(exc)
            finally:
                if stream is not None:
                    self.corrupt += getattr(stream, "corrupt", 0)
                    stream.close()
            if self._stop.is_set():
                break
            now = time.monotonic()
            if waiting_since is None:
                waiting_since = now
            if not reported:
                what = "stream lost" if connected_once else "cannot connect"
                self._sink.on_status("warning", f"{self.describe()}: {what}: {reason}; retrying for up to "
                                             f"{self.give_up_s:g} s")
                reported = True
            if now - waiting_since > self.give_up_s:
                what = "no frames" if connected_once else "never answered"
                self.failed = f"{self.describe()}: {what} for {self.give_up_s:g} s ({reason})"
                self._sink.on_status("error", self.failed)
                return
            self._stop.wait(backoff)
            backoff = min(2 * backoff, 2.0)

    def _open(self):
        if self.kind == "http":
            return MjpegHttpStream(self.spec, self.open_timeout_s, self.read_timeout_s, self.use_sensor_stamps)
        return OpenCvStream(self.spec, self.kind, self.open_timeout_s, self.read_timeout_s)


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    return image


def parse_stamp_seconds(text: str) -> int | None:
    """Nanoseconds from a decimal-seconds header value (``1403636579.763555527``), None when unparsable."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or not 0 <= value < 9e9:
        return None
    return int((value * 1_000_000_000).to_integral_value())


class MjpegHttpStream:
    """An MJPEG-over-HTTP stream read with ``http.client``; every socket operation has a timeout."""

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float, use_sensor_stamps: bool = True):
        parts = urlsplit(url)
        if not parts.hostname:
            raise CameraError(f"no host in URL {url!r}")
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = connection(parts.hostname, parts.port, timeout=open_timeout_s)
        self.use_sensor_stamps = use_sensor_stamps
        self.corrupt = 0
        self._boundary_read = False
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            self.conn.request("GET", path, headers={"Accept": "multipart/x-mixed-replace, image/jpeg"})
            sock = self.conn.sock  # kept: an HTTP/1.0 response detaches it from the connection
            self.resp = self.conn.getresponse()
        except (socket.timeout, TimeoutError):
            self.close()
            raise CameraError(f"no answer within {open_timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise CameraError(getattr(exc, "strerror", None) or repr(exc)) from None
        if self.resp.status != 200:
            self.close()
            raise CameraError(f"HTTP {self.resp.status} {self.resp.reason}")
        content_type = self.resp.getheader("Content-Type", "")
        match = re.search(r'boundary="?([^";,]+)"?', content_type)
        if "multipart" not in content_type.lower() or not match:
            self.close()
            raise CameraError(f"not an MJPEG stream (Content-Type {content_type!r})")
        self.boundary = b"--" + match.group(1).strip().removeprefix("--").encode()
        sock.settimeout(read_timeout_s)
        self.read_timeout_s = read_timeout_s

    def close(self) -> None:
        if getattr(self, "resp", None) is not None:
            self.resp.close()
        self.conn.close()

    def frames(self, stop: threading.Event):
        import cv2

        try:
            while not stop.is_set():
                headers = self._part_headers()
                if headers is None:
                    return
                length = headers.get("content-length")
                data = self.resp.read(int(length)) if length and length.isdigit() else self._until_boundary()
                if length and length.isdigit() and len(data) < int(length):
                    return  # connection closed mid-part
                received_ns = time.time_ns()
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    self.corrupt += 1
                    continue
                stamp = headers.get("x-timestamp")
                t_sensor = parse_stamp_seconds(stamp) if stamp and self.use_sensor_stamps else None
                yield RawFrame(received_ns, t_sensor, image)
        except (socket.timeout, TimeoutError):
            raise CameraError(f"no data for {self.read_timeout_s:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise CameraError(f"stream broken: {exc!r}") from None

    def _part_headers(self) -> dict[str, str] | None:
        """Headers of the next part, None at the end of the stream."""
        while not self._boundary_read:
            line = self.resp.readline()
            if not line:
                return None
            if line.startswith(self.boundary):
                if line.rstrip().endswith(b"--") and line.rstrip() != self.boundary:
                    return None  # closing boundary
                break
        self._boundary_read = False
        headers = {}
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                return headers
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()

    def _until_boundary(self) -> bytes:
        """A part without Content-Length: everything up to the next boundary line."""
        chunks = []
        while True:
            line = self.resp.readline()
            if not line or line.startswith(self.boundary):
                self._boundary_read = bool(line)
                break
            chunks.append(line)
        return b"".join(chunks).removesuffix(b"\r\n")


class OpenCvStream:
    """``cv2.VideoCapture`` on a device, file or network URL; video files play at their frame rate."""

    def __init__(self, spec: str, kind: str, open_timeout_s: float, read_timeout_s: float):
        import cv2

        self.kind = kind
        target = spec.removeprefix("opencv:")
        if kind == "device":
            source = int(target) if target.isdigit() else target
            self.cap = cv2.VideoCapture(source)  # V4L2 refuses open() parameters it does not know
        elif kind == "network":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
            self.cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        else:
            self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            raise CameraError("OpenCV VideoCapture cannot open it")
        fps = self.cap.get(cv2.CAP_PROP_FPS) if kind == "file" else 0.0
        self.period_s = 1.0 / fps if fps and 0 < fps < 1000 else (1 / 30 if kind == "file" else 0.0)

    def close(self) -> None:
        self.cap.release()

    def frames(self, stop: threading.Event):
        start, n = time.monotonic(), 0
        while not stop.is_set():
            if self.period_s:  # a file plays in real time, like a camera
                stop.wait(max(0.0, start + n * self.period_s - time.monotonic()))
            if not self.cap.grab():
                if self.kind == "file":
                    return
                raise CameraError("no frame (read failed or timed out)")
            received_ns = time.time_ns()
            ok, image = self.cap.retrieve()
            if not ok or image is None:
                raise CameraError("frame could not be decoded")
            n += 1
            yield RawFrame(received_ns, None, _gray(image))
