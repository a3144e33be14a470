"""Face textures: real photographs, else procedural 1/f ("natural") images; plus weak and repeated kinds.

Photos come from ``texture_dir`` when given, else from the sample images that ship inside the installed
scikit-image package (read from its folder with OpenCV: nothing is downloaded). Without scikit-image the
photo faces fall back to procedural textures. Every texture is a 2-D float32 array with values in
[0, 255], sampled by metric (u, v) face coordinates.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from slam.messages import DataError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MIN_PHOTO_SIDE = 128  # px; smaller images would be magnified into mush
MAX_PHOTO_SIDE = 1024  # px; larger ones are shrunk on loading (faces need no more)
PANEL_ASPECT = 2.0  # long faces get several photos side by side, each at most this elongated


def skimage_photo_dir() -> Path | None:
    """The folder of sample images inside the installed scikit-image, or None without it."""
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(skimage.data.__file__).parent


def usable(photo: np.ndarray) -> bool:
    """Large enough and textured: not nearly uniform, not a drawing made of a few grey levels."""
    import cv2

    if min(photo.shape) < MIN_PHOTO_SIDE or photo.std() < 15:
        return False
    detail = float(np.abs(cv2.Laplacian(cv2.pyrDown(photo.astype(np.float32)), cv2.CV_32F)).mean())
    top_levels = np.sort(np.bincount(photo.ravel(), minlength=256))[-8:].sum() / photo.size
    return detail >= 2.0 and top_levels <= 0.6


def _without_color_profile(data: bytes) -> bytes:
    """PNG bytes minus their iCCP chunk: libpng prints a warning for a bad one (scikit-image's page.png)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    chunks, i = [data[:8]], 8
    while i + 8 <= len(data):
        end = i + 12 + int.from_bytes(data[i:i + 4], "big")  # length, type, payload, CRC
        if data[i + 4:i + 8] != b"iCCP":
            chunks.append(data[i:end])
        i = end
    return b"".join(chunks)


def read_photo(path: Path) -> np.ndarray | None:
    """Grayscale uint8 image, or None when unreadable."""
    import cv2

    try:
        data = _without_color_profile(Path(path).read_bytes())
    except OSError:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


def read_photos(folder: Path, limit: int = 64) -> list[np.ndarray]:
    """Usable grayscale uint8 photos under ``folder`` (recursively, sorted so choices are deterministic)."""
    import cv2

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    photos = []
    for path in files[::max(1, len(files) // limit)][:limit]:  # spread over all sub-folders
        photo = read_photo(path)
        if photo is None or not usable(photo):
            continue
        scale = MAX_PHOTO_SIDE / max(photo.shape)
        if scale < 1:
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        photos.append(photo)
    return photos


@functools.lru_cache(maxsize=1)
def _default_photos() -> tuple[np.ndarray, ...]:
    folder = skimage_photo_dir()
    return tuple(read_photos(folder)) if folder is not None else ()


def load_photos(texture_dir: Path | None) -> list[np.ndarray]:
    """Photos of ``texture_dir`` (DataError when it holds none usable), else scikit-image's (maybe none)."""
    if texture_dir is None:
        return list(_default_photos())
    photos = read_photos(texture_dir)
    if not photos:
        raise DataError(f"no usable images ({', '.join(PHOTO_SUFFIXES)}, at least {MIN_PHOTO_SIDE} px, "
                        "not nearly uniform)", texture_dir)
    return photos


def fingerprint(photos: list[np.ndarray]) -> str:
    """Short hash of the photos' pixels: cached sequences regenerate when the photos change."""
    import hashlib

    digest = hashlib.sha256()
    for photo in photos:
        digest.update(str(photo.shape).encode())
        digest.update(photo.tobytes())
    return digest.hexdigest()[:16] if photos else "procedural"


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


def from_photo(photo: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a grayscale photo with the aspect of ``height x width``, resized to it."""
    import cv2

    ph, pw = photo.shape
    aspect = width / height
    ch = max(1, min(ph, int(pw / aspect)))
    cw = max(1, min(pw, int(ch * aspect)))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if cw > width else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interp).astype(np.float32)


def best_crop(height: int, width: int, rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    """The best textured of a few random crops: trackers need gradients, many photos have plain parts."""
    import cv2

    crops = [from_photo(photos[int(rng.integers(0, len(photos)))], height, width, rng) for _ in range(4)]
    return max(crops, key=lambda c: float(np.abs(cv2.Laplacian(cv2.pyrDown(c), cv2.CV_32F)).mean()))


def photo_panels(height: int, width: int, rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    """Photos side by side along the face's long side (like posters), so none is stretched thin."""
    along_width = width >= height
    long, short = (width, height) if along_width else (height, width)
    n = max(1, int(round(long / (PANEL_ASPECT * short))))
    edges = np.linspace(0, long, n + 1).round().astype(int)
    if along_width:
        return np.hstack([best_crop(height, b - a, rng, photos) for a, b in zip(edges[:-1], edges[1:])])
    return np.vstack([best_crop(b - a, width, rng, photos) for a, b in zip(edges[:-1], edges[1:])])


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
                 photos: list[np.ndarray]) -> np.ndarray:
    """``kind``: 'photo' (falls back to procedural without photos), 'procedural', 'weak' or 'repeated'."""
    if kind == "photo" and photos:
        return photo_panels(height, width, rng, photos)
    if kind == "weak":
        return weak(height, width, rng)
    if kind == "repeated":
        return repeated(height, width, rng)
    return procedural(height, width, rng)
