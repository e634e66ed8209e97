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
the reference refuses: the menus have N = 1 but no N = 0 (the refusal is tested in
tests/layers/test_losses.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import losses as ref
from verification.layer import BenchCase, Hints, Layer, Mutant, Variant
from verification.strategies import arrays, arrays_of, indices, signed, values

# (N, C): a single example, a single class (nothing to compete with), a batch larger than
# the class count and one smaller.
SCORE_SHAPES = ((1, 3), (3, 1), (4, 2), (2, 5))
# Any shape: a single element, a vector, a matrix, rank 3.
ELEMENTWISE_SHAPES = ((1,), (3,), (2, 4), (2, 1, 3))

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


def jax_softmax_cross_entropy(x, *, labels):
    log_probs = jax.nn.log_softmax(x, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def jax_svm_hinge(x, *, labels):
    correct = jnp.take_along_axis(x, labels[:, None], axis=1)
    competitors = jnp.arange(x.shape[1]) != labels[:, None]
    return jnp.sum(jnp.where(competitors, jnp.maximum(x - correct + 1.0, 0.0), 0.0)) / x.shape[0]


def jax_mse(x, y):
    return jnp.mean(jnp.square(x - y))


def _log_sigmoid(z):
    """log s(z): -log1p(exp(-z)) for z >= 0, z - log1p(exp(z)) below, so that every exponent is <= 0.

    Each branch sees its argument clamped to where it is taken (a where, not a min or
    max, so that z = 0 is not a tie worth 1/2), and the branch not taken stays finite:
    no overflow, and no 0 * inf = NaN in the gradient.
    """
    nonnegative, negative = jnp.where(z >= 0, z, 0.0), jnp.where(z < 0, z, 0.0)
    return jnp.where(z >= 0, -jnp.log1p(jnp.exp(-nonnegative)), negative - jnp.log1p(jnp.exp(negative)))


def jax_bce_with_logits(x, *, targets):
    return -jnp.mean(targets * _log_sigmoid(x) + (1.0 - targets) * _log_sigmoid(-x))


def _softmax_cross_entropy_magnitude(f, arrays, hyper, dout):
    """The terms of L and dx, each weighted by the rounding it carries.

    With s = x - max_j x_j, dx_ij = dL (p_ij - onehot_ij) / N: the terms are p_ij and 1, and
    p_ij cancels against 1 when the label's probability is near 1, so the scale is
    p + onehot, not |p - onehot|. p_ij = exp(s_ij) / Z_i: rounding s_ij costs exp a relative
    error |s_ij| u (exp(s(1 + d)) = exp(s) exp(s d)), on top of its own u, so exp_error =
    1 + |s|; Z_i = sum_j exp(s_ij) carries the p-weighted mean of those (sum_error). The
    loss L_i = log Z_i - s_i,y_i has terms log Z_i and |s_i,y_i|, and log turns Z's relative
    error into the absolute error sum_error.
    """
    (x,) = arrays
    n, c = x.shape
    shifted = x - jnp.max(x, axis=1, keepdims=True)
    probs = jax.nn.softmax(x, axis=1)
    onehot = jax.nn.one_hot(hyper["labels"], c, dtype=x.dtype)
    exp_error = 1.0 + jnp.abs(shifted)
    sum_error = jnp.sum(probs * exp_error, axis=1, keepdims=True)
    out_scale = jnp.mean(jax.nn.logsumexp(shifted, axis=1) + jnp.sum(onehot * jnp.abs(shifted), axis=1)
                         + sum_error[:, 0])
    return out_scale, (jnp.abs(dout) / n * (probs * (exp_error + sum_error) + onehot),)


def _bce_with_logits_magnitude(f, arrays, hyper, dout):
    """The terms of L and dx: dx_k = dL (sigmoid(x_k) - t_k) / n cancels when sigmoid(x_k) is
    near t_k, so its scale is sigmoid + t; the loss adds max(x, 0), -t x and
    log1p(exp(-|x|)), and |t x| also bounds rounding the targets to float32."""
    (x,) = arrays
    t = hyper["targets"]
    out_scale = jnp.mean(jnp.maximum(x, 0.0) + jnp.abs(t * x) + jnp.log1p(jnp.exp(-jnp.abs(x))))
    return out_scale, (jnp.abs(dout) / x.size * (jax.nn.sigmoid(x) + t),)


@st.composite
def softmax_cross_entropy_inputs(draw):
    n, c = draw(st.sampled_from(SCORE_SHAPES))
    x = draw(arrays((n, c), elements=values() | values(-WIDE_LOGIT, WIDE_LOGIT)))
    return (x,), {"labels": draw(indices((n,), c))}


@st.composite
def svm_hinge_inputs(draw):
    """Scores built from the margins: x_iy drawn, then x_ij = x_iy - 1 + m_ij with |m_ij| >= KINK_GAP."""
    n, c = draw(st.sampled_from(SCORE_SHAPES))
    labels = draw(indices((n,), c))
    correct = draw(arrays((n,)))
    margins = draw(arrays((n, c), elements=signed(KINK_GAP)))
    x = correct[:, None] - 1.0 + margins
    x[np.arange(n), labels] = correct
    return (x,), {"labels": labels}


@st.composite
def mse_inputs(draw):
    shape = draw(st.sampled_from(ELEMENTWISE_SHAPES))
    return draw(arrays_of(shape, shape)), {}


@st.composite
def bce_with_logits_inputs(draw):
    shape = draw(st.sampled_from(ELEMENTWISE_SHAPES))
    x = draw(arrays(shape, elements=values() | values(-LARGE_LOGIT, LARGE_LOGIT)))
    return (x,), {"targets": draw(arrays(shape, low=0.0, high=1.0))}


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
    jax_softmax_cross_entropy, softmax_cross_entropy_inputs(), magnitude=_softmax_cross_entropy_magnitude,
    bench=scores_bench)
svm_hinge = Layer("svm_hinge", ref.svm_hinge_forward, ref.svm_hinge_backward, jax_svm_hinge, svm_hinge_inputs(),
                  bench=scores_bench)
# Quadratic in x and in y, and a mean over all elements: neither linear_in nor per_example.
mse = Layer("mse", ref.mse_forward, ref.mse_backward, jax_mse, mse_inputs(), bench=elementwise_bench)
bce_with_logits = Layer(
    "bce_with_logits", ref.bce_with_logits_forward, ref.bce_with_logits_backward, jax_bce_with_logits,
    bce_with_logits_inputs(), magnitude=_bce_with_logits_magnitude, bench=bce_with_logits_bench)


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


VARIANTS = (
    Variant("softmax_cross_entropy", "onehot", "dx = (p - eye(C)[y]) dL / N with a one-hot matrix",
            _softmax_cross_entropy_backward_onehot),
    Variant("svm_hinge", "loops", "explicit loops over rows and classes", _svm_hinge_backward_loops),
    Variant("svm_hinge", "onehot", "the correct-class column through a one-hot matrix",
            _svm_hinge_backward_onehot),
    Variant("mse", "each_input", "dy = 2 dL (y - x) / n from its own formula", _mse_backward_each_input),
    Variant("bce_with_logits", "textbook", "forward with np.logaddexp and sigmoid = 1 / (1 + exp(-x))",
            forward=_bce_with_logits_forward_textbook),
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
           lambda dout, c: (c.probs * (dout / len(c.probs)),), bug='formula'),
    Mutant("softmax_cross_entropy", "unshifted", "forward without the max-shift: exp overflows",
           forward=_softmax_cross_entropy_forward_unshifted, bug='instability'),
    Mutant("svm_hinge", "correct_class_not_counted", "dx_iy left 0: the -sum of the row's slopes is missing",
           lambda dout, c: (c.slopes * (dout / len(c.slopes)),), bug='formula'),
    Mutant("svm_hinge", "own_margin_counted", "the correct class's own margin (always 1) counted as active",
           _svm_hinge_backward_own_margin, bug='formula'),
    Mutant("mse", "missing_factor_2", "dx = dL (x - y) / n: the 2 of d(u^2)/du is missing",
           lambda dout, c: (c.diff * (dout / c.diff.size), c.diff * (-dout / c.diff.size)), bug='factor'),
    Mutant("mse", "dy_not_negated", "dy = dx: y enters with a minus sign",
           _mse_backward_dy_not_negated, bug='sign'),
    Mutant("bce_with_logits", "sigmoid_wrong_sign", "dx = dL (sigmoid(-x) - t) / n",
           lambda dout, c: ((1 - c.sigmoid - c.targets) * (dout / c.sigmoid.size),), bug='formula'),
    Mutant("bce_with_logits", "naive_log_sigmoid", "forward through log(sigmoid) and log(1 - sigmoid)",
           forward=_bce_with_logits_forward_naive, bug='instability'),
)
