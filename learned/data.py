"""Training data: real photos -> pairs of random homographic views with photometric augmentation.

Images come from folders (``../shared/data/train_images/...``) and the sample photos shipped inside
scikit-image, never from the evaluation data. Every image is grey, at most 640 px on its longer side. A
fixed tenth of the files (by a hash of the file name) is held out for validation.

Pairs are made on the training device in one batched ``grid_sample``: each sample picks an image, a base
crop (a random scale and place) and two random views of it (:func:`slam.learned.homography.random_view`);
``H21`` maps view-1 pixels to view-2 pixels exactly. Photometric changes (contrast, brightness, gamma,
blur, noise) are drawn per view; the clean views are kept for the corner teacher.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from slam.messages import DataError

from .homography import TRAIN_WARP, WarpRange, random_view
from .model import MULTIPLE

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_SIDE = 640
MIN_SIDE = 96


def skimage_photo_dir() -> Path | None:
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(skimage.data.__file__).parent


def collect_images(folders: list[str | Path], include_skimage: bool = True) -> list[Path]:
    """Image files under ``folders`` (recursively) and, if asked, scikit-image's sample photos.

    Ordered by folder name and path inside it, not by absolute path, so the training stream (images are
    drawn by index) does not depend on where the data lives or how the folders are written.
    """
    sources = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError("training image folder not found", folder)
        sources.append((folder.resolve().name, folder, folder.rglob("*")))
    skimage_dir = skimage_photo_dir() if include_skimage else None
    if skimage_dir is not None:
        sources.append(("skimage", skimage_dir, skimage_dir.glob("*")))
    keyed = {f"{name}/{path.relative_to(root).as_posix()}": path for name, root, paths in sources
             for path in paths if path.suffix.lower() in IMAGE_SUFFIXES}
    return [keyed[key] for key in sorted(keyed)]


def is_validation(path: Path, every: int = 10) -> bool:
    """The fixed held-out tenth: decided by the file's parent folder and name, not by the run."""
    digest = hashlib.sha1(f"{path.parent.name}/{path.name}".encode()).digest()
    return digest[0] % every == 0


def load_gray(path: Path) -> np.ndarray | None:
    """uint8 grey image, longer side at most MAX_SIDE; None if unreadable, tiny or nearly uniform."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or min(image.shape) < MIN_SIDE or float(image.std()) < 8.0:
        return None
    scale = MAX_SIDE / max(image.shape)
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def load_images(paths: list[Path]) -> list[np.ndarray]:
    return [image for image in map(load_gray, paths) if image is not None]


@dataclass
class PairBatch:
    """A batch of view pairs; tensors on the training device, images (B, 1, H, W) in [0, 1]."""

    view1: torch.Tensor  # augmented, what the net sees
    view2: torch.Tensor
    clean1: torch.Tensor  # before photometric changes, for the corner teacher
    clean2: torch.Tensor
    valid1: torch.Tensor  # (B, 1, H, W) bool: pixel shows the photo (not the outside)
    valid2: torch.Tensor
    H21: torch.Tensor  # (B, 3, 3) float32: view-1 pixels -> view-2 pixels


class PairSynthesizer:
    """Random view pairs of ``images`` at ``crop`` = (height, width), made on ``device``."""

    def __init__(self, images: list[np.ndarray], crop: tuple[int, int] = (240, 320), device="cpu",
                 seed: int = 0, warp: WarpRange = TRAIN_WARP):
        if not images:
            raise DataError("no usable training images (need grey-convertible photos, at least "
                            f"{MIN_SIDE} px, not uniform)")
        if crop[0] % MULTIPLE or crop[1] % MULTIPLE:
            raise ValueError(f"crop must be a multiple of {MULTIPLE} px, got {crop}")
        self.crop, self.device, self.warp = crop, torch.device(device), warp
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        height = max(i.shape[0] for i in images)
        width = max(i.shape[1] for i in images)
        stack = np.zeros((len(images), 1, height, width), np.uint8)
        for k, image in enumerate(images):
            stack[k, 0, :image.shape[0], :image.shape[1]] = image
        self.images = torch.from_numpy(stack).to(self.device)
        self.sizes = np.array([(i.shape[1], i.shape[0]) for i in images], np.float64)  # (w, h)
        ys, xs = torch.meshgrid(torch.arange(crop[0], dtype=torch.float32),
                                torch.arange(crop[1], dtype=torch.float32), indexing="ij")
        self._pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3).to(self.device)

    def _base_crop(self, size: np.ndarray) -> np.ndarray:
        """Crop pixels -> image pixels: a random scale (0.7 to 2 image px per crop px) and place."""
        crop_h, crop_w = self.crop
        fit = min(size[0] / crop_w, size[1] / crop_h)
        low = min(0.7, fit)
        scale = float(np.exp(self.rng.uniform(np.log(low), np.log(max(low, min(2.0, fit))))))
        center = []
        for extent, length in ((scale * crop_w, size[0]), (scale * crop_h, size[1])):
            lo, hi = extent / 2, length - extent / 2
            center.append(self.rng.uniform(lo, hi) if hi > lo else length / 2)
        return np.array([[scale, 0, center[0] - scale * (crop_w - 1) / 2],
                         [0, scale, center[1] - scale * (crop_h - 1) / 2], [0, 0, 1.0]])

    def batch(self, batch_size: int) -> PairBatch:
        crop_h, crop_w = self.crop
        index = self.rng.integers(0, len(self.sizes), batch_size)
        M1, M2 = [], []
        for k in index:
            base = self._base_crop(self.sizes[k])
            M1.append(base @ random_view(crop_w, crop_h, self.rng, self.warp))
            M2.append(base @ random_view(crop_w, crop_h, self.rng, self.warp))
        M1, M2 = np.stack(M1), np.stack(M2)
        H21 = np.linalg.inv(M2) @ M1
        source = self.images[torch.from_numpy(index).to(self.device)].float().div_(255.0)
        sizes = torch.from_numpy(self.sizes[index]).float().to(self.device)
        clean1, valid1 = self._warp(source, M1, sizes)
        clean2, valid2 = self._warp(source, M2, sizes)
        return PairBatch(photometric(clean1, self.generator), photometric(clean2, self.generator), clean1, clean2,
                         valid1, valid2, torch.from_numpy(H21).float().to(self.device))

    def _warp(self, source: torch.Tensor, M: np.ndarray, sizes: torch.Tensor):
        crop_h, crop_w = self.crop
        M = torch.from_numpy(M).float().to(self.device)
        p = torch.einsum("bij,nj->bni", M, self._pixels)
        xy = p[..., :2] / p[..., 2:]
        valid = ((xy >= 0) & (xy <= sizes[:, None, :] - 1)).all(dim=-1) & (p[..., 2] > 0)
        height, width = source.shape[2:]
        scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], device=self.device)
        grid = (xy * scale - 1).reshape(-1, crop_h, crop_w, 2)
        image = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        valid = valid.reshape(-1, 1, crop_h, crop_w)
        return image * valid, valid


def photometric(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random contrast, brightness, gamma, Gaussian blur and noise, drawn per image of the batch."""
    batch = image.shape[0]

    def uniform(low, high):
        return low + (high - low) * torch.rand(batch, 1, 1, 1, generator=generator, device=image.device)

    contrast = torch.exp(uniform(np.log(0.5), np.log(1.6)))
    x = ((image - 0.5) * contrast + 0.5 + uniform(-0.2, 0.2)).clamp(0, 1)
    x = x.clamp_min(1e-4) ** torch.exp(uniform(np.log(0.6), np.log(1.6)))
    sigma = uniform(0.3, 1.5) * (uniform(0, 1) < 0.4)  # blur in 40 % of the images
    taps = torch.arange(-3, 4, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma.reshape(-1, 1).clamp_min(1e-3)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # sigma ~0: a delta
    height, width = x.shape[2:]
    x = x.reshape(1, batch, height, width)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=batch)
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), kernel[:, None, :, None], groups=batch)
    x = x.reshape(batch, 1, height, width)
    noise = torch.randn(x.shape, generator=generator, device=image.device) * uniform(0.0, 0.04)
    return (x + noise).clamp(0, 1)
