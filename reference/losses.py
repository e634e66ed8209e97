"""Losses: each maps its inputs to one scalar, the mean over the batch (or the elements).

Every forward returns the loss as a 0-d array of the input dtype; every backward takes
dL, the upstream gradient of that scalar (a 0-d array, or the NumPy scalar that arithmetic
on 0-d arrays returns), and returns a tuple of gradients. A mean over nothing is 0/0, so an
empty batch (or, elementwise, an empty x) is refused rather than answered with NaN.

Softmax cross-entropy.   Derivation: docs/derivations/softmax_cross_entropy.md
    L = (1/N) sum_i (log sum_j exp(x_ij) - x_i,y_i)       x: (N, C), labels y: (N,)
    dx = dL (softmax(x) - onehot(y)) / N                  (N, C)

Multiclass SVM hinge (margin 1).   Derivation: docs/derivations/svm_hinge.md
    L = (1/N) sum_i sum_{j != y_i} max(0, m_ij),   m_ij = x_ij - x_i,y_i + 1
    dx_ij   = dL H(m_ij) / N                  for j != y_i
    dx_i,y_i = -dL sum_{j != y_i} H(m_ij) / N
    H(m) = 1 if m > 0, 1/2 if m = 0, 0 if m < 0: at a kink jnp.maximum's choice (JAX's),
    one of the subgradients in [0, 1].

Mean squared error.   Derivation: docs/derivations/mse.md
    L = (1/n) sum_k (x_k - y_k)^2             x, y: the same shape, n = x.size
    dx = 2 dL (x - y) / n,   dy = -dx
    y is a second differentiable input (a prediction against a prediction, or a target:
    then ignore dy).

Binary cross-entropy on logits.   Derivation: docs/derivations/bce_with_logits.md
    L = (1/n) sum_k softplus(x_k) - t_k x_k,  t: targets in [0, 1], the shape of x
    softplus(x) = max(x, 0) + log1p(exp(-|x|))     (no overflow, exact at |x| = 1000)
    dx = dL (sigmoid(x) - t) / n
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = [
    "BceWithLogitsCache", "MseCache", "SoftmaxCrossEntropyCache", "SvmHingeCache",
    "bce_with_logits_backward", "bce_with_logits_forward", "mse_backward", "mse_forward",
    "softmax_cross_entropy_backward", "softmax_cross_entropy_forward",
    "svm_hinge_backward", "svm_hinge_forward",
]


class SoftmaxCrossEntropyCache(NamedTuple):
    probs: np.ndarray  # (N, C), softmax(x)
    labels: np.ndarray  # (N,)


class SvmHingeCache(NamedTuple):
    slopes: np.ndarray  # (N, C), H(m_ij), 0 in each row's correct-class column
    labels: np.ndarray  # (N,)


class MseCache(NamedTuple):
    diff: np.ndarray  # x - y, x's shape


class BceWithLogitsCache(NamedTuple):
    sigmoid: np.ndarray  # sigmoid(x), x's shape
    targets: np.ndarray  # t in x's dtype


def softmax_cross_entropy_forward(x: np.ndarray, *, labels: np.ndarray) -> tuple[np.ndarray, SoftmaxCrossEntropyCache]:
    """L = mean_i (logsumexp(x_i) - x_i,y_i), with the row maximum shifted out first.

    x: (N, C) logits, N >= 1; labels: (N,) integers in [0, C)
    -> (loss: 0-d array of x's dtype, SoftmaxCrossEntropyCache).
    """
    rows = _scores_and_labels(x, labels)
    # log sum_j exp(x_ij) = m_i + log sum_j exp(x_ij - m_i): every exponent is <= 0, so
    # nothing overflows, and the largest term is exp(0) = 1, so the sum never underflows.
    shifted = x - x.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    losses = np.log(sums[:, 0]) - shifted[rows, labels]
    return np.asarray(losses.mean()), SoftmaxCrossEntropyCache(exps / sums, labels)


def softmax_cross_entropy_backward(dout, cache: SoftmaxCrossEntropyCache) -> tuple[np.ndarray]:
    """dx = dL (softmax(x) - onehot(y)) / N.

    dout: 0-d, the loss's dtype -> (dx: (N, C),).
    """
    probs, labels = cache
    dout = _dloss(dout, probs.dtype)
    n = probs.shape[0]
    dx = probs * (dout / n)
    dx[np.arange(n), labels] -= dout / n  # the -onehot(y) term, one entry per row
    return (dx,)


def svm_hinge_forward(x: np.ndarray, *, labels: np.ndarray) -> tuple[np.ndarray, SvmHingeCache]:
    """L = mean_i sum_{j != y_i} max(0, x_ij - x_i,y_i + 1).

    x: (N, C) scores, N >= 1; labels: (N,) integers in [0, C)
    -> (loss: 0-d array of x's dtype, SvmHingeCache).
    """
    rows = _scores_and_labels(x, labels)
    margins = x - x[rows, labels][:, None] + 1
    # The correct class is not its own competitor: its margin would be 1 in every row.
    margins[rows, labels] = 0
    slopes = np.heaviside(margins, 0.5)
    slopes[rows, labels] = 0
    losses = np.maximum(margins, 0).sum(axis=1)
    return np.asarray(losses.mean()), SvmHingeCache(slopes, labels)


def svm_hinge_backward(dout, cache: SvmHingeCache) -> tuple[np.ndarray]:
    """dx_ij = dL H(m_ij) / N for j != y_i;  dx_i,y_i = -dL sum_{j != y_i} H(m_ij) / N.

    dout: 0-d, the loss's dtype -> (dx: (N, C),).
    """
    slopes, labels = cache
    dout = _dloss(dout, slopes.dtype)
    n = slopes.shape[0]
    dx = slopes * (dout / n)
    # x_i,y_i is subtracted in every margin of row i: it collects minus their slopes.
    dx[np.arange(n), labels] = -slopes.sum(axis=1) * (dout / n)
    return (dx,)


def mse_forward(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, MseCache]:
    """L = mean_k (x_k - y_k)^2.

    x, y: the same shape (any, at least one element) and floating dtype
    -> (loss: 0-d array of x's dtype, MseCache).
    """
    _validate.float_array("x", x)
    _validate.float_array("y", y)
    _validate.same_dtype("y", y, "x", x)
    _validate.same_shape("y", y, "x", x)
    _nonempty("x", x, x.size, "x's elements")
    diff = x - y
    return np.asarray(np.mean(diff * diff)), MseCache(diff)


def mse_backward(dout, cache: MseCache) -> tuple[np.ndarray, np.ndarray]:
    """dx = 2 dL (x - y) / n, dy = -dx, n = x.size.

    dout: 0-d, the loss's dtype -> (dx, dy), each of x's shape.
    """
    diff = cache.diff
    dout = _dloss(dout, diff.dtype)
    dx = diff * (2 * dout / diff.size)
    return dx, -dx


def bce_with_logits_forward(x: np.ndarray, *, targets: np.ndarray) -> tuple[np.ndarray, BceWithLogitsCache]:
    """L = mean_k softplus(x_k) - t_k x_k, the mean of -t log sigmoid(x) - (1 - t) log sigmoid(-x).

    x: any shape with at least one element, logits; targets: x's shape, any floating dtype,
    entries in [0, 1], used in x's dtype -> (loss: 0-d array of x's dtype, BceWithLogitsCache).
    """
    _validate.float_array("x", x)
    _validate.float_array("targets", targets)
    _validate.same_shape("targets", targets, "x", x)
    _nonempty("x", x, x.size, "x's elements")
    _in_unit_interval("targets", targets)
    t = targets.astype(x.dtype)
    # exp(-|x|) is in (0, 1]: neither softplus nor sigmoid below can overflow.
    e = np.exp(-np.abs(x))
    losses = np.maximum(x, 0) - t * x + np.log1p(e)
    sigmoid = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return np.asarray(losses.mean()), BceWithLogitsCache(sigmoid, t)


def bce_with_logits_backward(dout, cache: BceWithLogitsCache) -> tuple[np.ndarray]:
    """dx = dL (sigmoid(x) - t) / n, n = x.size.

    dout: 0-d, the loss's dtype -> (dx: x's shape,).
    """
    sigmoid, t = cache
    dout = _dloss(dout, sigmoid.dtype)
    return ((sigmoid - t) * (dout / sigmoid.size),)


def _scores_and_labels(x, labels) -> np.ndarray:
    """Check (N, C) scores and their (N,) labels; return the row indices 0..N-1."""
    _validate.float_array("x", x)
    _validate.ndim("x", x, 2, "(N, C)")
    _validate.int_array("labels", labels, (x.shape[0],))
    _nonempty("x", x, x.shape[0], "the batch (N >= 1)")
    _validate.index_range("labels", labels, x.shape[1], f"class indices, C = {x.shape[1]}")
    return np.arange(x.shape[0])


def _nonempty(name, x, count, what) -> None:
    """A mean over no terms is 0/0: refuse it instead of returning NaN."""
    if count == 0:
        raise ValueError(f"{name} has shape {x.shape} but the loss is a mean over {what}: "
                         f"at least one is needed")


def _in_unit_interval(name, values) -> None:
    inside = (values >= 0) & (values <= 1)  # False for NaN too
    if not inside.all():
        bad = values[~inside].flat[0]
        raise ValueError(f"{name} (shape {values.shape}) has entries outside [0, 1], e.g. {bad}: "
                         f"they must be probabilities in [0, 1]")


def _dloss(dout, dtype) -> np.ndarray:
    """dL as a 0-d array: NumPy turns 0-d arithmetic results into scalars, so accept those too."""
    if isinstance(dout, np.floating):
        dout = np.asarray(dout)
    return _validate.upstream(dout, (), dtype)
