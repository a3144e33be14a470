"""`slam info` (library + CLI): the numbers the issue asks for on real EuRoC data; clean errors."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import EUROC_MICRO, require
from slam.datasets import open_sequence
from slam.info import describe


def test_describe_real_euroc_micro():
    info = describe(open_sequence(require(EUROC_MICRO)))
    assert info["format"] == "ASL/EuRoC" and info["stereo"]
    assert len(info["cameras"]) == 2 and all(c["resolution"] == [752, 480] for c in info["cameras"])
    assert info["frames"]["rate_hz"] == pytest.approx(20.0, rel=1e-3) and info["frames"]["count"] == 95
    assert info["imu"]["rate_hz"] == pytest.approx(200.0, rel=1e-3)
    assert info["imu"]["duration_s"] == pytest.approx(145.6, abs=0.05) and info["imu"]["gaps"] == 0
    assert info["ground_truth"]["count"] == 2895 and info["ground_truth"]["has_velocity_and_biases"]
    assert [w for w in info["warnings"] if "4 of 99 rows point to missing images" in w]


def test_describe_reports_resolution_mismatch(small_asl):
    path = small_asl / "mav0" / "cam0" / "sensor.yaml"
    path.write_text(path.read_text().replace("resolution: [64, 48]", "resolution: [752, 480]"))
    info = describe(open_sequence(small_asl))
    assert any("cam0: images are 64x48 but the calibration says 752x480" in w for w in info["warnings"])


def _slam(*args, cwd=None):
    return subprocess.run(["slam", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_info_real_euroc(tmp_path):
    result = _slam("info", require(EUROC_MICRO), "--json", tmp_path / "info.json")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    for text in ("cam0", "cam1", "752x480", "stereo 95 @ 20.0 Hz", "29120 @ 200.0 Hz over 145.60 s",
                 "2895 @ 20.0 Hz", "4 of 99 rows"):
        assert text in out, text
    assert json.loads((tmp_path / "info.json").read_text())["imu"]["count"] == 29120


def test_cli_errors_are_one_line_without_traceback(tmp_path, small_asl):
    result = _slam("info", tmp_path / "missing")
    assert result.returncode == 2 and "sequence not found" in result.stdout and "Traceback" not in result.stderr
    imu = small_asl / "mav0" / "imu0" / "data.csv"
    lines = imu.read_text().splitlines()
    lines[5] = lines[4]
    imu.write_text("\n".join(lines) + "\n")
    result = _slam("info", small_asl)
    text = " ".join(result.stdout.split())
    assert result.returncode == 2 and "data.csv:6: duplicated IMU timestamp" in text.replace("data.csv: 6", "data.csv:6")
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_eval_writes_the_library_metrics(tmp_path):
    from conftest import EUROC_GT
    from slam.evaluation import evaluate_files

    est = require(EUROC_MICRO) / "groundtruth_openvins" / "V1_01_easy_original.txt"
    result = _slam("eval", est, require(EUROC_GT), "--align", "4dof", "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads((tmp_path / "m.json").read_text())
    expected = evaluate_files(est, EUROC_GT, align="4dof")
    assert written["ate"]["rmse"] == pytest.approx(expected["ate"]["rmse"], abs=1e-12)
    assert f"{expected['ate']['rmse']:.4f}" in result.stdout
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0 0 0 0 0 0 0 1\n0.5 0 0 0 0 0 0 1\n")
    result = _slam("eval", bad, EUROC_GT)
    assert result.returncode == 2 and "bad.txt:2: out-of-order timestamp" in " ".join(result.stdout.split())
