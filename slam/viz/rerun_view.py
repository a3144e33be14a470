"""Rerun (https://rerun.io) views of a run: an ``.rrd`` recording written from the run files, and
:class:`RerunStream`, an observer that streams a running estimator to a viewer.

Both use the same entities, so a saved live stream and an offline recording look alike:

    world                      right-handed, z up (gravity along -z)
    world/body                 estimated body pose per frame (timeline ``time``), with axes
    world/body/cam0            camera 0 (pinhole), its image and tracked features (live only)
    world/estimate             estimated path          world/ground_truth   ground-truth path
    world/keyframes            keyframe positions      world/landmarks      map points
    world/loops                loop-closure edges      series/...           per-frame numbers
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np

from slam.geometry import rot_to_quat
from slam.messages import StateEstimate, Trajectory

log = logging.getLogger(__name__)
# rerun hands timestamps to pyarrow, which imports pandas, whose numexpr announces its threads at INFO.
logging.getLogger("numexpr").setLevel(logging.WARNING)

TIMELINE = "time"
BODY = "world/body"
COLORS = {"estimate": (31, 119, 180), "ground_truth": (150, 150, 150), "keyframes": (214, 39, 40),
          "landmarks": (90, 90, 90), "loops": (214, 39, 40), "features": (40, 220, 40)}


def _xyzw(q_wxyz: np.ndarray) -> np.ndarray:
    return np.asarray(q_wxyz, float)[..., [1, 2, 3, 0]]


def _log_static_scene(rec, axis_length: float = 0.3) -> None:
    import rerun as rr

    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    rec.log(BODY, rr.TransformAxes3D(axis_length), static=True)


def _path(rec, entity: str, p_W: np.ndarray, static: bool = True) -> None:
    import rerun as rr

    if len(p_W) >= 2:
        rec.log(entity, rr.LineStrips3D([p_W], colors=[COLORS[entity.split("/")[-1]]], radii=0.01), static=static)


def write_recording(run, errors, path: Path) -> Path:
    """Write ``path`` (.rrd) from a :class:`~slam.viz.run_data.RunData`: one body pose per line of
    ``trajectory.tum``, the paths, keyframes, landmarks and loop edges (all in the ground-truth frame when
    ``errors`` holds the alignment), and per-frame landmark counts and APE as time series."""
    import rerun as rr

    from slam.viz.plots import loop_segments

    est = errors.estimate if errors is not None else run.trajectory
    to_frame = errors.align if errors is not None else (lambda p: np.asarray(p, float).reshape(-1, 3))
    tmp = path.with_name(f".{path.stem}.partial.rrd")
    rec = rr.RecordingStream("slam", recording_id=str(uuid.uuid4()))
    rec.save(tmp)
    _log_static_scene(rec)
    if est is not None and len(est):
        times = [rr.TimeColumn(TIMELINE, timestamp=est.t_ns.astype("datetime64[ns]"))]
        rec.send_columns(BODY, indexes=times,
                         columns=rr.Transform3D.columns(translation=est.p_W, quaternion=_xyzw(est.q_W_B)))
        _path(rec, "world/estimate", est.p_W)
    if errors is not None:
        _path(rec, "world/ground_truth", errors.ground_truth.p_W)
        rec.send_columns("series/ape_m", indexes=[rr.TimeColumn(TIMELINE, timestamp=errors.ape_t_ns.astype(
            "datetime64[ns]"))], columns=rr.Scalars.columns(scalars=errors.ape_m))
    if run.keyframes is not None and len(run.keyframes):
        rec.log("world/keyframes", rr.Points3D(to_frame(run.keyframes.p_W), colors=[COLORS["keyframes"]],
                                               radii=0.03), static=True)
    if run.map_points is not None and len(run.map_points):
        rec.log("world/landmarks", rr.Points3D(to_frame(run.map_points), colors=[COLORS["landmarks"]], radii=0.02),
                static=True)
    loops = loop_segments(run, est)
    if len(loops):
        rec.log("world/loops", rr.LineStrips3D(list(loops), colors=[COLORS["loops"]], radii=0.015), static=True)
    if run.states is not None:
        stamps = [rr.TimeColumn(TIMELINE, timestamp=run.states.t_ns.astype("datetime64[ns]"))]
        for column in ("n_landmarks", "n_features"):
            if column in run.states.values:
                rec.send_columns(f"series/{column}", indexes=stamps,
                                 columns=rr.Scalars.columns(scalars=run.states.values[column]))
    rec.flush()
    rec.disconnect()
    tmp.replace(path)
    return path


def count_poses(rrd: Path) -> int:
    """Number of body poses logged in an ``.rrd`` file (rows of ``world/body`` on the ``time`` timeline)."""
    from rerun.chunk import RrdReader

    return sum(chunk.num_rows for chunk in RrdReader(rrd).stream()
               if chunk.entity_path == f"/{BODY}" and not chunk.is_static and TIMELINE in chunk.timeline_names)


class RerunStream:
    """Observer for :func:`slam.run.run_sequence` and ``slam live``: streams each estimate to Rerun.

    Every tracked pose is logged (cheap; the same poses as ``trajectory.tum``); the camera image with its
    tracked features, the path, the landmarks (on keyframes) and the ground-truth overlay are rate-limited
    by wall time, so logging costs the estimator little. ``spawn`` starts a viewer (skipped with a warning
    when there is no display), ``save`` writes an ``.rrd``; either or both. The ground truth is drawn in the
    estimator's frame, re-aligned (SE3) to the poses so far.
    """

    image_every_s = 0.2  # camera image + features
    path_every_s = 0.5  # estimated path
    map_every_s = 1.0  # landmarks (on a keyframe) and the ground-truth overlay

    def __init__(self, spawn: bool = False, save: Path | None = None, ground_truth: Trajectory | None = None,
                 calibration=None):
        import rerun as rr

        if not spawn and save is None:
            raise ValueError("RerunStream needs spawn=True (a viewer) or save=PATH (an .rrd file), or both")
        self.rec = rr.RecordingStream("slam", recording_id=str(uuid.uuid4()))
        sinks = []
        if spawn and not _has_display():
            log.warning("no display (DISPLAY/WAYLAND_DISPLAY unset): not starting a Rerun viewer")
        elif spawn:
            try:
                self.rec.spawn(connect=False)
                sinks.append(rr.GrpcSink())
            except Exception as exc:  # no viewer binary: keep estimating, maybe still save
                log.warning("could not start the Rerun viewer: %s", exc)
        if save is not None:
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            sinks.append(rr.FileSink(str(save)))
        if sinks:
            self.rec.set_sinks(*sinks)
        self.enabled = bool(sinks)
        self.ground_truth = ground_truth
        self.calibration = calibration
        self._t_ns: list[int] = []
        self._p_W: list[np.ndarray] = []
        self._last = {"image": -np.inf, "path": -np.inf, "map": -np.inf}
        self._camera_logged = False
        if self.enabled:
            _log_static_scene(self.rec)

    def _due(self, what: str, every_s: float) -> bool:
        now = time.monotonic()
        if now - self._last[what] < every_s:
            return False
        self._last[what] = now
        return True

    def __call__(self, state: StateEstimate, pipeline) -> None:
        import rerun as rr

        if not self.enabled:
            return
        rec = self.rec
        rec.set_time(TIMELINE, timestamp=np.datetime64(int(state.t_ns), "ns"))
        rec.log("series/n_landmarks", rr.Scalars(float(state.n_landmarks)))
        if state.status != "tracking":  # the same poses as trajectory.tum
            return
        T = state.T_W_B
        rec.log(BODY, rr.Transform3D(translation=T[:3, 3], quaternion=_xyzw(rot_to_quat(T[:3, :3]))))
        self._t_ns.append(int(state.t_ns))
        self._p_W.append(T[:3, 3].copy())
        if self._due("path", self.path_every_s):
            _path(rec, "world/estimate", np.array(self._p_W).reshape(-1, 3), static=False)
        if self._due("image", self.image_every_s):
            self._log_camera(pipeline)
        if state.keyframe and self._due("map", self.map_every_s):
            _, points = pipeline.backend.map_points()
            rec.log("world/landmarks", rr.Points3D(points, colors=[COLORS["landmarks"]], radii=0.02))
            rec.log("world/keyframes", rr.Points3D(T[:3, 3][None], colors=[COLORS["keyframes"]], radii=0.03))
            self._log_ground_truth()

    def _log_camera(self, pipeline) -> None:
        """cam0 as a pinhole under the body, its latest image (when the frontend keeps it) and features."""
        import rerun as rr

        from slam.frontend.camera_model import project_points

        calibration = self.calibration or getattr(pipeline, "calibration", None)
        if calibration is None or not calibration.cameras:
            return
        cam = calibration.cameras[0]
        entity = f"{BODY}/cam0"
        if not self._camera_logged:
            T_B_C = np.asarray(cam.T_B_C, float)
            fx, fy, cx, cy = cam.intrinsics
            self.rec.log(entity, rr.Transform3D(translation=T_B_C[:3, 3], mat3x3=T_B_C[:3, :3]), static=True)
            self.rec.log(entity, rr.Pinhole(focal_length=[fx, fy], principal_point=[cx, cy],
                                            resolution=[cam.width, cam.height], image_plane_distance=0.2),
                         static=True)
            self._camera_logged = True
        # The KLT tracker keeps its last cam0 image; sources without images (feature tracks) show features only.
        image = getattr(getattr(pipeline, "tracker", None), "last_image", None)
        if image is not None:
            self.rec.log(f"{entity}/image", rr.Image(image))
        features = next((f for f in getattr(pipeline, "last_features", []) if f.camera == 0), None)
        if features is not None and len(features.ids):
            px = project_points(cam, features.uv) if features.normalized else np.asarray(features.uv)
            self.rec.log(f"{entity}/image/features", rr.Points2D(px, colors=[COLORS["features"]], radii=2.0))

    def _log_ground_truth(self) -> None:
        """Ground truth mapped into the estimator's frame by an SE3 fit to the poses so far."""
        import rerun as rr

        from slam.evaluation import align_umeyama, associate
        from slam.messages import DataError

        gt = self.ground_truth
        if gt is None or len(self._t_ns) < 10:
            return
        est = Trajectory(np.array(self._t_ns), np.array(self._p_W), np.tile([1.0, 0, 0, 0], (len(self._t_ns), 1)))
        i_est, i_gt = associate(est, gt, 0.01)
        if len(i_est) < 10:
            return
        try:
            a = align_umeyama(gt.p_W[i_gt], est.p_W[i_est], "se3")
        except DataError:
            return  # not enough motion yet to fix the rotation
        span = (gt.t_ns >= est.t_ns[0]) & (gt.t_ns <= est.t_ns[-1])
        p = gt.p_W[span] @ a.R.T + a.t
        self.rec.log("world/ground_truth", rr.LineStrips3D([p], colors=[COLORS["ground_truth"]], radii=0.01))

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        _path(self.rec, "world/estimate", np.array(self._p_W).reshape(-1, 3), static=False)
        self._log_ground_truth()
        try:
            self.rec.flush(timeout_sec=10.0)
        except RuntimeError as exc:  # the viewer went away: the estimate is safe in the run folder anyway
            log.warning("Rerun stream not fully delivered: %s", exc)
        self.rec.disconnect()


def _has_display() -> bool:
    """The viewer opens a window: on Linux that needs X11 or Wayland."""
    import os
    import sys

    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
