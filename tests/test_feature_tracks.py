"""Feature-track CSV reader: the real V1_01 tracks, and bad input written in the real format."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EUROC_FEATURES, EUROC_GT, EUROC_MICRO, require
from slam.calibration_io import read_asl_camera
from slam.datasets import detect_format, open_sequence
from slam.datasets.feature_tracks import HEADER, FeatureTrackSequence
from slam.messages import DataError, FeatureFrame, ImuSample


def test_real_tracks():
    seq = open_sequence(require(EUROC_FEATURES), ground_truth=require(EUROC_GT))
    assert detect_format(EUROC_FEATURES) == "features"
    msgs = list(seq.messages())
    frames = [m for m in msgs if isinstance(m, FeatureFrame)]
    imu = [m for m in msgs if isinstance(m, ImuSample)]
    assert len(frames) == 601 and len(imu) == 6001
    assert [m.t_ns for m in msgs] == sorted(m.t_ns for m in msgs)
    assert len({i for f in frames for i in f.ids.tolist()}) == 307
    # Exactly 10 IMU samples between consecutive frames (README fact).
    t_imu = np.array([m.t_ns for m in imu])
    counts = np.diff(np.searchsorted(t_imu, [f.t_ns for f in frames]))
    assert np.all(counts == 10)
    # T_ci equals EuRoC cam0's T_BS; frame stamps equal ground-truth stamps (to the CSV's precision).
    cam0 = read_asl_camera(require(EUROC_MICRO) / "mav0" / "cam0" / "sensor.yaml")
    np.testing.assert_allclose(seq.calibration.cameras[0].T_B_C, cam0.T_B_C, atol=1e-6)
    gt = seq.ground_truth()
    assert np.abs(gt.t_ns[:601] - np.array([f.t_ns for f in frames])).max() < 1000
    assert all(np.all(np.abs(f.uv) < 2.0) for f in frames)


def _write(path, rows):
    meta = [("camera_fx", 458.6), ("camera_fy", 457.3), ("camera_cx", 367.2), ("camera_cy", 248.4),
            ("T_ci_tx", 0.0), ("T_ci_ty", 0.0), ("T_ci_tz", 0.0), ("T_ci_qw", 1.0), ("T_ci_qx", 0.0),
            ("T_ci_qy", 0.0), ("T_ci_qz", 0.0)]
    empty = [""] * len(HEADER)
    lines = [",".join(HEADER)]
    for key, value in meta:
        lines.append(",".join(["meta"] + empty[1:20] + [key, str(value)]))
    lines += rows
    path.write_text("\n".join(lines) + "\n")
    return path


def _imu(t, gyro="0,0,0"):
    return f"imu,{t},0,0,,,{gyro},0,0,9.81,0,0,0,0,0,0,,,,"


def _feature(t, frame, landmark, u="0.1", v="0.2"):
    return f"vision_feature,{t},0,0,{frame},{landmark},,,,,,,,,,,,,{u},{v},,"


def test_written_tracks_and_exact_stamps(tmp_path):
    rows = [_feature("10.05", 0, 1), _feature("10.05", 0, 2), _imu("10.0"), _imu("10.05"), _imu("10.1"),
            _feature("10.1", 1, 1)]
    seq = FeatureTrackSequence(_write(tmp_path / "t.csv", rows))
    msgs = list(seq.messages())
    assert [type(m).__name__ for m in msgs] == ["ImuSample", "ImuSample", "FeatureFrame", "ImuSample",
                                                 "FeatureFrame"]
    assert msgs[2].t_ns == 10_050_000_000 and msgs[2].ids.tolist() == [1, 2]


@pytest.mark.parametrize("rows, message", [
    ([_imu("1.0"), _imu("1.0")], r"t.csv:14: duplicated IMU timestamp"),
    ([_imu("1.0"), _imu("0.5")], r"t.csv:14: out-of-order IMU timestamp"),
    ([_imu("1.0", "0,x,0")], r"t.csv:13: column 'gy': 'x' is not a number"),
    ([_imu("abc")], r"t.csv:13: t_abs 'abc' is not a number of seconds"),
    ([_feature("1.0", 0, 1), _feature("1.0", 0, 1)], r"t.csv:13: frame 0 lists a landmark id twice"),
    ([_feature("1.0", 0, "seven")], r"t.csv:13: landmark_id 'seven' is not an integer"),
    (["vision_feature,1.0,0"], r"t.csv:13: expected 22 columns, found 3"),
])
def test_bad_rows(tmp_path, rows, message):
    seq = FeatureTrackSequence(_write(tmp_path / "t.csv", rows))
    with pytest.raises(DataError, match=message):
        list(seq.messages())


def test_missing_meta_and_bad_header(tmp_path):
    path = _write(tmp_path / "t.csv", [])
    path.write_text(path.read_text().replace("camera_fx", "camera_fz"))
    with pytest.raises(DataError, match=r"t.csv \[meta.camera_fx\]: required meta row is missing"):
        FeatureTrackSequence(path)
    path.write_text("time,x,y\n1,2,3\n")
    with pytest.raises(DataError, match=r"t.csv:1: unexpected header"):
        FeatureTrackSequence(path)


def test_ground_truth_override_checks_the_file(tmp_path):
    path = _write(tmp_path / "t.csv", [_imu("1.0")])
    with pytest.raises(DataError, match=r"nope.txt: ground-truth file not found"):
        open_sequence(path, ground_truth=tmp_path / "nope.txt")
    assert open_sequence(path).ground_truth() is None
