"""ASL/EuRoC and TUM-VI reader: the real EuRoC snippet, folders written in the real layout, bad input."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import EUROC_MICRO, require, write_small_asl
from slam.datasets import detect_format, open_sequence
from slam.datasets.asl import AslSequence
from slam.messages import CameraFrame, DataError, ImuSample


def _messages(seq):
    return list(seq.messages())


# ------------------------------------------------------------------------------------ real data
def test_real_euroc_micro():
    seq = AslSequence(require(EUROC_MICRO))
    calib = seq.calibration
    assert len(calib.cameras) == 2 and calib.imu is not None
    assert calib.cameras[0].resolution == (752, 480)
    assert calib.cameras[0].distortion_model == "radtan"
    np.testing.assert_allclose(calib.cameras[0].intrinsics, [458.654, 457.296, 367.215, 248.375])
    np.testing.assert_allclose(calib.cameras[1].T_B_C[:3, 3], [-0.0198435579556, 0.0453689425024,
                                                               0.00786212447038])
    assert calib.imu.gyro_noise_density == pytest.approx(1.6968e-4)
    msgs = _messages(seq)
    frames = [m for m in msgs if isinstance(m, CameraFrame)]
    imu = [m for m in msgs if isinstance(m, ImuSample)]
    assert len(frames) == 95 and all(f.stereo for f in frames)
    assert len(imu) == 29120
    stamps = [m.t_ns for m in msgs]
    assert stamps == sorted(stamps)
    # At a frame's stamp the IMU sample of that stamp comes first.
    i = next(k for k, m in enumerate(msgs) if isinstance(m, CameraFrame))
    assert isinstance(msgs[i - 1], ImuSample) and msgs[i - 1].t_ns == msgs[i].t_ns
    left = frames[0].images[0].load()
    assert left.shape == (480, 752) and left.dtype == np.uint8 and left.std() > 10
    # The real cam1/data.csv lists 99 rows for 95 PNGs: one warning with the count.
    assert len(seq.warnings) == 1 and "4 of 99 rows" in seq.warnings[0] and "cam1" in seq.warnings[0]
    gt = seq.ground_truth()
    assert len(gt) == 2895 and gt.v_W is not None
    assert gt.t_ns[0] == frames[0].t_ns


def test_detect_format(small_asl, tmp_path):
    assert detect_format(small_asl) == "asl"
    assert detect_format(small_asl / "mav0") == "asl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="unrecognised sequence layout"):
        detect_format(tmp_path / "empty")


# --------------------------------------------------------------------------- written sequences
def test_round_trip_written_sequence(small_asl):
    seq = open_sequence(small_asl)
    msgs = _messages(seq)
    frames = [m for m in msgs if isinstance(m, CameraFrame)]
    imu = [m for m in msgs if isinstance(m, ImuSample)]
    assert len(frames) == 21 and len(imu) == 201 and not seq.warnings
    np.testing.assert_allclose(imu[0].gyro, [0.001, -0.002, 0.003])
    assert frames[0].images[0].load().shape == (48, 64)
    np.testing.assert_allclose(seq.calibration.cameras[1].T_B_C[0, 3], 0.11)


def test_images_are_lazy(small_asl):
    seq = open_sequence(small_asl)
    first = next(m for m in seq.messages() if isinstance(m, CameraFrame))
    path = first.images[0].path
    path.unlink()  # deleted after listing: iteration is fine, load() names the file
    with pytest.raises(DataError, match=str(path.name)):
        first.images[0].load()


def test_interrupted_writer_leaves_no_complete_folder(tmp_path):
    from slam.datasets.asl_writer import AslWriter
    from conftest import small_calibration

    with pytest.raises(RuntimeError):
        with AslWriter(tmp_path / "seq", small_calibration()) as writer:
            writer.add_frame(1, [np.zeros((48, 64), np.uint8)] * 2)
            raise RuntimeError("interrupted")
    assert not (tmp_path / "seq").exists()
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------- bad input
def _rewrite_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        AslSequence(tmp_path / "nope")


def test_missing_image_folder(small_asl):
    shutil.rmtree(small_asl / "mav0" / "cam1" / "data")
    with pytest.raises(DataError, match=r"cam1/data: image folder not found"):
        AslSequence(small_asl)


def test_missing_calibration(small_asl):
    (small_asl / "mav0" / "cam0" / "sensor.yaml").unlink()
    with pytest.raises(DataError, match=r"cam0/sensor.yaml missing"):
        AslSequence(small_asl)


def test_missing_imu_data(small_asl):
    (small_asl / "mav0" / "imu0" / "data.csv").unlink()
    with pytest.raises(DataError, match=r"imu0/data.csv: IMU data file not found"):
        AslSequence(small_asl)


def test_rows_pointing_to_missing_images_warn_once(small_asl, caplog):
    for name in sorted((small_asl / "mav0" / "cam1" / "data").iterdir())[-3:]:
        name.unlink()
    with caplog.at_level(logging.WARNING):
        seq = AslSequence(small_asl)
    assert len(seq.warnings) == 2  # cam1 rows without files, then cam0 frames without a partner
    assert "cam1/data.csv: 3 of 21 rows point to missing images" in seq.warnings[0]
    assert "3 of 21 cam0 images have no partner" in seq.warnings[1]
    assert sum(isinstance(m, CameraFrame) for m in seq.messages()) == 18


def test_corrupt_image(small_asl):
    image = sorted((small_asl / "mav0" / "cam0" / "data").iterdir())[2]
    image.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    frames = [m for m in AslSequence(small_asl).messages() if isinstance(m, CameraFrame)]
    with pytest.raises(DataError, match=rf"{image.name}: unreadable or corrupt image"):
        frames[2].images[0].load()


@pytest.mark.parametrize("csv, line, text, message", [
    ("imu0", 5, "1000000000010000000,0,0,0,0,0,9.81", r"imu0/data.csv:5: duplicated IMU timestamp"),
    ("imu0", 5, "999000000000,0,0,0,0,0,9.81", r"imu0/data.csv:5: out-of-order IMU timestamp"),
    ("imu0", 7, "1000000000025000000,0,0,zero,0,0,9.81", r"imu0/data.csv:7: column 'gyro_z': 'zero'"),
    ("imu0", 7, "1000000000025000000,0,0", r"imu0/data.csv:7: expected 7 columns"),
    ("imu0", 7, "12.5e3,0,0,0,0,0,9.81", r"imu0/data.csv:7: timestamp '12.5e3' is not an integer"),
    ("cam0", 4, "1000050000000,1000050000000.png", r"cam0/data.csv:4: duplicated cam0 image"),
])
def test_bad_rows_name_file_and_line(small_asl, csv, line, text, message):
    path = small_asl / "mav0" / csv / "data.csv"
    if csv == "imu0":  # make the IMU stamps of the small sequence fit the examples above
        rows = path.read_text().splitlines()
        rows = [rows[0]] + [f"{1000000000000000000 + k * 5000000}," + r.split(",", 1)[1]
                            for k, r in enumerate(rows[1:])]
        path.write_text("\n".join(rows) + "\n")
    _rewrite_line(path, line, text)
    with pytest.raises(DataError, match=message):
        _messages(AslSequence(small_asl))


def test_nan_imu_rows_skipped_and_reported(small_asl):
    path = small_asl / "mav0" / "imu0" / "data.csv"
    rows = path.read_text().splitlines()
    for k in (10, 11, 50):
        t = rows[k].split(",")[0]
        rows[k] = f"{t},nan,0,0,0,inf,9.81"
    path.write_text("\n".join(rows) + "\n")
    seq = AslSequence(small_asl)
    imu = [m for m in seq.messages() if isinstance(m, ImuSample)]
    assert len(imu) == 198 and all(np.isfinite(m.gyro).all() and np.isfinite(m.accel).all() for m in imu)
    assert any("skipped 3 IMU rows with NaN/inf" in w and "lines 11, 12, 51" in w for w in seq.warnings)


def test_imu_gap_reported(small_asl):
    path = small_asl / "mav0" / "imu0" / "data.csv"
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:50] + rows[110:]) + "\n")  # 0.3 s gap
    seq = AslSequence(small_asl)
    _messages(seq)
    assert any("1 IMU gaps" in w and "0.305 s" in w for w in seq.warnings)


@pytest.mark.parametrize("old, new, message", [
    ("intrinsics: [50", "intrinsics: [-50", r"cam0/sensor.yaml \[cam0.intrinsics\]: must be positive"),
    ("intrinsics: [50, 50, 32, 24]", "intrinsics: [50, 50, 32]", r"\[cam0.intrinsics\]: expected 4 numbers"),
    ("distortion_model: radial-tangential", "distortion_model: fisheye62", r"unknown distortion model"),
    ("data: [1, 0, 0, 0", "data: [2, 0, 0, 0", r"cam0/sensor.yaml \[T_BS\]: rotation part is not"),
    ("cols: 4\n  rows: 4\n  data: [1, 0, 0, 0,", "cols: 4\n  rows: 4\n  data: [1, 0, 0,",
     r"\[T_BS\]: expected a 4x4 \(or 3x4\) matrix"),
    ("resolution: [64, 48]", "resolution: [64.5, 48]", r"\[resolution\]: expected \[width, height\] integers"),
    ("resolution: [64, 48]", "", r"cam0/sensor.yaml \[resolution\]: required field is missing"),
    ("rate_hz: 20", "rate_hz: [20", r"cam0/sensor.yaml:\d+: invalid YAML"),
])
def test_bad_camera_calibration(small_asl, old, new, message):
    path = small_asl / "mav0" / "cam0" / "sensor.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(DataError, match=message):
        AslSequence(small_asl)


def test_bad_imu_calibration(small_asl):
    path = small_asl / "mav0" / "imu0" / "sensor.yaml"
    path.write_text(path.read_text().replace("gyroscope_noise_density: 0.00016968", "gyroscope_noise_density: -1"))
    with pytest.raises(DataError, match=r"imu0/sensor.yaml \[imu.gyro_noise_density\]: must be a positive"):
        AslSequence(small_asl)


# ------------------------------------------------------------------------------------- TUM-VI
KALIBR_CAMCHAIN = """cam0:
  T_cam_imu:
  - [-0.99953, 0.00745, -0.02948, 0.04729]
  - [0.02955, 0.00931, -0.99952, -0.04767]
  - [-0.00717, -0.99993, -0.00953, -0.0697]
  - [0.0, 0.0, 0.0, 1.0]
  camera_model: pinhole
  distortion_coeffs: [0.0034, 0.0007, -0.0020, 0.0002]
  distortion_model: equidistant
  intrinsics: [190.98, 190.97, 254.93, 256.89]
  resolution: [64, 48]
  timeshift_cam_imu: 0.0
cam1:
  T_cam_imu:
  - [-0.99951, 0.00587, -0.03080, -0.05337]
  - [0.03086, 0.01119, -0.99946, -0.04682]
  - [-0.00552, -0.99992, -0.01136, -0.07118]
  - [0.0, 0.0, 0.0, 1.0]
  camera_model: pinhole
  distortion_coeffs: [0.0034, 0.0007, -0.0020, 0.0002]
  distortion_model: equidistant
  intrinsics: [190.44, 190.43, 252.60, 254.92]
  resolution: [64, 48]
"""

KALIBR_IMU = """accelerometer_noise_density: 0.0028
accelerometer_random_walk: 0.00086
gyroscope_noise_density: 0.00016
gyroscope_random_walk: 2.2e-05
update_rate: 200.0
"""


def _make_tumvi(small_asl: Path) -> Path:
    """Turn the small sequence into TUM-VI's layout: Kalibr files in dso/, ground truth in mocap0."""
    for cam in ("cam0", "cam1"):
        (small_asl / "mav0" / cam / "sensor.yaml").unlink()
    (small_asl / "mav0" / "imu0" / "sensor.yaml").unlink()
    (small_asl / "dso").mkdir()
    (small_asl / "dso" / "camchain.yaml").write_text(KALIBR_CAMCHAIN)
    (small_asl / "dso" / "imu_config.yaml").write_text(KALIBR_IMU)
    (small_asl / "mav0" / "mocap0").mkdir()
    rows = ["#timestamp [ns], p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z []"]
    rows += [f"{1_000_000_000_000 + k * 10_000_000},{0.01 * k},0,1,1,0,0,0" for k in range(101)]
    (small_asl / "mav0" / "mocap0" / "data.csv").write_text("\n".join(rows) + "\n")
    return small_asl


def test_tumvi_layout(small_asl):
    seq = open_sequence(_make_tumvi(small_asl))
    assert seq.format_name == "TUM-VI"
    cam0, cam1 = seq.calibration.cameras
    assert cam0.distortion_model == "equidistant" and cam0.intrinsics[0] == pytest.approx(190.98)
    # Kalibr's T_cam_imu is T_C_B: the stored T_B_C is its inverse.
    T_cam_imu = np.array([[-0.99953, 0.00745, -0.02948, 0.04729], [0.02955, 0.00931, -0.99952, -0.04767],
                          [-0.00717, -0.99993, -0.00953, -0.0697], [0, 0, 0, 1]])
    np.testing.assert_allclose(cam0.T_B_C, np.linalg.inv(T_cam_imu), atol=1e-4)  # file has 5 digits
    assert seq.calibration.imu.accel_noise_density == pytest.approx(0.0028)
    gt = seq.ground_truth()
    assert len(gt) == 101 and gt.p_W[100, 0] == pytest.approx(1.0)
    assert sum(isinstance(m, CameraFrame) for m in seq.messages()) == 21


def test_explicit_kalibr_calibration_overrides(small_asl, tmp_path):
    camchain = tmp_path / "camchain.yaml"
    camchain.write_text(KALIBR_CAMCHAIN)
    seq = AslSequence(small_asl, calib=camchain)
    assert seq.calibration.cameras[0].distortion_model == "equidistant"


def test_kalibr_non_rigid_transform(small_asl, tmp_path):
    camchain = tmp_path / "camchain.yaml"
    camchain.write_text(KALIBR_CAMCHAIN.replace("[-0.99953, 0.00745", "[-1.5, 0.00745", 1))
    with pytest.raises(DataError, match=r"camchain.yaml \[cam0.T_cam_imu\]: rotation part is not"):
        AslSequence(small_asl, calib=camchain)


# -------------------------------------------------------------------------------------- fuzzing
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet=st.sampled_from(list("0123456789,.-e naif\n#")), max_size=300))
def test_fuzz_imu_csv_only_raises_data_error(tmp_path_factory, body):
    """Whatever the IMU CSV holds, the reader yields samples or raises DataError, nothing else."""
    seq_dir = tmp_path_factory.mktemp("fuzz")
    write_small_asl(seq_dir / "s", seconds=0.1, stereo=False)
    (seq_dir / "s" / "mav0" / "imu0" / "data.csv").write_text(body)
    try:
        for msg in AslSequence(seq_dir / "s").messages():
            if isinstance(msg, ImuSample):
                assert np.isfinite(msg.gyro).all() and np.isfinite(msg.accel).all()
    except DataError:
        pass


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzz_yaml_calibration_only_raises_data_error(tmp_path_factory, text):
    from slam.calibration_io import read_asl_camera, read_kalibr_camchain

    path = tmp_path_factory.mktemp("yaml") / "sensor.yaml"
    path.write_text(text)
    for reader in (read_asl_camera, read_kalibr_camchain):
        try:
            reader(path)
        except DataError:
            pass
