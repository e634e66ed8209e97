"""JAX specification of the embedding lookup (``reference/embedding.py``).

Written as ``jnp.take(w, indices, axis=0)``, whose pullback JAX derives itself (a
scatter-add). The indices are a hyperparameter (traced: new indices do not recompile).

The input space: indices of rank 0-3 (a single index, a sequence, (N, T) captions, a
batch of those), the leading axis 0-4 long and the others 1-4; D 1-5; V 1-8, or, on about
half the draws, at most a third of the number of indices, so that by pigeonhole some row
is read three times or more (repeated indices are what a wrong backward gets wrong).
"""
from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import embedding as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.specs.conv import rarely_zero
from verification.strategies import arrays, indices
from verification.tolerance import nonnegative_magnitude


def jax_embedding(w, *, indices):
    return jnp.take(w, indices, axis=0)


MAX_RANK, MAX_AXIS, MAX_V, MAX_D = 3, 4, 8, 5
"""The space's largest index rank and axis, vocabulary (when not crowded) and width."""


@st.composite
def embedding_configs(draw):
    rank = draw(rarely_zero(MAX_RANK))
    shape = tuple(draw(rarely_zero(MAX_AXIS) if axis == 0 else st.integers(1, MAX_AXIS)) for axis in range(rank))
    count = math.prod(shape)
    # crowded: at most count // 3 rows, so some row is read three times or more
    crowded = count >= 3 and draw(st.booleans())
    vocab = draw(st.integers(1, count // 3 if crowded else MAX_V))
    return {"V": vocab, "D": draw(st.integers(1, MAX_D)), "indices": shape}


def _bucket(arrays, hyper):
    """Hints.pad, one bucket per index rank: w grown to the rank's largest V (count // 3 rows
    when crowded, else MAX_V) and MAX_D columns, each axis of the indices to MAX_AXIS (a 0-d
    index stays as it is). The added rows of w are never read by a real index, the added
    columns give added output columns, which are cut off, and an added index reads row 0:
    its output is cut off and its zero dout adds nothing to dw."""
    (w,), indices = arrays, hyper["indices"]
    vocab = max(MAX_V, MAX_AXIS ** indices.ndim // 3)
    grown = grow(indices, (MAX_AXIS,) * indices.ndim) if indices.ndim else indices
    return (grow(w, (vocab, MAX_D)),), {**hyper, "indices": grown}


def embedding_values(config):
    vocab, dim, shape = config["V"], config["D"], config["indices"]
    return st.tuples(arrays((vocab, dim)), indices(shape, vocab)).map(
        lambda drawn: ((drawn[0],), {"indices": drawn[1]}))


EMBEDDING_EDGES = (
    # 8 indices into 3 rows: repeats by pigeonhole, some three times
    {"V": 3, "D": 2, "indices": (2, 4)},
    # 4 indices into 5 rows (repeats by chance) and rows never read
    {"V": 5, "D": 3, "indices": (4,)},
    # a single row, read by every index
    {"V": 1, "D": 1, "indices": (3,)},
    # an empty (0, 3) batch: dw is all zeros
    {"V": 4, "D": 2, "indices": (0, 3)},
    # a 0-d index: out is one row, (D,)
    {"V": 2, "D": 3, "indices": ()},
    # (N, T, U) indices of rank 3, into 2 rows
    {"V": 2, "D": 2, "indices": (2, 2, 3)},
    # square: V = D and as many indices, where a transposed dw keeps its shape
    {"V": 3, "D": 3, "indices": (3,)},
)

EMBEDDING_ERRORS = tuple(ErrorCase(description, (w,), {"indices": idx}, error, re.escape(message)) for
                         description, w, idx, error, message in (
    ("an index past the last row", np.ones((3, 2)), np.array([0, 3]), ValueError,
     "indices has entries in [0, 3] but they must lie in [0, 3) (rows of w, V = 3)"),
    ("a negative index", np.ones((3, 2)), np.array([-1, 2]), ValueError,
     "indices has entries in [-1, 2] but they must lie in [0, 3) (rows of w, V = 3)"),
    ("float indices", np.ones((3, 2)), np.array([0.0, 1.0]), TypeError,
     "indices must be a numpy.ndarray of integers, got dtype float64"),
    ("a list of indices", np.ones((3, 2)), [0, 1], TypeError, "indices must be a numpy.ndarray of integers, got list"),
    ("w is 1-d", np.ones(3), np.array([0]), ValueError, "w has shape (3,) but a 2-d array (V, D) is expected"),
    ("integer w", np.ones((3, 2), np.int64), np.array([0]), TypeError,
     "w has dtype int64 (shape (3, 2)) but float32 or float64 is expected"),
    ("float16", np.ones((3, 2), np.float16), np.array([0]), TypeError,
     "w has dtype float16 (shape (3, 2)) but float32 or float64 is expected"),
))


def embedding_bench(rng, vocab=50_000, dim=512, index_shape=(64, 128)):
    """A word-embedding table (V = 50000, D = 512) read by a batch of 64 sequences of 128 tokens."""
    return BenchCase((rng.standard_normal((vocab, dim)),), {"indices": rng.integers(0, vocab, index_shape)})


embedding = Layer("embedding", ref.embedding_forward, ref.embedding_backward, jax_embedding,
                  Space(embedding_configs(), embedding_values, edges=EMBEDDING_EDGES), magnitude=nonnegative_magnitude,
                  hints=Hints(linear_in=(0,), pad=_bucket),
                  errors=EMBEDDING_ERRORS, bench=embedding_bench)


def _embedding_backward_loops(dout, cache):
    """One index at a time: row indices[s] of dw collects dout[s]."""
    indices, (vocab, dim), dtype = cache
    dw = np.zeros((vocab, dim), dtype)
    rows = dout.reshape(indices.size, dim)
    for s, v in enumerate(indices.reshape(-1)):
        dw[v] += rows[s]
    return (dw,)


def _embedding_backward_onehot(dout, cache):
    """dw = onehot(indices)^T dout: the lookup is a product with a one-hot matrix, (n, V)."""
    indices, (vocab, dim), dtype = cache
    onehot = np.eye(vocab, dtype=dtype)[indices.reshape(-1)]
    return (np.einsum("sv,sd->vd", onehot, dout.reshape(indices.size, dim)),)


def _embedding_backward_assigned(dout, cache):
    indices, (vocab, dim), dtype = cache
    dw = np.zeros((vocab, dim), dtype)
    dw[indices.reshape(-1)] = dout.reshape(indices.size, dim)  # a repeated row keeps its last value
    return (dw,)


def _embedding_backward_mean(dout, cache):
    (dw,) = ref.embedding_backward(dout, cache)
    counts = np.bincount(cache.indices.reshape(-1), minlength=cache.w_shape[0])
    return (dw / np.maximum(counts, 1)[:, None].astype(dw.dtype),)


VARIANTS = (
    Variant("embedding", "loops", "explicit loop over the indices, accumulating", _embedding_backward_loops),
    Variant("embedding", "onehot", "one-hot matrix product, einsum('sv,sd->vd')", _embedding_backward_onehot),
)

MUTANTS = (
    Mutant("embedding", "assigned_not_accumulated", "dw[indices] = dout: repeated indices keep one row",
           _embedding_backward_assigned, bug='partial'),
    Mutant("embedding", "mean_of_repeats", "a row used k times gets the mean of its k rows, not the sum",
           _embedding_backward_mean, bug='partial'),
)
