"""Training entry point of the keypoint net: one process on CPU or GPU, or many with torch DDP.

    python -m slam.learned.train --out runs/kpnet --images ../shared/data/train_images/vpr_toy ...
    torchrun --nproc_per_node 2 --no-python slam train --out runs/kpnet ...   # DDP: gloo on CPU, nccl on GPU
    slam train --out runs/kpnet ...                                            # the same, from the CLI

Self-supervised: pairs of random homographic views of real photos with photometric changes
(:mod:`slam.learned.data`), keypoint labels from a corner teacher on the clean views
(:mod:`slam.learned.labels`), descriptor correspondences from the exact homography
(:mod:`slam.learned.losses`). Under DDP every process draws its own pairs (seed + rank); the batch size is
per process. Writes into ``out``: ``log.jsonl`` (losses every ``log_every`` steps, validation metrics on
held-out training images every ``val_every``), ``checkpoint.pt`` (``--resume`` continues from it) and at
the end ``weights.pt`` (the shipped format, see :mod:`slam.learned.weights`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

from slam.messages import DataError

from .data import PairSynthesizer, collect_images, is_validation, load_images
from .labels import corner_response, keypoint_targets, pair_responses
from .losses import descriptor_loss, keypoint_loss
from .model import KeypointNet, NetConfig
from .validation import evaluate, validation_pairs
from .weights import save_weights

WEIGHTS_VERSION = "2.0.0"  # of the weights this recipe makes; bump with any change of data or recipe


@dataclass
class TrainConfig:
    out: str = "runs/kpnet"
    images: list[str] = field(default_factory=list)  # folders of training photos (recursively)
    skimage: bool = True  # add scikit-image's sample photos
    steps: int = 5300
    batch: int = 16  # per process
    crop: tuple[int, int] = (240, 320)  # (height, width) of a training view, multiples of 16
    lr: float = 3e-3  # AdamW, linear warm-up then cosine decay to 0
    warmup: int = 100
    weight_decay: float = 1e-4
    channels: tuple[int, int, int, int] = (8, 16, 32, 64)
    descriptor_dim: int = 64
    head_channels: int = 64
    descriptor_stride: int = 4
    positive_fraction: float = 0.3  # of the cells labelled as keypoints by the teacher
    temperature: float = 0.05  # descriptor softmax
    exclusion_px: float = 8.0  # descriptor negatives: every map cell at least this far from the positive
    keypoint_weight: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads per process; 0: torch's default
    log_every: int = 50
    val_every: int = 4000  # 0: only at the end
    val_images: int = 16  # held-out images validated on (two warps each)
    checkpoint_every: int = 1000
    resume: bool = False

    def net_config(self) -> NetConfig:
        return NetConfig(tuple(self.channels), self.descriptor_dim, self.head_channels, self.descriptor_stride)


# ------------------------------------------------------------------------------------ distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup(device: str) -> Dist:
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise DataError("device cuda asked for, but torch sees no GPU", field="device")
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # launched by torchrun: it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
        dist.init_process_group("nccl" if cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        return Dist(dist.get_rank(), world, torch.device(f"cuda:{local}" if cuda else "cpu"))
    return Dist(0, 1, torch.device("cuda" if cuda else "cpu"))


# ---------------------------------------------------------------------------------------- training


def _lr(config: TrainConfig, step: int) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(config.steps - config.warmup, 1)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def losses(net, batch, config: TrainConfig) -> dict[str, torch.Tensor]:
    """All loss terms of one batch of view pairs (labels from the teacher, no gradient through it)."""
    with torch.no_grad():
        response1, response2 = pair_responses(corner_response(batch.clean1, batch.valid1),
                                              corner_response(batch.clean2, batch.valid2), batch.H21)
        targets1 = keypoint_targets(response1, batch.valid1, config.positive_fraction)
        targets2 = keypoint_targets(response2, batch.valid2, config.positive_fraction)
    both = torch.cat([batch.view1, batch.view2]).contiguous(memory_format=torch.channels_last)
    logits, desc = net(both)
    n = len(batch.view1)
    kp = (keypoint_loss(logits[:n], targets1) + keypoint_loss(logits[n:], targets2)) / 2
    dl, dacc = descriptor_loss(desc[:n], desc[n:], targets1, batch.valid2, batch.H21, config.temperature,
                               config.exclusion_px)
    return {"loss": dl + config.keypoint_weight * kp, "keypoint": kp, "descriptor": dl, "descriptor_acc": dacc}


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig, progress: bool = True) -> Path | None:
    """Run the training; returns the weight file (on the main process; None on the others)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    run = _setup(config.device)
    out = Path(config.out)
    torch.manual_seed(config.seed)  # the same initial weights in every process (DDP also broadcasts them)
    files = collect_images(config.images, config.skimage)
    train_files = [p for p in files if not is_validation(p)]
    val_files = [p for p in files if is_validation(p)]
    if not train_files:
        raise DataError("no training images: give --images folders or keep the scikit-image photos")
    net = KeypointNet(config.net_config()).to(run.device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    checkpoint_path = out / "checkpoint.pt"
    if config.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=run.device, weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    model = net
    if run.world > 1:
        devices = [run.device.index] if run.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=devices)
    # Each process draws its own pairs; a resumed run restarts the stream from a seed tied to the step.
    synth = PairSynthesizer(load_images(train_files), tuple(config.crop), run.device,
                            seed=config.seed + 1000 * run.rank + 7919 * start)
    # At most `val_images` held-out images, spread evenly over the sorted list (so over the folders).
    val_files = val_files[::max(1, math.ceil(len(val_files) / config.val_images))] if config.val_images else []
    val_pairs = validation_pairs(val_files) if run.main else []
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    log = open(out / "log.jsonl", "a") if run.main else None

    def write(record: dict) -> None:
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()

    if run.main:
        write({"kind": "start", "step": start, "world": run.world, "device": str(run.device),
               "train_images": len(synth.sizes), "val_pairs": len(val_pairs), "resumed": start > 0})
    t0 = time.perf_counter()
    sums: dict[str, float] = {}
    bar = _progress(config.steps, start) if (progress and run.main) else None
    for step in range(start, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        terms = losses(model, synth.batch(config.batch), config)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            count = (done - start) % config.log_every or config.log_every
            record = {"kind": "train", "step": done, "lr": _lr(config, step),
                      "elapsed_s": round(time.perf_counter() - t0, 2)}
            record.update({k: round(v / count, 5) for k, v in sums.items()})
            sums = {}
            write(record)
            if bar is not None:
                bar[0].update(bar[1], completed=done, description=f"loss {record['loss']:.3f}")
        if run.main and config.val_every and done % config.val_every == 0 and done < config.steps:
            metrics = evaluate(net, val_pairs)
            write({"kind": "val", "step": done, **{k: round(v, 4) for k, v in metrics.items()}})
        if run.main and (done % config.checkpoint_every == 0 or done == config.steps):
            _atomic_save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                          "config": asdict(config)}, checkpoint_path)
    if bar is not None:
        bar[0].stop()
    result = None
    if run.main:
        metrics = evaluate(net, val_pairs)
        write({"kind": "val", "step": config.steps, **{k: round(v, 4) for k, v in metrics.items()}})
        meta = {"version": WEIGHTS_VERSION, "steps": config.steps, "batch_per_process": config.batch,
                "processes": run.world, "device": _device_name(run.device), "seconds": round(time.perf_counter() - t0),
                "train_images": len(synth.sizes), "validation": metrics,
                "folders": sorted({str(Path(f).name) for f in config.images}), "skimage": config.skimage,
                "config": asdict(config), "torch": str(torch.__version__)}
        result = save_weights(net, out / "weights.pt", meta)
        write({"kind": "done", "step": config.steps, "weights": str(result), **metrics})
        log.close()
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def _progress(total: int, start: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    task = bar.add_task("training", total=total, completed=start)
    bar.start()
    return bar, task


# --------------------------------------------------------------------------------------------- CLI


def parse_args(argv=None) -> TrainConfig:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m slam.learned.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--images", action="append", default=[], help="folder of training photos (repeatable)")
    parser.add_argument("--no-skimage", dest="skimage", action="store_false", help="without scikit-image's photos")
    for f in fields(TrainConfig):
        if f.name in ("out", "images", "skimage", "resume"):
            continue
        value = getattr(defaults, f.name)
        if isinstance(value, tuple):
            parser.add_argument(f"--{f.name.replace('_', '-')}", default=",".join(map(str, value)),
                                help=f"comma-separated, default {','.join(map(str, value))}")
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value,
                                help=f"default {value}")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    args = vars(parser.parse_args(argv))
    for f in fields(TrainConfig):
        if isinstance(getattr(defaults, f.name), tuple) and isinstance(args[f.name], str):
            args[f.name] = tuple(int(v) for v in args[f.name].split(","))
    return TrainConfig(**args)


def main(argv=None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
