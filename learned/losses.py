"""Training losses: cell-wise cross-entropy for keypoints, an InfoNCE loss over dense negatives for descriptors.

Descriptor loss: every teacher keypoint of view 1 that view 2 also shows is a query. Its descriptor (sampled
at the keypoint) must be closer to view 2's descriptor at the exactly warped point than to view 2's
descriptor at any cell centre farther than ``exclusion_px`` from it; and the other way round. Softmax
with ``temperature``; the hardest negatives are the image's own similar structures.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .labels import KeypointTargets
from .model import CELL


def keypoint_loss(logits: torch.Tensor, targets: KeypointTargets) -> torch.Tensor:
    """Cross-entropy of the cell-wise softmax against the target distributions, over the used cells."""
    per_cell = -(targets.classes * F.log_softmax(logits, dim=1)).sum(dim=1)
    weight = targets.used.float()
    return (per_cell * weight).sum() / weight.sum().clamp_min(1)


def sample_map(dense: torch.Tensor, xy: torch.Tensor, stride: int = CELL) -> torch.Tensor:
    """Bilinear samples (B, K, D) of a (B, D, rows, cols) map of ``stride`` px per map cell at pixel ``xy``
    (B, K, 2); map cells centred at s c + (s - 1) / 2 px, as at inference."""
    rows, cols = dense.shape[2:]
    u = (xy[..., 0] - (stride - 1) / 2) / stride * (2.0 / max(cols - 1, 1)) - 1
    v = (xy[..., 1] - (stride - 1) / 2) / stride * (2.0 / max(rows - 1, 1)) - 1
    grid = torch.stack([u, v], dim=-1)[:, None]
    out = F.grid_sample(dense, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return F.normalize(out[:, :, 0].transpose(1, 2), dim=-1)


def warp(H: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) points mapped by (B, 3, 3) homographies."""
    p = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1) @ H.transpose(1, 2)
    return p[..., :2] / p[..., 2:].clamp_min(1e-9)


def _cell_centres(rows: int, cols: int, stride: int, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return (torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() * stride + (stride - 1) / 2)


def _one_way(query: torch.Tensor, positive: torch.Tensor, dense: torch.Tensor, at: torch.Tensor,
             use: torch.Tensor, temperature: float, exclusion_px: float, stride: int):
    """InfoNCE of ``query`` (B, K, D) against ``positive`` and the cells of ``dense`` not near ``at``."""
    rows, cols = dense.shape[2:]
    negatives = torch.einsum("bkd,bdn->bkn", query, dense.flatten(2)) / temperature
    centres = _cell_centres(rows, cols, stride, dense.device)
    near = torch.cdist(at, centres[None].expand(len(at), -1, -1)) < exclusion_px
    negatives = negatives.masked_fill(near, float("-inf"))
    pos = (query * positive).sum(-1) / temperature
    loss = torch.logsumexp(torch.cat([pos[..., None], negatives], dim=-1), dim=-1) - pos
    correct = pos > negatives.amax(dim=-1)
    weight = use.float()
    count = weight.sum().clamp_min(1)
    return (loss * weight).sum() / count, (correct.float() * weight).sum() / count


def descriptor_loss(desc1: torch.Tensor, desc2: torch.Tensor, targets1: KeypointTargets, valid2: torch.Tensor,
                    H21: torch.Tensor, temperature: float = 0.05, exclusion_px: float = 8.0):
    """(loss, accuracy): accuracy is the fraction of queries whose positive beats every negative."""
    batch = desc1.shape[0]
    xy1 = targets1.xy.reshape(batch, -1, 2)
    xy2 = warp(H21, xy1)
    height, width = valid2.shape[2:]
    stride = height // desc2.shape[2]
    margin = 4
    inside = ((xy2[..., 0] >= margin) & (xy2[..., 0] <= width - 1 - margin) & (xy2[..., 1] >= margin)
              & (xy2[..., 1] <= height - 1 - margin))
    px = xy2.round().long()
    seen = valid2[:, 0].flatten(1).gather(1, (px[..., 1].clamp(0, height - 1) * width
                                              + px[..., 0].clamp(0, width - 1)))
    use = targets1.positive.reshape(batch, -1) & inside & seen
    d1, d2 = sample_map(desc1, xy1, stride), sample_map(desc2, xy2, stride)
    loss12, acc12 = _one_way(d1, d2, desc2, xy2, use, temperature, exclusion_px, stride)
    loss21, acc21 = _one_way(d2, d1, desc1, xy1, use, temperature, exclusion_px, stride)
    return (loss12 + loss21) / 2, (acc12 + acc21) / 2
