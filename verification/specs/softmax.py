"""JAX specifications of softmax and log_softmax (``reference/softmax.py``).

The forwards are ``jax.nn.softmax`` and ``jax.nn.log_softmax``; JAX differentiates softmax
by its own rule (y * (t - sum(y t))) and log_softmax through its max-shifted logsumexp.

``axis`` is drawn from the non-batch axes only, so that row i of the output depends on row
i of x alone and the layers are ``per_example``; axis 0 works too (tests/layers/test_softmax.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import softmax as ref
from verification.layer import BenchCase, Hints, Layer, Mutant, Variant
from verification.strategies import VALUE_BOUND, arrays

# (shape, axis): rows of 4 classes, a single class (y = 1, dx = 0), an empty batch, and the
# middle axis of a rank-3 array. axis is static for the oracle: each pair compiles once.
MENU = (((3, 4), -1), ((1, 1), -1), ((0, 4), -1), ((2, 3, 4), 1))
LOGIT_BOUNDS = (VALUE_BOUND, 60.0, 1000.0)
"""Each example's logits lie in [-b, b] for one b of these: 2, where every class counts;
60, where e^(x - m) spans e^-120, below float32's normal range (1e-38); and 1000, where
e^x overflows even float64, so a forward without the max shift returns inf/inf = nan."""


def jax_softmax(x, *, axis):
    return jax.nn.softmax(x, axis=axis)


def jax_log_softmax(x, *, axis):
    return jax.nn.log_softmax(x, axis=axis)


# ----------------------------------------------------------------------------------------
# The error magnitudes.
#
# With z = x - max x along the axis (z <= 0), e^z is computed from a rounded z: exp turns
# the rounding |z| u into a relative error |z| u (e^(z(1 + d)) = e^z e^(z d)), on top of its
# own u, so each probability p_k = e^(z_k) / Z carries r_k = 1 + |z_k| units of relative
# error, and Z = sum_k e^(z_k) carries R = sum_k p_k r_k (a p-weighted mean). Large logits
# make |z| large (hundreds), and |J|^T |dY| knows nothing of it: a correct float32 softmax
# fails it wherever some p_k = e^-50 is not yet 0. So each term of a formula is weighted
# by the relative error its factors carry:
#
# softmax     y_i = p_i                       out:  p_i (r_i + R)
#             dx_i = p_i dy_i - p_i sum_k p_k dy_k
#                                             dx:   p_i (r_i + R) |dy_i| + p_i sum_k p_k |dy_k| (r_i + r_k + 2R)
# log_softmax y_i = z_i - log Z               out:  |z_i| + |log Z| + R
#             dx_i = dy_i - p_i sum_k dy_k,   p_i carrying at most q_i = 1 + |z_i| + |log Z| + R:
#             the reference's e^(z_i) / Z carries r_i + R, and p_i = e^(y_i) from the rounded
#             y_i (or softmax(y), the variant) carries q_i
#                                             dx:   |dy_i| + p_i q_i sum_k |dy_k|
#
# Also the plain sum of |terms| matters: where p_i is near 1 the log_softmax terms dy_i and
# p_i sum_k dy_k cancel, and the result can be far below either (the default would demand
# exact cancellation).

def _parts(x, axis):
    z = x - jnp.max(x, axis=axis, keepdims=True)
    p = jax.nn.softmax(x, axis=axis)
    r = 1.0 + jnp.abs(z)
    return z, p, r, jnp.sum(p * r, axis=axis, keepdims=True)


def _softmax_magnitude(f, arrays, hyper, dout):
    (x,), axis = arrays, hyper["axis"]
    _, p, r, big_r = _parts(x, axis)
    weighted = jnp.sum(p * jnp.abs(dout), axis=axis, keepdims=True)        # sum_k p_k |dy_k|
    weighted_r = jnp.sum(p * r * jnp.abs(dout), axis=axis, keepdims=True)  # sum_k p_k r_k |dy_k|
    dx = p * ((r + big_r) * jnp.abs(dout) + (r + 2.0 * big_r) * weighted + weighted_r)
    return p * (r + big_r), (dx,)


def _log_softmax_magnitude(f, arrays, hyper, dout):
    (x,), axis = arrays, hyper["axis"]
    z, p, _, big_r = _parts(x, axis)
    log_z = jnp.abs(jax.nn.logsumexp(z, axis=axis, keepdims=True))
    q = 1.0 + jnp.abs(z) + log_z + big_r
    dx = jnp.abs(dout) + p * q * jnp.sum(jnp.abs(dout), axis=axis, keepdims=True)
    return jnp.abs(z) + log_z + big_r, (dx,)


@st.composite
def softmax_inputs(draw):
    shape, axis = draw(st.sampled_from(MENU))
    bound = draw(st.sampled_from(LOGIT_BOUNDS))
    return (draw(arrays(shape, low=-bound, high=bound)),), {"axis": axis}


def softmax_bench(rng):
    """Attention scores of one head over a 4096-token context: (256, 4096), N(0, 3^2)."""
    return BenchCase((3.0 * rng.standard_normal((256, 4096)),), {"axis": -1})


softmax = Layer("softmax", ref.softmax_forward, ref.softmax_backward, jax_softmax, softmax_inputs(),
                magnitude=_softmax_magnitude, hints=Hints(per_example=True), bench=softmax_bench)
log_softmax = Layer("log_softmax", ref.log_softmax_forward, ref.log_softmax_backward, jax_log_softmax,
                    softmax_inputs(), magnitude=_log_softmax_magnitude, hints=Hints(per_example=True), bench=softmax_bench)


# ----------------------------------------------------------------------------------------
# Correct variants: other ways to write the same derivatives, which the verifier must accept.

def _softmax_backward_jacobian(dout, cache):
    """The C x C Jacobian diag(y) - y y^T of every slice, built and contracted with dout."""
    y = np.moveaxis(cache.y, cache.axis, -1)
    g = np.moveaxis(dout, cache.axis, -1)
    jacobian = y[..., :, None] * np.eye(y.shape[-1], dtype=y.dtype) - y[..., :, None] * y[..., None, :]
    return (np.moveaxis(np.einsum("...ij,...i->...j", jacobian, g), -1, cache.axis),)


def _log_softmax_forward_recomputed(x, *, axis=-1):
    """The probabilities recomputed from the log-probabilities y by softmax_forward, with its own
    max shift, not as e^(x - m) / sum e^(x - m)."""
    y, cache = ref.log_softmax_forward(x, axis=axis)
    return y, cache._replace(probs=ref.softmax_forward(y, axis=axis)[0])


VARIANTS = (
    Variant("softmax", "jacobian", "the explicit per-slice Jacobian diag(y) - y y^T", _softmax_backward_jacobian),
    Variant("log_softmax", "recomputed", "softmax recomputed from y by softmax_forward",
            forward=_log_softmax_forward_recomputed),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _softmax_forward_unshifted(x, *, axis=-1):
    """No max shift: e^x overflows to inf for x > 88 (float32), 709 (float64), and inf/inf = nan."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x)
        y = e / np.sum(e, axis=axis, keepdims=True)
    return y, ref.SoftmaxCache(y, axis % x.ndim)


def _log_softmax_forward_caching_y(x, *, axis=-1):
    """The log-probabilities cached where the probabilities e^y belong."""
    y, cache = ref.log_softmax_forward(x, axis=axis)
    return y, cache._replace(probs=y)


MUTANTS = (
    Mutant("softmax", "missing_sum_term", "dx = y * dout: the - y sum(dout * y) term dropped",
           lambda dout, c: (c.y * dout,), bug='formula'),
    Mutant("softmax", "diagonal_only", "dx = y (1 - y) dout: only the Jacobian's diagonal",
           lambda dout, c: (c.y * (1 - c.y) * dout,), bug='formula'),
    Mutant("softmax", "sum_over_batch", "the sum runs over axis 0, the batch, not the classes",
           lambda dout, c: (c.y * (dout - np.sum(dout * c.y, axis=0, keepdims=True)),), bug='wrong_axis'),
    Mutant("softmax", "unshifted_forward", "the forward exponentiates x without subtracting the max",
           forward=_softmax_forward_unshifted, bug='instability'),
    Mutant("log_softmax", "log_probs_not_probs", "dx = dout - y sum(dout): the forward caches the "
           "log-probabilities where the probabilities e^y belong", forward=_log_softmax_forward_caching_y, bug='formula'),
    Mutant("log_softmax", "elementwise_not_sum", "dx = dout - e^y dout: the sum over classes forgotten",
           lambda dout, c: (dout - c.probs * dout,), bug='formula'),
)
