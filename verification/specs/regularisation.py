"""JAX specification of inverted dropout (``reference/regularisation.py``).

Written as a selection, ``jnp.where(mask != 0, x / p, 0)``, not as the NumPy product
x * (mask / p). The mask and p are hyperparameters (traced: new masks do not recompile);
the menu has an empty batch, a single unit, and p = 1 (the identity) is drawn on purpose.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import regularisation as ref
from verification.layer import BenchCase, Hints, Layer, Mutant, Variant
from verification.strategies import arrays, choices

# x's shape: a batch of vectors, an empty batch, a single unit, a batch of feature maps.
DROPOUT_SHAPES = ((2, 3), (0, 4), (1, 1), (3, 2, 2))


def jax_dropout(x, *, mask, p):
    return jnp.where(mask != 0, x / p, 0.0)


@st.composite
def dropout_inputs(draw):
    shape = draw(st.sampled_from(DROPOUT_SHAPES))
    mask = draw(choices(shape, (1.0, 0.0)))
    p = draw(st.one_of(st.just(1.0), st.floats(0.05, 1.0)))
    return (draw(arrays(shape)),), {"mask": mask, "p": p}


def dropout_bench(rng, shape=(256, 4096), p=0.8):
    """A wide hidden layer: x (256, 4096), keep probability 0.8."""
    mask = (rng.random(shape) < p).astype(np.float64)
    return BenchCase((rng.standard_normal(shape),), {"mask": mask, "p": p})


dropout = Layer("dropout", ref.dropout_forward, ref.dropout_backward, jax_dropout, dropout_inputs(),
                hints=Hints(per_example=True, linear_in=(0,)), bench=dropout_bench)


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
