"""RosbagSequence on real ROS1/ROS2 bags written here with rosbags' own writers."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin, Writer as Writer2
from rosbags.typesys import Stores, get_typestore

from slam.datasets.rosbag import RosbagSequence
from slam.messages import CameraFrame, DataError, EncodedImage, ImuSample

T0 = 1_700_000_000_000_000_000  # header stamps [ns]
W, H = 64, 48
IMU_PERIOD = 5_000_000  # 200 Hz
FRAME_PERIOD = 50_000_000  # 20 Hz
IMAGE, COMPRESSED, IMU = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Imu"


# ------------------------------------------------------------------------------------------ writing


class Bag:
    """Collects (topic, type, header stamp, bag time, fields) and writes a ROS1 or ROS2 bag."""

    def __init__(self, path, storage=StoragePlugin.SQLITE3):
        self.path, self.storage = path, storage
        self.ros1 = path.suffix == ".bag"
        self.store = get_typestore(Stores.ROS1_NOETIC if self.ros1 else Stores.ROS2_HUMBLE)
        self.rows: list = []

    def header(self, t_ns: int):
        stamp = self.store.types["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
        extra = {"seq": 0} if self.ros1 else {}
        return self.store.types["std_msgs/msg/Header"](stamp=stamp, frame_id="", **extra)

    def imu(self, topic, t_ns, gyro, accel, bag_t=None):
        T = self.store.types
        vec = (lambda v: T["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2])))
        msg = T[IMU](header=self.header(t_ns), orientation=T["geometry_msgs/msg/Quaternion"](x=0, y=0, z=0, w=1),
                     orientation_covariance=np.zeros(9), angular_velocity=vec(gyro),
                     angular_velocity_covariance=np.zeros(9), linear_acceleration=vec(accel),
                     linear_acceleration_covariance=np.zeros(9))
        self.rows.append((topic, IMU, bag_t if bag_t is not None else t_ns, msg))

    def image(self, topic, t_ns, pixels: np.ndarray, encoding="mono8", pad=0, bag_t=None):
        row = np.ascontiguousarray(pixels).view(np.uint8).reshape(pixels.shape[0], -1)
        data = np.pad(row, ((0, 0), (0, pad)), constant_values=255)  # row padding the reader must skip
        msg = self.store.types[IMAGE](header=self.header(t_ns), height=pixels.shape[0], width=pixels.shape[1],
                                      encoding=encoding, is_bigendian=0, step=data.shape[1],
                                      data=data.reshape(-1))
        self.rows.append((topic, IMAGE, bag_t if bag_t is not None else t_ns, msg))

    def compressed(self, topic, t_ns, pixels: np.ndarray, bag_t=None):
        png = cv2.imencode(".png", pixels)[1].reshape(-1)
        msg = self.store.types[COMPRESSED](header=self.header(t_ns), format="mono8; png compressed ", data=png)
        self.rows.append((topic, COMPRESSED, bag_t if bag_t is not None else t_ns, msg))

    def write(self):
        writer = Writer1(self.path) if self.ros1 else Writer2(self.path, version=9, storage_plugin=self.storage)
        serialize = self.store.serialize_ros1 if self.ros1 else self.store.serialize_cdr
        with writer:
            connections = {}
            for topic, kind, bag_t, msg in sorted(self.rows, key=lambda r: r[2]):
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, kind, typestore=self.store)
                writer.write(connections[topic], bag_t, serialize(msg, kind))
        return self.path


def pixels(k: int, cam: int) -> np.ndarray:
    return ((np.arange(H * W).reshape(H, W) + 7 * k + 50 * cam) % 256).astype(np.uint8)


def imu_values(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0.01 * k, -0.02, 0.5 + 1e-3 * k]), np.array([0.1, 0.2 * k, 9.81])


def rig_bag(path, seconds=1.0, stereo=True, compressed=False, right_offset_ns=0, jitter_s=0.2, pad=0,
            storage=StoragePlugin.SQLITE3, imu_topic="/imu0", seed=0) -> Bag:
    """200 Hz IMU + 20 Hz cameras; bag time = header stamp + 100 s + random jitter (receive delay)."""
    rng = np.random.default_rng(seed)
    delay = (lambda: 100 * 10**9 + int(rng.uniform(0, jitter_s) * 1e9))
    bag = Bag(path, storage)
    for k in range(int(seconds * 200)):
        t = T0 + k * IMU_PERIOD
        bag.imu(imu_topic, t, *imu_values(k), bag_t=t + delay())
    for k in range(int(seconds * 20)):
        t = T0 + k * FRAME_PERIOD
        for cam in range(2 if stereo else 1):
            stamp = t + cam * right_offset_ns
            if compressed:
                bag.compressed(f"/cam{cam}/image_raw", stamp, pixels(k, cam), bag_t=stamp + delay())
            else:
                bag.image(f"/cam{cam}/image_raw", stamp, pixels(k, cam), pad=pad, bag_t=stamp + delay())
    return bag


def camchain(tmp_path, n=2, rostopic=True, imucam=True, name="camchain.yaml"):
    data = {}
    for i in range(n):
        T = np.eye(4)
        T[0, 3] = -0.1 * i
        cam = {"camera_model": "pinhole", "intrinsics": [50.0, 50.0, 32.0, 24.0], "resolution": [W, H],
               "distortion_model": "radtan", "distortion_coeffs": [-0.1, 0.01, 0.0, 0.0]}
        if imucam:
            cam["T_cam_imu"] = T.tolist()
        elif i:
            cam["T_cn_cnm1"] = T.tolist()
        if rostopic:
            cam["rostopic"] = f"/cam{i}/image_raw"
        data[f"cam{i}"] = cam
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def imu_yaml(tmp_path, rostopic="/imu0"):
    data = {"accelerometer_noise_density": 2.0e-3, "accelerometer_random_walk": 3.0e-3,
            "gyroscope_noise_density": 1.7e-4, "gyroscope_random_walk": 1.9e-5, "update_rate": 200.0}
    if rostopic:
        data["rostopic"] = rostopic
    path = tmp_path / "imu.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_time_ordered(messages):
    keys = [(m.t_ns, 0 if isinstance(m, ImuSample) else 1) for m in messages]
    assert keys == sorted(keys), "stream not time ordered (IMU before frames at equal stamps)"


# ----------------------------------------------------------------------------------------- reading


def test_ros1_stereo_round_trip(tmp_path):
    bag = rig_bag(tmp_path / "rig.bag", pad=8)
    # Receive jitter really scrambles the header order in the bag.
    in_bag_order = [r[3].header.stamp.sec * 10**9 + r[3].header.stamp.nanosec
                    for r in sorted(bag.rows, key=lambda r: r[2])]
    assert in_bag_order != sorted(in_bag_order)
    seq = RosbagSequence(bag.write(), camchain(tmp_path), imu_yaml(tmp_path))

    assert seq.image_topics == ["/cam0/image_raw", "/cam1/image_raw"] and seq.imu_topic == "/imu0"
    assert seq.calibration.stereo and seq.calibration.imu.rate_hz == 200.0
    msgs = list(seq.messages())
    assert_time_ordered(msgs)
    imu = [m for m in msgs if isinstance(m, ImuSample)]
    frames = [m for m in msgs if isinstance(m, CameraFrame)]
    assert len(imu) == 200 and len(frames) == 20
    for k, sample in enumerate(imu):
        gyro, accel = imu_values(k)
        assert sample.t_ns == T0 + k * IMU_PERIOD  # header stamp, not bag time (+100 s)
        np.testing.assert_array_equal(sample.gyro, gyro)
        np.testing.assert_array_equal(sample.accel, accel)
    for k, frame in enumerate(frames):
        assert frame.t_ns == T0 + k * FRAME_PERIOD and frame.index == k and len(frame.images) == 2
        for cam in range(2):
            image = frame.images[cam].load()
            assert image.dtype == np.uint8 and image.shape == (H, W)
            np.testing.assert_array_equal(image, pixels(k, cam))
    assert seq.warnings == []
    assert len(list(seq.messages())) == len(msgs)  # re-iterable


def test_ros2_mcap_compressed_stereo_is_lazy(tmp_path):
    bag = rig_bag(tmp_path / "rig_mcap", compressed=True, right_offset_ns=-1_000_000,
                  storage=StoragePlugin.MCAP)
    seq = RosbagSequence(bag.write(), camchain(tmp_path), imu_yaml(tmp_path))
    msgs = list(seq.messages())
    assert_time_ordered(msgs)
    frames = [m for m in msgs if isinstance(m, CameraFrame)]
    assert len(frames) == 20 and sum(isinstance(m, ImuSample) for m in msgs) == 200
    for k, frame in enumerate(frames):
        assert frame.t_ns == T0 + k * FRAME_PERIOD  # the left stamp; the right is 1 ms earlier
        assert all(isinstance(image, EncodedImage) for image in frame.images)
        for cam in range(2):
            np.testing.assert_array_equal(frame.images[cam].load(), pixels(k, cam))
    assert seq.warnings == []


@pytest.mark.parametrize("encoding", ["mono16", "bgr8", "rgb8", "bgra8", "rgba8", "8UC1"])
def test_ros2_sqlite_encodings_become_gray(tmp_path, encoding):
    rng = np.random.default_rng(1)
    channels = {"bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4}.get(encoding, 1)
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    raw = rng.integers(0, np.iinfo(dtype).max, (H, W, channels) if channels > 1 else (H, W), dtype=dtype)
    bag = Bag(tmp_path / "enc")
    for k in range(3):
        bag.image("/camera/image", T0 + k * FRAME_PERIOD, raw, encoding=encoding, pad=4)
    # Vision-only: one camera, no rostopic, no IMU -> the only image topic is picked.
    seq = RosbagSequence(bag.write(), camchain(tmp_path, n=1, rostopic=False, imucam=False))
    assert seq.imu_topic is None and seq.calibration.imu is None and not seq.calibration.stereo
    frames = list(seq.messages())
    assert len(frames) == 3
    conversion = {"bgr8": cv2.COLOR_BGR2GRAY, "rgb8": cv2.COLOR_RGB2GRAY, "bgra8": cv2.COLOR_BGRA2GRAY,
                  "rgba8": cv2.COLOR_RGBA2GRAY}
    expected = ((raw >> 8).astype(np.uint8) if encoding == "mono16" else
                cv2.cvtColor(raw, conversion[encoding]) if encoding in conversion else raw)
    np.testing.assert_array_equal(frames[0].images[0].load(), expected)


def test_topics_picked_from_bag_without_rostopic(tmp_path, caplog):
    bag = rig_bag(tmp_path / "rig.bag", seconds=0.3)
    # A camchain-imucam without an IMU YAML: extrinsics known, noise parameters missing.
    with caplog.at_level(logging.WARNING):
        seq = RosbagSequence(bag.write(), camchain(tmp_path, rostopic=False))
    assert seq.image_topics == ["/cam0/image_raw", "/cam1/image_raw"] and seq.imu_topic == "/imu0"
    assert seq.calibration.imu is None and seq.calibration.stereo
    assert any("noise parameters are missing" in w for w in seq.warnings)
    assert any("as cam0" in w for w in seq.warnings)
    msgs = list(seq.messages())
    assert sum(isinstance(m, ImuSample) for m in msgs) == 60
    assert sum(isinstance(m, CameraFrame) for m in msgs) == 6


def test_explicit_topics_override_kalibr(tmp_path):
    bag = rig_bag(tmp_path / "rig.bag", seconds=0.3, imu_topic="/imu/data")
    bag.imu("/imu/other", T0, [0, 0, 0], [0, 0, 9.81])  # makes the Imu topic ambiguous
    path = bag.write()
    with pytest.raises(DataError, match="Imu topics") as err:
        RosbagSequence(path, camchain(tmp_path), imu_yaml(tmp_path, rostopic=None))
    assert "/imu/other" in str(err.value) and "/imu/data" in str(err.value)
    seq = RosbagSequence(path, camchain(tmp_path), imu_yaml(tmp_path, rostopic=None),
                         image_topics=["/cam1/image_raw"], imu_topic="/imu/data")
    assert len(seq.calibration.cameras) == 1  # mono on the one topic asked for
    frames = [m for m in seq.messages() if isinstance(m, CameraFrame)]
    assert len(frames) == 6 and len(frames[0].images) == 1
    np.testing.assert_array_equal(frames[2].images[0].load(), pixels(2, 1))


def test_unpaired_left_images_dropped_with_one_warning(tmp_path):
    bag = rig_bag(tmp_path / "rig.bag", seconds=0.5)
    # Three right images arrive 10 ms off: their left images cannot pair.
    for k in (2, 5, 7):
        row = next(r for r in bag.rows if r[0] == "/cam1/image_raw"
                   and r[3].header.stamp.nanosec == (T0 + k * FRAME_PERIOD) % 10**9)
        row[3].header.stamp.nanosec += 10_000_000
    seq = RosbagSequence(bag.write(), camchain(tmp_path), imu_yaml(tmp_path))
    msgs = list(seq.messages())
    assert_time_ordered(msgs)
    frames = [m for m in msgs if isinstance(m, CameraFrame)]
    assert [f.t_ns for f in frames] == [T0 + k * FRAME_PERIOD for k in range(10) if k not in (2, 5, 7)]
    assert [f.index for f in frames] == list(range(7))
    assert len(seq.warnings) == 1 and "dropped 3 /cam0/image_raw images" in seq.warnings[0]


# ------------------------------------------------------------------------------------------ errors


def test_missing_bag(tmp_path):
    with pytest.raises(DataError, match="bag not found") as err:
        RosbagSequence(tmp_path / "nope.bag", camchain(tmp_path))
    assert "nope.bag" in str(err.value)


def test_unreadable_bag(tmp_path):
    (tmp_path / "junk.bag").write_bytes(b"not a bag at all")
    with pytest.raises(DataError, match="cannot read bag"):
        RosbagSequence(tmp_path / "junk.bag", camchain(tmp_path))


def test_unknown_topic_lists_the_bag_topics(tmp_path):
    path = rig_bag(tmp_path / "rig.bag", seconds=0.1).write()
    with pytest.raises(DataError, match="'/nope' is not in the bag") as err:
        RosbagSequence(path, camchain(tmp_path), image_topics=["/nope"])
    for topic, kind in [("/cam0/image_raw", IMAGE), ("/cam1/image_raw", IMAGE), ("/imu0", IMU)]:
        assert f"{topic} ({kind}" in str(err.value)
    with pytest.raises(DataError, match="IMU topic '/imu9'"):
        RosbagSequence(path, camchain(tmp_path), imu_topic="/imu9")
    with pytest.raises(DataError, match="has type sensor_msgs/msg/Imu"):
        RosbagSequence(path, camchain(tmp_path), image_topics=["/imu0"])


def test_unsupported_encoding(tmp_path):
    bag = Bag(tmp_path / "bayer.bag")
    bag.image("/cam0/image_raw", T0, pixels(0, 0), encoding="bayer_rggb8")
    seq = RosbagSequence(bag.write(), camchain(tmp_path, n=1))
    with pytest.raises(DataError, match="unsupported image encoding 'bayer_rggb8' on topic /cam0/image_raw"):
        list(seq.messages())


def test_nan_imu_skipped_and_warned_once(tmp_path):
    bag = rig_bag(tmp_path / "rig.bag", seconds=0.5)
    imu_rows = [r for r in bag.rows if r[0] == "/imu0"]
    imu_rows[10][3].angular_velocity.x = float("nan")
    imu_rows[40][3].linear_acceleration.z = float("inf")
    seq = RosbagSequence(bag.write(), camchain(tmp_path), imu_yaml(tmp_path))
    msgs = list(seq.messages())
    imu = [m for m in msgs if isinstance(m, ImuSample)]
    assert len(imu) == 98 and all(np.isfinite(m.gyro).all() and np.isfinite(m.accel).all() for m in imu)
    assert seq.warnings == [f"{seq.path}: skipped 2 IMU messages on /imu0 with NaN/inf values"]


def test_late_stamp_beyond_reorder_window(tmp_path):
    bag = rig_bag(tmp_path / "rig.bag", jitter_s=0.05)
    late = [r for r in bag.rows if r[0] == "/imu0"][20]
    bag.rows[bag.rows.index(late)] = (*late[:2], late[2] + 10**9, late[3])  # received 1 s late
    seq = RosbagSequence(bag.write(), camchain(tmp_path), imu_yaml(tmp_path), reorder_window_s=0.5)
    with pytest.raises(DataError, match=r"out-of-order stamp .*message #\d+.*reorder_window_s=0.5") as err:
        list(seq.messages())
    assert str(seq.path) in str(err.value) and "/imu0" in str(err.value)
    # A wider window absorbs the same delay.
    wide = RosbagSequence(seq.path, camchain(tmp_path), imu_yaml(tmp_path), reorder_window_s=1.5)
    assert sum(isinstance(m, ImuSample) for m in wide.messages()) == 200


def test_duplicated_stamp(tmp_path):
    bag = rig_bag(tmp_path / "rig.bag", seconds=0.2, jitter_s=0)  # bag order = header order
    imu_rows = [r for r in bag.rows if r[0] == "/imu0"]
    imu_rows[7][3].header.stamp.nanosec = imu_rows[6][3].header.stamp.nanosec
    seq = RosbagSequence(bag.write(), camchain(tmp_path), imu_yaml(tmp_path))
    with pytest.raises(DataError, match=r"\[/imu0\].*duplicated stamp .*message #7") as err:
        list(seq.messages())
    assert "rig.bag" in str(err.value)
