"""KITTI odometry reader: files written here in the real layout (sequences/NN, poses/NN.txt)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slam.datasets.kitti import KittiSequence, read_kitti_calib
from slam.geometry import make_transform, quat_to_rot
from slam.messages import CameraFrame, DataError, ImageFile

# calib.txt of KITTI odometry sequence 00, written as KITTI does (%.12e).
_CALIB_00_VALUES = {
    "P0": [718.856, 0, 607.1928, 0, 0, 718.856, 185.2157, 0, 0, 0, 1, 0],
    "P1": [718.856, 0, 607.1928, -386.1448, 0, 718.856, 185.2157, 0, 0, 0, 1, 0],
    "P2": [718.856, 0, 607.1928, 45.38225, 0, 718.856, 185.2157, -0.1130887, 0, 0, 1, 0.003779761],
    "P3": [718.856, 0, 607.1928, -337.2877, 0, 718.856, 185.2157, 2.369057, 0, 0, 1, 0.004915215],
    "Tr": [4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02,
           -7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02,
           9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01],
}
CALIB_00 = "".join(f"{key}: " + " ".join(f"{v:.12e}" for v in values) + "\n"
                   for key, values in _CALIB_00_VALUES.items())
TIMES = ["0.000000e+00", "1.036224e-01", "2.072447e-01", "3.108669e-01", "4.144894e-01"]
WIDTH, HEIGHT = 12, 7  # unequal, so a swapped width/height shows


def random_poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return make_transform(quat_to_rot(q), rng.normal(scale=5.0, size=(n, 3)))


def write_poses(path, T_W_C0: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(f"{v:.12e}" for v in T[:3].reshape(-1)) + "\n" for T in T_W_C0))


def write_sequence(root, n_images: int = len(TIMES), stereo: bool = True, calib: str = CALIB_00,
                   times: list[str] = TIMES, poses: bool = True):
    """``root/sequences/00`` as KITTI ships it, with ``root/poses/00.txt``; returns the sequence folder."""
    seq = root / "sequences" / "00"
    for cam in ("image_0", "image_1") if stereo else ("image_0",):
        (seq / cam).mkdir(parents=True)
        for i in range(n_images):
            image = np.full((HEIGHT, WIDTH), 10 * i + (cam == "image_1"), np.uint8)
            assert cv2.imwrite(str(seq / cam / f"{i:06d}.png"), image)
    (seq / "calib.txt").write_text(calib)
    (seq / "times.txt").write_text("\n".join(times) + "\n")
    if poses:
        write_poses(root / "poses" / "00.txt", random_poses(len(times)))
    return seq


def replace_line(text: str, key: str, new: str) -> str:
    return "".join(new + "\n" if line.startswith(key + ":") else line + "\n" for line in text.splitlines())


# ----------------------------------------------------------------------------------------- reading


def test_stereo_sequence_calibration_and_frames(tmp_path):
    seq = KittiSequence(write_sequence(tmp_path))
    assert seq.format_name == "KITTI odometry" and seq.name == "00" and seq.warnings == []
    cal = seq.calibration
    assert cal.stereo and cal.imu is None
    cam0, cam1 = cal.cameras
    assert (cam0.width, cam0.height) == (WIDTH, HEIGHT) == (cam1.width, cam1.height)
    np.testing.assert_allclose(cam0.intrinsics, [718.856, 718.856, 607.1928, 185.2157])
    assert cam0.distortion_model == "none" and cam1.distortion_model == "none"
    np.testing.assert_array_equal(cam0.T_B_C, np.eye(4))
    baseline = 386.1448 / 718.856
    np.testing.assert_allclose(cam1.T_B_C[:3, 3], [baseline, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(cam1.T_B_C[:3, :3], np.eye(3))
    assert cam0.rate_hz == pytest.approx(1 / 0.1036224, rel=1e-3)

    frames = list(seq.messages())
    assert all(isinstance(f, CameraFrame) and f.stereo for f in frames)
    assert [f.t_ns for f in frames] == [0, 103_622_400, 207_244_700, 310_866_900, 414_489_400]
    assert [f.index for f in frames] == list(range(5))
    left, right = frames[3].images
    assert left.path.name == right.path.name == "000003.png"
    assert left.load().shape == (HEIGHT, WIDTH) and left.load()[0, 0] == 30 and right.load()[0, 0] == 31
    assert [f.t_ns for f in seq.messages()] == [f.t_ns for f in frames]  # re-iterable


def test_mono_when_image_1_is_absent(tmp_path):
    calib = "".join(line + "\n" for line in CALIB_00.splitlines() if line.startswith("P0"))
    seq = KittiSequence(write_sequence(tmp_path, stereo=False, calib=calib))
    assert not seq.calibration.stereo and len(seq.calibration.cameras) == 1
    frames = list(seq.messages())
    assert len(frames) == 5 and not frames[0].stereo


def test_image_size_is_read_lazily_from_the_png_header_only(tmp_path):
    path = write_sequence(tmp_path)
    seq = KittiSequence(path)
    first = path / "image_0" / "000000.png"
    first.write_bytes(first.read_bytes()[:33])  # keep signature + IHDR: undecodable, header still says the size
    assert (seq.calibration.cameras[0].width, seq.calibration.cameras[0].height) == (WIDTH, HEIGHT)
    with pytest.raises(DataError, match="000000.png"):
        next(seq.messages()).images[0].load()


def test_messages_are_lazy(tmp_path):
    path = write_sequence(tmp_path)
    seq = KittiSequence(path)
    for png in (path / "image_1").iterdir():
        png.unlink()
    frames = list(seq.messages())  # nothing is opened while iterating
    assert len(frames) == 5
    assert isinstance(frames[2].images[1], ImageFile)
    with pytest.raises(DataError) as err:
        frames[2].images[1].load()
    assert "image_1" in str(err.value) and "000002.png" in str(err.value) and "missing" in str(err.value)
    assert frames[2].images[0].load().shape == (HEIGHT, WIDTH)


# ------------------------------------------------------------------------------ defects: warnings


def test_fewer_images_than_stamps_warns_with_counts_and_uses_common_frames(tmp_path):
    seq = KittiSequence(write_sequence(tmp_path, n_images=3))
    assert [f.index for f in seq.messages()] == [0, 1, 2]
    (warning,) = seq.warnings
    assert "times.txt lists 5 frames" in warning and "image_0 holds 3" in warning and "image_1 holds 3" in warning
    assert "using the 3 frames" in warning


def test_more_images_than_stamps_warns_and_drops_the_extra_images(tmp_path):
    seq = KittiSequence(write_sequence(tmp_path, n_images=7))
    assert seq.frame_count == 5
    (warning,) = seq.warnings
    assert "times.txt lists 5 frames" in warning and "holds 7" in warning


def test_missing_image_files_are_skipped_with_one_warning(tmp_path):
    path = write_sequence(tmp_path)
    # The counts still agree (5 stamps, 5 images in each folder), but frame 2 has no left image.
    (path / "image_0" / "000002.png").rename(path / "image_0" / "000007.png")
    seq = KittiSequence(path)
    assert [f.index for f in seq.messages()] == [0, 1, 3, 4]
    (warning,) = seq.warnings
    assert "1 of the 5 frames" in warning and "times.txt" in warning and "000002" in warning


def test_hole_with_differing_counts_is_reported_once(tmp_path):
    path = write_sequence(tmp_path)
    (path / "image_1" / "000001.png").unlink()
    seq = KittiSequence(path)
    assert [f.index for f in seq.messages()] == [0, 2, 3, 4]
    (warning,) = seq.warnings
    assert "image_1 holds 4" in warning and "using the 4 frames" in warning


# -------------------------------------------------------------------------------- defects: errors


def error_of(path) -> str:
    with pytest.raises(DataError) as err:
        KittiSequence(path).calibration
    return str(err.value)


@pytest.mark.parametrize("calib, where, words", [
    (replace_line(CALIB_00, "P0", "P9: 1 2 3"), "calib.txt [P0]", "missing"),
    (replace_line(CALIB_00, "P1", "# P1 removed"), "calib.txt [P1]", "missing"),
    (replace_line(CALIB_00, "P1", "P1: 1 2 3 4 5 6 7 8 9 10 11"), "calib.txt:2 [P1]", "expected 12 numbers"),
    (replace_line(CALIB_00, "P0", "P0: 718.8 0 607.1 0 0 718.8 185.2 0 0 0 1 zero"), "calib.txt:1 [P0]",
     "'zero' is not a number"),
    (replace_line(CALIB_00, "P3", "P3: 1 0 1 0 0 1 1 0 0 0 1 nan"), "calib.txt:4 [P3]", "NaN"),
    (replace_line(CALIB_00, "Tr", "Tr: 1 2"), "calib.txt:5 [Tr]", "expected 12 numbers"),
    (replace_line(CALIB_00, "P2", "P2 7.18e2 0 6.07e2"), "calib.txt:3", "KEY: numbers"),
    (replace_line(CALIB_00, "P0", "P0: 718.8 5 607.1 0 0 718.8 185.2 0 0 0 1 0"), "calib.txt:1 [P0]",
     "rectified pinhole"),
    (CALIB_00 + CALIB_00.splitlines()[1] + "\n", "calib.txt:6 [P1]", "given twice (first at line 2)"),
])
def test_bad_calib_names_file_line_and_field(tmp_path, calib, where, words):
    message = error_of(write_sequence(tmp_path, calib=calib))
    assert where in message and words in message


@pytest.mark.parametrize("times, where, words", [
    (["0.0", "0.1", "0.1"], "times.txt:3", "duplicated"),
    (["0.0", "0.2", "0.1"], "times.txt:3", "out-of-order"),
    (["0.0", "zero"], "times.txt:2", "not a number"),
    (["0.0", "0.1 0.2"], "times.txt:2", "one timestamp"),
    (["0.0", "1e99"], "times.txt:2", "out of range"),
])
def test_bad_times_names_file_and_line(tmp_path, times, where, words):
    message = error_of(write_sequence(tmp_path, times=times, n_images=len(times)))
    assert where in message and words in message


def test_missing_files_and_folders(tmp_path):
    path = write_sequence(tmp_path)
    (path / "times.txt").unlink()
    assert "times.txt: file not found" in error_of(path)
    assert "nowhere: sequence folder not found" in error_of(tmp_path / "nowhere")
    assert "image_0" in error_of(tmp_path)  # a folder without image_0/


def test_stamps_are_exact_decimal(tmp_path):
    times = ["1403715273.262142976", "1403715273.312143012"]
    seq = KittiSequence(write_sequence(tmp_path, times=times, n_images=2, poses=False))
    assert [f.t_ns for f in seq.messages()] == [1403715273262142976, 1403715273312143012]


# ---------------------------------------------------------------------------------- ground truth


def assert_poses_equal(traj, T_W_C0, stamps_ns):
    np.testing.assert_array_equal(traj.t_ns, stamps_ns)
    np.testing.assert_allclose(traj.p_W, T_W_C0[:, :3, 3], atol=1e-9)
    np.testing.assert_allclose(quat_to_rot(traj.q_W_B), T_W_C0[:, :3, :3], atol=1e-9)


def test_ground_truth_round_trips_from_poses_folder(tmp_path):
    seq = KittiSequence(write_sequence(tmp_path))
    assert seq.poses_path.resolve() == (tmp_path / "poses" / "00.txt").resolve()
    traj = seq.ground_truth()
    assert_poses_equal(traj, random_poses(5), [f.t_ns for f in seq.messages()])


def test_ground_truth_from_poses_txt_and_from_argument(tmp_path):
    path = write_sequence(tmp_path, poses=False)
    assert KittiSequence(path).ground_truth() is None
    write_poses(path / "poses.txt", random_poses(5, seed=1))
    assert_poses_equal(KittiSequence(path).ground_truth(), random_poses(5, seed=1),
                       [0, 103_622_400, 207_244_700, 310_866_900, 414_489_400])
    write_poses(tmp_path / "elsewhere.txt", random_poses(5, seed=2))
    traj = KittiSequence(path, poses=tmp_path / "elsewhere.txt").ground_truth()
    assert_poses_equal(traj, random_poses(5, seed=2), traj.t_ns)
    with pytest.raises(DataError, match="poses file not found"):
        KittiSequence(path, poses=tmp_path / "absent.txt")


def test_ground_truth_row_count_mismatch_names_both_files(tmp_path):
    path = write_sequence(tmp_path)
    write_poses(tmp_path / "poses" / "00.txt", random_poses(4))
    with pytest.raises(DataError) as err:
        KittiSequence(path).ground_truth()
    assert "poses/00.txt" in str(err.value) and "times.txt" in str(err.value)
    assert "4 poses" in str(err.value) and "5 frames" in str(err.value)


@pytest.mark.parametrize("row, words", [
    ("1 0 0 0 0 1 0 0 0 0 1", "expected 12 numbers"),
    ("1 0 0 0 0 1 0 0 0 0 1 x", "'x' is not a number"),
    ("2 0 0 0 0 1 0 0 0 0 1 0", "not a rotation"),
])
def test_bad_pose_rows_name_file_line_and_field(tmp_path, row, words):
    path = write_sequence(tmp_path)
    poses = tmp_path / "poses" / "00.txt"
    lines = poses.read_text().splitlines()
    lines[2] = row
    poses.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        KittiSequence(path).ground_truth()
    assert "00.txt:3 [T_W_C0]" in str(err.value) and words in str(err.value)


def test_open_sequence_detects_kitti(tmp_path):
    from slam.datasets import detect_format, open_sequence

    path = write_sequence(tmp_path)
    assert detect_format(path) == "kitti"
    assert isinstance(open_sequence(path), KittiSequence)


# ------------------------------------------------------------------------------------------- fuzz

_CALIB_TOKENS = st.sampled_from(["P0:", "P1:", "P2:", "P3:", "Tr:", "P0", ":", " ", "  ", "\n", "\r\n", "\t", "#",
                                 "0", "1", "-1", "718.856", "6.07e2", "1e308", "-1e308", "1e-320", "nan", "inf",
                                 "x", "0x1p3", "\x00", "é", "1_0", "..", "e"])
_CALIB_WORDS = CALIB_00.replace("\n", " \n ").split(" ")


@st.composite
def _mutated_calib(draw):
    """The real calib.txt with a few words replaced, to reach the checks behind the number parsing."""
    words = list(_CALIB_WORDS)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(words) - 1))
        words[i] = draw(st.one_of(_CALIB_TOKENS, st.floats().map(str), st.just("")))
    return " ".join(words)


_CALIB_TEXT = st.one_of(
    st.text(max_size=400),
    _mutated_calib(),
    st.lists(_CALIB_TOKENS, max_size=80).map("".join),
    st.lists(st.tuples(st.sampled_from(["P0", "P1", "P2", "P3", "Tr", "X"]),
                       st.lists(st.one_of(st.floats(), st.integers(-3, 3).map(float), _CALIB_TOKENS), max_size=14)),
             max_size=6).map(lambda rows: "".join(f"{k}: {' '.join(map(str, v))}\n" for k, v in rows)),
)


@pytest.fixture(scope="module")
def fuzz_sequence(tmp_path_factory):
    return write_sequence(tmp_path_factory.mktemp("kitti_fuzz"), n_images=2, times=TIMES[:2], poses=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_CALIB_TEXT)
def test_fuzzed_calib_raises_only_data_error(fuzz_sequence, text):
    calib = fuzz_sequence / "calib.txt"
    calib.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        read_kitti_calib(calib)
        KittiSequence(fuzz_sequence).calibration
    except DataError as exc:
        assert "calib.txt" in str(exc)
