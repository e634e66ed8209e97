"""JAX specifications of the losses (``reference/losses.py``).

Written from the definitions, not from the NumPy code: cross-entropy as the mean of
-log_softmax at the label (``jax.nn.log_softmax``, a gather), the hinge as a masked
``jnp.maximum`` over all classes, the binary cross-entropy as -t log s(x) - (1 - t) log s(-x)
rather than the softplus form the NumPy code uses.

The oracle must not be the inaccurate side. ``jax.nn.log_sigmoid`` differentiates through
softplus's rule exp(a - softplus(a)), whose rounded exponent costs |x| ulp: measured
against 80-bit long double, 16 eps at |x| = 32, twice the tolerance. ``_log_sigmoid``
below differentiates as s(-z) from exp(-|z|) within 1.6 eps over |z| <= 1000.

Every loss is a mean over the batch (or the elements), undefined for an empty one, which
the reference refuses: the spaces start at N = 1 (and at one element); the refusal is one
of each layer's ``errors``.

Each forward takes an oracle-only keyword the NumPy forward never sees: ``where``, the rows
(the elements) the mean runs over, None for all. The buckets (``Hints.pad``, below the input
spaces) use it to keep their padding out of the mean and its divisor.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import losses as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays, arrays_of, draw_shape, indices, signed, values

WIDE_LOGIT = 100.0
"""Cross-entropy logits are also drawn from [-100, 100]: exp(100) overflows float32 (and
exp(-100) is below its normal range), so a forward that skips the max-shift is caught."""
LARGE_LOGIT = 1000.0
"""Binary cross-entropy logits are also drawn from [-1000, 1000], where exp(|x|) overflows
even float64 and log(sigmoid) computed from sigmoid gives -inf."""
KINK_GAP = 0.05
"""Every hinge margin is at least this far from its kink at 0. Rounding the scores (|x| < 8)
onto float32's grid moves a margin by at most 2 * 2^-21 ~ 1e-6; the finite-difference check
moves each entry by h |t| <= 2^-12 * 5 ~ 1.2e-3, a margin by twice that: both stay on one
side of the kink."""


def jax_softmax_cross_entropy(x, *, labels, where=None):
    log_probs = jax.nn.log_softmax(x, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0], where=where)


def jax_svm_hinge(x, *, labels, where=None):
    correct = jnp.take_along_axis(x, labels[:, None], axis=1)
    competitors = jnp.arange(x.shape[1]) != labels[:, None]
    return jnp.mean(jnp.sum(jnp.where(competitors, jnp.maximum(x - correct + 1.0, 0.0), 0.0), axis=1), where=where)


def jax_mse(x, y, *, where=None):
    return jnp.mean(jnp.square(x - y), where=where)


def _log_sigmoid(z):
    """log s(z): -log1p(exp(-z)) for z >= 0, z - log1p(exp(z)) below, so that every exponent is <= 0.

    Each branch sees its argument clamped to where it is taken (a where, not a min or
    max, so that z = 0 is not a tie worth 1/2), and the branch not taken stays finite:
    no overflow, and no 0 * inf = NaN in the gradient.
    """
    nonnegative, negative = jnp.where(z >= 0, z, 0.0), jnp.where(z < 0, z, 0.0)
    return jnp.where(z >= 0, -jnp.log1p(jnp.exp(-nonnegative)), negative - jnp.log1p(jnp.exp(negative)))


def jax_bce_with_logits(x, *, targets, where=None):
    return -jnp.mean(targets * _log_sigmoid(x) + (1.0 - targets) * _log_sigmoid(-x), where=where)


SMALLEST_FLOAT32 = float(np.finfo(np.float32).smallest_subnormal)


def _mean_weights(hyper, shape):
    """Each row's (element's) weight in the loss's mean: 1 / the number ``where`` keeps (all, by
    default), 0 for the rows it leaves out."""
    where = hyper.get("where")
    kept = jnp.ones(shape) if where is None else jnp.broadcast_to(where, shape).astype(jnp.float64)
    return kept / jnp.sum(kept)


def _softmax_cross_entropy_magnitude(f, arrays, hyper, dout):
    """The terms of L and dx, each weighted by the rounding it carries.

    With s = x - max_j x_j, dx_ij = dL (p_ij - onehot_ij) / N: the terms are p_ij and 1, and
    p_ij cancels against 1 when the label's probability is near 1, so the scale is
    p + onehot, not |p - onehot|. p_ij = exp(s_ij) / Z_i: rounding s_ij costs exp a relative
    error |s_ij| u (exp(s(1 + d)) = exp(s) exp(s d)), on top of its own u, so exp_error =
    1 + |s|; Z_i = sum_j exp(s_ij) carries the p-weighted mean of those (sum_error). The
    loss L_i = log Z_i - s_i,y_i has terms log Z_i and |s_i,y_i|, and log turns Z's relative
    error into the absolute error sum_error.

    Underflow (``verification.tolerance``, the U term): the textbook formula takes the log of
    p_iy = exp(s_iy) / Z_i itself. Where p_iy is below the normal range (a logit gap of 88 to
    103 in float32) it is held to its subnormal spacing, eps tiny, not to eps p_iy, and log
    multiplies that by 1 / p_iy: U = mean_i 1 / p_iy, for the loss (dx is a difference of p's:
    its error stays below tiny). Past float32's smallest subnormal, p_iy is 0 and the loss
    inf, which no bound accepts; U is capped there.
    """
    (x,) = arrays
    weights = _mean_weights(hyper, x.shape[:1])
    shifted = x - jnp.max(x, axis=1, keepdims=True)
    probs = jax.nn.softmax(x, axis=1)
    onehot = jax.nn.one_hot(hyper["labels"], x.shape[1], dtype=x.dtype)
    exp_error = 1.0 + jnp.abs(shifted)
    sum_error = jnp.sum(probs * exp_error, axis=1, keepdims=True)
    out_scale = jnp.sum(weights * (jax.nn.logsumexp(shifted, axis=1) + jnp.sum(onehot * jnp.abs(shifted), axis=1)
                                   + sum_error[:, 0]))
    grad_scale = jnp.abs(dout) * weights[:, None] * (probs * (exp_error + sum_error) + onehot)
    label_prob = jnp.sum(onehot * probs, axis=1)
    underflow = jnp.sum(weights / jnp.maximum(label_prob, SMALLEST_FLOAT32))
    return out_scale, (grad_scale,), (underflow, (jnp.zeros_like(grad_scale),))


def _svm_hinge_magnitude(f, arrays, hyper, dout):
    """|J|^T |dL| and |L| + |J| |x|, written out (no Jacobian: one light program per shape).
    With a_ij = [x_ij - x_iy + 1 > 0] for j != y_i, L = (1/N) sum_ij a_ij (x_ij - x_iy + 1): J_ij = a_ij / N,
    J_iy = -(sum_j a_ij) / N; no term cancels inside (the inputs are exact), so these are the
    terms the default scale would take from the Jacobian."""
    (x,) = arrays
    labels = hyper["labels"]
    correct = jnp.take_along_axis(x, labels[:, None], axis=1)
    competitors = jnp.arange(x.shape[1]) != labels[:, None]
    active = jnp.where(competitors & (x - correct + 1.0 > 0), 1.0, 0.0)
    counts = jnp.sum(active, axis=1, keepdims=True)
    slope = (active + jnp.where(competitors, 0.0, counts)) * _mean_weights(hyper, x.shape[:1])[:, None]  # |J|
    return jnp.abs(f(x)) + jnp.sum(slope * jnp.abs(x)), (jnp.abs(dout) * slope,)


def _mse_magnitude(f, arrays, hyper, dout):
    """|J|^T |dL| and |L| + |J| |a|, written out: L = mean((x - y)^2), dL/dx = 2 (x - y) / n = -dL/dy."""
    x, y = arrays
    slope = 2.0 * jnp.abs(x - y) * _mean_weights(hyper, x.shape)
    return jnp.abs(f(x, y)) + jnp.sum(slope * (jnp.abs(x) + jnp.abs(y))), (jnp.abs(dout) * slope, jnp.abs(dout) * slope)


def _bce_with_logits_magnitude(f, arrays, hyper, dout):
    """The terms of L and dx: dx_k = dL (sigmoid(x_k) - t_k) / n cancels when sigmoid(x_k) is
    near t_k, so its scale is sigmoid + t; the loss adds max(x, 0), -t x and
    log1p(exp(-|x|)), and |t x| also bounds rounding the targets to float32."""
    (x,) = arrays
    t, weights = hyper["targets"], _mean_weights(hyper, x.shape)
    out_scale = jnp.sum(weights * (jnp.maximum(x, 0.0) + jnp.abs(t * x) + jnp.log1p(jnp.exp(-jnp.abs(x)))))
    return out_scale, (jnp.abs(dout) * weights * (jax.nn.sigmoid(x) + t),)


# ----------------------------------------------------------------------------------------
# The input spaces.
#
# Scores (N, C): N >= 1 and C >= 1, each half the time 1-6, half the time up to 24. The two
# sides are these layers' whole configuration: 1-6 alone would be a few dozen shapes, each
# seen in every run; up to 24, 20 seeds of 30 draws reach over 200 (the Jacobian has at
# most 576 entries, the loss being one number). Shrinking moves toward 1-6, then toward 1.
# The labels come in three patterns: any, all one class, and every class used (a shuffled
# cycle: every class when N >= C, else N distinct classes).

SCORES_SIDE = 24
"""The largest N and C."""


@st.composite
def scores_configs(draw):
    side = st.integers(1, 6) | st.integers(1, SCORES_SIDE)
    return {"N": draw(side), "C": draw(side)}


SCORES_EDGES = (
    {"N": 1, "C": 3},  # a single example
    {"N": 3, "C": 1},  # a single class: nothing to compete with, dx = 0
    {"N": 4, "C": 2},  # a batch larger than the class count: classes repeat
    {"N": 2, "C": 5},  # a batch smaller than the class count
    {"N": 3, "C": 3},  # square: dx transposed keeps its shape
    {"N": 5, "C": 3},  # a batch that splits into no equal shards of 2 or 4
)


def labels(n, c):
    """(N,) labels in [0, C): any, all one class, or every class used."""
    one_class = st.integers(0, c - 1).map(lambda k: np.full(n, k))
    every_class = st.tuples(st.permutations(range(n)), st.integers(0, c - 1)).map(
        lambda drawn: (np.array(drawn[0], dtype=np.int64) + drawn[1]) % c)
    return st.one_of(indices((n,), c), one_class, every_class)


def softmax_cross_entropy_values(config):
    n, c = config["N"], config["C"]
    x = arrays((n, c), elements=values() | values(-WIDE_LOGIT, WIDE_LOGIT))
    return st.tuples(st.tuples(x), st.fixed_dictionaries({"labels": labels(n, c)}))


@st.composite
def _hinge_example(draw, n, c):
    """Scores built from the margins: x_iy drawn, then x_ij = x_iy - 1 + m_ij with |m_ij| >= KINK_GAP."""
    chosen = draw(labels(n, c))
    correct = draw(arrays((n,)))
    margins = draw(arrays((n, c), elements=signed(KINK_GAP)))
    x = correct[:, None] - 1.0 + margins
    x[np.arange(n), chosen] = correct
    return (x,), {"labels": chosen}


def svm_hinge_values(config):
    return _hinge_example(config["N"], config["C"])


# Any shape of rank 1-4, sides 1-5, at least one element (the mean needs one) and at most 120.

ANY_SIDE = 5
"""The longest side."""


@st.composite
def any_shape_configs(draw):
    return {"shape": draw_shape(draw, draw(st.integers(1, 4)), low=1, high=ANY_SIDE, max_size=120)}


ANY_SHAPE_EDGES = (
    {"shape": (1,)},         # a single element
    {"shape": (3,)},         # a vector
    {"shape": (2, 4)},       # a matrix
    {"shape": (2, 1, 3)},    # rank 3 with a size-1 axis
    {"shape": (2, 3, 2, 2)}, # rank 4, every axis longer than 1
)


def mse_values(config):
    return st.tuples(arrays_of(config["shape"], config["shape"]), st.just({}))


def bce_with_logits_values(config):
    shape = config["shape"]
    x = arrays(shape, elements=values() | values(-LARGE_LOGIT, LARGE_LOGIT))
    return st.tuples(st.tuples(x), st.fixed_dictionaries({"targets": arrays(shape, low=0.0, high=1.0)}))


# ----------------------------------------------------------------------------------------
# Buckets (Hints.pad): the scores layers share one program, (N, C) = (SCORES_SIDE, SCORES_SIDE);
# mse and bce_with_logits one per rank, every side grown to ANY_SIDE. An added row (an added
# element) is left out of the mean and of its divisor by ``where``, which marks the real ones,
# in the specification and in the magnitude (``_mean_weights``); its outputs are cut off. An
# added class has the score ABSENT_SCORE: for the cross-entropy e^(-1e4 - max) underflows to
# exactly 0 in float64 (the scores lie in [-100, 100]), so the real rows' softmax, loss and
# magnitude (whose terms are weighted by p) are unchanged, and a finite score keeps the
# magnitude's |s| finite; for the hinge its margin -1e4 - x_iy + 1 is inactive (< 0), far from
# the kink. The added rows hold ABSENT_SCORE too, with label 0: left out by ``where`` whatever
# they compute. mse's added x and y are 0, as are bce_with_logits' added logits and targets.

ABSENT_SCORE = -1e4


def _scores_bucket(arrays, hyper):
    """Hints.pad for the scores layers: x grown to (SCORES_SIDE, SCORES_SIDE) with ABSENT_SCORE, the
    labels with 0, and ``where`` marking the real rows."""
    (x,) = arrays
    shape = (SCORES_SIDE, SCORES_SIDE)
    return (grow(x, shape, ABSENT_SCORE),), {**hyper, "labels": grow(hyper["labels"], shape[:1]),
                                             "where": grow(np.ones(x.shape[:1], bool), shape[:1])}


def _any_shape_bucket(arrays, hyper):
    """Hints.pad for mse and bce_with_logits: every array grown to ANY_SIDE along each axis with 0,
    and ``where`` marking the real elements."""
    shape = (ANY_SIDE,) * arrays[0].ndim
    grown = {key: grow(value, shape) for key, value in hyper.items()}  # bce_with_logits' targets
    return tuple(grow(a, shape) for a in arrays), {**grown, "where": grow(np.ones(arrays[0].shape, bool), shape)}


# ----------------------------------------------------------------------------------------
# Bad calls and the errors they must raise.

LABELS = np.array([0, 2])
SCORES_ERRORS = ErrorCase.literal_rows(
    ("a label past the last class", (np.ones((2, 3)),), {"labels": np.array([0, 3])}, ValueError,
     "labels has entries in [0, 3] but they must lie in [0, 3) (class indices, C = 3)"),
    ("a negative label", (np.ones((2, 3)),), {"labels": np.array([-1, 0])}, ValueError,
     "labels has entries in [-1, 0]"),
    ("a label too many", (np.ones((2, 3)),), {"labels": np.array([0, 1, 2])}, ValueError,
     "labels has shape (3,) but shape (2,) is expected"),
    ("float labels", (np.ones((2, 3)),), {"labels": np.array([0.0, 1.0])}, TypeError,
     "labels must be a numpy.ndarray of integers, got dtype float64"),
    ("x 1-d", (np.ones(3),), {"labels": np.array([0])}, ValueError,
     "x has shape (3,) but a 2-d array (N, C) is expected"),
    ("an empty batch", (np.ones((0, 3)),), {"labels": np.zeros(0, int)}, ValueError,
     "x has shape (0, 3) but the loss is a mean over the batch (N >= 1): at least one is needed"),
    ("x of integers", (np.ones((2, 3), int),), {"labels": LABELS}, TypeError,
     "x has dtype int64 (shape (2, 3)) but float32 or float64"),
    ("x float16", (np.ones((2, 3), np.float16),), {"labels": LABELS}, TypeError,
     "x has dtype float16 (shape (2, 3)) but float32 or float64 is expected"),
)
MSE_ERRORS = ErrorCase.literal_rows(
    ("shapes differ", (np.ones((2, 3)), np.ones((3, 2))), {}, ValueError,
     "y has shape (3, 2) but x has shape (2, 3): they must have the same shape"),
    ("dtypes differ", (np.ones(3), np.ones(3, np.float32)), {}, TypeError,
     "y has dtype float32 but x has dtype float64"),
    ("no elements", (np.ones((0, 2)), np.ones((0, 2))), {}, ValueError,
     "x has shape (0, 2) but the loss is a mean over x's elements: at least one is needed"),
    ("x float16", (np.ones(3, np.float16), np.ones(3, np.float16)), {}, TypeError,
     "x has dtype float16 (shape (3,)) but float32 or float64 is expected"),
)
BCE_WITH_LOGITS_ERRORS = ErrorCase.literal_rows(
    ("a target above 1", (np.ones(2),), {"targets": np.array([0.5, 1.5])}, ValueError,
     "targets (shape (2,)) has entries outside [0, 1], e.g. 1.5: they must be probabilities in [0, 1]"),
    ("a NaN target", (np.ones(2),), {"targets": np.array([np.nan, 0.5])}, ValueError,
     "outside [0, 1], e.g. nan"),
    ("integer targets", (np.ones(2),), {"targets": np.array([1, 0])}, TypeError,
     "targets has dtype int64 (shape (2,)) but float32 or float64"),
    ("targets of another shape", (np.ones(2),), {"targets": np.ones(3)}, ValueError,
     "targets has shape (3,) but x has shape (2,)"),
    ("no elements", (np.ones(0),), {"targets": np.ones(0)}, ValueError,
     "x has shape (0,) but the loss is a mean over x's elements"),
    ("x float16", (np.ones(2, np.float16),), {"targets": np.full(2, 0.5)}, TypeError,
     "x has dtype float16 (shape (2,)) but float32 or float64 is expected"),
)


def scores_bench(rng, n=256, c=1000):
    """An ImageNet-sized classifier head: N = 256, C = 1000."""
    return BenchCase((rng.standard_normal((n, c)),), {"labels": rng.integers(0, c, n)})


def elementwise_bench(rng, shape=(256, 1000)):
    return BenchCase((rng.standard_normal(shape), rng.standard_normal(shape)), {})


def bce_with_logits_bench(rng, shape=(256, 1000)):
    """256 examples of 1000 independent binary labels (multi-label classification)."""
    return BenchCase((4 * rng.standard_normal(shape),), {"targets": rng.uniform(0, 1, shape)})


softmax_cross_entropy = Layer(
    "softmax_cross_entropy", ref.softmax_cross_entropy_forward, ref.softmax_cross_entropy_backward,
    jax_softmax_cross_entropy, Space(scores_configs(), softmax_cross_entropy_values, edges=SCORES_EDGES),
    magnitude=_softmax_cross_entropy_magnitude, hints=Hints(pad=_scores_bucket), errors=SCORES_ERRORS,
    bench=scores_bench)
svm_hinge = Layer("svm_hinge", ref.svm_hinge_forward, ref.svm_hinge_backward, jax_svm_hinge,
                  Space(scores_configs(), svm_hinge_values, edges=SCORES_EDGES), magnitude=_svm_hinge_magnitude,
                  hints=Hints(pad=_scores_bucket), errors=SCORES_ERRORS, bench=scores_bench)
# Quadratic in x and in y, and a mean over all elements: neither linear_in nor per_example.
mse = Layer("mse", ref.mse_forward, ref.mse_backward, jax_mse,
            Space(any_shape_configs(), mse_values, edges=ANY_SHAPE_EDGES), magnitude=_mse_magnitude,
            hints=Hints(pad=_any_shape_bucket), errors=MSE_ERRORS, bench=elementwise_bench)
bce_with_logits = Layer(
    "bce_with_logits", ref.bce_with_logits_forward, ref.bce_with_logits_backward, jax_bce_with_logits,
    Space(any_shape_configs(), bce_with_logits_values, edges=ANY_SHAPE_EDGES),
    magnitude=_bce_with_logits_magnitude, hints=Hints(pad=_any_shape_bucket), errors=BCE_WITH_LOGITS_ERRORS,
    bench=bce_with_logits_bench)


# Correct variants: other ways to write the same derivatives, which the verifier must accept.

def _softmax_cross_entropy_backward_onehot(dout, cache):
    probs, labels = cache
    onehot = np.eye(probs.shape[1], dtype=probs.dtype)[labels]
    return ((probs - onehot) * (dout / probs.shape[0]),)


def _svm_hinge_backward_loops(dout, cache):
    """Row by row, class by class: each active margin pushes x_ij up and x_i,y_i down."""
    slopes, labels = cache
    n = slopes.shape[0]
    dx = np.zeros_like(slopes)
    for i in range(n):
        for j in range(slopes.shape[1]):
            dx[i, j] += slopes[i, j] * dout / n
            dx[i, labels[i]] -= slopes[i, j] * dout / n
    return (dx,)


def _svm_hinge_backward_onehot(dout, cache):
    slopes, labels = cache
    onehot = np.eye(slopes.shape[1], dtype=slopes.dtype)[labels]
    return ((slopes - onehot * slopes.sum(axis=1, keepdims=True)) * (dout / slopes.shape[0]),)


def _mse_backward_each_input(dout, cache):
    """dy from its own formula, 2 dL (y - x) / n, rather than as -dx."""
    diff = cache.diff
    return diff * (2 * dout / diff.size), -diff * (2 * dout / diff.size)


def _bce_with_logits_forward_textbook(x, *, targets):
    """softplus(x) = log(e^0 + e^x) by np.logaddexp, and sigmoid(x) = 1 / (1 + exp(-x)).

    exp(-x) overflows to inf for x < -88 (float32), and 1 / inf = 0 is then sigmoid's limit
    to within its own rounding: correct, so the overflow warning is silenced. (sigmoid as
    exp(x - softplus(x)) would not be: rounding x - softplus(x) costs exp a relative error
    |x| u, 50 u at x = -50.)
    """
    t = targets.astype(x.dtype)
    with np.errstate(over="ignore"):
        sigmoid = 1 / (1 + np.exp(-x))
    return np.asarray(np.mean(np.logaddexp(0, x) - t * x)), ref.BceWithLogitsCache(sigmoid, t)


# Written so that one switch plants a bug the menus of fixed shapes could not see: the
# mutants below are these backwards with the switch the other way.

DEVICES = 4


def _softmax_cross_entropy_backward_data_parallel(shard_weight):
    """dx as data parallelism over DEVICES devices computes it: the batch split by
    np.array_split, each device's rows (p - onehot) dL scaled by ``shard_weight(rows on the
    device, N, devices holding rows)``, the devices' gradients gathered."""
    def backward(dout, cache):
        probs, labels = cache
        n = len(probs)
        shards = [rows for rows in np.array_split(np.arange(n), DEVICES) if len(rows)]
        dx = probs.copy()
        dx[np.arange(n), labels] -= 1
        for rows in shards:
            dx[rows] *= np.asarray(dout) * shard_weight(len(rows), n, len(shards))
        return (dx,)
    return backward


def _matrix_count(*, middle_axes):
    """x's element count as N * C from its first and last axes (a vector: N alone), times
    the sides of the axes between them if ``middle_axes``."""
    def count(shape):
        n = shape[0] * (shape[-1] if len(shape) > 1 else 1)
        return n * math.prod(shape[1:-1]) if middle_axes else n
    return count


def _bce_with_logits_backward_dividing_by(count):
    """dx = dL (sigmoid(x) - t) / count(x.shape)."""
    def backward(dout, cache):
        return ((cache.sigmoid - cache.targets) * (np.asarray(dout) / count(cache.sigmoid.shape)),)
    return backward


VARIANTS = (
    Variant("softmax_cross_entropy", "onehot", "dx = (p - eye(C)[y]) dL / N with a one-hot matrix",
            _softmax_cross_entropy_backward_onehot),
    Variant("svm_hinge", "loops", "explicit loops over rows and classes", _svm_hinge_backward_loops),
    Variant("svm_hinge", "onehot", "the correct-class column through a one-hot matrix",
            _svm_hinge_backward_onehot),
    Variant("mse", "each_input", "dy = 2 dL (y - x) / n from its own formula", _mse_backward_each_input),
    Variant("bce_with_logits", "textbook", "forward with np.logaddexp and sigmoid = 1 / (1 + exp(-x))",
            forward=_bce_with_logits_forward_textbook),
    Variant("softmax_cross_entropy", "data_parallel", f"the batch split over {DEVICES} devices, each row "
            "scaled by 1/N: every device's share of the global mean",
            _softmax_cross_entropy_backward_data_parallel(lambda rows, n, devices: 1 / n)),
    Variant("bce_with_logits", "matrix_count", "n counted as N * (the axes between) * C",
            _bce_with_logits_backward_dividing_by(_matrix_count(middle_axes=True))),
)


# Mutants: the bugs a student writes; the verifier must reject each one.

def _softmax_cross_entropy_forward_unshifted(x, *, labels):
    """exp(x) without subtracting the row maximum: overflows to inf / inf = NaN."""
    with np.errstate(over="ignore", invalid="ignore"):  # the NaN is the finding, not the warning
        exps = np.exp(x)
        sums = exps.sum(axis=1)
        losses = np.log(sums) - x[np.arange(len(x)), labels]
        return np.asarray(losses.mean()), ref.SoftmaxCrossEntropyCache(exps / sums[:, None], labels)


def _svm_hinge_backward_own_margin(dout, cache):
    """Counts the correct class's own margin, x_iy - x_iy + 1 = 1 > 0, as active."""
    slopes, labels = cache
    rows = np.arange(slopes.shape[0])
    with_own = slopes.copy()
    with_own[rows, labels] = 1
    dx = with_own * (dout / len(rows))
    dx[rows, labels] = -with_own.sum(axis=1) * (dout / len(rows))
    return (dx,)


def _mse_backward_dy_not_negated(dout, cache):
    dx = ref.mse_backward(dout, cache)[0]
    return dx, dx.copy()  # a copy, so that only the sign is wrong (not aliasing as well)


def _bce_with_logits_forward_naive(x, *, targets):
    """-t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x)): log(0) at large |x|."""
    t = targets.astype(x.dtype)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        sigmoid = 1 / (1 + np.exp(-x))
        losses = -t * np.log(sigmoid) - (1 - t) * np.log(1 - sigmoid)
    return np.asarray(losses.mean()), ref.BceWithLogitsCache(sigmoid, t)


MUTANTS = (
    Mutant("softmax_cross_entropy", "missing_mean", "dx = dL (p - onehot): the 1/N is missing",
           lambda dout, c: ((c.probs - np.eye(c.probs.shape[1], dtype=c.probs.dtype)[c.labels]) * dout,), bug='factor'),
    Mutant("softmax_cross_entropy", "onehot_not_subtracted", "dx = dL p / N: the label's -1 is missing",
           lambda dout, c: (c.probs * (dout / len(c.probs)),), bug='partial'),
    Mutant("softmax_cross_entropy", "unshifted", "forward without the max-shift: exp overflows",
           forward=_softmax_cross_entropy_forward_unshifted, bug='instability'),
    Mutant("svm_hinge", "correct_class_not_counted", "dx_iy left 0: the -sum of the row's slopes is missing",
           lambda dout, c: (c.slopes * (dout / len(c.slopes)),), bug='partial'),
    Mutant("svm_hinge", "own_margin_counted", "the correct class's own margin (always 1) counted as active",
           _svm_hinge_backward_own_margin, bug='partial'),
    Mutant("mse", "missing_factor_2", "dx = dL (x - y) / n: the 2 of d(u^2)/du is missing",
           lambda dout, c: (c.diff * (dout / c.diff.size), c.diff * (-dout / c.diff.size)), bug='factor'),
    Mutant("mse", "dy_not_negated", "dy = dx: y enters with a minus sign",
           _mse_backward_dy_not_negated, bug='sign'),
    Mutant("bce_with_logits", "sigmoid_wrong_sign", "dx = dL (sigmoid(-x) - t) / n",
           lambda dout, c: ((1 - c.sigmoid - c.targets) * (dout / c.sigmoid.size),), bug='formula'),
    Mutant("bce_with_logits", "naive_log_sigmoid", "forward through log(sigmoid) and log(1 - sigmoid)",
           forward=_bce_with_logits_forward_naive, bug='instability'),
    # Wrong only where no menu looked: a batch that does not split evenly over the devices
    # (N >= 5, not a multiple of 4), a rank-3 or -4 x with a middle axis longer than 1.
    Mutant("softmax_cross_entropy", "uneven_data_parallel", f"the batch split over {DEVICES} devices, each "
           "device's mean gradient averaged over the devices: right only when every device holds as many rows",
           _softmax_cross_entropy_backward_data_parallel(lambda rows, n, devices: 1 / (rows * devices)),
           bug='formula'),
    Mutant("bce_with_logits", "middle_axes_forgotten", "the mean divides by N * C from x's first and last "
           "axes, as if x were a matrix: the axes between them are forgotten",
           _bce_with_logits_backward_dividing_by(_matrix_count(middle_axes=False)), bug='factor'),
)
