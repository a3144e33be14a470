"""ROS bags (ROS1 ``.bag``, ROS2 folders with sqlite3 ``.db3`` or mcap) with a Kalibr calibration.

Read through ``rosbags.highlevel.AnyReader`` in one lazy pass. Stamps come from ``header.stamp``
(sensor time), not the bag's receive time; as the two orders differ, messages go through a small
reorder buffer before the per-stream stamp checks. cam0/cam1 images within ``stereo_tolerance_s``
of each other become one stereo :class:`CameraFrame`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from slam.calibration_io import kalibr_topics, read_kalibr_camchain, read_kalibr_imu
from slam.datasets.base import Sequence
from slam.messages import (Calibration, CameraFrame, DataError, EncodedImage, ImageArray, ImageSource,
                           ImuSample, Message)
from slam.parsing import load_yaml

IMU_TYPE = "sensor_msgs/msg/Imu"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
_IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

# Raw encodings we turn into gray uint8: (dtype, channels, OpenCV conversion to gray or None).
_ENCODINGS = {"mono8": ("u1", 1, None), "8UC1": ("u1", 1, None), "mono16": ("u2", 1, None),
              "16UC1": ("u2", 1, None), "bgr8": ("u1", 3, "COLOR_BGR2GRAY"), "rgb8": ("u1", 3, "COLOR_RGB2GRAY"),
              "bgra8": ("u1", 4, "COLOR_BGRA2GRAY"), "rgba8": ("u1", 4, "COLOR_RGBA2GRAY")}

_DROPPED = object()  # marks a left image that found no right partner


class RosbagSequence(Sequence):
    """A ROS1/ROS2 bag with Image/CompressedImage cameras (mono or stereo) and an Imu topic."""

    format_name = "ROS bag"

    def __init__(self, path: str | Path, calib: str | Path, imu_calib: str | Path | None = None,
                 image_topics: list[str] | None = None, imu_topic: str | None = None,
                 stereo_tolerance_s: float = 0.002, reorder_window_s: float = 0.5):
        super().__init__(path)
        if not self.path.exists():
            raise DataError("bag not found", self.path)
        self.stereo_tolerance_ns = round(stereo_tolerance_s * 1e9)
        self.reorder_window_ns = round(reorder_window_s * 1e9)
        self.reorder_window_s = reorder_window_s

        cameras = read_kalibr_camchain(calib)
        imu = read_kalibr_imu(imu_calib) if imu_calib else None
        has_extrinsics = any(isinstance(v, dict) and "T_cam_imu" in v for v in load_yaml(calib).values())
        if imu is None and has_extrinsics:
            self.warn(f"{calib}: has T_cam_imu but no IMU calibration (imu_calib) was given; the IMU noise "
                      f"parameters are missing, so calibration.imu is None")

        with self._open() as reader:
            self.topics = {name: info.msgtype for name, info in reader.topics.items()}
            self._counts = {name: info.msgcount for name, info in reader.topics.items()}

        self.image_topics = self._pick_image_topics(image_topics, calib, len(cameras))
        self.imu_topic = self._pick_imu_topic(imu_topic, imu_calib, expect_imu=imu is not None or has_extrinsics)
        if imu_calib and self.imu_topic is None:
            raise DataError(f"an IMU calibration was given but the bag has no {IMU_TYPE} topic; topics:\n"
                            f"{self._topic_list()}", self.path)
        self._calibration = Calibration(cameras[:len(self.image_topics)], imu)

    @property
    def calibration(self) -> Calibration:
        return self._calibration

    # ------------------------------------------------------------------------------- topic choice

    @contextmanager
    def _open(self):
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.rosbag1 import ReaderError as ReaderError1
        from rosbags.rosbag2 import ReaderError as ReaderError2
        from rosbags.typesys import Stores, get_typestore

        # Old ROS2 sqlite bags carry no message definitions; ROS1 bags always do.
        store = get_typestore(Stores.ROS1_NOETIC if self.path.suffix == ".bag" else Stores.ROS2_HUMBLE)
        try:
            reader = AnyReader([self.path], default_typestore=store)
            reader.open()
        except (AnyReaderError, OSError) as exc:
            raise DataError(f"cannot read bag: {exc}", self.path) from None
        try:
            yield reader
        except (ReaderError1, ReaderError2) as exc:  # a corrupt chunk found while iterating
            raise DataError(f"cannot read bag: {exc}", self.path) from None
        finally:
            reader.close()

    def _topic_list(self) -> str:
        return "\n".join(f"  {name} ({kind}, {self._counts[name]} messages)" for name, kind in self.topics.items())

    def _check_topic(self, topic: str, types: tuple[str, ...], what: str) -> str:
        if topic not in self.topics:
            raise DataError(f"{what} topic {topic!r} is not in the bag; its topics are:\n{self._topic_list()}",
                            self.path)
        if self.topics[topic] not in types:
            raise DataError(f"{what} topic {topic!r} has type {self.topics[topic]}, expected "
                            f"{' or '.join(types)}; the bag's topics are:\n{self._topic_list()}", self.path)
        return topic

    def _pick_image_topics(self, given: list[str] | None, calib, n_cameras: int) -> list[str]:
        if given is None:
            named = kalibr_topics(calib)
            given = list(itertools.takewhile(bool, (named.get(f"cam{i}") for i in range(min(n_cameras, 2)))))
        if not given:
            found = sorted(t for t, kind in self.topics.items() if kind in _IMAGE_TYPES)
            if not 1 <= len(found) <= min(n_cameras, 2):
                raise DataError(f"cannot tell which image topics to use ({len(found)} image topics, "
                                f"{n_cameras} cameras in {calib}); pass image_topics or set 'rostopic' in the "
                                f"camchain. The bag's topics are:\n{self._topic_list()}", self.path)
            given = found
            if len(found) == 2:
                self.warn(f"{self.path}: using {found[0]} as cam0 and {found[1]} as cam1 (pass image_topics "
                          f"to change)")
        if len(given) > 2 or len(given) > n_cameras:
            raise DataError(f"{len(given)} image topics given but {calib} has {n_cameras} cameras "
                            f"(at most 2 are used)", self.path)
        return [self._check_topic(t, _IMAGE_TYPES, "image") for t in given]

    def _pick_imu_topic(self, given: str | None, imu_calib, expect_imu: bool) -> str | None:
        if given is None and imu_calib:
            data = load_yaml(imu_calib)
            given = data.get("rostopic") or kalibr_topics(imu_calib).get("imu0")
        if given is None:
            found = [t for t, kind in self.topics.items() if kind == IMU_TYPE]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                if expect_imu:
                    raise DataError(f"the bag has {len(found)} Imu topics; pass imu_topic or set 'rostopic' in "
                                    f"the IMU YAML. The bag's topics are:\n{self._topic_list()}", self.path)
                self.warn(f"{self.path}: several Imu topics and no IMU calibration; reading images only")
            return None
        return self._check_topic(given, (IMU_TYPE,), "IMU")

    # ------------------------------------------------------------------------------------ reading

    def messages(self) -> Iterator[Message]:
        records = self._sorted_records()
        if len(self.image_topics) == 2:
            records = _pair_stereo(records, self.stereo_tolerance_ns, self._warn_unpaired)
        frame_index = itertools.count()
        for t_ns, role, item in records:
            if role == "imu":
                yield item
            else:
                images = item if isinstance(item, tuple) else (item,)
                yield CameraFrame(t_ns, images, index=next(frame_index))

    def _warn_unpaired(self, lefts: int, rights: int) -> None:
        tol_ms = self.stereo_tolerance_ns * 1e-6
        self.warn(f"{self.path}: dropped {lefts} {self.image_topics[0]} images with no "
                  f"{self.image_topics[1]} image within {tol_ms:g} ms ({rights} unpaired "
                  f"{self.image_topics[1]} images ignored too)")

    def _sorted_records(self) -> Iterator[tuple[int, str, object]]:
        """``(t_ns, role, item)`` in header-stamp order; role is imu, left or right (cam0, cam1)."""
        roles = {self.imu_topic: "imu"} if self.imu_topic else {}
        roles.update(zip(self.image_topics, ("left", "right")))
        heap: list = []
        seq = itertools.count()  # tie-breaker, so items are never compared
        index = dict.fromkeys(roles, -1)  # message number within its topic in bag order, for errors
        last_topic: dict[str, tuple[int, int]] = {}  # topic -> (stamp, index) last emitted
        last_key = (-1, -1)
        newest = None
        nan_imu = 0

        def emit(entry):
            nonlocal last_key
            t_ns, order, _, topic, i, role, item = entry
            if (t_ns, order) < last_key:
                raise DataError(f"out-of-order stamp {t_ns} (message #{i}): it arrived after messages up to "
                                f"{last_key[0]} were already passed on, more than reorder_window_s="
                                f"{self.reorder_window_s:g} s late", self.path, field=topic)
            prev = last_topic.get(topic)
            if prev is not None and t_ns <= prev[0]:
                kind = "duplicated" if t_ns == prev[0] else "out-of-order"
                raise DataError(f"{kind} stamp {t_ns} (message #{i}; previous {prev[0]} at message #{prev[1]}); "
                                f"header stamps must strictly increase", self.path, field=topic)
            last_key, last_topic[topic] = (t_ns, order), (t_ns, i)
            return t_ns, role, item

        with self._open() as reader:
            connections = [c for c in reader.connections if c.topic in roles]
            for connection, _bag_t, raw in reader.messages(connections=connections):
                topic = connection.topic
                index[topic] += 1
                i, role = index[topic], roles[topic]
                where = dict(path=self.path, field=f"{topic} #{i}")
                try:
                    msg = reader.deserialize(raw, connection.msgtype)
                except Exception as exc:  # rosbags raises several types for corrupt data
                    raise DataError(f"cannot decode message: {exc}", **where) from None
                stamp = msg.header.stamp
                t_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
                if t_ns <= 0:
                    raise DataError("header.stamp is zero; the driver did not fill in the sensor time", **where)
                if role == "imu":
                    item = _imu_sample(t_ns, msg)
                    if item is None:
                        nan_imu += 1
                        continue
                else:
                    item = self._image(msg, connection.msgtype, topic, i, where)
                heapq.heappush(heap, (t_ns, 0 if role == "imu" else 1, next(seq), topic, i, role, item))
                newest = t_ns if newest is None else max(newest, t_ns)
                # Bag order is receive order: hold messages until nothing older can still arrive.
                while heap and heap[0][0] < newest - self.reorder_window_ns:
                    yield emit(heapq.heappop(heap))
        while heap:
            yield emit(heapq.heappop(heap))
        if nan_imu:
            self.warn(f"{self.path}: skipped {nan_imu} IMU messages on {self.imu_topic} with NaN/inf values")

    def _image(self, msg, msgtype: str, topic: str, i: int, where: dict) -> ImageSource:
        if msgtype == COMPRESSED_TYPE:
            if "compresseddepth" in msg.format.lower():
                raise DataError(f"unsupported CompressedImage format {msg.format!r} on topic {topic}", **where)
            return EncodedImage(bytes(msg.data), origin=f"{self.path} topic {topic} #{i}")
        image = _raw_to_gray(msg, topic, where)
        camera = self._calibration_camera(topic)
        if camera is not None and image.shape != (camera.height, camera.width):
            self.warn(f"{self.path}: {topic} images are {image.shape[1]}x{image.shape[0]} but {camera.name} is "
                      f"calibrated for {camera.width}x{camera.height}")
        return ImageArray(image)

    def _calibration_camera(self, topic: str):
        cameras = self._calibration.cameras
        i = self.image_topics.index(topic)
        return cameras[i] if i < len(cameras) else None


def _imu_sample(t_ns: int, msg) -> ImuSample | None:
    w, a = msg.angular_velocity, msg.linear_acceleration
    gyro = np.array([w.x, w.y, w.z], dtype=np.float64)
    accel = np.array([a.x, a.y, a.z], dtype=np.float64)
    if not (np.all(np.isfinite(gyro)) and np.all(np.isfinite(accel))):
        return None
    return ImuSample(t_ns, gyro, accel)


def _raw_to_gray(msg, topic: str, where: dict) -> np.ndarray:
    """A ``sensor_msgs/Image`` as a gray uint8 array, honouring ``step`` row padding."""
    import cv2

    if msg.encoding not in _ENCODINGS:
        raise DataError(f"unsupported image encoding {msg.encoding!r} on topic {topic}; supported: "
                        f"{', '.join(_ENCODINGS)}", **where)
    dtype, channels, conversion = _ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < width * channels * itemsize or data.size < height * step:
        raise DataError(f"image data does not fit {width}x{height} {msg.encoding} with step {step} "
                        f"({data.size} bytes)", **where)
    rows = data[:height * step].reshape(height, step)[:, :width * channels * itemsize]
    order = ">" if msg.is_bigendian else "<"
    image = np.ascontiguousarray(rows).view(order + dtype).reshape(height, width, channels)
    if itemsize == 2:
        return (image[:, :, 0] >> 8).astype(np.uint8)  # as cv_bridge does for mono16 -> mono8
    if conversion is None:
        return image[:, :, 0].copy()
    return cv2.cvtColor(image, getattr(cv2, conversion))


def _pair_stereo(records: Iterable[tuple[int, str, object]], tol_ns: int, on_unpaired) -> Iterator:
    """Pair time-ordered left/right images within ``tol_ns`` into ``(t_left, "frame", (left, right))``.

    Output stays time-ordered: a left image waiting for its right holds back everything after it,
    which is at most ``tol_ns`` of data.
    """
    out: deque[list] = deque()  # [t, role, item]; item None while a left image waits for its right
    waiting: list[list] = []  # left entries (also in out) without a partner yet
    rights: deque[tuple[int, object]] = deque()  # right images not used yet
    dropped_left = dropped_right = 0
    for t_ns, role, item in records:
        # Whatever is older than t - tol can no longer find a partner.
        while rights and rights[0][0] < t_ns - tol_ns:
            rights.popleft()
            dropped_right += 1
        for entry in [e for e in waiting if e[0] < t_ns - tol_ns]:
            entry[2] = _DROPPED
            waiting.remove(entry)
            dropped_left += 1
        if role == "left":
            match = min(rights, key=lambda r: abs(r[0] - t_ns), default=None)
            if match is not None and abs(match[0] - t_ns) <= tol_ns:
                rights.remove(match)
                out.append([t_ns, "frame", (item, match[1])])
            else:
                entry = [t_ns, "frame", None, item]
                out.append(entry)
                waiting.append(entry)
        elif role == "right":
            match = min(waiting, key=lambda e: abs(e[0] - t_ns), default=None)
            if match is not None and abs(match[0] - t_ns) <= tol_ns:
                match[2] = (match[3], item)
                waiting.remove(match)
            else:
                rights.append((t_ns, item))
        else:
            out.append([t_ns, role, item])
        while out and out[0][2] is not None:
            entry = out.popleft()
            if entry[2] is not _DROPPED:
                yield entry[0], entry[1], entry[2]
    dropped_left += len(waiting)
    dropped_right += len(rights)
    for entry in out:
        if entry[2] is not None and entry[2] is not _DROPPED:
            yield entry[0], entry[1], entry[2]
    if dropped_left:
        on_unpaired(dropped_left, dropped_right)
