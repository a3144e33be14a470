"""Feature-track CSV (GTSAM's ``eqvio_processed`` format): IMU rows + per-frame feature observations.

One file, ``row_type`` in the first column: ``meta`` (key, value: camera intrinsics, ``T_ci_*`` = the
camera pose in the IMU frame), ``imu`` (t_abs [s], gyro, accel) and ``vision_feature`` (t_abs, frame_idx,
landmark_id, u_norm, v_norm: undistorted normalized coordinates of cam0). Lets the backend run on real
tracks without images. :func:`write_feature_csv` writes the format (e.g. the synthetic sequences' exact
tracks, :mod:`slam.datasets.synthetic.tracks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from slam.calibration_io import read_asl_imu, read_kalibr_imu
from slam.geometry import make_transform, quat_to_rot, rot_to_quat
from slam.messages import (Calibration, CameraCalibration, DataError, FeatureFrame, ImuCalibration, ImuSample,
                           Message)
from slam.parsing import StampChecker, csv_rows, format_seconds, parse_floats, seconds_to_ns
from slam.trajectory_io import atomic_write_text

from .base import Sequence, merge_streams

HEADER = ["row_type", "t_abs", "t_rel", "seq", "frame_idx", "landmark_id", "gx", "gy", "gz", "ax", "ay", "az",
          "bgx", "bgy", "bgz", "bax", "bay", "baz", "u_norm", "v_norm", "key", "value"]
COL = {name: i for i, name in enumerate(HEADER)}

# The tracks come from EuRoC (ADIS16448); used when no IMU calibration file is given.
EUROC_IMU = dict(gyro_noise_density=1.6968e-4, gyro_random_walk=1.9393e-5, accel_noise_density=2.0e-3,
                 accel_random_walk=3.0e-3, rate_hz=200.0)


def is_feature_csv(path: Path) -> bool:
    if not path.is_file() or path.suffix != ".csv":
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().startswith("row_type,t_abs")


class FeatureTrackSequence(Sequence):
    format_name = "feature tracks (CSV)"

    def __init__(self, path: str | Path, imu_calib: str | Path | None = None,
                 resolution: tuple[int, int] = (752, 480)):
        super().__init__(path)
        if not self.path.is_file():
            raise DataError("feature-track CSV not found", self.path)
        self._check_header()
        self.meta = self._read_meta()
        camera = self._camera(resolution)
        if imu_calib is None:
            imu = ImuCalibration(**EUROC_IMU, source=f"{self.path} (EuRoC ADIS16448 defaults)")
            self.warn(f"{self.path}: no IMU calibration given; using EuRoC's ADIS16448 noise values")
        elif Path(imu_calib).name == "sensor.yaml":
            imu = read_asl_imu(imu_calib)
        else:
            imu = read_kalibr_imu(imu_calib)
        # T_ci is the camera in the IMU frame S; the body frame B is the IMU calibration's (T_B_S)
        camera = replace(camera, T_B_C=imu.T_B_S @ camera.T_B_C)
        self._calibration = Calibration((camera,), imu)

    def _check_header(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            header = handle.readline().strip().split(",")
        if header[:len(HEADER)] != HEADER:
            raise DataError(f"unexpected header; expected columns {','.join(HEADER)}", self.path, 1)

    def _read_meta(self) -> dict[str, str]:
        meta = {}
        for line, fields in csv_rows(self.path):
            if line == 1:
                continue
            if fields[0] != "meta":
                break  # meta rows come first
            if len(fields) != len(HEADER):
                raise DataError(f"expected {len(HEADER)} columns, found {len(fields)}", self.path, line)
            meta[fields[COL["key"]]] = fields[COL["value"]]
        if meta.get("measurement_space", "normalized") != "normalized":
            raise DataError(f"measurement_space {meta['measurement_space']!r} is not supported (only "
                            "'normalized')", self.path, field="meta.measurement_space")
        return meta

    def _meta_float(self, key: str) -> float:
        if key not in self.meta:
            raise DataError("required meta row is missing", self.path, field=f"meta.{key}")
        try:
            return float(self.meta[key])
        except ValueError:
            raise DataError(f"{self.meta[key]!r} is not a number", self.path, field=f"meta.{key}") from None

    def _camera(self, resolution: tuple[int, int]) -> CameraCalibration:
        intrinsics = [self._meta_float(k) for k in ("camera_fx", "camera_fy", "camera_cx", "camera_cy")]
        q = np.array([self._meta_float(f"T_ci_q{a}") for a in "wxyz"])
        t = np.array([self._meta_float(f"T_ci_t{a}") for a in "xyz"])
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise DataError(f"quaternion norm {np.linalg.norm(q):.4f} is not 1", self.path, field="meta.T_ci_q")
        # T_ci is the camera pose in the IMU frame (it equals EuRoC cam0's T_BS, EuRoC's IMU frame being B).
        return CameraCalibration(width=resolution[0], height=resolution[1], intrinsics=intrinsics,
                                 T_B_C=make_transform(quat_to_rot(q), t), rate_hz=20.0, name="cam0",
                                 source=str(self.path))

    @property
    def calibration(self) -> Calibration:
        return self._calibration

    def _rows(self, row_type: str) -> Iterator[tuple[int, list[str]]]:
        for line, fields in csv_rows(self.path):
            if fields[0] != row_type:
                continue
            if len(fields) != len(HEADER):
                raise DataError(f"expected {len(HEADER)} columns, found {len(fields)}", self.path, line)
            yield line, fields

    def imu(self) -> Iterator[ImuSample]:
        check = StampChecker(self.path, "IMU")
        names = HEADER[COL["gx"]:COL["az"] + 1]
        skipped = []
        for line, f in self._rows("imu"):
            t_ns = seconds_to_ns(f[COL["t_abs"]], self.path, line, "t_abs")
            check(t_ns, line)
            values = parse_floats(f[COL["gx"]:COL["az"] + 1], self.path, line, names)
            if not np.all(np.isfinite(values)):
                skipped.append(line)
                continue
            yield ImuSample(t_ns, values[:3], values[3:])
        if skipped:
            self.warn(f"{self.path}: skipped {len(skipped)} IMU rows with NaN/inf values (first at line "
                      f"{skipped[0]})")

    def features(self) -> Iterator[FeatureFrame]:
        """One FeatureFrame per ``frame_idx``; a frame's rows are contiguous in the file."""
        check = StampChecker(self.path, "frame")
        current, ids, uv = None, [], []
        for line, f in self._rows("vision_feature"):
            key = (f[COL["frame_idx"]], f[COL["t_abs"]])
            if key != (current[0] if current else None):
                if current:
                    yield self._frame(current, ids, uv)
                t_ns = seconds_to_ns(f[COL["t_abs"]], self.path, line, "t_abs")
                check(t_ns, line)
                current, ids, uv = (key, t_ns, line), [], []
            try:
                ids.append(int(f[COL["landmark_id"]]))
            except ValueError:
                raise DataError(f"landmark_id {f[COL['landmark_id']]!r} is not an integer", self.path,
                                line) from None
            uv.append(parse_floats(f[COL["u_norm"]:COL["v_norm"] + 1], self.path, line, ["u_norm", "v_norm"]))
        if current:
            yield self._frame(current, ids, uv)

    def _frame(self, current, ids, uv) -> FeatureFrame:
        (frame_idx, _), t_ns, line = current
        if not frame_idx.isdigit():
            raise DataError(f"frame_idx {frame_idx!r} is not an integer", self.path, line)
        ids_arr = np.asarray(ids, dtype=np.int64)
        if len(np.unique(ids_arr)) != len(ids_arr):
            raise DataError(f"frame {frame_idx} lists a landmark id twice", self.path, line)
        uv_arr = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        keep = np.all(np.isfinite(uv_arr), axis=1)
        return FeatureFrame(t_ns, 0, ids_arr[keep], uv_arr[keep], normalized=True, index=int(frame_idx))


    def messages(self) -> Iterator[Message]:
        # Two lazy passes over the file: its rows interleave features at t with IMU from t onwards.
        return merge_streams(self.imu(), self.features())


def write_feature_csv(path: str | Path, camera: CameraCalibration, imu: ImuCalibration,
                      samples: Iterable[ImuSample], frames: Iterable[FeatureFrame]) -> Path:
    """Write IMU ``samples`` and cam0 feature ``frames`` (normalized coordinates) as a feature-track CSV that
    :class:`FeatureTrackSequence` reads back; atomically (a temporary file renamed into place)."""
    T_S_C = np.linalg.inv(imu.T_B_S) @ camera.T_B_C  # the camera in the IMU frame
    empty = "," * (len(HEADER) - 3)

    def meta(key: str, value) -> str:
        return f"meta{empty},{key},{value if isinstance(value, str) else repr(float(value))}"

    rows = [(s.t_ns, 0, f"imu,{format_seconds(s.t_ns)},,,,,"
             + ",".join(repr(float(v)) for v in (*s.gyro, *s.accel)) + "," * 10) for s in samples]
    for f in frames:
        if not f.normalized or f.camera != 0:
            raise ValueError(f"frame {f.index}: the format holds cam0's normalized coordinates only")
        stamp = format_seconds(f.t_ns)
        rows += [(f.t_ns, 1, f"vision_feature,{stamp},,,{f.index},{int(i)},{',' * 12}{float(u)!r},{float(v)!r},,")
                 for i, (u, v) in zip(f.ids, f.uv)]
    rows.sort(key=lambda row: (row[0], row[1]))  # stable: a frame's rows stay together, IMU first at a tie
    lines = [",".join(HEADER), meta("format_version", "1"), meta("measurement_space", "normalized")]
    lines += [meta(k, v) for k, v in zip(("camera_fx", "camera_fy", "camera_cx", "camera_cy"), camera.intrinsics)]
    lines += [meta(f"T_ci_q{a}", v) for a, v in zip("wxyz", rot_to_quat(T_S_C[:3, :3]))]
    lines += [meta(f"T_ci_t{a}", v) for a, v in zip("xyz", T_S_C[:3, 3])]
    return atomic_write_text(path, "\n".join(lines + [row[2] for row in rows]) + "\n")
