"""``slam train``: train the learned keypoint/descriptor net. Commands register on :data:`slam.cli.app`.

The library function is :func:`slam.learned.train.train`; for several processes (torch DDP) launch
``torchrun --nproc_per_node N --no-python slam train ...``. ``python -m slam.learned.train`` takes every
field of ``TrainConfig`` as an option (run it outside a clone's root, whose ``slam/`` folder would shadow the
installed package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from slam.cli import _console, _fail_on_data_error, app


def _ints(text: str, name: str, count: int) -> tuple[int, ...]:
    from slam.messages import DataError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"expected {count} comma-separated integers, got {text!r}", field=name) from None
    if len(values) != count:
        raise DataError(f"expected {count} comma-separated integers, got {text!r}", field=name)
    return values


@app.command()
@_fail_on_data_error
def train(
    out: Annotated[Path, typer.Option(help="Run folder: log.jsonl, checkpoint.pt, weights.pt.")] = Path("runs/kpnet"),
    images: Annotated[Optional[list[Path]], typer.Option(help="Folder of training photos, searched recursively "
                                                              "(repeatable). Never the evaluation data.")] = None,
    skimage: Annotated[bool, typer.Option(help="Also train on scikit-image's sample photos.")] = True,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 5300,
    batch: Annotated[int, typer.Option(help="View pairs per step (per process under DDP).")] = 16,
    crop: Annotated[str, typer.Option(help="Training view size 'height,width', multiples of 16.")] = "240,320",
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine decay).")] = 3e-3,
    channels: Annotated[str, typer.Option(help="Encoder widths at strides 2,4,8,16.")] = "8,16,32,64",
    descriptor_stride: Annotated[int, typer.Option(help="Pixels per descriptor-map cell: 4 or 8.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (weights and data; + rank under DDP).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    val_every: Annotated[int, typer.Option(help="Validate on held-out training images every N steps.")] = 4000,
    val_images: Annotated[int, typer.Option(help="Held-out images validated on (two warps each).")] = 16,
    threads: Annotated[int, typer.Option(help="Torch CPU threads per process; 0: torch's default.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")] = False,
):
    """Train the keypoint/descriptor net on homographic views of real photos (CPU or GPU); the defaults are
    the recipe of the shipped weights (see learned/weights/MODEL_CARD.md)."""
    from slam.learned.train import TrainConfig
    from slam.learned.train import train as run_training

    config = TrainConfig(out=str(out), images=[str(p) for p in images or []], skimage=skimage, steps=steps,
                         batch=batch, crop=_ints(crop, "crop", 2), lr=lr, channels=_ints(channels, "channels", 4),
                         descriptor_stride=descriptor_stride, seed=seed, device=device, val_every=val_every,
                         val_images=val_images, threads=threads, resume=resume)
    weights = run_training(config)
    if weights is not None:
        _console().print(f"weights: {weights}\nlog: {out / 'log.jsonl'}")
