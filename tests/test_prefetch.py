"""The read-ahead thread of the offline runner: same messages, same order, same errors, stops when asked."""

import threading
import time

import cv2
import numpy as np
import pytest

from slam.datasets.prefetch import prefetch_images
from slam.messages import CameraFrame, DataError, ImageFile, ImuSample


def _stream(tmp_path, n=30, corrupt_at=None):
    messages = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        if i == corrupt_at:
            path.write_bytes(b"not a png")
        else:
            cv2.imwrite(str(path), np.full((8, 12), i, np.uint8))
        messages.append(ImuSample(i * 10, np.zeros(3), np.array([0, 0, 9.81])))
        messages.append(CameraFrame(i * 10 + 5, (ImageFile(path),), index=i))
    return messages


def test_same_messages_in_the_same_order_with_decoded_images(tmp_path):
    messages = _stream(tmp_path)
    out = list(prefetch_images(iter(messages), max_messages=4))
    assert [(type(m), m.t_ns) for m in out] == [(type(m), m.t_ns) for m in messages]
    frames = [m for m in out if isinstance(m, CameraFrame)]
    assert [int(f.images[0].load()[0, 0]) for f in frames] == list(range(30))
    assert [f.index for f in frames] == list(range(30))


def test_a_corrupt_image_raises_when_its_frame_is_loaded_naming_the_file(tmp_path):
    out = prefetch_images(iter(_stream(tmp_path, corrupt_at=7)))
    frames = [m for m in out if isinstance(m, CameraFrame)]
    assert frames[6].images[0].load()[0, 0] == 6
    with pytest.raises(DataError, match=r"7\.png"):
        frames[7].images[0].load()


def test_a_reader_error_is_raised_in_order(tmp_path):
    def broken():
        yield from _stream(tmp_path, n=3)
        raise DataError("stamps go backwards", "imu.csv", line=12)

    seen = []
    with pytest.raises(DataError, match="imu.csv"):
        for message in prefetch_images(broken()):
            seen.append(message)
    assert len(seen) == 6


def test_stopping_early_stops_the_reader(tmp_path):
    def endless():
        i = 0
        while True:
            i += 1
            yield ImuSample(i, np.zeros(3), np.zeros(3))

    for message in prefetch_images(endless(), max_messages=8):
        if message.t_ns == 20:
            break
    time.sleep(0.3)
    assert not any(t.name == "slam-prefetch" and t.is_alive() for t in threading.enumerate())
