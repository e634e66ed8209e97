"""JAX specification of inverted dropout (``reference/regularisation.py``).

Written as a selection, ``jnp.where(mask != 0, x / p, 0)``, not as the NumPy product
x * (mask / p). The mask and p are hyperparameters (traced: new masks do not recompile).

The input space: x of any rank 0-4, each axis 0-8 long (the first; the others 1-8) and
at most 64 entries; p in [1e-3, 1], exactly 1 (the identity) on many draws; the mask
mixed, all kept or all dropped.
"""
from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import regularisation as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays, choices, floats, rarely_zero
from verification.tolerance import nonnegative_magnitude

MAX_ELEMENTS = 64
MAX_AXIS = 8


def jax_dropout(x, *, mask, p):
    return jnp.where(mask != 0, x / p, 0.0)


@st.composite
def dropout_configs(draw):
    shape = []
    for axis in range(draw(rarely_zero(4))):
        room = MAX_ELEMENTS // max(math.prod(shape), 1)
        shape.append(draw(rarely_zero(min(MAX_AXIS, room)) if axis == 0 else st.integers(1, min(MAX_AXIS, room))))
    return {"shape": tuple(shape)}


def dropout_values(config):
    shape = config["shape"]
    masks = st.one_of(choices(shape, (1.0, 0.0)), st.just(shape).map(np.ones), st.just(shape).map(np.zeros))
    p = st.one_of(st.just(1.0), floats(1e-3, 1.0))
    return st.tuples(arrays(shape), masks, p).map(lambda drawn: ((drawn[0],), {"mask": drawn[1], "p": drawn[2]}))


def _bucket(arrays, hyper):
    """Hints.pad: x and the mask grown with zeros, each axis to MAX_AXIS up to rank 3, and at rank
    4 to its next power of two (8^4 entries would make the explicit Jacobian 2^24 entries).
    out[i] depends on x[i] alone, so the added entries are outputs of their own, cut off; p stays."""
    (x,) = arrays
    shape = (MAX_AXIS,) * x.ndim if x.ndim <= 3 else tuple(1 << max(n - 1, 0).bit_length() for n in x.shape)
    return (grow(x, shape),), {**hyper, "mask": grow(hyper["mask"], shape)}


DROPOUT_EDGES = (
    # a batch of vectors
    {"shape": (2, 3)},
    # an empty batch
    {"shape": (0, 4)},
    # a single unit
    {"shape": (1, 1)},
    # a batch of feature maps
    {"shape": (3, 2, 2)},
    # a 0-d x: one unit, no batch axis
    {"shape": ()},
    # rank 4, (N, C, H, W)
    {"shape": (2, 2, 2, 2)},
)

DROPOUT_ERRORS = tuple(ErrorCase(description, (x,), {"mask": mask, "p": p}, error, re.escape(message)) for
                       description, x, mask, p, error, message in (
    ("a mask entry of 0.5", np.ones(2), np.array([1.0, 0.5]), 0.5, ValueError,
     "mask (shape (2,)) has an entry 0.5 that is neither 0 nor 1: a dropout mask keeps (1) or drops (0) each unit"),
    ("a NaN in the mask", np.ones(2), np.array([1.0, np.nan]), 0.5, ValueError,
     "mask (shape (2,)) has an entry nan that is neither 0 nor 1"),
    ("a mask of another shape", np.ones(2), np.ones(3), 0.5, ValueError,
     "mask has shape (3,) but x has shape (2,): they must have the same shape"),
    ("a boolean mask", np.ones(2), np.array([True, False]), 0.5, TypeError,
     "mask has dtype bool (shape (2,)) but float32 or float64 is expected"),
    ("p = 0", np.ones(2), np.ones(2), 0.0, ValueError, "p is 0.0 but must lie in (0.0, 1.0]"),
    ("p > 1", np.ones(2), np.ones(2), 1.5, ValueError, "p is 1.5 but must lie in (0.0, 1.0]"),
    ("p as a string", np.ones(2), np.ones(2), "0.5", TypeError, "p must be a real number, got str '0.5'"),
    ("float16", np.ones(2, np.float16), np.ones(2), 0.5, TypeError,
     "x has dtype float16 (shape (2,)) but float32 or float64 is expected"),
))


def dropout_bench(rng, shape=(256, 4096), p=0.8):
    """A wide hidden layer: x (256, 4096), keep probability 0.8."""
    mask = (rng.random(shape) < p).astype(np.float64)
    return BenchCase((rng.standard_normal(shape),), {"mask": mask, "p": p})


dropout = Layer("dropout", ref.dropout_forward, ref.dropout_backward, jax_dropout,
                Space(dropout_configs(), dropout_values, edges=DROPOUT_EDGES), magnitude=nonnegative_magnitude,
                hints=Hints(per_example=True, linear_in=(0,), pad=_bucket), errors=DROPOUT_ERRORS, bench=dropout_bench)


def _dropout_backward_loops(dout, cache):
    dx = np.empty_like(dout)
    for k in np.ndindex(dout.shape):
        dx[k] = dout[k] * cache.scale[k]
    return (dx,)


def _dropout_backward_jacobian(dout, cache):
    """The Jacobian as a matrix, diag(mask / p) of size x.size, transposed, times dout."""
    jacobian = np.diag(cache.scale.reshape(-1))
    return ((jacobian.T @ dout.reshape(-1)).reshape(dout.shape),)


VARIANTS = (
    Variant("dropout", "loops", "one element at a time: dx[k] = dout[k] * scale[k]", _dropout_backward_loops),
    Variant("dropout", "jacobian_matrix", "the explicit diagonal Jacobian, transposed, times dout",
            _dropout_backward_jacobian),
)

MUTANTS = (
    Mutant("dropout", "not_divided_by_p", "dx = dout * mask: the 1/p of inverted dropout is missing",
           lambda dout, c: (dout * (c.scale != 0),), bug='factor'),
    Mutant("dropout", "scaled_twice", "dx = dout * mask / p^2: the 1/p applied twice",
           lambda dout, c: (dout * c.scale * c.scale,), bug='factor'),
    Mutant("dropout", "mask_inverted", "gradient flows to the dropped units, not the kept ones",
           lambda dout, c: (dout * (c.scale == 0),), bug='formula'),
    Mutant("dropout", "identity", "dx = dout, as if dropout were off (test time)",
           lambda dout, c: (dout.copy(),), bug='formula'),
)
