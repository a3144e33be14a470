"""``run_sequence()``: drive the pipeline over a recorded sequence and write the result files
(:mod:`slam.results`). ``slam run`` is a thin wrapper; ``demo()`` generates a synthetic sequence first.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from slam.datasets.prefetch import prefetch_images
from slam.messages import CameraFrame, DataError, FeatureFrame
from slam.pipeline import Pipeline, PipelineConfig
from slam.results import ResultWriter

log = logging.getLogger(__name__)

@dataclass
class RunSummary:
    out: Path
    metrics: dict
    timing: dict

    @property
    def ate_rmse(self) -> float | None:
        ate = self.metrics.get("ate")
        return None if ate is None else ate["rmse"]


def _frame_total(sequence) -> int | None:
    count = getattr(sequence, "frame_count", None)
    try:
        return int(count() if callable(count) else count) if count is not None else None
    except (TypeError, ValueError, DataError):
        return None


class RunRecorder:
    """The result folder of one run, shared by offline (:func:`run_sequence`) and live (``slam.live``) runs:
    ``config.yaml`` and ``run.log`` at the start, the incremental result files while estimating, and the
    map, ``timing.json`` and ``metrics.json`` at the end."""

    def __init__(self, out: str | Path, config: PipelineConfig, flush_every_s: float = 2.0):
        from slam.config import dump_yaml

        self.out = Path(out)
        self.config = config
        self.writer = ResultWriter(self.out, flush_every_s)
        (self.out / "config.yaml").write_text(dump_yaml(config))
        self._handler = logging.FileHandler(self.out / "run.log", mode="w")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(self._handler)
        logging.getLogger().setLevel(min(logging.getLogger().level or logging.INFO, logging.INFO))
        self.frames = 0

    def add(self, state, pipeline: Pipeline, observers: Sequence = ()) -> None:
        self.writer.add(state)
        self.frames += 1
        for observe in observers:
            observe(state, pipeline)

    def close(self, pipeline: Pipeline, sequence, observers: Sequence, wall: float, duration: float,
              interrupted: bool, extra_timing: dict | None = None, extra_metrics: dict | None = None) -> RunSummary:
        """Close the observers and write every remaining file; ``sequence`` needs ``path`` and
        ``ground_truth()`` (for ATE/RPE)."""
        try:
            for observer in observers:
                if hasattr(observer, "close"):
                    observer.close()
            self.writer.flush()
            ids, points = pipeline.backend.map_points()
            self.writer.write_map(points)
            timing = {**_timing(pipeline, wall, duration, self.frames), **(extra_timing or {})}
            self.writer.write_json("timing.json", timing)
            metrics = {**_metrics(sequence, self.config, self.writer, pipeline, self.frames, duration, interrupted,
                                  len(points)), **(extra_metrics or {})}
            self.writer.write_json("metrics.json", metrics)
        finally:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
        return RunSummary(self.out, metrics, timing)


def run_sequence(sequence, config: PipelineConfig, out: str | Path, progress: bool = True,
                 max_seconds: float | None = None, observers: Sequence = ()) -> RunSummary:
    """Estimate the trajectory of ``sequence`` and write every result file into ``out``.

    ``observers``: callables ``(state, pipeline)`` called after every estimate (a live 3-D view, a pose
    stream); an observer with a ``close()`` method has it called at the end.
    """
    recorder = RunRecorder(out, config)
    pipeline = Pipeline(sequence.calibration, config)
    first_ns = last_ns = None
    start = time.perf_counter()
    interrupted = False
    bar = _progress(progress, _frame_total(sequence), sequence)
    try:
        for message in prefetch_images(sequence.messages()):
            if isinstance(message, (CameraFrame, FeatureFrame)):
                first_ns = message.t_ns if first_ns is None else first_ns
                if max_seconds is not None and (message.t_ns - first_ns) * 1e-9 > max_seconds:
                    break
                last_ns = message.t_ns
            state = pipeline.process(message)
            if state is not None:
                recorder.add(state, pipeline, observers)
                if bar is not None:
                    bar.advance(state)
        state = pipeline.finish()
        if state is not None:
            recorder.add(state, pipeline)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: writing what was estimated so far")
    finally:
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - start
        duration = (last_ns - first_ns) * 1e-9 if first_ns is not None and last_ns is not None else 0.0
        summary = recorder.close(pipeline, sequence, observers, wall, duration, interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _timing(pipeline: Pipeline, wall: float, duration: float, frames: int) -> dict:
    per_stage = {k: round(v, 3) for k, v in pipeline.times.mean().items()}
    return {"frames": frames, "wall_s": round(wall, 3), "sequence_s": round(duration, 3),
            "real_time_factor": round(duration / wall, 3) if wall > 0 else None,
            "ms_per_frame": round(1000 * wall / max(frames, 1), 3), "stages_ms_per_frame": per_stage,
            "machine": platform.machine(), "python": platform.python_version()}


def _metrics(sequence, config, writer: ResultWriter, pipeline: Pipeline, frames: int, duration: float,
             interrupted: bool, n_points: int) -> dict:
    from slam.evaluation import evaluate

    traj = writer.trajectory()
    backend = pipeline.backend
    metrics = {"sequence": str(sequence.path), "mode": config.mode, "frames": frames,
               "frames_tracked": len(traj), "keyframes": writer.keyframe_count, "map_points": n_points,
               "resets": backend.n_resets, "gaps": [[a, b] for a, b in backend.gaps],
               "duration_s": round(duration, 3), "interrupted": interrupted}
    try:
        gt = sequence.ground_truth()
    except DataError as exc:
        log.warning("ground truth unreadable: %s", exc)
        gt = None
    if gt is not None and len(traj) >= 3:
        try:
            result = evaluate(traj, gt, align="se3")
            metrics.update({k: result[k] for k in ("ate", "rpe", "alignment", "n_matched", "path_length_m")})
            if config.use_imu:  # 4-DoF alignment assumes gravity is known: meaningless for visual odometry
                metrics["ate_4dof_rmse"] = evaluate(traj, gt, align="4dof")["ate"]["rmse"]
            metrics["ground_truth"] = str(getattr(sequence, "ground_truth_path", "") or "")
        except DataError as exc:
            log.warning("evaluation skipped: %s", exc)
    return metrics


def _progress(enabled: bool, total: int | None, sequence):
    return _Progress(total, sequence) if enabled else None


class _Progress:
    """A rich progress bar over frames (open-ended when the count is unknown)."""

    def __init__(self, total, sequence):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task(Path(str(sequence.path)).name, total=total, status="")
        self.bar.start()

    def advance(self, state) -> None:
        self.bar.update(self.task, advance=1, status=state.status)

    def close(self) -> None:
        self.bar.stop()


def demo(out: str | Path = "slam_demo", seconds: float = 20.0, preset: str = "room_mav", seed: int = 0,
         progress: bool = True) -> RunSummary:
    """Generate a short synthetic sequence (no data needed), run the stereo-inertial estimator on it, evaluate."""
    from slam.datasets import open_sequence
    from slam.datasets.synthetic import generate
    from slam.pipeline import load_pipeline_config

    out = Path(out)
    sequence_dir = generate(preset, out / "sequence", seconds=seconds, seed=seed, progress=progress,
                            overwrite=True)
    return run_sequence(open_sequence(sequence_dir), load_pipeline_config("stereo_inertial"), out / "run",
                        progress=progress)
