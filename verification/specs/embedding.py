"""JAX specification of the embedding lookup (``reference/embedding.py``).

Written as ``jnp.take(w, indices, axis=0)``, whose pullback JAX derives itself (a
scatter-add). The indices are a hyperparameter (traced: new indices do not recompile).
Repeated indices are what a wrong backward gets wrong, so the menu draws them on purpose:
two of its cases have more indices than rows (repeats by pigeonhole), one a single row.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import embedding as ref
from verification.layer import BenchCase, Hints, Layer, Mutant, Variant
from verification.strategies import arrays, indices

# ((V, D), indices' shape): 8 indices into 3 rows, 4 into 5 (repeats by chance), 3 into a
# single row (all repeats), an empty (0, 3) batch, and a 0-d index (out is one row, (D,)).
EMBEDDING_SHAPES = (((3, 2), (2, 4)), ((5, 3), (4,)), ((1, 1), (3,)), ((4, 2), (0, 3)), ((2, 3), ()))


def jax_embedding(w, *, indices):
    return jnp.take(w, indices, axis=0)


@st.composite
def embedding_inputs(draw):
    (vocab, dim), index_shape = draw(st.sampled_from(EMBEDDING_SHAPES))
    return (draw(arrays((vocab, dim))),), {"indices": draw(indices(index_shape, vocab))}


def embedding_bench(rng, vocab=50_000, dim=512, index_shape=(64, 128)):
    """A word-embedding table (V = 50000, D = 512) read by a batch of 64 sequences of 128 tokens."""
    return BenchCase((rng.standard_normal((vocab, dim)),), {"indices": rng.integers(0, vocab, index_shape)})


embedding = Layer("embedding", ref.embedding_forward, ref.embedding_backward, jax_embedding,
                  embedding_inputs(), hints=Hints(linear_in=(0,)), bench=embedding_bench)


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
