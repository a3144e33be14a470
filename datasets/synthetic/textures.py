"""Face textures: real photos when a folder of images is given, else procedural 1/f ("natural") images.

Every texture is a 2-D float32 array with values in [0, 255], sampled by metric (u, v) face coordinates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def find_photos(texture_dir: Path | None, limit: int = 64) -> list[Path]:
    """Image files under ``texture_dir`` (recursively, sorted so choices are deterministic)."""
    if texture_dir is None:
        return []
    files = sorted(p for p in Path(texture_dir).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    return files[::max(1, len(files) // limit)][:limit]  # spread over all sub-folders


def pink_noise(height: int, width: int, rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std noise with a 1/f^exponent amplitude spectrum (natural image statistics)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f ** exponent
    spectrum[0, 0] = 0.0
    img = np.fft.irfft2(spectrum, s=(height, width))
    return (img - img.mean()) / (img.std() + 1e-12)


def procedural(height: int, width: int, rng: np.random.Generator, contrast: float = 1.0) -> np.ndarray:
    """1/f noise plus a few random blobs and rectangles (corners and edges for feature detectors)."""
    import cv2

    img = pink_noise(height, width, rng) * 35.0
    canvas = np.zeros((height, width), np.float32)
    for _ in range(max(4, height * width // 6000)):
        value = float(rng.uniform(-70, 70))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(3, max(4, min(height, width) // 6)))
        if rng.random() < 0.5:
            cv2.circle(canvas, (x, y), size, value, -1, lineType=cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (x, y), (x + size, y + int(rng.integers(3, size + 4))), value, -1)
    img = img + cv2.GaussianBlur(canvas, (0, 0), 0.8)
    return np.clip(128.0 + contrast * img, 0, 255).astype(np.float32)


def from_photo(path: Path, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a photo (grayscale), resized to ``height x width``."""
    import cv2

    photo = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if photo is None:
        return procedural(height, width, rng)
    ph, pw = photo.shape
    aspect = width / height
    ch = min(ph, int(pw / aspect))
    cw = min(pw, int(ch * aspect))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if cw > width else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interp).astype(np.float32)


def weak(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Nearly uniform texture (low contrast, smooth): hard for trackers, as real white walls are."""
    return procedural(height, width, rng, contrast=0.12)


def repeated(height: int, width: int, rng: np.random.Generator, period_px: int = 40) -> np.ndarray:
    """A tile repeated over the face (aliasing trap for matchers), e.g. floor tiles."""
    tile = procedural(period_px, period_px, rng)
    tile[:2, :] = 40.0
    tile[:, :2] = 40.0
    reps = (-(-height // period_px), -(-width // period_px))
    return np.tile(tile, reps)[:height, :width].copy()


def make_texture(kind: str, height: int, width: int, rng: np.random.Generator,
                 photos: list[Path]) -> np.ndarray:
    """``kind``: 'photo' (falls back to procedural without photos), 'procedural', 'weak' or 'repeated'."""
    if kind == "photo" and photos:
        # best textured of a few random crops: trackers need gradients, many photos have plain backgrounds
        import cv2

        crops = [from_photo(photos[int(rng.integers(0, len(photos)))], height, width, rng) for _ in range(4)]
        return max(crops, key=lambda c: float(np.abs(cv2.Laplacian(cv2.pyrDown(c), cv2.CV_32F)).mean()))
    if kind == "weak":
        return weak(height, width, rng)
    if kind == "repeated":
        return repeated(height, width, rng)
    return procedural(height, width, rng)
