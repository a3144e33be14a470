"""ASL / EuRoC MAV folders and TUM-VI (same ``mav0/`` layout, equidistant cameras, Kalibr YAML).

Layout: ``mav0/cam0|cam1/{data.csv,data/*.png,sensor.yaml}``, ``mav0/imu0/{data.csv,sensor.yaml}``,
ground truth in ``mav0/state_groundtruth_estimate0/data.csv`` (EuRoC), ``mav0/mocap0/data.csv`` (TUM-VI)
or a separate file (``groundtruth*/*.csv|txt`` beside ``mav0``, or ``open_sequence(..., ground_truth=)``).
Calibration from ``sensor.yaml`` files, else Kalibr files (TUM-VI's ``dso/camchain.yaml``,
``dso/imu_config.yaml``), or given explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from slam.calibration_io import read_asl_camera, read_asl_imu, read_kalibr_camchain, read_kalibr_imu
from slam.messages import Calibration, CameraFrame, DataError, ImageFile, Message
from slam.parsing import StampChecker, csv_rows, expect_columns, parse_ns

from .base import ImuCsvStream, Sequence, merge_streams

_KALIBR_CAMCHAINS = ("dso/camchain.yaml", "camchain-imucam.yaml", "camchain.yaml")
_KALIBR_IMUS = ("dso/imu_config.yaml", "imu.yaml", "imu_config.yaml")


def find_mav0(path: Path) -> Path | None:
    """The ``mav0`` folder of an ASL sequence given either the sequence root or ``mav0`` itself."""
    for candidate in (path / "mav0", path):
        if (candidate / "imu0").is_dir() or (candidate / "cam0").is_dir():
            return candidate
    return None


class AslSequence(Sequence):
    format_name = "ASL/EuRoC"

    def __init__(self, path: str | Path, calib: str | Path | None = None, imu_calib: str | Path | None = None,
                 stereo_tolerance_s: float = 0.001):
        super().__init__(path)
        if not self.path.exists():
            raise DataError("sequence folder not found", self.path)
        mav0 = find_mav0(self.path)
        if mav0 is None:
            raise DataError("not an ASL/EuRoC sequence: no mav0/cam0 or mav0/imu0 folder", self.path)
        self.root = mav0.parent if mav0.name == "mav0" else mav0
        self.mav0 = mav0
        self.stereo_tolerance_ns = int(stereo_tolerance_s * 1e9)
        camera_dirs = sorted((d for d in mav0.iterdir() if d.is_dir() and d.name.startswith("cam")
                              and d.name[3:].isdigit()), key=lambda d: int(d.name[3:]))
        self._calibration = self._read_calibration(camera_dirs, calib, imu_calib)
        if (self.root / "dso").is_dir() or (mav0 / "mocap0").is_dir():
            self.format_name = "TUM-VI"
        self.camera_dirs = camera_dirs[:len(self._calibration.cameras)]
        self._frames = self._read_frames()  # small: stamps and file names only, images stay on disk
        self.imu_csv = mav0 / "imu0" / "data.csv"
        if self._calibration.imu is not None and not self.imu_csv.exists():
            raise DataError("IMU data file not found", self.imu_csv)
        self.ground_truth_path = self._find_ground_truth()

    # -------------------------------------------------------------------------------- calibration
    def _read_calibration(self, camera_dirs, calib, imu_calib) -> Calibration:
        if not camera_dirs:
            raise DataError("no camera folders (mav0/cam0, ...)", self.mav0)
        kalibr_cams = Path(calib) if calib else self._first_existing(_KALIBR_CAMCHAINS)
        if calib is None and all((d / "sensor.yaml").exists() for d in camera_dirs):
            cameras = tuple(read_asl_camera(d / "sensor.yaml", d.name) for d in camera_dirs)
        elif kalibr_cams is not None:
            cameras = read_kalibr_camchain(kalibr_cams)[:len(camera_dirs)]
        else:
            missing = [str(d / "sensor.yaml") for d in camera_dirs if not (d / "sensor.yaml").exists()]
            raise DataError(f"no camera calibration: {', '.join(missing)} missing and no Kalibr camchain "
                            "given (--calib)", self.path)
        if imu_calib:
            imu = read_kalibr_imu(imu_calib)
        elif (self.mav0 / "imu0" / "sensor.yaml").exists():
            imu = read_asl_imu(self.mav0 / "imu0" / "sensor.yaml")
        elif (kalibr_imu := self._first_existing(_KALIBR_IMUS)) is not None:
            imu = read_kalibr_imu(kalibr_imu)
        elif (self.mav0 / "imu0").is_dir():
            raise DataError("IMU data present but no IMU calibration (mav0/imu0/sensor.yaml or a Kalibr imu "
                            "YAML)", self.mav0 / "imu0")
        else:
            imu = None
        return Calibration(cameras, imu)

    def _first_existing(self, names) -> Path | None:
        return next((self.root / n for n in names if (self.root / n).exists()), None)

    @property
    def calibration(self) -> Calibration:
        return self._calibration

    # ------------------------------------------------------------------------------------- images
    def _read_camera_csv(self, cam_dir: Path) -> dict[int, Path]:
        """``{t_ns: image path}`` for rows whose image exists; rows without an image are counted once."""
        csv = cam_dir / "data.csv"
        image_dir = cam_dir / "data"
        if not image_dir.is_dir():
            raise DataError("image folder not found", image_dir)
        present = {entry.name for entry in os.scandir(image_dir)}
        check = StampChecker(csv, f"{cam_dir.name} image")
        images: dict[int, Path] = {}
        missing: list[tuple[int, str]] = []
        for line, fields in csv_rows(csv):
            expect_columns(fields, 2, csv, line, "timestamp [ns], filename")
            t_ns = parse_ns(fields[0], csv, line)
            check(t_ns, line)
            if fields[1] in present:
                images[t_ns] = image_dir / fields[1]
            else:
                missing.append((line, fields[1]))
        if missing:
            self.warn(f"{csv}: {len(missing)} of {len(images) + len(missing)} rows point to missing images "
                      f"(skipped; first at line {missing[0][0]}: data/{missing[0][1]})")
        if not images:
            raise DataError("no images found (empty data.csv or all files missing)", csv)
        return images

    def _read_frames(self) -> list[tuple[int, tuple[Path, ...]]]:
        per_camera = [self._read_camera_csv(d) for d in self.camera_dirs]
        offset_ns = int(round(self._calibration.cameras[0].time_offset_s * 1e9))
        left = per_camera[0]
        if len(per_camera) == 1:
            return [(t + offset_ns, (p,)) for t, p in left.items()]
        # Pair every other camera to cam0 by stamp (EuRoC: identical stamps; tolerance for others).
        others = [(np.fromiter(c, dtype=np.int64), list(c.values())) for c in per_camera[1:]]
        frames, unpaired = [], 0
        for t_ns, path in left.items():
            paths = [path]
            for stamps, files in others:
                i = int(np.searchsorted(stamps, t_ns))
                near = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
                j = min(near, key=lambda j: abs(int(stamps[j]) - t_ns), default=None)
                if j is None or abs(int(stamps[j]) - t_ns) > self.stereo_tolerance_ns:
                    break
                paths.append(files[j])
            if len(paths) == len(per_camera):
                frames.append((t_ns + offset_ns, tuple(paths)))
            else:
                unpaired += 1
        if unpaired:
            self.warn(f"{self.mav0}: {unpaired} of {len(left)} cam0 images have no partner image in "
                      f"{', '.join(d.name for d in self.camera_dirs[1:])} within "
                      f"{self.stereo_tolerance_ns / 1e6:g} ms (skipped)")
        if not frames:
            raise DataError("no stereo pairs: camera stamps never match", self.mav0)
        return frames

    @property
    def frame_count(self) -> int:
        return len(self._frames)

    def frames(self) -> Iterator[CameraFrame]:
        for index, (t_ns, paths) in enumerate(self._frames):
            yield CameraFrame(t_ns, tuple(ImageFile(p) for p in paths), index=index)

    def messages(self) -> Iterator[Message]:
        streams = [self.frames()]
        if self._calibration.imu is not None:
            streams.append(iter(ImuCsvStream(self, self.imu_csv, self._calibration.imu.rate_hz)))
        return merge_streams(*streams)

    # ------------------------------------------------------------------------------- ground truth
    def _find_ground_truth(self) -> Path | None:
        for rel in ("state_groundtruth_estimate0/data.csv", "mocap0/data.csv", "leica0/data.csv"):
            if (self.mav0 / rel).exists():
                return self.mav0 / rel
        # A separate ground-truth file beside mav0: prefer EuRoC CSVs (they carry velocity and biases).
        found = sorted(self.root.glob("groundtruth*/*.csv")) + sorted(self.root.glob("groundtruth*/*.txt")) + \
            sorted(self.root.glob("groundtruth*.txt")) + sorted(self.root.glob("groundtruth*.csv"))
        return found[0] if found else None

