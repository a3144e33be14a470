"""KITTI odometry sequences: rectified gray stereo ``image_0/`` + ``image_1/``, ``calib.txt``, ``times.txt``.

Layout: ``sequences/NN/{image_0,image_1}/000000.png ...``, ``calib.txt`` (``P0: 12 numbers`` ... row-major
3x4 rectified projections; optional ``Tr:`` velodyne-to-cam0, unused), ``times.txt`` (seconds, one per frame).
Ground truth ``poses/NN.txt`` holds row-major 3x4 ``T_W_C0`` per frame.

There is no IMU: the body frame is the rectified left camera (``T_B_C0 = I``), and the ground-truth world
is the first left-camera frame (z forward, y down), so its gravity is not along -z.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from slam.geometry import rot_to_quat
from slam.messages import Calibration, CameraCalibration, CameraFrame, DataError, ImageFile, Message, Trajectory
from slam.parsing import StampChecker, csv_rows, seconds_to_ns

from .base import Sequence

_PROJECTIONS = ("P0", "P1", "P2", "P3")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _numbers(fields: list[str], n: int, path, line: int, field: str, what: str) -> np.ndarray:
    if len(fields) != n:
        raise DataError(f"expected {n} numbers ({what}), found {len(fields)}", path, line, field)
    values = np.empty(n)
    for i, text in enumerate(fields):
        try:
            values[i] = float(text)
        except ValueError:
            raise DataError(f"value {i + 1}: {text!r} is not a number", path, line, field) from None
    if not np.all(np.isfinite(values)):
        raise DataError("contains NaN or inf", path, line, field)
    return values


def read_kitti_calib(path: str | Path) -> dict[str, tuple[np.ndarray, int]]:
    """``{key: (3x4 matrix, line)}`` from a KITTI odometry ``calib.txt`` (``KEY: 12 numbers`` per line).

    P0..P3 and Tr must hold 12 numbers; other keys are ignored. P0 is required here, P1 by stereo readers.
    """
    path = Path(path)
    found: dict[str, tuple[np.ndarray, int]] = {}
    for line, fields in csv_rows(path, None):
        key, sep, rest = " ".join(fields).partition(":")
        key = key.strip()
        if not sep or not key:
            raise DataError("expected 'KEY: numbers' (e.g. 'P0: 12 numbers')", path, line)
        if key not in _PROJECTIONS and key != "Tr":
            continue
        if key in found:
            raise DataError(f"{key} given twice (first at line {found[key][1]})", path, line, key)
        what = "row-major 3x4 projection matrix" if key != "Tr" else "row-major 3x4 transform"
        found[key] = (_numbers(rest.split(), 12, path, line, key, what).reshape(3, 4), line)
    if "P0" not in found:
        raise DataError("required projection matrix is missing", path, field="P0")
    return found


def _rectified_K(P: np.ndarray, path, line: int, field: str) -> np.ndarray:
    """``K`` from a rectified projection ``K [I | t]``: the left 3x3 must be an upper-triangular pinhole K."""
    K = P[:, :3]
    scale = max(abs(K[0, 0]), abs(K[1, 1]), 1.0)
    off = np.abs([K[0, 1], K[1, 0], K[2, 0], K[2, 1], K[2, 2] - 1.0]).max()
    if not (K[0, 0] > 0 and K[1, 1] > 0 and K[0, 2] > 0 and K[1, 2] > 0) or off > 1e-9 * scale:
        raise DataError(f"left 3x3 of the projection is not a rectified pinhole K (fx, fy, cx, cy > 0, no "
                        f"skew, last row 0 0 1): {K.tolist()}", path, line, field)
    return K


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header alone; other formats fall back to a full decode."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError as exc:
        raise DataError(f"cannot read the image to get its size: {exc.strerror}", path) from None
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        if width > 0 and height > 0:
            return int(width), int(height)
    image = ImageFile(path, grayscale=False).load()
    return int(image.shape[1]), int(image.shape[0])


def _indexed_pngs(folder: Path) -> dict[int, str]:
    """``{frame number: file name}`` for the ``NNNNNN.png`` files of a folder (one listing, no stats)."""
    out = {}
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".png" and stem.isascii() and stem.isdigit():
            out[int(stem)] = name
    return out


class KittiSequence(Sequence):
    """A KITTI odometry sequence folder (``.../sequences/NN``); mono when ``image_1/`` is absent.

    Frames carry the KITTI frame number as ``index`` (the row of ``times.txt`` and of the poses file).
    """

    format_name = "KITTI odometry"

    def __init__(self, path: str | Path, poses: str | Path | None = None):
        super().__init__(path)
        if not self.path.is_dir():
            raise DataError("sequence folder not found", self.path)
        self.left_dir, self.right_dir = self.path / "image_0", self.path / "image_1"
        if not self.left_dir.is_dir():
            raise DataError("image folder not found (KITTI odometry needs image_0/)", self.left_dir)
        self.calib_path, self.times_path = self.path / "calib.txt", self.path / "times.txt"
        self._calib = read_kitti_calib(self.calib_path)
        self._stamps = self._read_times()
        left = _indexed_pngs(self.left_dir)
        right = _indexed_pngs(self.right_dir) if self.right_dir.is_dir() else {}
        if self.right_dir.is_dir() and not right:
            self.warn(f"{self.right_dir}: no PNG images; reading the sequence as mono (image_0 only)")
        self.stereo = bool(right)
        if self.stereo and "P1" not in self._calib:
            raise DataError("projection matrix of the right camera is missing (image_1/ is present)",
                            self.calib_path, field="P1")
        self._frames = self._pair_frames(left, right)
        self._cameras = self._read_cameras()
        self._calibration: Calibration | None = None  # built on first use: the image size needs a file read
        self.poses_path = Path(poses) if poses is not None else self._find_poses()
        if poses is not None and not self.poses_path.is_file():
            raise DataError("poses file not found", self.poses_path)

    # ----------------------------------------------------------------------------------- frames
    def _read_times(self) -> list[int]:
        check = StampChecker(self.times_path, "frame")
        stamps = []
        for line, fields in csv_rows(self.times_path, None):
            if len(fields) != 1:
                raise DataError(f"expected one timestamp in seconds per line, found {len(fields)} values",
                                self.times_path, line)
            t_ns = seconds_to_ns(fields[0], self.times_path, line)
            check(t_ns, line)
            stamps.append(t_ns)
        if not stamps:
            raise DataError("no timestamps", self.times_path)
        return stamps

    def _pair_frames(self, left: dict[int, str], right: dict[int, str]) -> list[tuple[int, int, tuple[Path, ...]]]:
        """(frame number, t_ns, image paths) for the frames that have a stamp and every image."""
        frames, missing = [], []
        for i, t_ns in enumerate(self._stamps):
            names = [left.get(i)] + ([right.get(i)] if self.stereo else [])
            if all(names):
                folders = (self.left_dir, self.right_dir)
                frames.append((i, t_ns, tuple(folder / name for folder, name in zip(folders, names))))
            else:
                missing.append(i)
        counts = [(self.left_dir, len(left))] + ([(self.right_dir, len(right))] if self.stereo else [])
        if any(n != len(self._stamps) for _, n in counts):
            held = " and ".join(f"{folder} holds {n}" for folder, n in counts)
            self.warn(f"{self.times_path} lists {len(self._stamps)} frames but {held} images; using the "
                      f"{len(frames)} frames that have a stamp and all images")
        elif missing:
            self.warn(f"{len(missing)} of the {len(self._stamps)} frames in {self.times_path} have missing image "
                      f"files (skipped; first: frame {missing[0]:06d})")
        if not frames:
            raise DataError(f"no frame has both a stamp in times.txt and its images in {self.left_dir}"
                            + (f" and {self.right_dir}" if self.stereo else ""), self.path)
        return frames

    @property
    def frame_count(self) -> int:
        return len(self._frames)

    def frames(self) -> Iterator[CameraFrame]:
        for i, t_ns, paths in self._frames:
            yield CameraFrame(t_ns, tuple(ImageFile(p) for p in paths), index=i)

    def messages(self) -> Iterator[Message]:
        return self.frames()

    # ------------------------------------------------------------------------------ calibration
    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = self._build_calibration()
        return self._calibration

    def _read_cameras(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(fx fy cx cy, T_B_C) per camera from the rectified projections; body = left camera."""
        P0, line0 = self._calib["P0"]
        K0 = _rectified_K(P0, self.calib_path, line0, "P0")
        cameras = [(K0, np.eye(4))]
        if self.stereo:
            P1, line1 = self._calib["P1"]
            K1 = _rectified_K(P1, self.calib_path, line1, "P1")
            # P = K [I | t] maps a point of the rectified reference frame R: p_Ci = p_R + t_i.
            t0, t1 = np.linalg.solve(K0, P0[:, 3]), np.linalg.solve(K1, P1[:, 3])
            T_C0_C1 = np.eye(4)
            T_C0_C1[:3, 3] = t0 - t1  # KITTI: (baseline, 0, 0), baseline = -P1[0,3] / P1[0,0]
            if not T_C0_C1[0, 3] > 0:
                self.warn(f"{self.calib_path}:{line1}: P1 puts the right camera at x = {T_C0_C1[0, 3]:.4g} m "
                          "from the left one (expected a positive baseline)")
            cameras.append((K1, T_C0_C1))
        return cameras

    def _build_calibration(self) -> Calibration:
        width, height = _image_size(self._frames[0][2][0])  # all KITTI images of a sequence share a size
        stamps = np.asarray(self._stamps, dtype=np.int64)
        rate_hz = 1e9 / float(np.median(np.diff(stamps))) if len(stamps) > 1 else None
        return Calibration(tuple(
            CameraCalibration(width, height, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], T_B_C=T_B_C, rate_hz=rate_hz,
                              name=f"cam{i}", source=str(self.calib_path))
            for i, (K, T_B_C) in enumerate(self._cameras)))

    # ----------------------------------------------------------------------------- ground truth
    def _find_poses(self) -> Path | None:
        folder = Path(os.path.abspath(self.path))  # lexical, so a symlinked sequences/NN keeps its poses/
        for candidate in (folder.parent.parent / "poses" / f"{folder.name}.txt", folder / "poses.txt"):
            if candidate.is_file():
                return candidate
        return None

    def ground_truth(self) -> Trajectory | None:
        """Body (= left camera) poses at the ``times.txt`` stamps, or None without a poses file."""
        if self.poses_path is None:
            return None
        path = self.poses_path
        T_W_C0, lines = [], []
        for line, fields in csv_rows(path, None):
            T = _numbers(fields, 12, path, line, "T_W_C0", "row-major 3x4 pose").reshape(3, 4)
            R = T[:, :3]
            # KITTI prints 6 significant digits, so rotations are orthonormal only to ~1e-6.
            if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
                raise DataError("rotation part is not a rotation matrix", path, line, "T_W_C0")
            T_W_C0.append(T)
            lines.append(line)
        if len(T_W_C0) != len(self._stamps):
            raise DataError(f"{len(T_W_C0)} poses but {self.times_path} lists {len(self._stamps)} frames; "
                            "they must match row for row", path)
        poses = np.asarray(T_W_C0)
        return Trajectory(np.asarray(self._stamps, dtype=np.int64), poses[:, :, 3], rot_to_quat(poses[:, :, :3]))
