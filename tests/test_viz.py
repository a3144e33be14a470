"""slam viz / slam compare on real runs of a generated sequence: plot sizes and extents, the HTML report in a
headless browser against metrics.json, the Rerun recording read back, partial run folders, comparisons."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from slam.cli import app
from slam.trajectory_io import read_trajectory, read_tum

CHROMIUM = Path("/usr/bin/chromium")
runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A stereo-inertial run (streamed to an .rrd by RerunStream as it runs) and a stereo-only run made by
    `slam run` (which visualizes at the end), both on one 6 s synthetic sequence."""
    from slam.datasets import open_sequence
    from slam.datasets.synthetic import generate
    from slam.pipeline import load_pipeline_config
    from slam.run import run_sequence
    from slam.viz import RerunStream, visualize_run

    root = tmp_path_factory.mktemp("viz")
    seq_dir = generate("room_mav", root / "seq", seconds=6.0, seed=0, progress=False, width=376, height=240)
    vi = root / "vi"
    sequence = open_sequence(seq_dir)
    stream = RerunStream(save=vi / "live.rrd", ground_truth=sequence.ground_truth(), calibration=sequence.calibration)
    run_sequence(sequence, load_pipeline_config("stereo_inertial"), vi, progress=False, observers=[stream])
    result = visualize_run(vi)
    cli = runner.invoke(app, ["run", str(seq_dir), "--config", "stereo", "--out", str(root / "vo")])
    assert cli.exit_code == 0, cli.output
    gt = seq_dir / "mav0" / "state_groundtruth_estimate0" / "data.csv"
    return {"vi": vi, "vo": root / "vo", "result": result, "gt": gt, "seq": seq_dir}


def _image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def test_plots_have_the_size_content_and_extent_of_the_data(runs):
    from slam.viz.plots import PLOT_SIZE_PX

    result = runs["result"]
    assert result.problems == []
    assert set(result.plots) == {"trajectory_xy", "trajectory_xz", "ape", "rpe", "velocity", "biases", "tracking",
                                 "timing"}
    for plot in result.plots.values():
        image = _image(plot.path)
        assert image.shape == (PLOT_SIZE_PX[1], PLOT_SIZE_PX[0], 3), plot.path
        colors = np.unique(image.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32))
        assert image.std() > 20 and len(colors) > 50, f"{plot.path} looks blank"

    # The views frame the trajectory: ground truth over the estimated span lies inside the axes, and along
    # at least one axis (equal aspect widens the other) the axes hug the plotted data: ground truth with
    # 1 s of margin and the aligned estimate.
    est = read_tum(runs["vi"] / "trajectory.tum")
    gt = read_trajectory(runs["gt"])
    inner = gt.p_W[(gt.t_ns >= est.t_ns[0]) & (gt.t_ns <= est.t_ns[-1])]
    outer = gt.p_W[(gt.t_ns >= est.t_ns[0] - 10**9) & (gt.t_ns <= est.t_ns[-1] + 10**9)]
    for name in ("trajectory_xy", "trajectory_xz"):
        zoom = []
        for axis, (low, high) in result.plots[name].limits.items():
            k = "xyz".index(axis)
            assert low <= inner[:, k].min() and high >= inner[:, k].max(), (name, axis, low, high)
            zoom.append((high - low) / np.ptp(outer[:, k]))
        assert min(zoom) < 1.3, (name, zoom)

    metrics = json.loads((runs["vi"] / "metrics.json").read_text())
    ape_low, ape_high = result.plots["ape"].limits["ape"]
    assert metrics["ate"]["max"] <= ape_high < 1.5 * metrics["ate"]["max"]
    stages = json.loads((runs["vi"] / "timing.json").read_text())["stages_ms_per_frame"]
    assert result.plots["timing"].limits["ms"][1] >= max(stages.values())
    assert abs(result.plots["tracking"].limits["t"][1] - (est.t_ns[-1] - est.t_ns[0]) * 1e-9) < 1.0


class _ReportDom(HTMLParser):
    """Collects the body attributes, images and metric cells of the dumped DOM."""

    def __init__(self):
        super().__init__()
        self.body, self.images, self.cells, self._cell = {}, [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "td" and "data-metric" in attrs:
            self._cell = [attrs["data-metric"], attrs["data-value"], ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(tuple(self._cell))
            self._cell = None


def _lookup(data, path: str):
    for key in path.split("."):
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


def test_report_renders_in_a_browser_with_all_images_and_the_metrics_of_metrics_json(runs, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (bash scripts/install-system-deps.sh --test installs it)")
    report = runs["vi"] / "report.html"
    text = report.read_text()
    assert "http://" not in text and "https://" not in text, "the report must not load anything from outside"
    done = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000",
                           "--dump-dom", report.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _ReportDom()
    dom.feed(done.stdout)
    assert len(dom.images) == int(dom.body["data-images-total"]) == 9  # 8 plots + the map render
    assert all(src.startswith("data:image/png;base64,") for src in dom.images)
    assert dom.body["data-images-loaded"] == dom.body["data-images-total"], "some images did not decode"

    metrics = json.loads((runs["vi"] / "metrics.json").read_text())
    shown = {path for path, _, _ in dom.cells}
    assert {f"ate.{k}" for k in ("rmse", "mean", "median", "max", "rot_rmse_deg")} <= shown
    assert {"rpe.0.trans.rmse", "rpe.1.rot_deg.rmse", "frames", "keyframes", "ate_4dof_rmse"} <= shown
    for path, value, text in dom.cells:
        expected = _lookup(metrics, path)
        assert json.loads(value) == expected, path
        if isinstance(expected, float):
            assert float(text) == pytest.approx(expected, rel=1e-5), path


def _entities(rrd: Path) -> set[str]:
    from rerun.chunk import RrdReader

    return {chunk.entity_path for chunk in RrdReader(rrd).stream()}


def _body_stamps(rrd: Path) -> np.ndarray:
    from rerun.chunk import RrdReader

    stamps = []
    for chunk in RrdReader(rrd).stream():
        if chunk.entity_path == "/world/body" and not chunk.is_static:
            column = chunk.to_record_batch().column("time")
            stamps += [int(t) for t in column.cast("int64").to_pylist()]
    return np.sort(np.array(stamps, np.int64))


def test_recordings_hold_one_pose_per_line_of_trajectory_tum(runs):
    tum = read_tum(runs["vi"] / "trajectory.tum")
    n_lines = len((runs["vi"] / "trajectory.tum").read_text().splitlines())
    for name in ("recording.rrd", "live.rrd"):  # written from the files by slam viz; streamed while running
        stamps = _body_stamps(runs["vi"] / name)
        assert len(stamps) == n_lines == len(tum), name
        np.testing.assert_allclose(stamps, tum.t_ns, atol=1000)  # TUM stores the stamps to the microsecond
    scene = {"/world/estimate", "/world/ground_truth", "/world/landmarks", "/world/keyframes"}
    assert scene <= _entities(runs["vi"] / "recording.rrd")
    assert scene | {"/world/body/cam0/image", "/world/body/cam0/image/features"} <= _entities(runs["vi"] / "live.rrd")
    assert (runs["vo"] / "recording.rrd").exists() and (runs["vo"] / "report.html").exists()  # slam run viz


def test_partial_run_folder_lists_what_is_missing_and_renders_the_rest(runs, tmp_path):
    from slam.viz import visualize_run

    run = shutil.copytree(runs["vi"], tmp_path / "partial")
    (run / "map.ply").unlink()
    (run / "metrics.json").unlink()
    states = (run / "states.csv").read_text()
    (run / "states.csv").write_text(states[: len(states) // 2])  # cut in the middle of a row
    stamps = read_tum(run / "keyframes.tum").t_ns
    (run / "loops.csv").write_text(f"t_ns_a,t_ns_b\n{stamps[1]},{stamps[-1]}\n{stamps[0]},{stamps[-2]}\nnot,a loop\n")
    result = visualize_run(run)
    problems = "\n".join(result.problems)
    for text in ("map.ply missing", "metrics.json missing", "states.csv: skipped 1 incomplete row",
                 "no ground truth", "loops.csv: skipped 1 row"):
        assert text in problems, problems
    from rerun.chunk import RrdReader

    loops = [c for c in RrdReader(result.recording).stream() if c.entity_path == "/world/loops"]
    assert len(loops) == 1 and len(loops[0].to_record_batch().column("LineStrips3D:strips")[0]) == 2
    assert {"trajectory_xy", "trajectory_xz", "velocity", "biases", "tracking", "timing"} == set(result.plots)
    assert not (run / "plots" / "ape.png").exists(), "the stale APE plot of the full run must go"
    assert result.report is not None and "map.ply missing" in result.report.read_text()
    assert result.recording is not None and (run / "map.png").exists()

    # The CLI says the same, and with --gt the error plots come back.
    cli = runner.invoke(app, ["viz", str(run), "--gt", str(runs["gt"]), "--no-map-render", "--no-rerun"])
    assert cli.exit_code == 0, cli.output
    output = " ".join(cli.output.split())
    assert "map.ply missing" in output and "metrics.json missing" in output and "report.html" in output
    assert (run / "plots" / "ape.png").exists() and "no ground truth" not in output


def test_viz_of_a_folder_that_is_not_a_run_fails_in_one_line(tmp_path):
    cli = runner.invoke(app, ["viz", str(tmp_path / "nothing")])
    assert cli.exit_code == 2 and "run folder not found" in cli.output
    cli = runner.invoke(app, ["viz", str(tmp_path)])
    assert cli.exit_code == 2 and "no run files here" in cli.output


def test_compare_overlays_two_runs_in_one_plot_and_one_table(runs, tmp_path):
    from slam.viz.plots import PLOT_SIZE_PX

    out = tmp_path / "cmp"
    cli = runner.invoke(app, ["compare", str(runs["vi"]), str(runs["vo"]), "--labels", "vio,vo", "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    assert "vio" in cli.output and "vo" in cli.output
    rows = [line.split(",") for line in (out / "compare.csv").read_text().splitlines()]
    header, table = rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert header[0] == "label" and set(table) == {"vio", "vo"}
    for label, run in (("vio", runs["vi"]), ("vo", runs["vo"])):
        metrics = json.loads((run / "metrics.json").read_text())
        assert float(table[label]["ate_rmse_m"]) == pytest.approx(metrics["ate"]["rmse"], rel=1e-6)
        assert table[label]["mode"] == metrics["mode"]
    image = _image(out / "compare.png")
    assert image.shape == (PLOT_SIZE_PX[1], PLOT_SIZE_PX[0], 3) and image.std() > 20
    cli = runner.invoke(app, ["compare", str(runs["vi"]), str(runs["vo"]), "--labels", "only-one"])
    assert cli.exit_code == 2 and "1 labels for 2 runs" in cli.output


def test_rerun_stream_needs_a_sink_and_skips_the_viewer_without_a_display(monkeypatch):
    from slam.viz import RerunStream

    with pytest.raises(ValueError, match="spawn=True"):
        RerunStream()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    stream = RerunStream(spawn=True)
    assert not stream.enabled
    stream.close()


def test_run_without_viz_and_a_failing_viz_keep_the_results(runs, tmp_path, monkeypatch, capsys):
    cli = runner.invoke(app, ["run", str(runs["seq"]), "--out", str(tmp_path / "plain"), "--seconds", "1", "--no-viz"])
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "plain" / "trajectory.tum").exists() and not (tmp_path / "plain" / "report.html").exists()

    import slam.viz
    from slam.cli import _visualize_after_run

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(slam.viz, "visualize_run", broken)
    _visualize_after_run(tmp_path / "plain", None)  # warns, does not raise
    out = " ".join(capsys.readouterr().out.split())
    assert "visualization failed (RuntimeError: no fonts)" in out and "slam viz" in out
