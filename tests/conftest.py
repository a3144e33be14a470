"""Shared test helpers: the real data beside the checkout, and small sequences written in real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slam.messages import Calibration, CameraCalibration, ImuCalibration, ImuSample

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EUROC_MICRO = SHARED_DATA / "euroc_V1_01_easy_micro"
EUROC_FEATURES = SHARED_DATA / "euroc_V1_01_easy_features_30s" / "eqvio_processed_30s.csv"
EUROC_GT = EUROC_MICRO / "groundtruth_openvins" / "V1_01_easy.csv"


def require(path: Path) -> Path:
    """Skip the test, with the reason, when real data from ../shared/data is absent."""
    if not path.exists():
        pytest.skip(f"real data not available: {path} (see ../shared/data/README.md)")
    return path


def noise_texture(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Blurred noise at three scales: corners everywhere, no repeated pattern (float32 in [20, 235])."""
    import cv2

    rng = np.random.default_rng(seed)
    t = np.zeros(shape, np.float32)
    for sigma, weight in ((1.5, 1.0), (4.0, 2.0), (10.0, 3.0)):
        t += weight * cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return cv2.normalize(t, None, 20, 235, cv2.NORM_MINMAX)


def small_calibration(stereo: bool = True, width: int = 64, height: int = 48) -> Calibration:
    T_B_C0 = np.eye(4)
    T_B_C1 = np.eye(4)
    T_B_C1[0, 3] = 0.11
    cams = [CameraCalibration(width, height, [50.0, 50.0, 32.0, 24.0], "radtan", [-0.1, 0.01, 0.0, 0.0],
                              T_B_C0, 20.0, name="cam0")]
    if stereo:
        cams.append(CameraCalibration(width, height, [50.0, 50.0, 32.0, 24.0], "radtan", [-0.1, 0.01, 0.0, 0.0],
                                      T_B_C1, 20.0, name="cam1"))
    imu = ImuCalibration(1.6968e-4, 1.9393e-5, 2.0e-3, 3.0e-3, 200.0)
    return Calibration(tuple(cams), imu)


def write_small_asl(out: Path, seconds: float = 1.0, stereo: bool = True) -> Path:
    """A tiny but complete ASL sequence: 20 Hz textured frames, 200 Hz IMU at rest."""
    from slam.datasets.asl_writer import AslWriter

    rng = np.random.default_rng(0)
    calib = small_calibration(stereo)
    t0 = 1_000_000_000_000
    with AslWriter(out, calib) as writer:
        for k in range(int(seconds * 200) + 1):
            writer.add_imu(ImuSample(t0 + k * 5_000_000, np.array([0.001, -0.002, 0.003]),
                                     np.array([0.0, 0.0, 9.81])))
        for k in range(int(seconds * 20) + 1):
            image = rng.integers(0, 255, (48, 64), dtype=np.uint8)
            writer.add_frame(t0 + k * 50_000_000, [image] * len(calib.cameras))
    return out


@pytest.fixture
def small_asl(tmp_path) -> Path:
    return write_small_asl(tmp_path / "seq")
