"""Softmax and log-softmax along one axis.
Derivations: docs/derivations/softmax.md, docs/derivations/log_softmax.md

x, y, dout, dx all have one shape, any rank >= 1; ``axis`` (keyword-only, default -1)
is the axis of the C classes, and every sum below runs along it, one per slice.

softmax:      y_i = e^(x_i) / sum_k e^(x_k)
    dx = y * (dout - sum(dout * y))
log_softmax:  y_i = x_i - log sum_k e^(x_k)
    dx = dout - softmax(x) * sum(dout),     softmax(x) = e^y, cached by the forward

Both forwards first subtract m = max_k x_k from the slice: the function does not change
(e^(x_i - m) / sum_k e^(x_k - m) is the same fraction), but no exponential can overflow
(the largest is e^0 = 1) and the sum is at least 1, so logits of +-1000 are as safe as
logits of 1. Neither backward forms the C x C Jacobian diag(y) - y y^T.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = [
    "LogSoftmaxCache", "SoftmaxCache",
    "log_softmax_backward", "log_softmax_forward", "softmax_backward", "softmax_forward",
]


class SoftmaxCache(NamedTuple):
    y: np.ndarray  # the probabilities, x's shape
    axis: int


class LogSoftmaxCache(NamedTuple):
    probs: np.ndarray  # softmax(x) = e^y, x's shape: what the backward needs, rather than y
    axis: int


def _checked_axis(axis, x: np.ndarray) -> int:
    """``axis`` as a non-negative int naming one of x's axes."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__} {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"axis is {axis} but x has shape {x.shape}: axis must lie in [{-x.ndim}, {x.ndim})"
        )
    return int(axis) % x.ndim


def _shifted(x, axis) -> tuple[np.ndarray, int]:
    """Validate, then x - max over the axis."""
    _validate.float_array("x", x)
    _validate.min_ndim("x", x, 1, "(..., C, ...)")
    axis = _checked_axis(axis, x)
    if x.shape[axis] == 0:  # a distribution over no classes: an upstream bug, not an empty batch
        raise ValueError(f"x has shape {x.shape} but axis {axis} is empty: at least one class is needed")
    return x - np.max(x, axis=axis, keepdims=True), axis


def softmax_forward(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray, SoftmaxCache]:
    """y = e^(x - m) / sum e^(x - m) along ``axis``, m the max along it.

    x: any shape of rank >= 1 -> (y: x's shape, SoftmaxCache).
    """
    shifted, axis = _shifted(x, axis)
    e = np.exp(shifted)
    y = e / np.sum(e, axis=axis, keepdims=True)
    return y, SoftmaxCache(y, axis)


def softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> tuple[np.ndarray]:
    """dx = y * (dout - sum(dout * y)), the sum along the axis, kept for broadcasting.

    dout: y's shape -> (dx: y's shape,).
    """
    y, axis = cache
    _validate.upstream(dout, y.shape, y.dtype)
    dx = dout - np.sum(dout * y, axis=axis, keepdims=True)
    dx *= y  # in place: one new array of x's size fewer than y * (...)
    return (dx,)


def log_softmax_forward(x: np.ndarray, *, axis: int = -1) -> tuple[np.ndarray, LogSoftmaxCache]:
    """y = (x - m) - log sum e^(x - m) along ``axis``, m the max along it; caches the
    probabilities e^(x - m) / sum e^(x - m) = e^y, from the exponentials y is made of.

    x: any shape of rank >= 1 -> (y: x's shape, LogSoftmaxCache). Caching them costs the
    forward one division and spares the backward an exponential of every entry.
    """
    shifted, axis = _shifted(x, axis)
    probs = np.exp(shifted)
    total = np.sum(probs, axis=axis, keepdims=True)
    y = shifted - np.log(total)
    probs /= total
    return y, LogSoftmaxCache(probs, axis)


def log_softmax_backward(dout: np.ndarray, cache: LogSoftmaxCache) -> tuple[np.ndarray]:
    """dx = dout - p * sum(dout), p = softmax(x) = e^y as cached, the sum along the axis.

    dout: y's shape -> (dx: y's shape,).
    """
    probs, axis = cache
    _validate.upstream(dout, probs.shape, probs.dtype)
    dx = probs * np.sum(dout, axis=axis, keepdims=True)
    # In place: one new array of x's size, not two. With two, glibc hands memory back to the OS
    # and every call page-faults it in again (~1000 faults, 3x the time at (256, 4096) float64).
    np.subtract(dout, dx, out=dx)
    return (dx,)
