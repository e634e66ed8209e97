"""JAX specifications of softmax and log_softmax (``reference/softmax.py``).

The forwards are ``jax.nn.softmax`` and ``jax.nn.log_softmax``; JAX differentiates softmax
by its own rule (y * (t - sum(y t))) and log_softmax through its max-shifted logsumexp.

The space: any axis, positive or negative, of an array of rank 1-4 with sides 0-5 (the
class axis at least 1). Over any axis but axis 0 row i of the output depends on row i of x
alone, and the layers are ``per_example`` there; over axis 0 (a rank-1 array included) the
batch axis is the class axis, and they are not.

The oracles evaluate each example in one bucket per rank and class axis (``Hints.pad``, below
the input space): ten buckets (1 + 2 + 3 + 4 class axes) serve the space's hundreds of shapes.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import softmax as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import VALUE_BOUND, arrays, draw_shape

MAX_SIZE = 120
"""At most this many elements in an example."""
MAX_SIDE = 5
"""The longest side; a bucket has it along every axis, so the explicit Jacobian, computed in the
bucket, has at most (5^4)^2 = 390,625 entries (a rank-4 example)."""
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


# ----------------------------------------------------------------------------------------
# The input space. axis is static for the oracle: each (shape, axis) compiles once.

@st.composite
def softmax_configs(draw):
    """Rank 1-4, the class axis any one of them, written positive or negative; sides 0-5,
    the class axis' at least 1 (the reference refuses a distribution over no classes).
    Half the time another axis (an earlier one first) is given the class axis' length: a
    backward that finds the class axis by its length, or mixes two axes of one length, is
    wrong only there."""
    rank = draw(st.integers(1, 4))
    axis, negative, repeat = draw(st.integers(0, rank - 1)), draw(st.booleans()), draw(st.booleans())
    others = [a for a in range(rank) if a != axis] or [axis]  # rank 1: no other axis
    other = others[draw(st.integers(0, len(others) - 1))]
    shape = list(draw_shape(draw, rank, low=0, high=MAX_SIDE, max_size=MAX_SIZE, nonzero=(axis,)))
    if repeat and shape[other] and shape[axis] * math.prod(shape) // shape[other] <= MAX_SIZE:
        shape[other] = shape[axis]
    return {"shape": tuple(shape), "axis": axis - rank if negative else axis}


SOFTMAX_EDGES = (
    {"shape": (3, 4), "axis": -1},     # rows of 4 classes
    {"shape": (1, 1), "axis": -1},     # a single class: y = 1, dx = 0
    {"shape": (0, 4), "axis": -1},     # an empty batch
    {"shape": (2, 3, 4), "axis": 1},   # the middle axis of a rank-3 array
    {"shape": (5,), "axis": 0},        # rank 1: one distribution, the batch axis is the class axis
    {"shape": (4, 3), "axis": 0},      # the batch axis itself, of a matrix
    {"shape": (3, 3), "axis": -1},     # square: an axis before the class axis has its length
    {"shape": (2, 3, 3), "axis": -3},  # two before the last: moved last, the other axes shift (a swap
                                       # would exchange two); trailing axes of one length keep the shape
)


def softmax_values(config):
    """Logits in [-b, b], b one of LOGIT_BOUNDS for the whole example."""
    logits = st.sampled_from(LOGIT_BOUNDS).flatmap(lambda b: arrays(config["shape"], low=-b, high=b))
    return st.tuples(st.tuples(logits), st.just({"axis": config["axis"]}))


def _per_example(arrays, hyper) -> bool:
    """Row i of y depends on row i of x alone unless the class axis is the batch axis 0."""
    (x,) = arrays
    return hyper["axis"] % x.ndim != 0


# Buckets (Hints.pad): one per rank and class axis (the axis is static: the pad writes it
# positive, so that -1 and 1 of a matrix share a program), every side grown to MAX_SIDE.
# Along the class axis the added logits are ABSENT_LOGIT: e^(-1e4 - max) underflows to exactly
# 0 in float64 (the logits lie in [-1000, 1000]), so each real distribution, its derivatives
# and the magnitudes (whose terms are weighted by p) are unchanged, and a finite logit keeps
# the magnitudes' |z| finite. Along the other axes an added slice is a distribution of its own,
# whose outputs are cut off and pull nothing back. per_example is read from the example itself,
# and the bucket keeps its rank and its axes: axis 0 is the batch axis in both.

ABSENT_LOGIT = -1e4


def _bucket(arrays, hyper):
    """Hints.pad: x grown to MAX_SIDE along every axis with ABSENT_LOGIT, the axis written positive."""
    (x,) = arrays
    return (grow(x, (MAX_SIDE,) * x.ndim, ABSENT_LOGIT),), {**hyper, "axis": hyper["axis"] % x.ndim}


BAD = (
    ("axis past the last", (np.ones((3, 4)),), {"axis": 2}, ValueError,
     "axis is 2 but x has shape (3, 4): axis must lie in [-2, 2)"),
    ("axis before the first", (np.ones((3, 4)),), {"axis": -3}, ValueError, "axis is -3 but x has shape (3, 4)"),
    ("axis a float", (np.ones((3, 4)),), {"axis": 1.0}, TypeError, "axis must be an int, got float 1.0"),
    ("axis a bool", (np.ones((3, 4)),), {"axis": True}, TypeError, "axis must be an int, got bool True"),
    ("axis passed by position", (np.ones((3, 4)), 1), {}, TypeError, "positional argument"),
    ("x 0-d", (np.array(1.0),), {}, ValueError,
     "x has shape () but an array of at least 1 dimensions (..., C, ...)"),
    ("x a list", ([1.0, 2.0],), {}, TypeError, "x must be a numpy.ndarray of floats, got list"),
    ("x of integers", (np.arange(3),), {}, TypeError, "x has dtype int64 (shape (3,)) but float32 or float64"),
    ("x float16", (np.ones((3, 4), np.float16),), {}, TypeError,
     "x has dtype float16 (shape (3, 4)) but float32 or float64 is expected"),
    ("no classes", (np.ones((3, 0)),), {}, ValueError,
     "x has shape (3, 0) but axis 1 is empty: at least one class is needed"),
)
ERRORS = ErrorCase.literal_rows(*BAD)


def softmax_bench(rng):
    """Attention scores of one head over a 4096-token context: (256, 4096), N(0, 3^2)."""
    return BenchCase((3.0 * rng.standard_normal((256, 4096)),), {"axis": -1})


softmax = Layer("softmax", ref.softmax_forward, ref.softmax_backward, jax_softmax,
                Space(softmax_configs(), softmax_values, edges=SOFTMAX_EDGES), magnitude=_softmax_magnitude,
                hints=Hints(per_example=_per_example, pad=_bucket), errors=ERRORS, bench=softmax_bench)
log_softmax = Layer("log_softmax", ref.log_softmax_forward, ref.log_softmax_backward, jax_log_softmax,
                    Space(softmax_configs(), softmax_values, edges=SOFTMAX_EDGES), magnitude=_log_softmax_magnitude,
                    hints=Hints(per_example=_per_example, pad=_bucket), errors=ERRORS, bench=softmax_bench)


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


# Written so that one switch plants a bug the menus of fixed shapes could not see: the
# mutants below are these backwards with the switch the other way.

def _softmax_backward_class_axis_last(take_out):
    """The class axis moved last by ``take_out(t, axis)``, the sum along -1, and moved back to
    its place with np.moveaxis."""
    def backward(dout, cache):
        y, g = take_out(cache.y, cache.axis), take_out(dout, cache.axis)
        dx = y * (g - np.sum(g * y, axis=-1, keepdims=True))
        return (np.moveaxis(dx, -1, cache.axis),)
    return backward


def _softmax_backward_by_example(*, batch_axis_checked):
    """One example (a slice along axis 0) at a time, its class axis one lower than the array's;
    ``batch_axis_checked``: when the class axis is axis 0 itself, the whole array at once."""
    def backward(dout, cache):
        y, axis = cache
        if batch_axis_checked and axis == 0:
            return (y * (dout - np.sum(dout * y, axis=0, keepdims=True)),)
        dx = np.empty_like(dout)
        for i in range(len(y)):
            dx[i] = y[i] * (dout[i] - np.sum(dout[i] * y[i], axis=axis - 1, keepdims=True))
        return (dx,)
    return backward


def _log_softmax_backward_along(class_axis):
    """dx = dout - p sum(dout), the sum along ``class_axis(cache)``."""
    def backward(dout, cache):
        return (dout - cache.probs * np.sum(dout, axis=class_axis(cache), keepdims=True),)
    return backward


VARIANTS = (
    Variant("softmax", "jacobian", "the explicit per-slice Jacobian diag(y) - y y^T", _softmax_backward_jacobian),
    Variant("log_softmax", "recomputed", "softmax recomputed from y by softmax_forward",
            forward=_log_softmax_forward_recomputed),
    Variant("softmax", "moved_last", "the class axis moved last with np.moveaxis and moved back the same way",
            _softmax_backward_class_axis_last(lambda t, axis: np.moveaxis(t, axis, -1))),
    Variant("softmax", "by_example", "one example at a time, the whole array when the class axis is axis 0",
            _softmax_backward_by_example(batch_axis_checked=True)),
    Variant("log_softmax", "cached_axis", "the sum along the class axis the forward cached",
            _log_softmax_backward_along(lambda cache: cache.axis)),
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
           lambda dout, c: (c.y * (dout - np.sum(dout * c.y, axis=0, keepdims=True)),), bug='batch_mixing'),
    Mutant("softmax", "unshifted_forward", "the forward exponentiates x without subtracting the max",
           forward=_softmax_forward_unshifted, bug='instability'),
    Mutant("log_softmax", "log_probs_not_probs", "dx = dout - y sum(dout): the forward caches the "
           "log-probabilities where the probabilities e^y belong", forward=_log_softmax_forward_caching_y, bug='formula'),
    Mutant("log_softmax", "elementwise_not_sum", "dx = dout - e^y dout: the sum over classes forgotten",
           lambda dout, c: (dout - c.probs * dout,), bug='formula'),
    # Wrong only where no menu looked: the class axis two or more before the last (rank >= 3),
    # the class axis being the batch axis, an earlier axis as long as the class axis.
    Mutant("softmax", "swapped_out_moved_back", "the class axis swapped last with np.swapaxes but moved back "
           "with np.moveaxis: the other axes come back rotated when it is two or more before the last",
           _softmax_backward_class_axis_last(lambda t, axis: np.swapaxes(t, axis, -1)), bug='transpose'),
    Mutant("softmax", "batch_axis_assumed", "one example at a time along the class axis less one, also when "
           "the class axis is the batch axis 0: each example's last axis instead",
           _softmax_backward_by_example(batch_axis_checked=False), bug='wrong_axis'),
    Mutant("log_softmax", "axis_by_length", "the sum along the first axis as long as the class axis, "
           "not the class axis itself", _log_softmax_backward_along(lambda c: c.probs.shape.index(c.probs.shape[c.axis])),
           bug='wrong_axis'),
)
