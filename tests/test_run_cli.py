"""`slam run` from the command line: real feature tracks (backend only), clean errors for bad settings."""

from __future__ import annotations

import json
import subprocess

from conftest import EUROC_FEATURES, EUROC_GT, require
from slam.trajectory_io import read_tum


def _slam(*args):
    return subprocess.run(["slam", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_run_on_real_feature_tracks(tmp_path):
    result = _slam("run", require(EUROC_FEATURES), "--gt", require(EUROC_GT), "--config", "mono_inertial",
                   "--out", tmp_path, "--seconds", "12")
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mode"] == "mono_inertial" and metrics["ate"]["rmse"] < 0.08
    assert len(read_tum(tmp_path / "trajectory.tum")) == metrics["frames_tracked"] > 200
    assert "ATE" in result.stdout and str(tmp_path.name) in " ".join(result.stdout.split())


def test_cli_run_rejects_bad_settings_in_one_line(tmp_path):
    features = require(EUROC_FEATURES)
    for args, text in ((["--config", "nonsense"], "unknown preset 'nonsense'"),
                       (["--set", "backend.lag_s=abc"], "[backend.lag_s]: expected a number"),
                       (["--set", "backend.no_such=1"], "unknown setting(s) backend.no_such"),
                       (["--config", "stereo_inertial"], "needs two cameras")):
        result = _slam("run", features, "--out", tmp_path, *args)
        out = " ".join(result.stdout.split())
        assert result.returncode == 2 and text in out, (args, out)
        assert "Traceback" not in result.stdout + result.stderr


def test_cli_demo_needs_no_data_and_writes_the_results(tmp_path):
    """The README's main command, shortened: generates its own sequence, estimates it, prints the ATE."""
    result = _slam("demo", "--out", tmp_path, "--seconds", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resets"] == 0 and metrics["ate"]["rmse"] < 0.05
    assert len(read_tum(tmp_path / "run" / "trajectory.tum")) == metrics["frames_tracked"] > 100
    assert (tmp_path / "run" / "report.html").exists() and (tmp_path / "run" / "map.ply").exists()
    assert "ATE" in result.stdout
