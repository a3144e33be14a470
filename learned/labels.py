"""Keypoint labels from a corner teacher: Shi-Tomasi's minimum eigenvalue on the clean views.

Per view: the structure tensor's smaller eigenvalue of the standardized image (contrast does not matter),
made consistent across the pair (:func:`pair_responses`: a corner must look like one in both views), its
3x3 local maxima, and in each 8x8 cell the strongest one if it is among the ``positive_fraction`` strongest
cells of the image and above ``floor``, at sub-pixel precision; other cells get the dustbin class 64.
Cells that show any pixel outside the photo are not used. The teacher only sees the clean views, so the
net learns to find the same corners through blur, noise and exposure changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .model import CELL, CornerResponse

DUSTBIN = CELL * CELL
_CORNERS = CornerResponse()  # the net's own corner layer: teacher and net localize alike


def corner_response(clean: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) minimum eigenvalue of the structure tensor, 0 within 4 px of the outside or the edge."""
    mask = valid.to(clean.dtype)
    count = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    mean = (clean * mask).sum(dim=(2, 3), keepdim=True) / count
    std = (((clean - mean) ** 2 * mask).sum(dim=(2, 3), keepdim=True) / count).sqrt()
    x = (clean - mean) / (std + 1e-3) * mask
    response = _CORNERS.to(clean.device)(x)
    inside = -F.max_pool2d(-mask, 9, stride=1, padding=4)  # eroded by 4 px
    inside[..., :4, :] = 0
    inside[..., -4:, :] = 0
    inside[..., :, :4] = 0
    inside[..., :, -4:] = 0
    return response.clamp_min(0) * inside


def _sample(image: torch.Tensor, xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear samples of (B, 1, H, W) ``image`` at pixels ``xy`` (B, H', W', 2), and where xy is inside."""
    height, width = image.shape[2:]
    inside = (xy[..., 0] >= 0) & (xy[..., 1] >= 0) & (xy[..., 0] <= width - 1) & (xy[..., 1] <= height - 1)
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], device=image.device)
    out = F.grid_sample(image, xy * scale - 1, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out, inside[:, None]


def pair_responses(response1: torch.Tensor, response2: torch.Tensor, H21: torch.Tensor):
    """Two-view homographic adaptation of the teacher: where both views show a point, its response is the
    smaller of the two (a corner must look like one in both views, through the scale and perspective
    change); elsewhere each view keeps its own. Labels from these responses mark the same physical
    corners in both views."""
    height, width = response1.shape[2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=H21.device, dtype=torch.float32),
                            torch.arange(width, device=H21.device, dtype=torch.float32), indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)

    def seen_from(H, other):
        p = pixels @ H.transpose(1, 2)
        xy = (p[..., :2] / p[..., 2:].clamp_min(1e-9)).reshape(-1, height, width, 2)
        return _sample(other, xy)

    r2_in_1, inside1 = seen_from(H21, response2)
    r1_in_2, inside2 = seen_from(torch.linalg.inv(H21), response1)
    return (torch.where(inside1, torch.minimum(response1, r2_in_1), response1),
            torch.where(inside2, torch.minimum(response2, r1_in_2), response2))


def _subpixel(response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets (dx, dy) in [-0.5, 0.5] of the peak of a parabola through each pixel and its neighbours."""
    pad = F.pad(response, (1, 1, 1, 1), mode="replicate")
    center = pad[..., 1:-1, 1:-1]
    left, right = pad[..., 1:-1, :-2], pad[..., 1:-1, 2:]
    up, down = pad[..., :-2, 1:-1], pad[..., 2:, 1:-1]
    dx = (right - left) / (2 * (2 * center - left - right)).clamp_min(1e-9)
    dy = (down - up) / (2 * (2 * center - up - down)).clamp_min(1e-9)
    return dx.clamp(-0.5, 0.5), dy.clamp(-0.5, 0.5)


@dataclass
class KeypointTargets:
    """What the keypoint head should predict, per cell of a (B, 1, H, W) view."""

    classes: torch.Tensor  # (B, 65, H/8, W/8) target distribution: a keypoint split over its nearest pixels
    used: torch.Tensor  # (B, H/8, W/8) bool: cell fully inside the photo
    positive: torch.Tensor  # (B, H/8, W/8) bool: the cell holds a teacher keypoint
    xy: torch.Tensor  # (B, H/8, W/8, 2) sub-pixel keypoint (cell centre where none)


def keypoint_targets(response: torch.Tensor, valid: torch.Tensor, positive_fraction: float = 0.3,
                     floor: float = 0.01) -> KeypointTargets:
    """Cell targets from the teacher ``response``: the strongest local maximum of each cell among the image's
    ``positive_fraction`` strongest cells, split bilinearly over the (in-cell) pixels around its sub-pixel
    position, so the inference's weighted mean recovers that position; other cells: the dustbin."""
    batch, _, height, width = response.shape
    rows, cols = height // CELL, width // CELL
    peaks = response * (response == F.max_pool2d(response, 3, stride=1, padding=1))
    cells = F.pixel_unshuffle(peaks, CELL)  # channel k = pixel (k % 8, k // 8) of the cell
    best, where = cells.max(dim=1)
    used = F.pixel_unshuffle(valid.to(response.dtype), CELL).amin(dim=1) > 0
    positive = torch.zeros_like(used)
    for k in range(batch):  # the threshold is a quantile of the image's own cells
        scores = best[k][used[k]]
        threshold = floor
        if len(scores):
            threshold = max(floor, float(torch.quantile(scores.float(), 1 - positive_fraction)))
        positive[k] = (best[k] >= threshold) & (best[k] > 0) & used[k]
    dx, dy = _subpixel(response)
    ox = F.pixel_unshuffle(dx, CELL).gather(1, where[:, None])[:, 0]
    oy = F.pixel_unshuffle(dy, CELL).gather(1, where[:, None])[:, 0]
    fx = (where % CELL).float() + ox  # sub-pixel position inside the cell
    fy = (where // CELL).float() + oy
    classes = torch.zeros(batch, DUSTBIN + 1, rows, cols, device=response.device)
    x0, y0 = fx.floor(), fy.floor()
    for cx, wx in ((x0, 1 - (fx - x0)), (x0 + 1, fx - x0)):
        for cy, wy in ((y0, 1 - (fy - y0)), (y0 + 1, fy - y0)):
            k = (cy.clamp(0, CELL - 1) * CELL + cx.clamp(0, CELL - 1)).long()
            classes.scatter_add_(1, k[:, None], (wx * wy * positive)[:, None])
    classes[:, DUSTBIN] = (~positive).float()
    ys, xs = torch.meshgrid(torch.arange(rows, device=response.device),
                            torch.arange(cols, device=response.device), indexing="ij")
    centre = (CELL - 1) / 2
    xy = torch.stack([torch.where(positive, xs * CELL + fx, xs * CELL + centre),
                      torch.where(positive, ys * CELL + fy, ys * CELL + centre)], dim=-1)
    return KeypointTargets(classes, used, positive, xy)
