"""Write sequences in the ASL/EuRoC layout, readable by :class:`slam.datasets.asl.AslSequence`.

Everything goes into a hidden ``.<name>.partial`` folder that is renamed to its final name only by
:meth:`AslWriter.close`, so an interrupted write never leaves a folder that looks complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from slam.messages import Calibration, CameraCalibration, DataError, ImuCalibration, ImuSample, Trajectory


def _matrix_yaml(T: np.ndarray) -> str:
    rows = [", ".join(f"{v:.12g}" for v in row) for row in T]
    return "  cols: 4\n  rows: 4\n  data: [" + ",\n         ".join(rows) + "]\n"


def camera_yaml(cam: CameraCalibration) -> str:
    model = {"radtan5": "radial-tangential", "radtan": "radial-tangential"}.get(cam.distortion_model,
                                                                             cam.distortion_model)
    return ("%YAML:1.0\nsensor_type: camera\ncomment: written by slam\n\nT_BS:\n" + _matrix_yaml(cam.T_B_C) +
            f"\nrate_hz: {cam.rate_hz or 20:g}\nresolution: [{cam.width}, {cam.height}]\ncamera_model: pinhole\n"
            f"intrinsics: [{', '.join(f'{v:.12g}' for v in cam.intrinsics)}]\n"
            f"distortion_model: {model}\n"
            f"distortion_coefficients: [{', '.join(f'{v:.12g}' for v in cam.distortion)}]\n")


def imu_yaml(imu: ImuCalibration) -> str:
    return ("%YAML:1.0\nsensor_type: imu\ncomment: written by slam\n\nT_BS:\n" + _matrix_yaml(imu.T_B_S) +
            f"rate_hz: {imu.rate_hz:g}\n\n"
            f"gyroscope_noise_density: {imu.gyro_noise_density:.12g}\n"
            f"gyroscope_random_walk: {imu.gyro_random_walk:.12g}\n"
            f"accelerometer_noise_density: {imu.accel_noise_density:.12g}\n"
            f"accelerometer_random_walk: {imu.accel_random_walk:.12g}\n")


class AslWriter:
    """Incremental writer: ``add_frame`` / ``add_imu`` in any order, ``set_ground_truth``, then ``close``."""

    def __init__(self, out: str | Path, calibration: Calibration, overwrite: bool = False):
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise DataError("output folder already exists (use overwrite)", self.out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.out.parent / f".{self.out.name}.partial"
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.mav0 = self.tmp / "mav0"
            for i, cam in enumerate(calibration.cameras):
                (self.mav0 / f"cam{i}" / "data").mkdir(parents=True)
                (self.mav0 / f"cam{i}" / "sensor.yaml").write_text(camera_yaml(cam))
            if calibration.imu is not None:
                (self.mav0 / "imu0").mkdir(parents=True)
                (self.mav0 / "imu0" / "sensor.yaml").write_text(imu_yaml(calibration.imu))
        except OSError as exc:
            raise DataError(f"cannot write output: {exc.strerror}", self.out) from None
        self.calibration = calibration
        self._cam_csv = [open(self.mav0 / f"cam{i}" / "data.csv", "w") for i in range(len(calibration.cameras))]
        for handle in self._cam_csv:
            handle.write("#timestamp [ns],filename\n")
        self._imu_csv = None
        if calibration.imu is not None:
            self._imu_csv = open(self.mav0 / "imu0" / "data.csv", "w")
            self._imu_csv.write("#timestamp [ns],w_RS_S_x [rad s^-1],w_RS_S_y [rad s^-1],w_RS_S_z [rad s^-1],"
                                "a_RS_S_x [m s^-2],a_RS_S_y [m s^-2],a_RS_S_z [m s^-2]\n")

    def add_frame(self, t_ns: int, images: list[np.ndarray] | tuple[np.ndarray, ...]) -> None:
        import cv2

        if len(images) != len(self._cam_csv):
            raise ValueError(f"expected {len(self._cam_csv)} images, got {len(images)}")
        for i, image in enumerate(images):
            name = f"{int(t_ns)}.png"
            if not cv2.imwrite(str(self.mav0 / f"cam{i}" / "data" / name), image):
                raise DataError("cannot write image", self.mav0 / f"cam{i}" / "data" / name)
            self._cam_csv[i].write(f"{int(t_ns)},{name}\n")

    def add_imu(self, sample: ImuSample) -> None:
        values = ",".join(repr(float(v)) for v in (*sample.gyro, *sample.accel))
        self._imu_csv.write(f"{int(sample.t_ns)},{values}\n")

    def set_ground_truth(self, traj: Trajectory) -> None:
        from slam.trajectory_io import write_euroc

        folder = self.mav0 / "state_groundtruth_estimate0"
        folder.mkdir(exist_ok=True)
        (folder / "sensor.yaml").write_text("%YAML:1.0\nsensor_type: visual-inertial\nT_BS:\n" +
                                            _matrix_yaml(np.eye(4)))
        write_euroc(traj, folder / "data.csv")

    def close(self) -> Path:
        """Flush and move the finished sequence into place."""
        for handle in self._cam_csv + ([self._imu_csv] if self._imu_csv else []):
            handle.close()
        if self.out.exists():
            shutil.rmtree(self.out)
        self.tmp.rename(self.out)
        return self.out

    def abort(self) -> None:
        for handle in self._cam_csv + ([self._imu_csv] if self._imu_csv else []):
            handle.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> AslWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
