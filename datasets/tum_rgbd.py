"""TUM RGB-D sequences: ``rgb.txt`` / ``depth.txt`` lists, ``rgb/`` and ``depth/`` PNGs, ``groundtruth.txt``.

Each RGB image is paired one-to-one with the nearest depth image within ``max_depth_diff_s`` (the greedy
matching of TUM's ``associate.py``). Depth PNGs are uint16, 5000 units per metre, registered to the RGB
camera. Calibration is TUM's published one for the Kinect named in the folder (``freiburg1/2/3`` or
``fr1/2/3``). ``accelerometer.txt`` (Kinect tilt) is not used. There is no IMU: body = RGB camera.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from slam.messages import Calibration, CameraCalibration, CameraFrame, DataError, ImageFile, Message
from slam.parsing import StampChecker, csv_rows, expect_columns, seconds_to_ns

from .base import Sequence

DEPTH_SCALE = 1.0 / 5000.0  # metres per depth unit (TUM: 16-bit PNG, 5000 per metre)

# TUM's published RGB intrinsics (fx fy cx cy) and radtan5 distortion (k1 k2 p1 p2 k3, OpenCV's order);
# fr3 images were already undistorted by the Kinect driver.
TUM_INTRINSICS = {
    1: ([517.3, 516.5, 318.6, 255.3], [0.2624, -0.9531, -0.0054, 0.0026, 1.1633]),
    2: ([520.9, 521.0, 325.1, 249.7], [0.2312, -0.7849, -0.0033, -0.0001, 0.9172]),
    3: ([535.4, 539.2, 320.1, 247.6], []),
}
_KINECT_NAME = re.compile(r"(?<![a-z0-9])(?:freiburg|fr)([123])(?![0-9])", re.IGNORECASE)


def tum_camera(kinect: int) -> CameraCalibration:
    """TUM's published calibration of the Kinect RGB camera of freiburg ``kinect`` (1, 2 or 3)."""
    intrinsics, distortion = TUM_INTRINSICS[kinect]
    return CameraCalibration(640, 480, intrinsics, "radtan5" if distortion else "none", distortion,
                             rate_hz=30.0, name="cam0", source=f"TUM RGB-D freiburg{kinect} calibration")


def read_tum_list(path: str | Path) -> list[tuple[int, str, int]]:
    """``(t_ns, file name, line)`` rows of a TUM ``rgb.txt``/``depth.txt`` (``timestamp filename``)."""
    path = Path(path)
    check = StampChecker(path, "image")
    rows = []
    for line, fields in csv_rows(path, None):
        expect_columns(fields, 2, path, line, "timestamp filename")
        t_ns = seconds_to_ns(fields[0], path, line)
        check(t_ns, line)
        rows.append((t_ns, fields[1], line))
    return rows


def list_stamped_files(folder: Path) -> tuple[list[tuple[int, str, None]], list[str]]:
    """Rows like :func:`read_tum_list` from image files named ``<seconds>.png``, and the names that are not."""
    rows, others = [], []
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        try:
            if ext.lower() != ".png":
                raise DataError("not a PNG")
            rows.append((seconds_to_ns(stem, folder / name, None), f"{folder.name}/{name}", None))
        except DataError:
            others.append(name)
    rows.sort()
    for (t_prev, name_prev, _), (t_ns, name, _) in zip(rows, rows[1:]):
        if t_ns == t_prev:
            raise DataError(f"duplicated timestamp: {name_prev} and {name} name the same time", folder)
    return rows, others


def associate(rgb_ns: np.ndarray, depth_ns: np.ndarray, max_diff_ns: int) -> dict[int, int]:
    """One-to-one ``{rgb index: depth index}``, closest pairs first (TUM's ``associate.py``)."""
    if len(rgb_ns) == 0 or len(depth_ns) == 0:
        return {}
    # Only the few depth stamps inside each window are candidates, so this stays O(N log N).
    lo = np.searchsorted(depth_ns, rgb_ns - max_diff_ns, side="left")
    hi = np.searchsorted(depth_ns, rgb_ns + max_diff_ns, side="right")
    candidates = sorted((abs(int(depth_ns[j]) - int(t)), i, j)
                        for i, (t, a, b) in enumerate(zip(rgb_ns, lo, hi)) for j in range(a, b))
    pairs: dict[int, int] = {}
    used_depth: set[int] = set()
    for _, i, j in candidates:
        if i not in pairs and j not in used_depth:
            pairs[i] = j
            used_depth.add(j)
    return pairs


class TumRgbdSequence(Sequence):
    """A TUM RGB-D sequence folder (``rgbd_dataset_freiburgK_...``); also a bare ``rgb/`` of ``<seconds>.png``.

    Frames carry their position in the yielded stream as ``index``.
    """

    format_name = "TUM RGB-D"

    def __init__(self, path: str | Path, max_depth_diff_s: float = 0.02,
                 calibration: CameraCalibration | None = None):
        super().__init__(path)
        if not self.path.is_dir():
            raise DataError("sequence folder not found", self.path)
        if not (max_depth_diff_s >= 0):
            raise ValueError(f"max_depth_diff_s must be >= 0, got {max_depth_diff_s!r}")
        self.max_depth_diff_ns = int(round(max_depth_diff_s * 1e9))
        self._calibration = Calibration((calibration if calibration is not None else self._published_camera(),))
        rgb = self._read_stream("rgb")
        if rgb is None:
            raise DataError("no RGB images: expected rgb.txt or an rgb/ folder of <seconds>.png files", self.path)
        if not rgb:
            raise DataError("no RGB images listed (or all their files are missing)", self._list_source("rgb"))
        depth = self._read_stream("depth")
        self._frames = self._associate(rgb, depth)
        gt = self.path / "groundtruth.txt"  # camera (= body) poses
        self.ground_truth_path = gt if gt.exists() else None

    def _published_camera(self) -> CameraCalibration:
        folder = Path(os.path.abspath(self.path)).name  # lexical: a symlink's own name counts
        match = _KINECT_NAME.search(folder)
        if match is None:
            self.warn(f"{self.path}: folder name {folder!r} names no Kinect (freiburg1/2/3 or fr1/2/3); using "
                      "the freiburg3 calibration (undistorted images). Pass calibration= if that is wrong")
            return tum_camera(3)
        return tum_camera(int(match.group(1)))

    @property
    def calibration(self) -> Calibration:
        return self._calibration

    # ----------------------------------------------------------------------------------- frames
    def _list_source(self, kind: str) -> Path:
        listing = self.path / f"{kind}.txt"
        return listing if listing.exists() else self.path / kind

    def _read_stream(self, kind: str) -> list[tuple[int, Path]] | None:
        """``[(t_ns, path)]`` of the ``kind`` (rgb/depth) images whose files exist; None when there is no list."""
        listing, folder = self.path / f"{kind}.txt", self.path / kind
        if listing.exists():
            rows = read_tum_list(listing)
            source = listing
        elif folder.is_dir():
            rows, others = list_stamped_files(folder)
            if others:
                self.warn(f"{folder}: ignored {len(others)} files not named <seconds>.png (e.g. {others[0]})")
            source = folder
        else:
            return None
        present, missing = [], []
        for t_ns, name, line in rows:
            # isfile, not a folder listing: list entries may name any folder (and odd names are just missing).
            image = self.path / name
            (present if os.path.isfile(image) else missing).append((t_ns, image, line))
        if missing:
            _, first, line = missing[0]
            where = f" at line {line}" if line is not None else ""
            self.warn(f"{source}: {len(missing)} of {len(rows)} {kind} images are missing (skipped; first"
                      f"{where}: {first})")
        return [(t_ns, image) for t_ns, image, _ in present]

    def _associate(self, rgb: list[tuple[int, Path]], depth: list[tuple[int, Path]] | None):
        if depth is None:
            self.warn(f"{self.path}: no depth.txt or depth/ folder; frames carry no depth")
            return [(t_ns, image, None) for t_ns, image in rgb]
        rgb_ns = np.array([t for t, _ in rgb], dtype=np.int64)
        depth_ns = np.array([t for t, _ in depth], dtype=np.int64)
        pairs = associate(rgb_ns, depth_ns, self.max_depth_diff_ns)
        if len(pairs) < len(rgb):
            self.warn(f"{self._list_source('depth')}: {len(rgb) - len(pairs)} of {len(rgb)} RGB images have no "
                      f"depth image within {self.max_depth_diff_ns / 1e6:g} ms (their frames carry no depth)")
        return [(t_ns, image, depth[pairs[i]][1] if i in pairs else None) for i, (t_ns, image) in enumerate(rgb)]

    @property
    def frame_count(self) -> int:
        return len(self._frames)

    def frames(self) -> Iterator[CameraFrame]:
        for index, (t_ns, image, depth) in enumerate(self._frames):
            yield CameraFrame(t_ns, (ImageFile(image),), depth=ImageFile(depth, grayscale=False) if depth else None,
                              depth_scale=DEPTH_SCALE, index=index)

    def messages(self) -> Iterator[Message]:
        return self.frames()

    # ----------------------------------------------------------------------------- ground truth
