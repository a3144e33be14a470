"""Ray-cast rendering of a :class:`Scene` into a distorted (radtan) camera, in NumPy, plus sensor effects.

Each camera gets a cached ray table: for every distorted pixel centre the undistorted normalized ray
(x, y, 1) from ``cv2.undistortPoints``. Because rays have unit z, the ray parameter of the nearest hit
is the depth z of the hit point in the camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.messages import CameraCalibration

from .scene import Scene


@dataclass(eq=False)
class RayTable:
    width: int
    height: int
    rays: np.ndarray  # (3, H*W) float32, camera frame, z = 1
    strips: np.ndarray | None = None  # (S, 2) [start, stop) ray indices of bands of image rows
    strip_x: np.ndarray | None = None  # (S, 2) min/max of x/z over each band (frustum culling)
    strip_y: np.ndarray | None = None  # (S, 2) min/max of y/z


STRIP_ROWS = 24  # culling granularity: faces are intersected only with the row bands they may cover


_RAY_CACHE: dict[tuple, RayTable] = {}


def ray_table(cam: CameraCalibration) -> RayTable:
    """Undistorted rays of every pixel of ``cam`` (cached per intrinsics, distortion and size)."""
    import cv2

    key = (cam.width, cam.height, tuple(cam.intrinsics), cam.distortion_model, tuple(cam.distortion))
    if key not in _RAY_CACHE:
        u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
        pix = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
        dist = cam.distortion if cam.distortion_model in ("radtan", "radtan5") else None
        if cam.distortion_model == "equidistant":
            xy = cv2.fisheye.undistortPoints(pix, cam.K, cam.distortion).reshape(-1, 2)
        else:
            xy = cv2.undistortPoints(pix, cam.K, dist,
                                     criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
                                     ).reshape(-1, 2)
        rays = np.vstack([xy.T, np.ones((1, len(xy)))]).astype(np.float32)
        starts = np.arange(0, cam.height, STRIP_ROWS) * cam.width
        strips = np.stack([starts, np.minimum(starts + STRIP_ROWS * cam.width, len(xy))], 1)
        bx = np.array([[xy[a:b, 0].min(), xy[a:b, 0].max()] for a, b in strips])
        by = np.array([[xy[a:b, 1].min(), xy[a:b, 1].max()] for a, b in strips])
        _RAY_CACHE[key] = RayTable(cam.width, cam.height, rays, strips, bx, by)
    return _RAY_CACHE[key]


MIP_LEVELS = 3  # texture pyramid levels: full, 1/2, 1/4 resolution (against aliasing of far surfaces)


def _atlas(scene: Scene):
    """Every face's texture pyramid in one flat float32 array: (flat, offsets, widths, px_per_m).

    ``offsets`` and ``widths`` are (MIP_LEVELS, faces). Level ``L`` texel ``j`` sits at metric ``j 2^L / px_per_m``
    (cv2.pyrDown keeps that registration); every level has a texel of margin on its far edges.
    """
    import cv2

    if getattr(scene, "_atlas", None) is None:
        scales = {f.px_per_m for f in scene.faces}
        if len(scales) != 1:
            raise ValueError("all faces of a scene must share one texture resolution")
        chunks, offsets, widths, size = [], np.zeros((MIP_LEVELS, len(scene.faces)), np.int32), \
            np.zeros((MIP_LEVELS, len(scene.faces)), np.int32), 0
        for i, f in enumerate(scene.faces):
            level = f.texture.astype(np.float32)
            for L in range(MIP_LEVELS):
                if L:
                    level = cv2.copyMakeBorder(cv2.pyrDown(level), 0, 1, 0, 1, cv2.BORDER_REPLICATE)
                offsets[L, i], widths[L, i] = size, level.shape[1]
                chunks.append(level.ravel())
                size += level.size
        chunks.append(np.zeros(4, np.float32))
        if size >= 2 ** 31 - 8:
            raise ValueError("scene textures too large for 32-bit indexing; lower px_per_m")
        scene._atlas = (np.concatenate(chunks), offsets, widths, np.float32(scales.pop()))
    return scene._atlas


def _visible_runs(corners_C: np.ndarray, table_strips, strip_x, strip_y) -> list[tuple[int, int]]:
    """[start, stop) ray-index runs of the row bands whose frustum a convex face may intersect.

    A band is skipped when all four corners (camera frame) lie outside one of its bounding half-spaces
    (z > 0, x <= x_max z, x >= x_min z, y <= y_max z, y >= y_min z).
    """
    x, y, z = (c[None, :] for c in corners_C.T)
    outside = (np.all(z <= 1e-6, axis=1) | np.all(x > strip_x[:, 1:2] * z, axis=1)
               | np.all(x < strip_x[:, 0:1] * z, axis=1) | np.all(y > strip_y[:, 1:2] * z, axis=1)
               | np.all(y < strip_y[:, 0:1] * z, axis=1))
    runs = []
    for s in np.flatnonzero(~outside):
        if runs and runs[-1][1] == table_strips[s, 0]:
            runs[-1] = (runs[-1][0], int(table_strips[s, 1]))
        else:
            runs.append((int(table_strips[s, 0]), int(table_strips[s, 1])))
    return runs


def raycast(scene: Scene, T_W_C: np.ndarray, rays: np.ndarray, strips=None):
    """Nearest hit of each (3, N) camera-frame ray.

    Returns (depth (N,), face index (N,), (u, v) metric in-plane coordinates of the hit (2, N)); depth is
    the ray parameter (= camera z for rays with z = 1); misses get depth inf and face -1. ``strips``
    (a RayTable's ``(strips, strip_x, strip_y)``) lets faces skip the row bands they cannot cover.
    """
    R = T_W_C[:3, :3].astype(np.float32)
    o = T_W_C[:3, 3]
    rays = rays.astype(np.float32, copy=False)
    # (3, N) world directions, without BLAS (its worker threads oversubscribe the render processes)
    d = np.empty(rays.shape, np.float32)
    for r in range(3):
        np.multiply(rays[0], R[r, 0], out=d[r])
        d[r] += rays[1] * R[r, 1]
        d[r] += R[r, 2] * rays[2]
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
    n = d.shape[1]
    best = np.full(n, np.inf, np.float32)
    face_id = np.full(n, -1, np.int32)
    uv = np.zeros((2, n), np.float32)
    scratch = (np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, bool),
               np.empty(n, bool))
    for i, f in enumerate(scene.faces):
        if (o[f.axis] - f.coord) * f.sign <= 0:  # back face: the camera is behind it
            continue
        if strips is None:
            runs = [(0, n)]
        else:
            runs = _visible_runs((scene.corners(i) - o) @ T_W_C[:3, :3], *strips)
        a, b = f.in_plane
        for start, stop in runs:
            sl = slice(start, stop)
            t, hb, hd, m, tmp = (x[sl] for x in scratch)
            np.multiply(inv[f.axis, sl], np.float32(f.coord - o[f.axis]), out=t)
            np.greater(t, 0, out=m)
            np.less(t, best[sl], out=tmp)
            m &= tmp
            np.multiply(t, d[a, sl], out=hb)
            hb += np.float32(o[a] - f.lo[0])  # metric u on the face
            np.greater_equal(hb, 0, out=tmp)
            m &= tmp
            np.less_equal(hb, f.hi[0] - f.lo[0], out=tmp)
            m &= tmp
            np.multiply(t, d[b, sl], out=hd)
            hd += np.float32(o[b] - f.lo[1])
            np.greater_equal(hd, 0, out=tmp)
            m &= tmp
            np.less_equal(hd, f.hi[1] - f.lo[1], out=tmp)
            m &= tmp
            np.copyto(best[sl], t, where=m)
            np.copyto(uv[0, sl], hb, where=m)
            np.copyto(uv[1, sl], hd, where=m)
            face_id[sl][m] = i
    return best, face_id, uv


def shade(scene: Scene, face_id: np.ndarray, uv: np.ndarray, depth: np.ndarray | None = None,
          focal_px: float = 1.0) -> np.ndarray:
    """Bilinear texture lookup at the hits' (u, v) (float32 intensities, 0 where nothing was hit).

    With ``depth`` the pyramid level follows the footprint (texels per pixel ~ depth px_per_m / focal):
    level 0 up to 1.5 texels per pixel, level 1 up to 3, else level 2. Hits lie inside their face and
    textures have a texel of margin, so no clamping is needed.
    """
    flat, offsets, widths, scale = _atlas(scene)
    n_faces = offsets.shape[1]
    fid = np.maximum(face_id, 0)
    if depth is None:
        key = fid
        u = uv[0] * scale
        v = uv[1] * scale
    else:
        footprint = np.minimum(depth, np.float32(1e6))
        footprint *= np.float32(scale / focal_px)
        level = (footprint > 1.5).view(np.int8) + (footprint > 3.0).view(np.int8)
        if MIP_LEVELS < 3:
            np.minimum(level, MIP_LEVELS - 1, out=level)
        key = level.astype(np.int32)
        s = np.take(np.float32(scale) / (2.0 ** np.arange(MIP_LEVELS, dtype=np.float32)), key)
        key *= n_faces
        key += fid
        u = uv[0] * s
        v = uv[1] * s
    x0 = u.astype(np.int32)
    y0 = v.astype(np.int32)
    u -= x0
    v -= y0
    w = np.take(widths.ravel(), key)
    y0 *= w
    y0 += x0
    y0 += np.take(offsets.ravel(), key)
    top = np.take(flat, y0)
    y0 += 1
    top += (np.take(flat, y0) - top) * u
    y0 += w
    right = np.take(flat, y0)
    y0 -= 1
    bottom = np.take(flat, y0)
    bottom += (right - bottom) * u
    top += (bottom - top) * v
    top[face_id < 0] = 0.0
    return top


def render(scene: Scene, cam: CameraCalibration, T_W_C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 HxW in [0, 255] before sensor effects, depth float32 HxW [m], inf for misses)."""
    table = ray_table(cam)
    depth, face_id, uv = raycast(scene, T_W_C, table.rays, (table.strips, table.strip_x, table.strip_y))
    image = shade(scene, face_id, uv, depth, float(np.mean(cam.intrinsics[:2])))
    shape = (table.height, table.width)
    return image.reshape(shape), depth.reshape(shape)


def vignetting(width: int, height: int, strength: float) -> np.ndarray:
    """Multiplicative cos^4-like falloff: 1 at the centre, ``1 - strength`` at the corners."""
    x = (np.arange(width) - (width - 1) / 2) / ((width - 1) / 2)
    y = (np.arange(height) - (height - 1) / 2) / ((height - 1) / 2)
    r2 = (x[None, :] ** 2 + y[:, None] ** 2) / 2.0
    return (1.0 - strength * r2).astype(np.float32)


def sensor(image: np.ndarray, gain: float, vignette: np.ndarray | None, noise_sigma: float,
           blur_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Optics and sensor: slight blur (anti-aliasing), exposure gain, vignetting, Gaussian noise -> uint8."""
    import cv2

    out = cv2.GaussianBlur(image, (0, 0), blur_sigma) if blur_sigma > 0 else image
    out = out * np.float32(gain)
    if vignette is not None:
        out *= vignette
    if noise_sigma > 0:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_sigma)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
