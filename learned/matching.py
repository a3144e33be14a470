"""Descriptor matching: mutual nearest neighbours + Lowe's ratio test, a C++ kernel and its NumPy twin.

Both take the similarity matrix ``sim[i, j] = a_i . b_j`` of unit descriptors (one BLAS product, done by
:func:`match_descriptors`) and keep ``(i, j)`` when j is i's most similar, i is j's most similar, the
similarity is at least ``min_similarity`` and, if ``ratio < 1``, the descriptor distance
``d = sqrt(2 - 2 s)`` to j is below ``ratio`` times the distance to i's second most similar. Ties go to the
lowest index, so both twins agree exactly. The kernel makes one pass over the matrix; the twin needs an
argmax per axis and a partition.
"""

from __future__ import annotations

import numpy as np


def _check(sim) -> np.ndarray:
    sim = np.ascontiguousarray(sim, dtype=np.float32)
    if sim.ndim != 2:
        raise ValueError(f"sim must be a 2-D similarity matrix, got shape {sim.shape}")
    return sim


def _unit_distance(similarity: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(2.0 - 2.0 * similarity.astype(np.float64), 0.0))


def mutual_match_numpy(sim, ratio: float = 1.0, min_similarity: float = -1.0) -> np.ndarray:
    """NumPy twin of the native kernel: (K, 2) int64 index pairs (i, j), ascending i."""
    sim = _check(sim)
    n, m = sim.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64)
    rows = np.arange(n)
    best = np.argmax(sim, axis=1)
    value = sim[rows, best]
    keep = (np.argmax(sim, axis=0)[best] == rows) & (value.astype(np.float64) >= min_similarity)
    if ratio < 1.0 and m > 1:
        second = np.partition(sim, m - 2, axis=1)[:, m - 2]
        keep &= _unit_distance(value) < ratio * _unit_distance(second)
    return np.stack([rows[keep], best[keep]], axis=1).astype(np.int64)


def mutual_match(sim, ratio: float = 1.0, min_similarity: float = -1.0) -> np.ndarray:
    """Native kernel; see :func:`mutual_match_numpy` for the reference semantics."""
    from slam import _native

    return _native.mutual_match(_check(sim), float(ratio), float(min_similarity))


def match_descriptors(a, b, ratio: float = 1.0, min_similarity: float = -1.0) -> np.ndarray:
    """(K, 2) index pairs between unit descriptors ``a`` (N, D) and ``b`` (M, D), native kernel."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptors must be (N, D) and (M, D) with the same D, got {a.shape} and {b.shape}")
    return mutual_match(a @ b.T, ratio, min_similarity)
