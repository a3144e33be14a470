"""``LiveSource``: camera and IMU reader threads merged into one message stream, like a recorded sequence.

The readers push into bounded queues; the estimator thread iterates :meth:`LiveSource.messages`, which
yields every IMU sample (never dropped) and each camera frame once the IMU has reached its stamp (bounded
wait), stereo images paired by stamp. When the estimator falls behind, a camera's queue (``frame_queue``
images) overflows and its oldest image is dropped and counted. IMU samples go out as soon as they arrive,
so a frame can follow IMU samples a few milliseconds newer than itself; frames and IMU samples are each in
time order.

Clocks. The stream runs on the IMU's clock: its sensor stamps, or the host receive time when its lines
carry none. Images with a sensor stamp (``X-Timestamp``, RealSense, OAK) are assumed to share the IMU
device's clock; images without one get their host receive time mapped onto the IMU clock through the
estimated offset ``host - IMU`` (:class:`~.clocks.ClockOffset`: the minimum of receive time minus sensor
time over a sliding window, i.e. the offset plus the smallest transport delay). Receive times carry every
delay on the way here (a late sender, a reader thread waiting for the CPU): prefer sensor stamps.
``time_offset_s`` is then added to every image stamp (``t_imu = t_cam + time_offset_s``; negative for a
camera that delivers late). :meth:`stats` reports the estimated offsets, and for sensor-stamped cameras how
much later than the IMU their images arrive: the ``time_offset_s`` to use if those stamps were missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from slam.messages import CameraFrame, ImageArray, ImuSample, Message

from .camera import RawFrame
from .clocks import ClockOffset

log = logging.getLogger("slam.live")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True, eq=False)
class LiveFrame(CameraFrame):
    """A camera frame from a live source: images in memory, plus when cam0's image reached this host."""

    received_ns: int = 0  # host receive time of cam0's image (time.time_ns()), for capture-to-pose latency


class LiveSource:
    """Merge camera sources (cam0 first) and an optional IMU source into one time-ordered message stream.

    ``image_sizes``: expected (width, height) per camera (from the calibration); a mismatch ends the stream
    with a clear reason instead of failing deep in the tracker.
    """

    def __init__(self, cameras: Sequence, imu=None, *, time_offset_s: float = 0.0, frame_queue: int = 2,
                 imu_wait_s: float = 0.2, imu_silence_s: float = 0.5, give_up_s: float = 10.0,
                 stereo_tolerance_s: float = 0.015, image_sizes: Sequence[tuple[int, int]] | None = None):
        if not cameras:
            raise ValueError("a live source needs at least one camera")
        self.cameras, self.imu = list(cameras), imu
        self.time_offset_ns = int(round(time_offset_s * 1e9))
        self.imu_wait_ns = int(imu_wait_s * 1e9)
        self.imu_silence_s, self.give_up_s = imu_silence_s, give_up_s
        self.stereo_tolerance_ns = int(stereo_tolerance_s * 1e9)
        self.image_sizes = list(image_sizes) if image_sizes else None
        self._cond = threading.Condition()
        self._index = {id(c): i for i, c in enumerate(self.cameras)}
        # cam0's queue decides what is dropped (and why); partner queues have slack so that they do not
        # overflow first and turn a drop into an unpaired image
        self._frames = [deque(maxlen=max(1, frame_queue) + (2 if i else 0)) for i in range(len(self.cameras))]
        self._imu: deque = deque()
        self.imu_capacity = 100_000  # ~8 min at 200 Hz: only a stalled estimator fills it (then we stop)
        self.imu_clock = ClockOffset()
        self.camera_clocks = [ClockOffset() for _ in self.cameras]
        self.events: deque[str] = deque(maxlen=200)
        self.ended: str | None = None  # why the stream ended (None while running)
        self.failed = False  # ended because something broke, not by request or end of file
        self.counts = dict(frames_received=0, frames_delivered=0, dropped_behind=0, dropped_no_imu=0,
                           dropped_unpaired=0, dropped_out_of_order=0, frames_without_imu=0, imu_samples=0,
                           imu_out_of_order=0)
        self._last_imu_t: int | None = None  # newest IMU stamp handed out
        self._newest_imu_t: int | None = None  # newest IMU stamp received (may still be queued)
        self._last_imu_rx: float | None = None  # time.monotonic()
        self._imu_silent_since: float | None = None
        self._last_frame_t: int | None = None
        self.last_received_ns = 0  # host receive time of the last image delivered (for status lines)
        self._warned_late_imu = False
        self._started_s: float | None = None
        self._halted = False

    # ------------------------------------------------------------------ lifecycle
    def describe(self) -> str:
        parts = [f"cam{i}={c.spec}" for i, c in enumerate(self.cameras)]
        if self.imu is not None:
            parts.append(f"imu={self.imu.describe()}")
        return "live: " + ", ".join(parts)

    @property
    def path(self) -> str:  # what result files name as the sequence
        return self.describe()

    def start(self) -> None:
        if self._started_s is not None:
            return
        self._started_s = time.monotonic()
        if self.imu is not None:  # listen first: the IMU must be there when the first images arrive
            self.imu.start(self)
        for camera in self.cameras:
            camera.start(self)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every reader thread (each join bounded by ``timeout``)."""
        self._halted = True
        for source in self._sources():
            source.stop(timeout)

    def _sources(self) -> list:
        return [*self.cameras, *([self.imu] if self.imu is not None else [])]

    # ------------------------------------------------------------------ called by the reader threads
    def on_frame(self, camera, raw: RawFrame) -> None:
        i = self._index[id(camera)]
        with self._cond:
            if self._halted:
                return  # arrived after the stop request: not part of this run
            queue = self._frames[i]
            if len(queue) == queue.maxlen:
                dropped = queue.popleft()
                if i == 0:  # waiting for IMU that is not there, or the estimator did not take it in time
                    self.counts["dropped_no_imu" if self._needs_imu(dropped) else "dropped_behind"] += 1
            queue.append(raw)
            if raw.t_sensor_ns is not None:
                self.camera_clocks[i].add(raw.received_ns, raw.t_sensor_ns)
            if i == 0:
                self.counts["frames_received"] += 1
            self._cond.notify()

    def on_imu(self, reading) -> None:
        with self._cond:
            if self._halted:
                return
            if len(self._imu) >= self.imu_capacity:
                self._end(f"IMU queue full ({self.imu_capacity} samples): the estimator stalled", failed=True)
                return
            self._imu.append(reading)
            if reading.t_sensor_ns is not None:
                self.imu_clock.add(reading.received_ns, reading.t_sensor_ns)
            self._newest_imu_t = max(self._imu_time(reading), self._newest_imu_t or 0)
            self._last_imu_rx = time.monotonic()
            if self._imu_silent_since is not None:
                self._event("info", f"IMU back after {self._last_imu_rx - self._imu_silent_since:.1f} s of "
                                    "silence")
                self._imu_silent_since = None
            self._cond.notify()

    def on_status(self, level: str, text: str) -> None:
        with self._cond:
            self._event(level, text)
            self._cond.notify()

    def _event(self, level: str, text: str) -> None:
        log.log(_LEVELS.get(level, logging.INFO), "%s", text)
        self.events.append(f"{time.strftime('%H:%M:%S')} {level}: {text}")

    def _end(self, reason: str, failed: bool) -> None:
        if self.ended is None:
            self.ended, self.failed = reason, failed
            self._event("error" if failed else "info", f"live stream ends: {reason}")

    # ------------------------------------------------------------------ the merged stream
    def messages(self, stop: threading.Event | None = None) -> Iterator[Message]:
        """IMU samples and camera frames until ``stop`` is set, the sources end, or one fails for good."""
        self.start()
        stop = stop or threading.Event()
        while True:
            if stop.is_set() and not self._halted:
                with self._cond:
                    self._halted = True
                for source in self._sources():
                    source.stop(0)  # no new data; what is queued still goes out
            out: list[Message] = []
            with self._cond:
                if not self._halted:
                    self._watch()
                draining = self._halted or self.ended is not None
                self._take_imu(out)
                frame = self._next_frame(draining)
                if frame is not None:
                    out.append(frame)
                elif not out:
                    if draining:
                        break
                    self._cond.wait(0.05)
                    continue
            yield from out

    def _watch(self) -> None:
        """Health checks: failed or stuck cameras, the end of video files, a silent IMU."""
        now = time.monotonic()
        for camera in self.cameras:
            last = camera.last_frame_s if camera.last_frame_s is not None else self._started_s
            limit = camera.give_up_s + 2 * camera.read_timeout_s + camera.open_timeout_s + 1.0
            if camera.failed is None and not camera.finished and now - last > limit:
                camera.failed = f"{camera.describe()}: no frame for {now - last:.0f} s (reader stuck)"
                self._event("error", camera.failed)
            if camera.failed is not None:
                self._end(camera.failed, failed=True)
        if all(camera.finished for camera in self.cameras):
            self._end("end of the video", failed=False)
        if self.imu is not None:
            silent = now - (self._last_imu_rx if self._last_imu_rx is not None else self._started_s)
            if silent > self.imu_silence_s and self._imu_silent_since is None:
                self._imu_silent_since = now - silent
                self._event("warning", f"IMU ({self.imu.describe()}) silent for {silent:.1f} s: images are "
                                       "dropped until it returns")
            if silent > self.give_up_s:
                self._end(f"IMU ({self.imu.describe()}) silent for {silent:.0f} s", failed=True)

    def _imu_time(self, reading) -> int:
        if reading.t_sensor_ns is not None:
            return reading.t_sensor_ns
        offset = self.imu_clock.offset_ns  # a stamp-less line from a stamped IMU: map host -> IMU clock
        return reading.received_ns - (offset or 0)

    def _frame_time(self, i: int, raw: RawFrame) -> int | None:
        """The image stamp on the stream's (IMU) clock; None while that clock is not known yet."""
        imu_stamped = self.imu_clock.samples > 0
        if raw.t_sensor_ns is not None:
            if self.imu is None or imu_stamped:
                t = raw.t_sensor_ns  # one device, one clock
            else:
                t = raw.t_sensor_ns + self.camera_clocks[i].offset_ns  # IMU on host time: image to host
        elif imu_stamped:
            t = raw.received_ns - self.imu_clock.offset_ns
        elif self.imu is not None and self._newest_imu_t is None:
            return None  # no IMU line yet: its clock is unknown
        else:
            t = raw.received_ns
        return t + self.time_offset_ns

    def host_time_ns(self, t_ns: int) -> int:
        """A stream stamp (IMU clock) on the host clock: for an image, its capture instant as this host saw it
        (for sensor-stamped images that includes transport; only the IMU's smallest delay is not counted)."""
        offset = self.imu_clock.offset_ns
        return t_ns + offset if offset is not None else t_ns

    def _needs_imu(self, raw: RawFrame, t_ns: int | None = None) -> bool:
        """Whether the IMU has not reached this image's stamp yet."""
        if self.imu is None:
            return False
        t_ns = self._frame_time(0, raw) if t_ns is None else t_ns
        return t_ns is None or self._newest_imu_t is None or self._newest_imu_t < t_ns

    def _take_imu(self, out: list) -> None:
        while self._imu:
            reading = self._imu.popleft()
            t_ns = self._imu_time(reading)
            if self._last_imu_t is not None and t_ns <= self._last_imu_t:
                self.counts["imu_out_of_order"] += 1  # the estimator's buffer could not use it either
                continue
            self._last_imu_t = t_ns
            self.counts["imu_samples"] += 1
            out.append(ImuSample(t_ns, reading.gyro, reading.accel))

    def _next_frame(self, draining: bool) -> LiveFrame | None:
        now_ns = time.time_ns()
        cam0 = self._frames[0]
        while cam0:
            first = cam0[0]
            t_ns = self._frame_time(0, first)
            waited = now_ns - first.received_ns
            if t_ns is None:
                if waited < self.imu_wait_ns and not draining:
                    return None
                cam0.popleft()
                self.counts["dropped_no_imu"] += 1
                continue
            partners = self._partners(t_ns, waited, draining)
            if partners is None:
                return None  # a partner image is still on its way
            if partners is False:
                cam0.popleft()
                self.counts["dropped_unpaired"] += 1
                continue
            if self._needs_imu(first, t_ns):
                if waited < self.imu_wait_ns and not draining:
                    return None  # hold the image until the IMU reaches its stamp
                quiet = self._last_imu_rx is None or time.monotonic() - self._last_imu_rx > self.imu_wait_ns * 1e-9
                if draining or quiet:  # an IMU gap: without its motion the image is of no use
                    self._pop(partners)
                    self.counts["dropped_no_imu"] += 1
                    continue
                self.counts["frames_without_imu"] += 1  # IMU flowing but late: go on, it extrapolates
                if not self._warned_late_imu:
                    self._warned_late_imu = True
                    self._event("warning", f"IMU lags the images by more than {self.imu_wait_ns / 1e6:.0f} ms; "
                                           "check the clocks or --time-offset")
            self._pop(partners)
            if self._last_frame_t is not None and t_ns <= self._last_frame_t:
                self.counts["dropped_out_of_order"] += 1
                continue
            images = (first, *partners)
            if not self._sizes_ok(images):
                return None
            self._last_frame_t = t_ns
            self.last_received_ns = first.received_ns
            index = self.counts["frames_delivered"]
            self.counts["frames_delivered"] += 1
            return LiveFrame(t_ns, tuple(ImageArray(r.image) for r in images), index=index,
                             received_ns=first.received_ns)
        return None

    def _partners(self, t_ns: int, waited: int, draining: bool):
        """The other cameras' images within the stereo tolerance of ``t_ns``: a list, None (wait) or False
        (cam0's image has no partner and is dropped)."""
        partners = []
        for i in range(1, len(self.cameras)):
            queue = self._frames[i]
            while queue and (self._frame_time(i, queue[0]) or 0) < t_ns - self.stereo_tolerance_ns:
                queue.popleft()  # too old for any cam0 image still to come
            if not queue:
                return False if draining or waited > max(self.imu_wait_ns, 100_000_000) else None
            t_i = self._frame_time(i, queue[0])
            if t_i is None or t_i > t_ns + self.stereo_tolerance_ns:
                return False
            partners.append(queue[0])
        return partners

    def _pop(self, partners) -> None:
        self._frames[0].popleft()
        for i in range(1, len(partners) + 1):
            self._frames[i].popleft()

    def _sizes_ok(self, images) -> bool:
        if self.image_sizes is None:
            return True
        for i, (raw, (width, height)) in enumerate(zip(images, self.image_sizes)):
            if raw.image.shape[:2] != (height, width):
                self._end(f"{self.cameras[i].describe()} delivers {raw.image.shape[1]}x{raw.image.shape[0]} "
                          f"images but the calibration is for {width}x{height}", failed=True)
                return False
        return True

    # ------------------------------------------------------------------ report
    def stats(self) -> dict:
        with self._cond:
            counts = dict(self.counts)
            counts["dropped_frames"] = (counts["dropped_behind"] + counts["dropped_no_imu"]
                                        + counts["dropped_unpaired"] + counts["dropped_out_of_order"])
            imu_clock = self.imu_clock.summary()
            cameras = []
            for camera, clock in zip(self.cameras, self.camera_clocks):
                info = {**camera.stats(), "stamps": "sensor" if clock.samples else "host receive time"}
                summary = clock.summary()
                if summary is not None:
                    info["clock"] = summary
                    if imu_clock is not None:  # how much later than the IMU its images arrive
                        info["arrives_after_imu_ms"] = round((clock.offset_ns - self.imu_clock.offset_ns) * 1e-6, 3)
                cameras.append(info)
            return {**counts, "time_offset_s": self.time_offset_ns * 1e-9,
                    "imu_stamps": "sensor" if self.imu_clock.samples else ("host receive time" if self.imu else None),
                    "imu_clock": imu_clock, "imu": self.imu.stats() if self.imu is not None else None,
                    "cameras": cameras, "ended": self.ended, "failed": self.failed, "events": list(self.events)}
