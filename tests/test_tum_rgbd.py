"""TUM RGB-D reader: folders written here in the real layout, plus the real 17-frame fr3 snippet."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slam.datasets.tum_rgbd import TUM_INTRINSICS, TumRgbdSequence, associate, read_tum_list
from slam.messages import CameraCalibration, CameraFrame, DataError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SNIPPET = DATA / "tum_fr3_office_17frames"

RGB_STAMPS = ["1305031102.175304", "1305031102.211214", "1305031102.243211", "1305031102.275326"]
DEPTH_STAMPS = ["1305031102.170304", "1305031102.208214", "1305031102.251211", "1305031102.287326"]  # -5 -3 +8 +12 ms
HEADER = "# {what} images\n# file: 'rgbd_dataset_freiburg1_xyz.bag'\n# timestamp filename\n"
GROUNDTRUTH = """\
# ground truth trajectory
# file: 'rgbd_dataset_freiburg1_xyz.bag'
# timestamp tx ty tz qx qy qz qw
1305031098.6659 1.3563 0.6305 1.6380 0.6132 0.5962 -0.3311 -0.3986
1305031098.6758 1.3543 0.6306 1.6360 0.6129 0.5966 -0.3316 -0.3980
"""


def write_list(path, what: str, stamps: list[str], folder: str) -> None:
    path.write_text(HEADER.format(what=what) + "".join(f"{t} {folder}/{t}.png\n" for t in stamps))


def write_sequence(root, name: str = "rgbd_dataset_freiburg1_xyz", rgb=RGB_STAMPS, depth=DEPTH_STAMPS,
                   lists: bool = True):
    """A TUM RGB-D folder: rgb/ (colour PNGs), depth/ (uint16 PNGs), rgb.txt, depth.txt, groundtruth.txt."""
    seq = root / name
    (seq / "rgb").mkdir(parents=True)
    (seq / "depth").mkdir()
    for i, t in enumerate(rgb):
        assert cv2.imwrite(str(seq / "rgb" / f"{t}.png"), np.full((6, 8, 3), 20 * i, np.uint8))
    for i, t in enumerate(depth):
        assert cv2.imwrite(str(seq / "depth" / f"{t}.png"), np.full((6, 8), 5000 + i, np.uint16))
    if lists:
        write_list(seq / "rgb.txt", "color", rgb, "rgb")
        write_list(seq / "depth.txt", "depth", depth, "depth")
    (seq / "groundtruth.txt").write_text(GROUNDTRUTH)
    (seq / "accelerometer.txt").write_text("# accelerometer data\n1305031102.1 0.1 -9.8 0.2\n")
    return seq


def ns(text: str) -> int:
    seconds, fraction = text.split(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0"))


# ----------------------------------------------------------------------------------------- reading


def test_frames_pair_rgb_with_depth(tmp_path):
    seq = TumRgbdSequence(write_sequence(tmp_path))
    assert seq.format_name == "TUM RGB-D" and seq.warnings == []
    frames = list(seq.messages())
    assert all(isinstance(f, CameraFrame) and not f.stereo for f in frames)
    assert [f.t_ns for f in frames] == [ns(t) for t in RGB_STAMPS]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.depth.path.name for f in frames] == [f"{t}.png" for t in DEPTH_STAMPS]
    assert frames[1].images[0].load().shape == (6, 8)  # grayscale
    assert frames[1].images[0].load()[0, 0] == 20
    depth = frames[1].depth.load()
    assert depth.dtype == np.uint16 and depth[0, 0] == 5001
    assert frames[1].depth_scale == pytest.approx(1 / 5000)
    assert depth[0, 0] * frames[1].depth_scale == pytest.approx(1.0002)


@pytest.mark.parametrize("name, kinect", [("rgbd_dataset_freiburg1_xyz", 1), ("rgbd_dataset_freiburg2_desk", 2),
                                          ("rgbd_dataset_freiburg3_long_office_household", 3),
                                          ("tum_fr3_office", 3), ("FR2-pioneer", 2)])
def test_calibration_is_chosen_from_the_folder_name(tmp_path, name, kinect):
    seq = TumRgbdSequence(write_sequence(tmp_path, name=name))
    (cam,) = seq.calibration.cameras
    intrinsics, distortion = TUM_INTRINSICS[kinect]
    np.testing.assert_allclose(cam.intrinsics, intrinsics)
    np.testing.assert_allclose(cam.distortion, distortion)
    assert cam.distortion_model == ("none" if kinect == 3 else "radtan5")
    assert (cam.width, cam.height, cam.rate_hz) == (640, 480, 30.0)
    np.testing.assert_array_equal(cam.T_B_C, np.eye(4))
    assert seq.calibration.imu is None and seq.warnings == []


def test_fr1_distortion_is_in_opencv_order(tmp_path):
    (cam,) = TumRgbdSequence(write_sequence(tmp_path)).calibration.cameras
    k1, k2, p1, p2, k3 = cam.distortion
    assert (k1, k2, p1, p2, k3) == (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)


@pytest.mark.parametrize("name", ["my_recording", "fr12", "freiburg4_x", "afr1"])
def test_unknown_folder_name_uses_fr3_and_warns(tmp_path, name):
    seq = TumRgbdSequence(write_sequence(tmp_path, name=name))
    np.testing.assert_allclose(seq.calibration.cameras[0].intrinsics, TUM_INTRINSICS[3][0])
    (warning,) = seq.warnings
    assert name in warning and "freiburg3" in warning


def test_calibration_argument_overrides(tmp_path):
    mine = CameraCalibration(320, 240, [300.0, 300.0, 160.0, 120.0], name="cam0")
    seq = TumRgbdSequence(write_sequence(tmp_path, name="my_recording"), calibration=mine)
    assert seq.calibration.cameras == (mine,) and seq.warnings == []


def test_association_is_one_to_one(tmp_path):
    # Two RGB images near one depth image: the closer pair wins, the other RGB image gets no depth.
    rgb = ["100.000", "100.010", "100.100"]
    depth = ["100.012", "100.095"]
    seq = TumRgbdSequence(write_sequence(tmp_path, rgb=rgb, depth=depth))
    frames = list(seq.messages())
    assert [f.depth.path.name if f.depth else None for f in frames] == [None, "100.012.png", "100.095.png"]
    (warning,) = seq.warnings
    assert "depth.txt" in warning and "1 of 3 RGB images have no depth image within 20 ms" in warning


def test_max_depth_diff(tmp_path):
    seq = TumRgbdSequence(write_sequence(tmp_path), max_depth_diff_s=0.006)
    assert [f.depth is not None for f in seq.messages()] == [True, True, False, False]
    assert "2 of 4 RGB images" in seq.warnings[0] and "6 ms" in seq.warnings[0]
    with pytest.raises(ValueError):
        TumRgbdSequence(tmp_path / "rgbd_dataset_freiburg1_xyz", max_depth_diff_s=-1)


def brute_force_associate(a: list[int], b: list[int], max_diff: int) -> dict[int, int]:
    """TUM's associate.py, literally: all pairs within max_diff, closest first, each stamp used once."""
    pairs = sorted((abs(x - y), i, j) for i, x in enumerate(a) for j, y in enumerate(b) if abs(x - y) <= max_diff)
    out, used = {}, set()
    for _, i, j in pairs:
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 200), unique=True, max_size=30), st.lists(st.integers(0, 200), unique=True, max_size=30),
       st.integers(0, 20))
def test_associate_matches_tum_associate_py(a, b, max_diff):
    a, b = sorted(a), sorted(b)
    got = associate(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), max_diff)
    assert got == brute_force_associate(a, b, max_diff)


def test_ground_truth(tmp_path):
    path = write_sequence(tmp_path)
    traj = TumRgbdSequence(path).ground_truth()
    np.testing.assert_array_equal(traj.t_ns, [1305031098665900000, 1305031098675800000])
    np.testing.assert_allclose(traj.p_W[0], [1.3563, 0.6305, 1.6380])
    q = np.array([-0.3986, 0.6132, 0.5962, -0.3311])  # w x y z
    np.testing.assert_allclose(traj.q_W_B[0], q / np.linalg.norm(q))
    (path / "groundtruth.txt").unlink()
    assert TumRgbdSequence(path).ground_truth() is None


def test_messages_are_lazy(tmp_path):
    path = write_sequence(tmp_path)
    seq = TumRgbdSequence(path)
    for png in [*(path / "rgb").iterdir(), *(path / "depth").iterdir()]:
        png.unlink()
    frames = list(seq.messages())  # nothing is opened while iterating
    assert len(frames) == 4 and all(f.depth is not None for f in frames)
    with pytest.raises(DataError) as err:
        frames[2].images[0].load()
    assert f"rgb/{RGB_STAMPS[2]}.png" in str(err.value) and "missing" in str(err.value)
    with pytest.raises(DataError, match=f"depth/{DEPTH_STAMPS[2]}.png"):
        frames[2].depth.load()


# ------------------------------------------------------------------------------ folders without lists


def test_without_lists_stamps_come_from_file_names(tmp_path):
    path = write_sequence(tmp_path, lists=False)
    (path / "rgb" / "notes.txt").write_text("not an image")
    seq = TumRgbdSequence(path)
    frames = list(seq.messages())
    assert [f.t_ns for f in frames] == [ns(t) for t in RGB_STAMPS]
    assert all(f.depth is not None for f in frames)
    (warning,) = seq.warnings
    assert "rgb" in warning and "1 files not named <seconds>.png" in warning and "notes.txt" in warning


def test_rgb_only_folder_has_frames_without_depth(tmp_path):
    path = write_sequence(tmp_path, lists=False, depth=[])
    (path / "depth").rmdir()
    seq = TumRgbdSequence(path)
    assert [f.depth for f in seq.messages()] == [None] * 4
    (warning,) = seq.warnings
    assert "no depth.txt or depth/ folder" in warning


def test_duplicate_stamp_in_file_names(tmp_path):
    path = write_sequence(tmp_path, lists=False)
    cv2.imwrite(str(path / "rgb" / f"{RGB_STAMPS[1]}0.png"), np.zeros((6, 8), np.uint8))
    with pytest.raises(DataError) as err:
        TumRgbdSequence(path)
    assert "rgb" in str(err.value) and "duplicated" in str(err.value) and f"{RGB_STAMPS[1]}0.png" in str(err.value)


def test_no_rgb_at_all(tmp_path):
    with pytest.raises(DataError, match="rgb.txt or an rgb/ folder"):
        TumRgbdSequence(tmp_path)
    with pytest.raises(DataError, match="sequence folder not found"):
        TumRgbdSequence(tmp_path / "absent")


# ---------------------------------------------------------------------------------------- defects


def test_missing_files_are_skipped_with_one_warning_each(tmp_path):
    path = write_sequence(tmp_path)
    (path / "rgb" / f"{RGB_STAMPS[1]}.png").unlink()
    (path / "rgb" / f"{RGB_STAMPS[3]}.png").unlink()
    (path / "depth" / f"{DEPTH_STAMPS[0]}.png").unlink()
    seq = TumRgbdSequence(path)
    frames = list(seq.messages())
    assert [f.t_ns for f in frames] == [ns(RGB_STAMPS[0]), ns(RGB_STAMPS[2])]
    assert frames[0].depth is None and frames[1].depth.path.name == f"{DEPTH_STAMPS[2]}.png"
    rgb_warning, depth_warning, unpaired = seq.warnings
    assert "rgb.txt" in rgb_warning and "2 of 4 rgb images are missing" in rgb_warning and "line 5" in rgb_warning
    assert "depth.txt" in depth_warning and "1 of 4 depth images are missing" in depth_warning
    assert "1 of 2 RGB images have no depth" in unpaired


@pytest.mark.parametrize("body, where, words", [
    ("1.0 rgb/a.png\n2.0 rgb/b.png\n2.0 rgb/c.png\n", "rgb.txt:6", "duplicated"),
    ("1.0 rgb/a.png\n3.0 rgb/b.png\n2.0 rgb/c.png\n", "rgb.txt:6", "out-of-order"),
    ("1.0 rgb/a.png\nnow rgb/b.png\n", "rgb.txt:5", "not a number"),
    ("1.0 rgb/a.png\n2.0\n", "rgb.txt:5", "expected 2 columns"),
    ("1.0 rgb/a.png\nnan rgb/b.png\n", "rgb.txt:5", "not finite"),
    ("1.0 rgb/a.png\n1e30 rgb/b.png\n", "rgb.txt:5", "out of range"),
])
def test_bad_rgb_txt_names_file_and_line(tmp_path, body, where, words):
    path = write_sequence(tmp_path)
    (path / "rgb.txt").write_text(HEADER.format(what="color") + body)
    with pytest.raises(DataError) as err:
        TumRgbdSequence(path)
    assert where in str(err.value) and words in str(err.value)


def test_bad_depth_txt_names_file_and_line(tmp_path):
    path = write_sequence(tmp_path)
    (path / "depth.txt").write_text("# depth\n5.0 depth/a.png\n4.0 depth/b.png\n")
    with pytest.raises(DataError, match=r"depth\.txt:3: out-of-order"):
        TumRgbdSequence(path)


def test_all_listed_files_missing(tmp_path):
    path = write_sequence(tmp_path)
    (path / "rgb.txt").write_text("1.0 rgb/a.png\n")
    with pytest.raises(DataError, match=r"rgb\.txt: no RGB images listed"):
        TumRgbdSequence(path)


def test_open_sequence_detects_tum_rgbd(tmp_path):
    from slam.datasets import detect_format, open_sequence

    path = write_sequence(tmp_path)
    assert detect_format(path) == "tum-rgbd"
    assert isinstance(open_sequence(path), TumRgbdSequence)


# ------------------------------------------------------------------------------------ real snippet


@pytest.mark.skipif(not SNIPPET.is_dir(), reason=f"real TUM fr3 snippet not present at {SNIPPET}")
def test_real_fr3_office_snippet():
    seq = TumRgbdSequence(SNIPPET)
    frames = list(seq.messages())
    assert len(frames) == 17
    stamps = np.array([f.t_ns for f in frames])
    assert stamps[0] == 1341847980_722988000 and stamps[-1] == 1341847996_874766000
    assert np.all(np.diff(stamps) > 0)
    assert all(f.depth is None for f in frames) and seq.ground_truth() is None
    (cam,) = seq.calibration.cameras
    np.testing.assert_allclose(cam.intrinsics, [535.4, 539.2, 320.1, 247.6])
    assert cam.distortion_model == "none"
    (warning,) = seq.warnings  # only the missing depth; the name "tum_fr3_..." picks fr3 without a warning
    assert "no depth" in warning
    for frame in frames[::8]:
        image = frame.images[0].load()
        assert image.shape == (cam.height, cam.width) == (480, 640) and image.dtype == np.uint8
        assert image.std() > 10  # a real picture, not a blank


# ------------------------------------------------------------------------------------------- fuzz

_LIST_TOKENS = st.sampled_from(["1305031102.175304", "1305031102.211214", "rgb/", "rgb/1305031102.175304.png",
                                "rgb/1305031102.211214.png", ".", "..", "/", " ", "\t", "\n", "\r", "#", "0", "-1",
                                "1e999999", "1e-999999", "-0", "nan", "sNaN", "inf", "1_0", "\x00", "é", "x.png"])


@st.composite
def _mutated_list(draw):
    """A real rgb.txt with a few words replaced, to reach the checks behind the stamp parsing."""
    words = (HEADER.format(what="color") + "".join(f"{t} rgb/{t}.png\n" for t in RGB_STAMPS[:2])).split(" ")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(words) - 1))
        words[i] = draw(st.one_of(_LIST_TOKENS, st.floats().map(str), st.just("")))
    return " ".join(words)


_LIST_TEXT = st.one_of(
    st.text(max_size=300),
    _mutated_list(),
    st.lists(_LIST_TOKENS, max_size=60).map("".join),
    st.lists(st.tuples(st.one_of(st.floats(allow_nan=True).map(str), _LIST_TOKENS), _LIST_TOKENS), max_size=8)
    .map(lambda rows: "".join(f"{t} {name}\n" for t, name in rows)),
)


@pytest.fixture(scope="module")
def fuzz_sequence(tmp_path_factory):
    return write_sequence(tmp_path_factory.mktemp("tum_fuzz"), rgb=RGB_STAMPS[:2], depth=DEPTH_STAMPS[:2])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_LIST_TEXT)
def test_fuzzed_rgb_txt_raises_only_data_error(fuzz_sequence, text):
    listing = fuzz_sequence / "rgb.txt"
    listing.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        read_tum_list(listing)
        list(TumRgbdSequence(fuzz_sequence).messages())
    except DataError as exc:
        assert "rgb.txt" in str(exc)
