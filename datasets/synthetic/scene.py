"""Scenes made of textured axis-aligned rectangles (room walls, boxes, pillars), in the world frame W.

A face lies in the plane ``x[axis] == coord`` and is seen from the side ``sign`` (+1: from larger
``x[axis]``). Its two in-plane axes are the other two world axes in increasing order; the texture
is indexed by metric coordinates (u, v) = (x[in_plane[0]] - lo[0], x[in_plane[1]] - lo[1]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .textures import load_photos, make_texture


@dataclass(eq=False)
class Face:
    axis: int
    coord: float
    sign: int
    lo: np.ndarray  # (2,) lower bounds on the in-plane axes
    hi: np.ndarray  # (2,) upper bounds
    texture: np.ndarray = field(repr=False, default=None)  # float32 (rows: v, cols: u)
    px_per_m: float = 100.0

    @property
    def in_plane(self) -> tuple[int, int]:
        return tuple(a for a in range(3) if a != self.axis)


@dataclass(eq=False)
class Scene:
    faces: list[Face]  # all with the same texture resolution (px_per_m)
    boxes: list[tuple[np.ndarray, np.ndarray]]  # solid obstacles (lo, hi), for clearance checks
    bounds: tuple[np.ndarray, np.ndarray]  # the room's inside (lo, hi)

    def corners(self, i: int) -> np.ndarray:
        """(4, 3) world corners of face ``i``."""
        f = self.faces[i]
        a, b = f.in_plane
        out = np.zeros((4, 3))
        out[:, f.axis] = f.coord
        out[:, a] = [f.lo[0], f.hi[0], f.hi[0], f.lo[0]]
        out[:, b] = [f.lo[1], f.lo[1], f.hi[1], f.hi[1]]
        return out

    def clearance(self, points: np.ndarray) -> np.ndarray:
        """Distance of each (N, 3) point to the nearest wall or obstacle (negative when inside one)."""
        lo, hi = self.bounds
        d = np.minimum(points - lo, hi - points).min(axis=1)
        for blo, bhi in self.boxes:
            outside = np.maximum(np.maximum(blo - points, points - bhi), 0.0)
            dist = np.linalg.norm(outside, axis=1)
            inside = np.all((points > blo) & (points < bhi), axis=1)
            d = np.minimum(d, np.where(inside, -1.0, dist))
        return d


def _face(axis, coord, sign, lo3, hi3, kind, rng, photos, px_per_m) -> Face:
    a, b = [i for i in range(3) if i != axis]
    lo = np.array([lo3[a], lo3[b]], float)
    hi = np.array([hi3[a], hi3[b]], float)
    # one texel of margin beyond the far edge, so bilinear lookups never need clamping
    w = int(np.ceil((hi[0] - lo[0]) * px_per_m)) + 2
    h = int(np.ceil((hi[1] - lo[1]) * px_per_m)) + 2
    texture = make_texture(kind, h, w, rng, photos)
    if b == 2:  # walls: image rows go down, z goes up, so photos stand upright
        texture = np.ascontiguousarray(texture[::-1])
    return Face(axis, float(coord), sign, lo, hi, texture, px_per_m)


def _room_faces(lo, hi, kinds, rng, photos, px_per_m) -> list[Face]:
    """Six inward-facing faces of the box [lo, hi]; ``kinds`` in order -x +x -y +y floor ceiling."""
    faces = []
    for n, (axis, side) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]):
        coord = (lo, hi)[side][axis]
        faces.append(_face(axis, coord, +1 if side == 0 else -1, lo, hi, kinds[n], rng, photos, px_per_m))
    return faces


def _box_faces(lo, hi, rng, photos, px_per_m, kind="photo") -> list[Face]:
    """Five outward-facing faces (no bottom: boxes stand on the floor)."""
    faces = []
    for axis, side in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1)]:
        coord = (lo, hi)[side][axis]
        faces.append(_face(axis, coord, -1 if side == 0 else +1, lo, hi, kind, rng, photos, px_per_m))
    return faces


def room(seed: int = 0, texture_dir: Path | None = None, px_per_m: float = 120.0) -> Scene:
    """An 8 x 6 x 3 m room with boxes and a pillar near the walls; the middle stays free to fly.

    Photos come from ``texture_dir``, by default from scikit-image's sample images (see :mod:`.textures`).
    """
    rng = np.random.default_rng(seed)
    photos = load_photos(texture_dir)
    lo, hi = np.array([-4.0, -3.0, 0.0]), np.array([4.0, 3.0, 3.0])
    faces = _room_faces(lo, hi, ["photo", "photo", "weak", "photo", "repeated", "procedural"], rng, photos,
                        px_per_m)
    boxes = [(np.array([-3.9, -2.9, 0.0]), np.array([-3.0, -2.0, 1.2])),
             (np.array([2.6, 1.8, 0.0]), np.array([3.6, 2.8, 0.8])),
             (np.array([2.9, -2.7, 0.0]), np.array([3.5, -2.1, 3.0])),  # pillar
             (np.array([-1.0, 2.3, 0.0]), np.array([0.2, 2.9, 1.0]))]
    for blo, bhi in boxes:
        faces += _box_faces(blo, bhi, rng, photos, px_per_m)
    return Scene(faces, boxes, (lo, hi))


def hall(seed: int = 0, texture_dir: Path | None = None, px_per_m: float = 100.0) -> Scene:
    """A 30 x 7 x 3.5 m hall with a row of pillars down the middle (a loop goes around them)."""
    rng = np.random.default_rng(seed + 1)
    photos = load_photos(texture_dir)
    lo, hi = np.array([-15.0, -3.5, 0.0]), np.array([15.0, 3.5, 3.5])
    faces = _room_faces(lo, hi, ["photo", "photo", "photo", "weak", "repeated", "procedural"], rng, photos,
                        px_per_m)
    boxes = [(np.array([x - 0.25, -0.25, 0.0]), np.array([x + 0.25, 0.25, 3.5])) for x in (-8, -4, 0, 4, 8)]
    boxes += [(np.array([-14.9, 2.6, 0.0]), np.array([-13.8, 3.4, 1.0])),
              (np.array([12.0, -3.4, 0.0]), np.array([13.5, -2.6, 1.4]))]
    for blo, bhi in boxes:
        faces += _box_faces(blo, bhi, rng, photos, px_per_m)
    return Scene(faces, boxes, (lo, hi))


SCENES = {"room": room, "hall": hall}
