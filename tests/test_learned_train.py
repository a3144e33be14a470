"""The training entry point: a few steps in one process, resume, and two processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from slam.learned.data import PairSynthesizer, is_validation, photometric
from slam.learned.labels import corner_response, keypoint_targets, pair_responses
from slam.learned.losses import warp
from slam.learned.train import TrainConfig, parse_args, train
from slam.learned.weights import load_weights
from slam.messages import DataError

TINY = ["--steps", "2", "--batch", "2", "--crop", "64,96", "--log-every", "1", "--val-every", "0",
        "--val-images", "2", "--checkpoint-every", "1", "--no-skimage"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of real photos (scikit-image's, as PNG) to train on; photos/gravel.png is held out."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos", numbered=False)  # the held-out tenth hashes folder + name
    for name in ("camera", "astronaut", "coffee", "brick", "rocket", "chelsea", "gravel"):
        image = getattr(data, name)()
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        cv2.imwrite(str(folder / f"{name}.png"), gray)
    return folder


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_pairs_are_exact_homographic_views(photos):
    from slam.learned.data import collect_images, load_images

    synth = PairSynthesizer(load_images(collect_images([photos], False)), (96, 128), seed=3)
    batch = synth.batch(4)
    for k in range(4):  # view 1 warped by H21 reproduces view 2 where both show the photo
        H = batch.H21[k].double().numpy()
        moved = cv2.warpPerspective(batch.clean1[k, 0].numpy(), H, (128, 96))
        inside = cv2.warpPerspective(batch.valid1[k, 0].numpy().astype(np.uint8), H, (128, 96),
                                     flags=cv2.INTER_NEAREST) > 0
        both = cv2.erode((inside & batch.valid2[k, 0].numpy()).astype(np.uint8), np.ones((5, 5))) > 0
        assert both.sum() > 1000
        assert np.abs(moved - batch.clean2[k, 0].numpy())[both].mean() < 0.02
    assert not torch.equal(batch.view1, batch.clean1)  # photometric changes applied
    assert float(photometric(batch.clean1, torch.Generator().manual_seed(0)).max()) <= 1.0


def test_teacher_labels_mark_the_same_corners_in_both_views(photos):
    from slam.learned.data import collect_images, load_images
    from slam.learned.metrics import repeatability

    synth = PairSynthesizer(load_images(collect_images([photos], False)), (128, 160), seed=1)
    batch = synth.batch(4)
    r1, r2 = pair_responses(corner_response(batch.clean1, batch.valid1), corner_response(batch.clean2, batch.valid2),
                            batch.H21)
    t1, t2 = keypoint_targets(r1, batch.valid1), keypoint_targets(r2, batch.valid2)
    torch.testing.assert_close(t1.classes.sum(dim=1), torch.ones_like(t1.classes[:, 0]))
    reps = [repeatability(t1.xy[k][t1.positive[k]].numpy(), t2.xy[k][t2.positive[k]].numpy(),
                          batch.H21[k].double().numpy(), (128, 160), (128, 160)) for k in range(4)]
    assert np.mean(reps) > 0.5  # random points at the same density repeat ~0.15
    moved = warp(batch.H21[:1], t1.xy[:1].reshape(1, -1, 2))
    assert torch.isfinite(moved).all()


def test_few_steps_write_log_checkpoint_weights_and_resume(photos, tmp_path):
    out = tmp_path / "run"
    config = parse_args(["--out", str(out), "--images", str(photos), *TINY, "--seed", "5"])
    assert config.crop == (64, 96) and config.images == [str(photos)] and not config.skimage
    weights = train(config, progress=False)
    log = _log(out)
    steps = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 2] and all(np.isfinite(r["loss"]) for r in steps)
    assert log[-1]["kind"] == "done" and log[-1]["pairs"] == 2 and 0 <= log[-1]["mma3"] <= 1
    net, meta = load_weights(weights)
    assert meta["steps"] == 2 and meta["processes"] == 1 and meta["version"]
    again = train(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "again")}), progress=False)
    assert [r["loss"] for r in _log(tmp_path / "again") if r["kind"] == "train"] == [r["loss"] for r in steps]
    for a, b in zip(net.state_dict().values(), load_weights(again)[0].state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)  # fixed seeds: the same run twice
    resumed = train(TrainConfig(**{**config.__dict__, "steps": 3, "resume": True}), progress=False)
    log = _log(out)
    start = [r for r in log if r["kind"] == "start"][-1]
    assert start["resumed"] and start["step"] == 2 and log[-1]["step"] == 3
    assert load_weights(resumed)[1]["steps"] == 3


def test_bad_training_input_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        train(TrainConfig(out=str(tmp_path / "x"), images=[str(tmp_path / "nope")]), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no training images"):
        train(TrainConfig(out=str(tmp_path / "y"), images=[str(empty)], skimage=False), progress=False)


def test_image_order_does_not_depend_on_where_the_data_lives(photos, tmp_path, monkeypatch):
    from slam.learned.data import collect_images

    other = tmp_path / "more"
    other.mkdir()
    cv2.imwrite(str(other / "a.png"), np.zeros((8, 8), np.uint8))
    absolute = collect_images([photos, other], include_skimage=False)
    monkeypatch.chdir(photos.parent)
    relative = collect_images([Path(other.parent.name) / "more", Path(photos.name)], include_skimage=False)
    assert [p.resolve() for p in relative] == [p.resolve() for p in absolute] and len(absolute) == 8


def test_validation_images_are_held_out_by_name():
    names = [Path(f"/a/folder/{i}.jpg") for i in range(200)]
    held = [p for p in names if is_validation(p)]
    assert 8 <= len(held) <= 40  # about a tenth
    assert held == [p for p in names if is_validation(Path("/elsewhere/folder") / p.name)]


def test_torchrun_two_processes_on_cpu(photos, tmp_path):
    """The documented DDP launch, ``torchrun --nproc_per_node 2 --no-python slam train ...``: it runs the
    installed console script, so it works from any folder (``-m slam.learned.train`` from a clone's root
    would import the clone's own ``slam/`` folder instead of the installed package)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    slam_exe = shutil.which("slam") or str(Path(sys.executable).with_name("slam"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
           slam_exe, "train", "--out", str(out), "--images", str(photos), "--no-skimage", "--steps", "2",
           "--batch", "2", "--crop", "64,96", "--val-every", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    log = _log(out)
    assert log[0]["world"] == 2 and log[-1]["kind"] == "done"
    assert load_weights(out / "weights.pt")[1]["processes"] == 2


def test_slam_train_command_reports_bad_input_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from slam.cli import app

    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--images", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "training image folder not found" in result.output
    result = CliRunner().invoke(app, ["train", "--images", str(tmp_path), "--crop", "240"])
    assert result.exit_code == 2 and "crop" in result.output
