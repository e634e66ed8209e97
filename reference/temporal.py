"""Layers over sequences of vectors: an affine map at every time step, and the masked softmax
loss of a captioning model.
Derivations: docs/derivations/temporal_affine.md, docs/derivations/temporal_softmax_loss.md

Temporal affine: the affine layer applied to each of the N T vectors x[n, t]
    out[n, t] = x[n, t] w + b               x: (N, T, D), w: (D, M), b: (M,), out: (N, T, M)
    dx = dout w^T                           (N, T, D)
    dw = sum_{n,t} x[n, t]^T dout[n, t]     (D, M) = (D, N T) (N T, M): one product over every row
    db = sum_{n,t} dout[n, t]               (M,)

Temporal softmax loss: scores x (N, T, V) over a vocabulary of V words, labels y (N, T)
integers in [0, V), mask m (N, T) booleans (False: a padding position, no word to predict)
    L = (1/N) sum_{n,t : m[n,t]} (log sum_v exp(x[n,t,v]) - x[n,t,y[n,t]])
    dx[n, t, v] = dL m[n,t] (p[n,t,v] - [v = y[n,t]]) / N,      p = softmax of x over v
The sum is divided by N, the number of sequences, not by the number of unmasked positions
(CS231n's captioning convention: a sequence's loss is the sum over its words, and the batch
loss their mean over sequences). A masked position contributes exactly 0 to L and to dx,
whatever its scores and label.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate
from .linear import LinearCache, linear_backward, linear_forward
from .losses import _dloss

__all__ = [
    "TemporalAffineCache", "TemporalSoftmaxLossCache",
    "temporal_affine_backward", "temporal_affine_forward",
    "temporal_softmax_loss_backward", "temporal_softmax_loss_forward",
]


class TemporalAffineCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    w: np.ndarray  # (D, M)


class TemporalSoftmaxLossCache(NamedTuple):
    probs: np.ndarray  # (N, T, V), softmax of x over V
    labels: np.ndarray  # (N, T)
    mask: np.ndarray  # (N, T), booleans


def temporal_affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, TemporalAffineCache]:
    """out[n, t] = x[n, t] w + b: the linear layer on the N T rows of x, plus b.

    x: (N, T, D), w: (D, M), b: (M,), one floating dtype -> (out: (N, T, M), TemporalAffineCache).
    """
    for name, value in (("x", x), ("w", w), ("b", b)):
        _validate.float_array(name, value)
    _validate.ndim("x", x, 3, "(N, T, D)")
    _validate.ndim("w", w, 2, "(D, M)")
    _validate.ndim("b", b, 1, "(M,)")
    _validate.same_dtype("w", w, "x", x)
    _validate.same_dtype("b", b, "x", x)
    _validate.dim_equals("w", w, 0, "x", x, 2)
    _validate.dim_equals("b", b, 0, "w", w, 1)
    out, _ = linear_forward(_as_rows(x), w)
    out += b
    return out.reshape(x.shape[:2] + (w.shape[1],)), TemporalAffineCache(x, w)


def temporal_affine_backward(dout: np.ndarray, cache: TemporalAffineCache) -> tuple[np.ndarray, ...]:
    """dx = dout w^T, dw = sum over (n, t) of x[n, t]^T dout[n, t], db = sum over (n, t) of dout[n, t].

    dout: (N, T, M) -> (dx: (N, T, D), dw: (D, M), db: (M,)), in the forward's dtype.
    """
    x, w = cache
    _validate.upstream(dout, x.shape[:2] + (w.shape[1],), x.dtype)
    dout_rows = _as_rows(dout)
    # out = rows(x) w + b: every (n, t) is one more row of the linear layer
    drows, dw = linear_backward(dout_rows, LinearCache(_as_rows(x), w))
    return drows.reshape(x.shape), dw, dout_rows.sum(axis=0)


def _as_rows(a):
    """(N, T, K) as the (N T, K) matrix of its rows: a view when a is C-contiguous."""
    return a.reshape(math.prod(a.shape[:2]), a.shape[2])


def temporal_softmax_loss_forward(x: np.ndarray, *, labels: np.ndarray,
                                  mask: np.ndarray) -> tuple[np.ndarray, TemporalSoftmaxLossCache]:
    """L = (1/N) sum over unmasked (n, t) of log sum_v exp(x[n,t,v]) - x[n,t,y[n,t]].

    x: (N, T, V) scores, N >= 1, V >= 1; labels: (N, T) integers in [0, V) (at masked
    positions too); mask: (N, T) booleans, True where the position counts
    -> (loss: 0-d array of x's dtype, TemporalSoftmaxLossCache).
    """
    _validate.float_array("x", x)
    _validate.ndim("x", x, 3, "(N, T, V)")
    n, steps, vocab = x.shape
    if n == 0:
        raise ValueError(f"x has shape {x.shape} but the loss is divided by N, the number of sequences: "
                         f"at least one is needed")
    if vocab == 0:
        raise ValueError(f"x has shape {x.shape} but a softmax over V = 0 words is undefined: V >= 1 is needed")
    _validate.int_array("labels", labels, (n, steps))
    _validate.index_range("labels", labels, vocab, f"word indices, V = {vocab}")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = f"dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"mask must be a numpy.ndarray of booleans (True where a position counts), got {got}")
    if mask.shape != (n, steps):
        raise ValueError(f"mask has shape {mask.shape} but shape {(n, steps)} is expected (x's N, T)")
    # log sum_v exp(x_v) = max + log sum_v exp(x_v - max): every exponent <= 0, no overflow
    shifted = x - x.max(axis=2, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=2, keepdims=True)
    losses = np.log(sums[..., 0]) - np.take_along_axis(shifted, labels[..., None], axis=2)[..., 0]
    # summing the unmasked positions alone: a masked one adds nothing, not 0 * its loss
    return np.asarray(losses[mask].sum() / n, dtype=x.dtype), TemporalSoftmaxLossCache(exps / sums, labels, mask)


def temporal_softmax_loss_backward(dout, cache: TemporalSoftmaxLossCache) -> tuple[np.ndarray]:
    """dx[n, t] = dL m[n,t] (p[n,t] - onehot(y[n,t])) / N.

    dout: 0-d, the loss's dtype -> (dx: (N, T, V),); 0 exactly at every masked position.
    """
    probs, labels, mask = cache
    dloss = _dloss(dout, probs.dtype)
    n, steps = labels.shape
    # L = (1/N) sum of the unmasked positions' losses
    weight = np.where(mask, dloss / n, 0).astype(probs.dtype)
    # each position's loss, log sum_v exp(x_v) - x_y: p from the first term, -onehot(y) from the second
    dx = probs * weight[..., None]
    dx[np.arange(n)[:, None], np.arange(steps), labels] -= weight
    return (dx,)
