"""JAX specifications of the linear family (``reference/linear.py``): ``linear`` and ``affine``.

The specifications are written independently of the NumPy code: ``linear`` as an einsum,
``affine`` as a tensordot over all of x's trailing axes (no flattening), so the NumPy
forward's reshape is checked too.

The input spaces: ``linear`` N 0-8, D 1-8, M 1-8; ``affine`` N 0-6, x of rank 2-4 with
trailing dimensions 1-4 each, M 1-6. Every size shrinks toward 1 (N toward 0, then 1);
the edges hold the square case, an empty batch, all ones and contraction lengths of 1.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import linear as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, bucket, grow
from verification.strategies import arrays_of, rarely_zero
from verification.tolerance import multilinear_magnitude


def jax_linear(x, w):
    return jnp.einsum("nd,dm->nm", x, w)


def jax_affine(x, w, b):
    features = x.shape[1:]
    return jnp.tensordot(x, w.reshape(*features, w.shape[1]), axes=len(features)) + b


@st.composite
def linear_configs(draw):
    return {"N": draw(rarely_zero(8)), "D": draw(st.integers(1, 8)), "M": draw(st.integers(1, 8))}


def linear_values(config):
    n, d, m = config["N"], config["D"], config["M"]
    return arrays_of((n, d), (d, m)).map(lambda arrays: (arrays, {}))


AFFINE_N, AFFINE_M = 6, 6


@st.composite
def affine_configs(draw):
    n = draw(rarely_zero(AFFINE_N))
    rank = draw(st.integers(1, 3))
    features = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    return {"N": n, "features": features, "M": draw(st.integers(1, AFFINE_M))}


def _affine_bucket(arrays, hyper):
    """Hints.pad, one bucket per shape of x's features: N grown to AFFINE_N (rows of their own,
    pulled back from a zero dout) and M to AFFINE_M (zero columns of w and b, outputs cut off).
    The features stay: growing an axis of them would interleave new rows of w among the old."""
    x, w, b = arrays
    return (grow(x, (AFFINE_N, *x.shape[1:])), grow(w, (w.shape[0], AFFINE_M)), grow(b, (AFFINE_M,))), hyper


def affine_values(config):
    n, features, m = config["N"], config["features"], config["M"]
    return arrays_of((n, *features), (math.prod(features), m), (m,)).map(lambda arrays: (arrays, {}))


LINEAR_EDGES = (
    {"N": 2, "D": 3, "M": 4},
    # square: a missing transpose still has the right shape
    {"N": 3, "D": 3, "M": 3},
    # an empty batch
    {"N": 0, "D": 3, "M": 2},
    # all ones
    {"N": 1, "D": 1, "M": 1},
    # a contraction of length 1: dW = X^T dY is an outer product
    {"N": 4, "D": 1, "M": 3},
    # one output: dX = dY W^T is a column times a row
    {"N": 2, "D": 6, "M": 1},
)
AFFINE_EDGES = (
    {"N": 2, "features": (3,), "M": 4},
    # x of rank 3 and 4: dX must be reshaped back
    {"N": 2, "features": (2, 3), "M": 3},
    {"N": 3, "features": (2, 1, 2), "M": 2},
    # an empty batch
    {"N": 0, "features": (2, 2), "M": 2},
    # all ones, N = 1 (where db could be dY itself)
    {"N": 1, "features": (1, 1), "M": 1},
    # square: N = D = M
    {"N": 3, "features": (3,), "M": 3},
)


def _error(description, arrays, error, message):
    return ErrorCase.literal(description, arrays, {}, error, message)  # no hyperparameters here


LINEAR_ERRORS = (
    _error("inner dimensions disagree", (np.ones((3, 4)), np.ones((5, 2))), ValueError,
           "w has shape (5, 2) but x has shape (3, 4): w.shape[0] must equal x.shape[1] = 4"),
    _error("x is 1-d", (np.ones(4), np.ones((4, 2))), ValueError,
           "x has shape (4,) but a 2-d array (N, D) is expected"),
    _error("w is 3-d", (np.ones((3, 4)), np.ones((4, 2, 1))), ValueError,
           "w has shape (4, 2, 1) but a 2-d array (D, M) is expected"),
    _error("integer x", (np.ones((3, 4), np.int64), np.ones((4, 2))), TypeError,
           "x has dtype int64 (shape (3, 4)) but float32 or float64 is expected"),
    _error("a list for x", ([[1.0, 2.0]], np.ones((2, 2))), TypeError, "x must be a numpy.ndarray of floats, got list"),
    _error("mixed precision", (np.ones((3, 4), np.float32), np.ones((4, 2))), TypeError,
           "w has dtype float64 but x has dtype float32: both must have the same floating dtype"),
    _error("float16", (np.ones((3, 4), np.float16), np.ones((4, 2), np.float16)), TypeError,
           "x has dtype float16 (shape (3, 4)) but float32 or float64 is expected"),
)
AFFINE_ERRORS = (
    _error("w does not match x's features", (np.ones((2, 3, 4)), np.ones((7, 5)), np.ones(5)), ValueError,
           "w has shape (7, 5) but x has shape (2, 3, 4): w.shape[0] must equal the product of x.shape[1:] = 12"),
    _error("b does not match M", (np.ones((2, 3)), np.ones((3, 5)), np.ones(4)), ValueError,
           "b has shape (4,) but w has shape (3, 5): b.shape[0] must equal w.shape[1] = 5"),
    _error("b is 2-d", (np.ones((2, 3)), np.ones((3, 5)), np.ones((1, 5))), ValueError,
           "b has shape (1, 5) but a 1-d array (M,) is expected"),
    _error("x is 1-d", (np.ones(3), np.ones((3, 5)), np.ones(5)), ValueError,
           "x has shape (3,) but an array of at least 2 dimensions (N, d1, ..., dk) is expected"),
    _error("b of another precision", (np.ones((2, 3)), np.ones((3, 5)), np.ones(5, np.float32)), TypeError,
           "b has dtype float32 but x has dtype float64: both must have the same floating dtype"),
    _error("float16", (np.ones((2, 3), np.float16), np.ones((3, 5), np.float16), np.ones(5, np.float16)), TypeError,
           "x has dtype float16 (shape (2, 3)) but float32 or float64 is expected"),
)


def linear_bench(rng, n=64, d=4096, m=4096):
    """The seed's size: N = 64, D = M = 4096; the backward is two GEMMs of 2 N D M flops each."""
    return BenchCase((rng.standard_normal((n, d)), rng.standard_normal((d, m))), {}, flops=4.0 * n * d * m)


def affine_bench(rng, n=128, features=(64, 8, 8), m=1024):
    """A flattened feature map into a dense layer: x (128, 64, 8, 8) -> 1024 outputs."""
    d = int(np.prod(features))
    return BenchCase((rng.standard_normal((n, *features)), rng.standard_normal((d, m)), rng.standard_normal(m)),
                     {}, flops=4.0 * n * d * m + n * m)


linear = Layer("linear", ref.linear_forward, ref.linear_backward, jax_linear,
               Space(linear_configs(), linear_values, edges=LINEAR_EDGES), magnitude=multilinear_magnitude,
               hints=Hints(per_example=True, linear_in=(0, 1), pad=bucket((8, 8), (8, 8))), errors=LINEAR_ERRORS,
               bench=linear_bench)
affine = Layer("affine", ref.affine_forward, ref.affine_backward, jax_affine,
               Space(affine_configs(), affine_values, edges=AFFINE_EDGES), magnitude=multilinear_magnitude,
               hints=Hints(per_example=True, linear_in=(0, 1, 2), pad=_affine_bucket), errors=AFFINE_ERRORS,
               bench=affine_bench)


# Correct variants: other ways to write the same derivative, which the verifier must accept.

def _linear_backward_einsum(dout, cache):
    x, w = cache
    return np.einsum("nm,dm->nd", dout, w), np.einsum("nd,nm->dm", x, dout)


def _linear_backward_loops(dout, cache):
    """dx[i, k] = sum_j dout[i, j] w[k, j]; dw[k, j] = sum_i x[i, k] dout[i, j], one element at a time."""
    x, w = cache
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            for j in range(w.shape[1]):
                dx[i, k] += dout[i, j] * w[k, j]
                dw[k, j] += x[i, k] * dout[i, j]
    return dx, dw


def _affine_backward_einsum(dout, cache):
    x, w = cache
    flat = x.reshape(x.shape[0], w.shape[0])
    return (np.einsum("nm,dm->nd", dout, w).reshape(x.shape), np.einsum("nd,nm->dm", flat, dout),
            np.einsum("nm->m", dout))


def _affine_backward_loops(dout, cache):
    x, w = cache
    dx, dw = _linear_backward_loops(dout, ref.LinearCache(x.reshape(x.shape[0], w.shape[0]), w))
    db = np.zeros(w.shape[1], dtype=dout.dtype)
    for row in dout:
        db += row
    return dx.reshape(x.shape), dw, db


VARIANTS = (
    Variant("linear", "einsum", "einsum spelling of dX = dY W^T, dW = X^T dY", _linear_backward_einsum),
    Variant("linear", "loops", "explicit loops, one element at a time", _linear_backward_loops),
    Variant("affine", "einsum", "einsum spelling, flattening x by hand", _affine_backward_einsum),
    Variant("affine", "loops", "explicit loops, bias accumulated row by row", _affine_backward_loops),
)


# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _affine(backward_of_flat):
    """An affine backward built from a (possibly wrong) rule on the flattened x."""
    def backward(dout, cache):
        x, w = cache
        return backward_of_flat(dout, x.reshape(x.shape[0], w.shape[0]), w, x.shape)
    return backward


def _modifies_dout(dout, cache):
    grads = ref.linear_backward(dout, cache)
    dout[...] = 0.0  # right gradients, but the caller's dL/dY is destroyed
    return grads


def _float32_inside(dout, cache):
    x, w = cache
    dx, dw = ref.linear_backward(dout.astype(np.float32), ref.LinearCache(x.astype(np.float32), w.astype(np.float32)))
    return dx.astype(dout.dtype), dw.astype(dout.dtype)


def _modifies_x_forward(x, w):
    out, cache = ref.linear_forward(x, w)
    x *= 2.0  # the forward scales its input in place
    return out, cache


def _affine_assumes_c_order(dout, cache):
    x, w = cache
    flat = x.reshape(x.shape[0], w.shape[0], order="A")  # Fortran order for Fortran input: rows scrambled
    return (dout @ w.T).reshape(x.shape), flat.T @ dout, dout.sum(axis=0)


def _affine_db_view(dout, cache):
    dx, dw, db = ref.affine_backward(dout, cache)
    return dx, dw, (dout[0] if len(dout) == 1 else db)  # right values, but a view of dout for N = 1


def _linear_rows_leak(dout, cache):
    dx, dw = ref.linear_backward(dout, cache)
    leak = dout.sum(axis=0, keepdims=True) / max(len(dout), 1)
    return dx + 1e-3 * leak @ cache.w.T, dw  # a batch-mean term in dx


MUTANTS = (
    Mutant("linear", "missing_transpose", "dX = dY W instead of dY W^T",
           lambda dout, c: (dout @ c.w, c.x.T @ dout), bug='transpose'),
    Mutant("linear", "dw_transposed", "dW = dY^T X, the transpose of the right answer",
           lambda dout, c: (dout @ c.w.T, dout.T @ c.x), bug='transpose'),
    Mutant("linear", "outputs_swapped", "returns (dW, dX) instead of (dX, dW)",
           lambda dout, c: ref.linear_backward(dout, c)[::-1], bug='order'),
    Mutant("linear", "sign_flip", "dX = -dY W^T",
           lambda dout, c: (-(dout @ c.w.T), c.x.T @ dout), bug='sign'),
    Mutant("linear", "mean_not_sum", "dW = X^T dY / N: averages over the batch instead of summing",
           lambda dout, c: (dout @ c.w.T, c.x.T @ dout / max(len(dout), 1)), bug='factor'),
    Mutant("linear", "dout_modified", "right gradients, but zeroes the caller's dout in place",
           _modifies_dout, bug='in_place'),
    Mutant("linear", "float32_inside", "computes in float32 whatever the input dtype",
           _float32_inside, bug='precision'),
    Mutant("linear", "x_modified_by_forward", "the forward scales x in place",
           forward=_modifies_x_forward, bug='in_place'),
    Mutant("linear", "last_row_dropped", "dX misses the last example (an off-by-one slice)",
           lambda dout, c: (np.concatenate([dout[:-1] @ c.w.T, np.zeros_like(c.x[-1:])]), c.x.T @ dout), bug='partial'),
    Mutant("affine", "db_mean", "db = mean of dY over the batch instead of its sum",
           _affine(lambda dout, x, w, shape: ((dout @ w.T).reshape(shape), x.T @ dout, dout.mean(axis=0))), bug='factor'),
    Mutant("affine", "db_wrong_axis", "db sums dY over the classes instead of over the batch",
           _affine(lambda dout, x, w, shape: ((dout @ w.T).reshape(shape), x.T @ dout, dout.sum(axis=1))), bug='wrong_axis'),
    Mutant("affine", "dx_not_reshaped", "dX left flat, (N, D), instead of x's shape",
           _affine(lambda dout, x, w, shape: (dout @ w.T, x.T @ dout, dout.sum(axis=0))), bug='shape'),
    Mutant("linear", "weight_decay_inside", "adds weight decay 1e-3 W to dW inside the backward",
           lambda dout, c: (dout @ c.w.T, c.x.T @ dout + 1e-3 * c.w), bug='extra_term'),
    Mutant("linear", "rows_leak", "dX picks up a small batch-mean term: examples leak into each other",
           _linear_rows_leak, bug='batch_mixing'),
    Mutant("affine", "assumes_c_order", "flattens x in its memory order, wrong for Fortran-ordered x",
           _affine_assumes_c_order, bug='layout'),
    Mutant("affine", "db_view_of_dout", "returns dout[0] itself as db when N = 1 (an alias, not a copy)",
           _affine_db_view, bug='aliasing'),
    Mutant("affine", "db_missing", "db returned as zeros, as if the bias had no gradient",
           _affine(lambda dout, x, w, shape: ((dout @ w.T).reshape(shape), x.T @ dout, np.zeros(w.shape[1], dout.dtype))), bug='missing'),
)
