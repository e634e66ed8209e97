"""Embedding lookup: rows of a weight table gathered by integer indices.
Derivation: docs/derivations/embedding.md

    out[s] = w[indices[s]]              w: (V, D), indices: any shape S, out: S + (D,)
    dw[v]  = sum_{s : indices[s] = v} dout[s]       (V, D): a scatter-add of dout's rows

A row used k times receives the sum of its k upstream rows; rows never used get 0. The
indices are not differentiable (they are integers), so the backward returns dw alone.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = ["EmbeddingCache", "embedding_backward", "embedding_forward"]


class EmbeddingCache(NamedTuple):
    indices: np.ndarray  # any shape S, entries in [0, V)
    w_shape: tuple  # (V, D)
    dtype: np.dtype  # w's


def embedding_forward(w: np.ndarray, *, indices: np.ndarray) -> tuple[np.ndarray, EmbeddingCache]:
    """out = w[indices].

    w: (V, D); indices: integers in [0, V), any shape S (e.g. (N, T), or () for one row)
    -> (out: S + (D,), a copy, EmbeddingCache). Negative indices are refused, not wrapped.
    """
    _validate.float_array("w", w)
    _validate.ndim("w", w, 2, "(V, D)")
    _validate.int_array("indices", indices)
    _validate.index_range("indices", indices, w.shape[0], f"rows of w, V = {w.shape[0]}")
    return np.take(w, indices, axis=0), EmbeddingCache(indices, w.shape, w.dtype)


def embedding_backward(dout: np.ndarray, cache: EmbeddingCache) -> tuple[np.ndarray]:
    """dw[v] = sum of dout[s] over the positions s where indices[s] = v.

    dout: S + (D,) -> (dw: (V, D),).
    """
    indices, (vocab, dim), dtype = cache
    _validate.upstream(dout, indices.shape + (dim,), dtype)
    dw = np.zeros((vocab, dim), dtype)
    # Unbuffered: a repeated index adds every one of its rows (dw[indices] += rows would
    # keep only the last).
    np.add.at(dw, indices.reshape(-1), dout.reshape(indices.size, dim))
    return (dw,)
