"""Native affine patch alignment: parity with its NumPy twin, and what it promises (recovers an affine warp, blind
to gain and offset, flags what it cannot align)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import noise_texture

from slam.frontend.patch_align import (align_patches, align_patches_numpy, extract_templates, identity_warps,
                                       template_side)

WIDTH, HEIGHT = 320, 240


def texture(seed: int) -> np.ndarray:
    return noise_texture(seed, (HEIGHT, WIDTH))


def _u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _warped(A: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(source image, the source under the affine map A (2x3) from source to target pixels)."""
    source = texture(seed)
    return _u8(source), _u8(cv2.warpAffine(source, A, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC))


A_TRUE = np.array([[1.04, 0.03, -3.2], [-0.02, 0.97, 2.1]])


@pytest.fixture(scope="module")
def pair():
    source, target = _warped(A_TRUE)
    xy = np.random.default_rng(1).uniform([30, 30], [WIDTH - 30, HEIGHT - 30], (200, 2))
    return source, target, xy, xy @ A_TRUE[:, :2].T + A_TRUE[:, 2]


@pytest.mark.parametrize("radius, iterations", [(1, 3), (8, 5), (12, 1)])
def test_parity_with_numpy_twin(pair, radius, iterations):
    source, target, xy, truth = pair
    rng = np.random.default_rng(radius)
    # starts about a pixel off, some patches over the image edge (clamped sampling), one flat template
    start = identity_warps(truth + rng.normal(0, 0.7, truth.shape))
    start[:5, :, 2] = [[-4.0, 10.0], [WIDTH + 2.0, 50.0], [100.0, -3.0], [0.0, 0.0], [WIDTH - 1.0, HEIGHT - 1.0]]
    templates = extract_templates(source, xy, radius)
    templates[7] = 128.0
    native = align_patches(target, templates, start, iterations)
    twin = align_patches_numpy(target, templates, start, iterations)
    finite = np.isfinite(twin[1])
    np.testing.assert_array_equal(np.isfinite(native[1]), finite)
    assert not finite[7] and finite.sum() >= len(xy) - 1
    np.testing.assert_allclose(native[0][finite], twin[0][finite], atol=1e-7)
    np.testing.assert_allclose(native[1][finite], twin[1][finite], atol=1e-9)
    np.testing.assert_array_equal(start[:, :, 2][0], [-4.0, 10.0])  # the caller's warps are not modified


def test_recovers_an_affine_warp(pair):
    source, target, xy, truth = pair
    inner = np.all((truth > 15) & (truth < [WIDTH - 15, HEIGHT - 15]), axis=1)
    start = identity_warps(truth + np.random.default_rng(2).normal(0, 0.5, truth.shape))
    warps, residual = align_patches(target, extract_templates(source, xy, 8), start, 8)
    error = np.linalg.norm(warps[inner, :, 2] - truth[inner], axis=1)
    assert np.median(error) < 0.03 and np.percentile(error, 95) < 0.1
    np.testing.assert_allclose(np.median(warps[inner, :, :2], axis=0), A_TRUE[:, :2], atol=0.01)
    assert np.median(residual[inner]) < 0.1
    # the start really was off: the alignment did the work
    assert np.median(np.linalg.norm(start[inner, :, 2] - truth[inner], axis=1)) > 0.4


def test_gain_and_offset_do_not_move_the_alignment(pair):
    source, target, xy, truth = pair
    templates, start = extract_templates(source, xy, 8), identity_warps(truth + 0.4)
    brighter = _u8(target.astype(np.float32) * 0.7 + 40)
    a, ra = align_patches(target, templates, start, 8)
    b, rb = align_patches(brighter, templates, start, 8)
    assert np.median(np.linalg.norm(a[:, :, 2] - b[:, :, 2], axis=1)) < 0.02
    assert np.median(np.abs(ra - rb)) < 0.02


def test_a_different_patch_has_a_large_residual(pair):
    source, _, xy, truth = pair
    other = _u8(texture(9))
    _, same = align_patches(source, extract_templates(source, xy, 8), identity_warps(xy), 5)
    _, different = align_patches(other, extract_templates(source, xy, 8), identity_warps(xy), 5)
    assert np.max(same) < 1e-6 and np.median(different) > 1.0


def test_templates_and_bad_shapes():
    image = _u8(texture(3))
    templates = extract_templates(image, [[10.5, 20.25]], 2)
    assert templates.shape == (1, template_side(2), template_side(2)) == (1, 7, 7)
    assert templates[0, 3, 3] == pytest.approx(
        cv2.getRectSubPix(image.astype(np.float32), (1, 1), (10.5, 20.25))[0, 0], abs=0.05)
    for fn in (align_patches, align_patches_numpy):
        with pytest.raises(ValueError, match="uint8"):
            fn(image.astype(np.float32), templates, identity_warps([[10.5, 20.25]]))
        with pytest.raises(ValueError, match="templates"):
            fn(image, np.zeros((1, 6, 6)), identity_warps([[1.0, 1.0]]))
        with pytest.raises(ValueError, match="warps"):
            fn(image, templates, np.zeros((2, 2, 3)))
