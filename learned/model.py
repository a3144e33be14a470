"""The keypoint/descriptor net: a small fully-convolutional SuperPoint/XFeat-style model.

Built for CPU and the Apple Neural Engine: plain conv/BN/ReLU, bilinear x2 upsampling, static shapes,
no grid_sample, no deformable conv, no reads of tensor shapes inside ``forward``. Keypoints come from the
1/8-resolution grid of 8x8 pixel cells:

- a shared encoder (strides 2, 4, 8, 16; the 1/16 features are upsampled and fused into the 1/8 ones),
- a keypoint head: a cell-wise softmax over 65 classes, the 64 pixels of the cell plus a "no keypoint"
  dustbin (SuperPoint). The dustbin logit is learned from the encoder features (which cells hold a good
  keypoint); the 64 pixel logits are a fixed corner layer, the log of Shi-Tomasi's corner response (the
  structure tensor's smaller eigenvalue, the training teacher's own formula) divided by a temperature. A
  learned within-cell localization did not converge in the training budget of a shared 2-core CPU (the
  argmax of a corner response is a sharp, non-local-per-cell target); the fixed layer localizes to the
  pixel, and its softmax spreads a keypoint over neighbouring pixels, which gives the sub-pixel refinement,
- a descriptor head: L2-normalized descriptors, bilinearly sampled at the keypoints afterwards. At
  ``descriptor_stride`` 8, one per cell. At 4, the 1/8 descriptors are upsampled and a small 1x1 head on the
  stride-4 encoder features is added before normalizing: the 1/8 map alone is smooth over space, so a
  keypoint without a counterpart in the other view matched a neighbour a few pixels off; the finer map
  tells such positions apart (1x1 convs on 16 and 32 channels: about 2 ms per 752x480 image).

Input: (B, 1, H, W) float grey image in [0, 1], H and W multiples of ``MULTIPLE`` = 16 (the 1/16 features
are upsampled to the 1/8 grid without reading shapes; 752x480 and 640x480 qualify, other sizes are padded
by the caller). Each image is standardized inside the graph (zero mean, unit std), so brightness and
contrast do not matter.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

CELL = 8  # pixels per cell side: the keypoint head's 64 classes are the pixels of one cell
MULTIPLE = 16  # input height and width must be multiples of this (the coarsest stride)
CORNER_REFERENCE = 0.01  # corner response whose pixel logit is 0 (standardized image)
CORNER_TEMPERATURE = 0.25  # of the pixel logits: neighbours at 80 % of a peak's response get e^-0.9 of its mass


@dataclass(frozen=True)
class NetConfig:
    """Architecture of :class:`KeypointNet`; stored in every weight file and checked when loading."""

    channels: tuple[int, int, int, int] = (8, 16, 32, 64)  # encoder widths at strides 2, 4, 8, 16
    descriptor_dim: int = 64
    head_channels: int = 64  # width of the keypoint and descriptor heads
    descriptor_stride: int = 4  # 4: a finer map (see the module docstring); 8: one descriptor per cell

    def __post_init__(self):
        if len(self.channels) != 4 or not all(isinstance(c, int) and c > 0 for c in self.channels):
            raise ValueError(f"NetConfig.channels must be 4 positive integers, got {self.channels!r}")
        for name in ("descriptor_dim", "head_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NetConfig.{name} must be a positive integer, got {value!r}")
        if self.descriptor_stride not in (4, 8):
            raise ValueError(f"NetConfig.descriptor_stride must be 4 or 8, got {self.descriptor_stride!r}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        data = dict(data)
        data.setdefault("descriptor_stride", 8)  # files written before the field existed hold stride-8 nets
        if "channels" in data:
            data["channels"] = tuple(data["channels"])
        return cls(**data)

    def describe(self) -> str:
        stride = "" if self.descriptor_stride == 8 else f", descriptor_stride={self.descriptor_stride}"
        return (f"KeypointNet(channels={list(self.channels)}, descriptor_dim={self.descriptor_dim}, "
                f"head_channels={self.head_channels}{stride})")


def standardize(image: torch.Tensor) -> torch.Tensor:
    """Each image to zero mean and unit standard deviation: brightness and contrast do not matter."""
    mean = image.mean(dim=(2, 3), keepdim=True)
    std = image.std(dim=(2, 3), keepdim=True)
    return (image - mean) / (std + 1e-3)


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    padding = 0 if kernel == stride else kernel // 2
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class CornerResponse(nn.Module):
    """Shi-Tomasi corner response of a (B, 1, H, W) image: the smaller eigenvalue of the structure tensor
    (Sobel gradients, separable 5-tap Gaussian window), >= 0. A fixed layer without weights. The image edge
    is replicated for the gradients; the window sees zeros beyond the edge, which only weakens responses
    within 2 px of it (keypoints keep 4 px away)."""

    def __init__(self):
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        taps = torch.exp(-0.5 * torch.arange(-2.0, 3.0) ** 2)
        taps = taps / taps.sum()
        self.register_buffer("sobel", torch.stack([sobel, sobel.T])[:, None], persistent=False)
        self.register_buffer("window_y", taps.view(1, 1, 5, 1), persistent=False)
        self.register_buffer("window_x", taps.view(1, 1, 1, 5), persistent=False)

    def opencv(self, x: np.ndarray) -> np.ndarray:
        """The same response of one (H, W) float32 image with OpenCV: 2.5 ms at 752x480 where the layer
        takes ~5 ms inside the net on 2 CPU threads."""
        taps = self.window_x.flatten().numpy()
        gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8, borderType=cv2.BORDER_REPLICATE)
        a, b, c = (cv2.sepFilter2D(m, cv2.CV_32F, taps, taps, borderType=cv2.BORDER_CONSTANT)
                   for m in (gx * gx, gx * gy, gy * gy))
        half_trace, half_diff = cv2.add(a, c), cv2.subtract(a, c)
        half_trace *= 0.5
        half_diff *= 0.5
        root = cv2.sqrt(half_diff * half_diff + b * b + 1e-12)
        return np.maximum(half_trace - root, 0)

    def _window(self, m: torch.Tensor) -> torch.Tensor:
        # One single-channel conv per product: a grouped conv over the three products ran 4x slower on CPU.
        return F.conv2d(F.conv2d(m, self.window_y, padding=(2, 0)), self.window_x, padding=(0, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.sobel)
        gx, gy = g[:, :1], g[:, 1:]
        a, b, c = self._window(gx * gx), self._window(gx * gy), self._window(gy * gy)
        return torch.relu((a + c) / 2 - torch.sqrt(((a - c) / 2) ** 2 + b * b + 1e-12))


class KeypointNet(nn.Module):
    """Shared encoder, cell-wise softmax keypoint head, descriptor head (see the module docstring)."""

    def __init__(self, config: NetConfig = NetConfig()):
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.channels
        h = config.head_channels
        self.stride2 = nn.Sequential(_conv(1, c1, stride=2), _conv(c1, c1))
        self.stride4 = nn.Sequential(_conv(c1, c2, stride=2), _conv(c2, c2))
        self.stride8 = nn.Sequential(_conv(c2, c3, stride=2), _conv(c3, c3), _conv(c3, c3))
        self.stride16 = nn.Sequential(_conv(c3, c4, stride=2), _conv(c4, c4), _conv(c4, c4))
        self.fuse = _conv(c3 + c4, h, kernel=1)
        self.corners = CornerResponse()
        self.dustbin_head = nn.Sequential(_conv(h, h, kernel=1), nn.Conv2d(h, 1, 1))
        self.descriptor_head = nn.Sequential(_conv(h, h), nn.Conv2d(h, config.descriptor_dim, 1))
        self.fine_head = (nn.Sequential(_conv(c2, 2 * c2, kernel=1), nn.Conv2d(2 * c2, config.descriptor_dim, 1))
                          if config.descriptor_stride == 4 else None)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: [B x 1 x H x W] in [0, 1] -> (keypoint logits [B x 65 x H/8 x W/8],
        descriptors [B x D x H/8 x W/8], unit length along D). Logit channel k < 64 is pixel
        (k % 8, k // 8) of its cell; channel 64 is the dustbin. At descriptor_stride 4 the descriptors are
        [B x D x H/4 x W/4]."""
        x = standardize(image)
        logits, coarse, f4 = self.trunk(x, self.corners(x))
        return logits, F.normalize(self.fine_descriptors(coarse, f4), dim=1)

    def fine_descriptors(self, coarse: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        """Unnormalized descriptors at the descriptor stride from the trunk's 1/8 ones and stride-4 features."""
        if self.fine_head is None:
            return coarse
        return F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False) + self.fine_head(f4)

    def trunk(self, x: torch.Tensor, corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keypoint logits, unnormalized 1/8 descriptors [B x D x H/8 x W/8], stride-4 encoder features) of
        the standardized image ``x`` (:func:`standardize`) and its corner response ``corners`` (the corner
        layer's, or :meth:`CornerResponse.opencv`): everything but the dense fine descriptor map, which
        inference computes only at the keypoints."""
        f4 = self.stride4(self.stride2(x))
        f8 = self.stride8(f4)
        f16 = self.stride16(f8)
        up = F.interpolate(f16, scale_factor=2.0, mode="bilinear", align_corners=False)
        features = self.fuse(torch.cat([f8, up], dim=1))
        pixels = (torch.log(corners + 1e-6) - math.log(CORNER_REFERENCE)) / CORNER_TEMPERATURE
        logits = torch.cat([F.pixel_unshuffle(pixels, CELL), self.dustbin_head(features)], dim=1)
        return logits, self.descriptor_head(features), f4


class InferenceGraph(nn.Module):
    """What runs at inference and is exported: the net with the cell-wise softmax applied.

    Returns (probabilities [B x 65 x H/8 x W/8], descriptors [B x D x H/s x W/s], s the descriptor stride).
    """

    def __init__(self, net: KeypointNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, descriptors = self.net(image)
        return torch.softmax(logits, dim=1), descriptors


def fold_batch_norms(net: KeypointNet) -> KeypointNet:
    """A copy of an eval-mode net with every batch norm folded into the convolution before it: the same
    outputs for ~30 % less CPU time."""
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(module[i], module[i + 1]), nn.Identity()
    return net


class TrunkGraph(nn.Module):
    """What the CPU runs: :class:`InferenceGraph` but for the dense descriptor map and the corner layer
    (its response comes in as ``corners``, from :meth:`CornerResponse.opencv`). Returns (probabilities,
    unnormalized 1/8 descriptors, stride-4 features); ``slam.learned.features`` finishes the descriptors at the
    keypoints only, to the same values. At descriptor_stride 4 the dense map (upsampling, the fine head over
    every stride-4 pixel, normalizing) was a third of the net's CPU time."""

    def __init__(self, net: KeypointNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: the standardized image; corners: its corner response."""
        logits, coarse, f4 = self.net.trunk(x, corners)
        return torch.softmax(logits, dim=1), coarse, f4
