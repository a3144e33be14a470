"""Serve a recorded ASL sequence as if it were live: each camera as an MJPEG-over-HTTP stream (``/cam0``,
``/cam1``) and the IMU as UDP lines (:mod:`slam.datasets.live.imu` format), at the recorded pace.

Each JPEG part carries the image's sequence stamp in an ``X-Timestamp`` header (decimal seconds, as
mjpg-streamer does), and each IMU line its stamp, so a live run can use sensor stamps (or ignore the
header to exercise host-time stamping). The replay clock starts when every camera stream has a client,
so nothing is missed while the receiver connects; ``start_on_connect=False`` starts at once. With
``loop`` the sequence repeats with stamps that keep increasing (for long memory/latency tests). Images are
read and JPEG-encoded just ahead of their time (~12 ms of CPU per stereo frame), or all before the start
with ``preload`` (like a real camera, the replay then takes almost no CPU from the receiver's cores).

Fault hooks for tests: :meth:`Replayer.pause_cameras` (streams stall or drop), :meth:`silence_imu`,
:meth:`send_raw_imu` (e.g. malformed lines).
"""

from __future__ import annotations

import logging
import queue
from collections import deque
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from slam.messages import CameraFrame, DataError, ImuSample
from slam.parsing import format_seconds

log = logging.getLogger(__name__)

BOUNDARY = "slamframe"


class _Slot:
    """The last few JPEGs of one camera; HTTP handlers wait on it. A handler that falls behind by a frame or
    two (its thread got no time) still sends every frame; one further behind skips to the newest ones."""

    def __init__(self, backlog: int = 8):
        self.cond = threading.Condition()
        self.seq = 0
        self.recent: deque[tuple[int, int, bytes]] = deque(maxlen=backlog)  # (seq, t_ns, jpeg)
        self.clients = 0


def parse_host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` -> (host, port); DataError naming the value otherwise."""
    host, _, port = str(text).rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise DataError(f"expected HOST:PORT, got {text!r}", field="address") from None


class Replayer:
    """Replay ``sequence_dir`` over loopback; use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, sequence_dir: str | Path, speed: float = 1.0, http_port: int = 0,
                 imu_udp: tuple[str, int] | str | None = None, host: str = "127.0.0.1", loop: bool = False,
                 seconds: float | None = None, jpeg_quality: int = 95, start_on_connect: bool = True,
                 timestamps: bool = True, preload: bool = False):
        from slam.datasets import open_sequence

        if not speed > 0:
            raise DataError(f"speed must be positive, got {speed}", field="speed")
        self.sequence = open_sequence(sequence_dir)
        self.speed, self.loop, self.seconds = float(speed), loop, seconds
        self.jpeg_quality, self.start_on_connect, self.timestamps = int(jpeg_quality), start_on_connect, timestamps
        # preload: every image encoded before the server listens (memory: ~150 kB per stereo frame)
        self._cache: list | None = list(self._lap()) if preload else None
        self.imu_address = parse_host_port(imu_udp) if isinstance(imu_udp, str) else imu_udp
        self.n_cameras = len(self.sequence.calibration.cameras)
        self.slots = [_Slot() for _ in range(self.n_cameras)]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._server = ThreadingHTTPServer((host, int(http_port)), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.http_port = host, self._server.server_address[1]
        self._stop = threading.Event()
        self.finished = threading.Event()  # the sequence has been sent (not set while looping)
        self.started = threading.Event()  # the replay clock runs
        self._threads: list[threading.Thread] = []
        self._pause_until = 0.0
        self._pause_mode = "stall"
        self._silent_until = 0.0
        self.sent = {"frames": 0, "imu": 0, "late_ms_max": 0.0}
        self.send_wall: dict[int, float] = {}  # frame stamp -> time.time() it was published (latency checks)

    # ------------------------------------------------------------------ lifecycle
    @property
    def urls(self) -> list[str]:
        return [f"http://{self.host}:{self.http_port}/cam{i}" for i in range(self.n_cameras)]

    def start(self) -> Replayer:
        prepared: queue.Queue = queue.Queue(maxsize=64)
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                          name="replay-http", daemon=True),
                         threading.Thread(target=self._prepare, args=(prepared,), name="replay-encode",
                                          daemon=True),
                         threading.Thread(target=self._send, args=(prepared,), name="replay-clock", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for slot in self.slots:
            with slot.cond:
                slot.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(2.0)
        self._udp.close()

    def __enter__(self) -> Replayer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the whole sequence was sent (or ``timeout``); True when it was."""
        return self.finished.wait(timeout)

    # ------------------------------------------------------------------ fault hooks
    def pause_cameras(self, seconds: float, mode: str = "stall") -> None:
        """Camera streams stop for ``seconds``: ``stall`` keeps connections open but silent; ``drop`` closes
        them and answers new requests with 503 until the pause ends."""
        self._pause_mode = mode
        self._pause_until = time.monotonic() + seconds

    def silence_imu(self, seconds: float) -> None:
        """No IMU lines for ``seconds`` (the samples of that time are lost, as with a cable pulled)."""
        self._silent_until = time.monotonic() + seconds

    def send_raw_imu(self, text: str) -> None:
        if self.imu_address is not None:
            self._udp.sendto(text.encode(), self.imu_address)

    # ------------------------------------------------------------------ threads
    def _lap(self):
        """One pass over the sequence: (t_ns, JPEGs) per frame and (t_ns, "gx,gy,gz,ax,ay,az") per IMU sample."""
        import cv2

        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        first = None
        for message in self.sequence.messages():
            first = message.t_ns if first is None else first
            if self.seconds is not None and message.t_ns - first > self.seconds * 1e9:
                return
            if isinstance(message, CameraFrame):
                yield message.t_ns, [cv2.imencode(".jpg", image.load(), params)[1].tobytes()
                                     for image in message.images]
            elif isinstance(message, ImuSample):
                yield message.t_ns, ",".join(repr(float(v)) for v in (*message.gyro, *message.accel))

    def _prepare(self, out: queue.Queue) -> None:
        """Encode ahead of the send time (or take the preloaded lap); laps shift the stamps so they keep
        increasing."""
        shift, lap = 0, 0
        try:
            while not self._stop.is_set():
                first = last = None
                for t_ns, payload in (self._cache if self._cache is not None else self._lap()):
                    first = t_ns if first is None else first
                    last = t_ns
                    while not self._stop.is_set():
                        try:
                            out.put((t_ns + shift, payload), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
                if not self.loop or first is None:
                    return
                lap += 1
                shift += last - first + 5_000_000  # the next lap starts one IMU period after the last stamp
                log.info("replay lap %d", lap)
        finally:
            out.put(None)

    def _send(self, prepared: queue.Queue) -> None:
        if self.start_on_connect:
            while not self._stop.is_set() and not all(slot.clients for slot in self.slots):
                time.sleep(0.01)
        self.started.set()
        start_wall, t0 = time.monotonic(), None
        while not self._stop.is_set():
            item = prepared.get()
            if item is None:
                break
            t_ns, payload = item
            t0 = t_ns if t0 is None else t0
            due = start_wall + (t_ns - t0) * 1e-9 / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                self.sent["late_ms_max"] = max(self.sent["late_ms_max"], -1000 * delay)
            if isinstance(payload, list):
                self._publish(t_ns, payload)
            elif self.imu_address is not None and time.monotonic() >= self._silent_until:
                self._udp.sendto(f"{format_seconds(t_ns)},{payload}\n".encode(), self.imu_address)
                self.sent["imu"] += 1
        if not self._stop.is_set():
            self.finished.set()

    def _publish(self, t_ns: int, jpegs: list[bytes]) -> None:
        self.send_wall[t_ns] = time.time()
        if len(self.send_wall) > 10_000:  # bounded for long looped replays
            self.send_wall.pop(next(iter(self.send_wall)))
        for slot, jpeg in zip(self.slots, jpegs):
            with slot.cond:
                slot.seq += 1
                slot.recent.append((slot.seq, t_ns, jpeg))
                slot.cond.notify_all()
        self.sent["frames"] += 1

    def _paused(self) -> bool:
        return time.monotonic() < self._pause_until

    # ------------------------------------------------------------------ HTTP
    def _handler_class(self):
        replayer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"
            timeout = 10  # a client that stops reading cannot block its thread forever

            def log_message(self, format, *args):  # noqa: A002  (quiet: no line per request on stderr)
                log.debug("replay http: " + format, *args)

            def do_GET(self):  # noqa: N802
                path = self.path.rstrip("/")
                names = [f"/cam{i}" for i in range(replayer.n_cameras)]
                if path not in names:
                    body = ("MJPEG streams: " + ", ".join(names) + "\n").encode()
                    self.send_response(404 if path else 200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if replayer._paused() and replayer._pause_mode == "drop":
                    self.send_error(503, "camera paused")
                    return
                replayer._stream(self, replayer.slots[names.index(path)])

        return Handler

    def _stream(self, handler: BaseHTTPRequestHandler, slot: _Slot) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        with slot.cond:
            slot.clients += 1
            seen = slot.seq
        try:
            while not self._stop.is_set():
                with slot.cond:
                    slot.cond.wait_for(lambda: slot.seq != seen or self._stop.is_set(), timeout=0.5)
                    if slot.seq == seen:
                        if self.finished.is_set():
                            return
                        continue
                    new = [item for item in slot.recent if item[0] > seen]
                    seen = slot.seq
                if self._paused():
                    if self._pause_mode == "drop":
                        return
                    continue  # stall: the connection stays open, nothing arrives
                for _, t_ns, jpeg in new:
                    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                            + (f"X-Timestamp: {format_seconds(t_ns)}\r\n" if self.timestamps else "") + "\r\n")
                    handler.wfile.write(head.encode() + jpeg + b"\r\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with slot.cond:
                slot.clients -= 1
