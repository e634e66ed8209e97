"""Normalisation layers: batch, layer, RMS, group and spatial batch normalisation.

Training mode: the statistics are those of the batch itself, with the biased variance
(divide by the group size n), as PyTorch's batchnorm does in training. Every layer
normalises x over groups of elements, then scales and shifts each feature (channel):

    mu = mean(x),  var = mean((x - mu)^2),  sigma = sqrt(var + eps)    per group
    xhat = (x - mu) / sigma,                y = gamma * xhat + beta

| layer             | x            | one group (the axes reduced)        | gamma, beta |
|-------------------|--------------|-------------------------------------|-------------|
| batchnorm(_alt)   | (N, D)       | a feature over the batch (N)        | (D,)        |
| spatial_batchnorm | (N, C, H, W) | a channel over (N, H, W)            | (C,)        |
| layernorm         | (N, D)       | an example over its features (D)    | (D,)        |
| groupnorm         | (N, C, H, W) | an example's C/G channels, (H, W)   | (C,)        |
| rmsnorm           | (N, D)       | an example over (D), no centring    | gamma (D,)  |

rmsnorm skips the mean: r = sqrt(mean(x^2) + eps), xhat = x / r, y = gamma * xhat.

Gradients (sums and means over a group unless said otherwise; g = gamma * dy):

    dbeta  = sum over everything but the feature axis of dy
    dgamma = sum over everything but the feature axis of dy * xhat
    dx     = (1/sigma) (g - mean(g) - xhat * mean(g * xhat))        closed form
    dx     = (1/r)     (g - xhat * mean(g * xhat))                  rmsnorm

For batchnorm gamma is constant over a group, so the closed form is the textbook
dx = (gamma/sigma)/N (N dy - sum(dy) - xhat sum(dy xhat)) (batchnorm_alt).
batchnorm_backward reaches the same numbers by walking the forward's computational
graph one node at a time (mu, x - mu, its square, var, sigma, 1/sigma, xhat, y).

Derivations: docs/derivations/batchnorm.md (the staged graph), batchnorm_alt.md (the
closed form, and why both agree), spatial_batchnorm.md, layernorm.md, groupnorm.md,
rmsnorm.md.

Every layer runs through shared helpers on a *grouped view* of x, in which one group
is a slice over ``stat_axes`` (groupnorm: x viewed as (N, G, C/G, H, W)): ``_normalise``
for every forward, ``_closed_backward`` for every backward but batchnorm's staged walk.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = [
    "NormCache",
    "batchnorm_alt_backward", "batchnorm_alt_forward", "batchnorm_backward", "batchnorm_forward",
    "groupnorm_backward", "groupnorm_forward", "layernorm_backward", "layernorm_forward",
    "rmsnorm_backward", "rmsnorm_forward",
    "spatial_batchnorm_backward", "spatial_batchnorm_forward",
]


class NormCache(NamedTuple):
    """The forward's intermediates, all in the grouped view of x (shape ``xhat.shape``)."""

    xmu: np.ndarray      # x - mu (rmsnorm: x itself), the view's shape
    inv_std: np.ndarray  # 1 / sigma (rmsnorm: 1 / r), one per group: size-1 axes at stat_axes
    xhat: np.ndarray     # xmu / sigma, the view's shape
    gamma: np.ndarray    # gamma shaped to broadcast against the view: (1, D), (1, C, 1, 1) ...
    x_shape: tuple       # x's own shape, restored for dx and expected of dout
    stat_axes: tuple     # the axes of the view one group spans
    param_axes: tuple    # the axes dgamma and dbeta sum over: all but the feature's


# Layouts: how each layer views x, which axes its statistics and its parameters reduce.

class _Layout(NamedTuple):
    view: tuple
    stat_axes: tuple
    param_axes: tuple
    gamma_view: tuple


def _rows_layout(x: np.ndarray, stat_axis: int) -> _Layout:
    """(N, D) with one gamma per feature; batchnorm reduces axis 0, layernorm axis 1."""
    return _Layout(x.shape, (stat_axis,), (0,), (1, x.shape[1]))


def _spatial_layout(x: np.ndarray) -> _Layout:
    return _Layout(x.shape, (0, 2, 3), (0, 2, 3), (1, x.shape[1], 1, 1))


def _group_layout(x: np.ndarray, groups: int) -> _Layout:
    """(N, C, H, W) viewed as (N, G, C/G, H, W): channels g*C/G ... (g+1)*C/G - 1 form group g."""
    n, c, h, w = x.shape
    per_group = c // groups
    return _Layout((n, groups, per_group, h, w), (2, 3, 4), (0, 3, 4), (1, groups, per_group, 1, 1))


# Argument checks beyond reference/_validate.py.

def _check_inputs(x, gamma, beta, eps, x_axes: tuple[str, ...]) -> float:
    """Float arrays of one dtype, x with the axes ``x_axes`` (("N", "D") ...), gamma (and beta)
    of x.shape[1] entries, eps > 0; returns eps as a Python float (a NumPy float64 eps
    would promote float32 arithmetic to float64)."""
    symbols, feature = f"({', '.join(x_axes)})", x_axes[1]
    _validate.float_array("x", x)
    _validate.ndim("x", x, len(x_axes), symbols)
    for name, param in (("gamma", gamma), ("beta", beta)):
        if param is None:  # rmsnorm has no beta
            continue
        _validate.float_array(name, param)
        _validate.ndim(name, param, 1, f"({feature},)")
        _validate.same_dtype(name, param, "x", x)
        _validate.dim_equals(name, param, 0, "x", x, 1)
    return _validate.real_in("eps", eps, 0.0, math.inf, low_open=True, high_open=True)


def _check_group_size(x: np.ndarray, layout: _Layout, what: str) -> None:
    """A group of no elements has no mean: refuse it rather than return NaN."""
    if math.prod(layout.view[a] for a in layout.stat_axes) == 0:
        raise ValueError(f"x has shape {x.shape} but {what} must be at least 1: the statistics "
                         f"would be the mean of no elements")


def _check_groups(x: np.ndarray, groups) -> int:
    groups = _validate.positive_int("groups", groups)
    if x.shape[1] % groups:
        raise ValueError(f"groups is {groups} but x has shape {x.shape}: the channel count "
                         f"C = {x.shape[1]} must be divisible by groups")
    return groups


# The shared forward and backward, on the grouped view.

def _normalise(x, gamma, beta, eps: float, layout: _Layout, *, centred: bool):
    """y = gamma * xhat + beta over the groups of ``layout``; returns (y in x's shape, NormCache).

    The variance is taken of x - mu (two passes), never as mean(x^2) - mu^2, which
    loses every digit when |mu| >> sigma (x = 1e4 + noise).
    """
    v = x.reshape(layout.view)
    xmu = v - np.mean(v, axis=layout.stat_axes, keepdims=True) if centred else v
    var = np.mean(xmu * xmu, axis=layout.stat_axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)  # eps is a Python float: float32 stays float32
    xhat = xmu * inv_std
    g = gamma.reshape(layout.gamma_view)
    out = g * xhat if beta is None else g * xhat + beta.reshape(layout.gamma_view)
    cache = NormCache(xmu, inv_std, xhat, g, x.shape, layout.stat_axes, layout.param_axes)
    return out.reshape(x.shape), cache


def _grouped_dout(dout, cache: NormCache) -> np.ndarray:
    _validate.upstream(dout, cache.x_shape, cache.xhat.dtype)
    return dout.reshape(cache.xhat.shape)


def _per_feature_sum(t: np.ndarray, cache: NormCache) -> np.ndarray:
    """Sum over every axis but the feature's: the shape of gamma, (D,) or (C,)."""
    return np.sum(t, axis=cache.param_axes).reshape(-1)


def _closed_backward(dxhat, cache: NormCache, *, centred: bool) -> np.ndarray:
    """dx = (1/sigma) (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over each group.

    ``centred=False`` (rmsnorm) drops mean(dxhat): nothing was subtracted in the forward.
    dxhat: the view's shape -> dx in x's shape.
    """
    axes = cache.stat_axes
    # The part of dxhat along xhat, which scaling x within its group cannot change.
    along = cache.xhat * np.mean(dxhat * cache.xhat, axis=axes, keepdims=True)
    if centred:  # ... and the part along the constant, which shifting x cannot change
        along = along + np.mean(dxhat, axis=axes, keepdims=True)
    return (cache.inv_std * (dxhat - along)).reshape(cache.x_shape)


def _scale_shift_backward(dout, cache: NormCache, *, centred: bool):
    """(dx, dgamma, dbeta) of y = gamma * xhat + beta through the closed form."""
    dy = _grouped_dout(dout, cache)
    dx = _closed_backward(dy * cache.gamma, cache, centred=centred)
    return dx, _per_feature_sum(dy * cache.xhat, cache), _per_feature_sum(dy, cache)


# batchnorm and batchnorm_alt: (N, D), statistics over the batch.

def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *,
                      eps: float = 1e-5) -> tuple[np.ndarray, NormCache]:
    """Batch normalisation in training mode, each feature over the batch.

    x: (N, D) with N >= 1, gamma: (D,), beta: (D,), eps > 0 -> (y: (N, D), NormCache).
    N = 1 is legal and degenerate: var = 0, xhat = 0, y = beta, and dx = 0 exactly.
    """
    eps = _check_inputs(x, gamma, beta, eps, ("N", "D"))
    layout = _rows_layout(x, 0)
    _check_group_size(x, layout, "the batch size N")
    return _normalise(x, gamma, beta, eps, layout, centred=True)


def batchnorm_backward(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dgamma, dbeta by walking the forward graph backwards, one node at a time.

    dout: (N, D) -> (dx: (N, D), dgamma: (D,), dbeta: (D,)). Each step undoes the
    forward step it names (docs/derivations/batchnorm.md); batchnorm_alt_backward gets
    the same numbers from the closed form.
    """
    dy = _grouped_dout(dout, cache)
    axes = cache.stat_axes
    n = math.prod(cache.xhat.shape[a] for a in axes)
    # y = gamma * xhat + beta
    dbeta = _per_feature_sum(dy, cache)
    dgamma = _per_feature_sum(dy * cache.xhat, cache)
    dxhat = dy * cache.gamma
    # xhat = xmu * inv_std: xmu reaches xhat directly, and through inv_std = 1/sigma
    dinv_std = np.sum(dxhat * cache.xmu, axis=axes, keepdims=True)
    dxmu = dxhat * cache.inv_std
    # inv_std = 1 / sigma
    dsigma = -dinv_std * cache.inv_std ** 2
    # sigma = sqrt(var + eps)
    dvar = 0.5 * dsigma * cache.inv_std
    # var = mean(xmu^2): each square gets dvar / n, and d(xmu^2) = 2 xmu
    dxmu = dxmu + 2.0 * cache.xmu * (dvar / n)
    # xmu = x - mu: x directly, and -mu for every element of the group
    dmu = -np.sum(dxmu, axis=axes, keepdims=True)
    # mu = mean(x): each x gets dmu / n
    dx = dxmu + dmu / n
    return dx.reshape(cache.x_shape), dgamma, dbeta


batchnorm_alt_forward = batchnorm_forward
"""The same forward as batchnorm_forward: batchnorm_alt differs in its backward only."""


def batchnorm_alt_backward(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The closed form dx = (gamma/sigma)/N (N dy - sum(dy) - xhat sum(dy xhat)).

    dout: (N, D) -> (dx: (N, D), dgamma: (D,), dbeta: (D,)); docs/derivations/batchnorm_alt.md.
    """
    return _scale_shift_backward(dout, cache, centred=True)


# spatial_batchnorm: (N, C, H, W), each channel over (N, H, W).

def spatial_batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *,
                              eps: float = 1e-5) -> tuple[np.ndarray, NormCache]:
    """Batchnorm of each channel over the batch and the image: (N, H, W) per channel.

    x: (N, C, H, W) with N*H*W >= 1, gamma: (C,), beta: (C,) -> (y: (N, C, H, W), NormCache).
    Equals batchnorm_forward on x transposed to (N*H*W, C).
    """
    eps = _check_inputs(x, gamma, beta, eps, ("N", "C", "H", "W"))
    layout = _spatial_layout(x)
    _check_group_size(x, layout, "N*H*W")
    return _normalise(x, gamma, beta, eps, layout, centred=True)


def spatial_batchnorm_backward(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed form over (N, H, W). dout: (N, C, H, W) -> (dx: (N, C, H, W), dgamma: (C,), dbeta: (C,))."""
    return _scale_shift_backward(dout, cache, centred=True)


# layernorm: (N, D), each example over its features.

def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *,
                      eps: float = 1e-5) -> tuple[np.ndarray, NormCache]:
    """Layer normalisation: each example (row) over its D features.

    x: (N, D) with D >= 1 (N = 0 allowed), gamma: (D,), beta: (D,) -> (y: (N, D), NormCache).
    """
    eps = _check_inputs(x, gamma, beta, eps, ("N", "D"))
    layout = _rows_layout(x, 1)
    _check_group_size(x, layout, "the feature count D")
    return _normalise(x, gamma, beta, eps, layout, centred=True)


def layernorm_backward(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed form along each row, gamma inside the means (it varies along the row).

    dout: (N, D) -> (dx: (N, D), dgamma: (D,), dbeta: (D,)).
    """
    return _scale_shift_backward(dout, cache, centred=True)


# groupnorm: (N, C, H, W), each example's channel groups over (C/G, H, W).

def groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, groups: int,
                      eps: float = 1e-5) -> tuple[np.ndarray, NormCache]:
    """Group normalisation: each example's C/G consecutive channels and its image together.

    x: (N, C, H, W) with C/G*H*W >= 1 (N = 0 allowed), gamma: (C,), beta: (C,),
    groups G dividing C -> (y: (N, C, H, W), NormCache). G = 1 is layernorm over
    (C, H, W) with per-channel gamma; G = C is instance normalisation.
    """
    eps = _check_inputs(x, gamma, beta, eps, ("N", "C", "H", "W"))
    layout = _group_layout(x, _check_groups(x, groups))
    _check_group_size(x, layout, "C/groups*H*W")
    return _normalise(x, gamma, beta, eps, layout, centred=True)


def groupnorm_backward(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed form over each (example, group). dout: (N, C, H, W) -> (dx, dgamma: (C,), dbeta: (C,))."""
    return _scale_shift_backward(dout, cache, centred=True)


# rmsnorm: (N, D), each row scaled by its root mean square; no centring, no beta.

def rmsnorm_forward(x: np.ndarray, gamma: np.ndarray, *, eps: float = 1e-5) -> tuple[np.ndarray, NormCache]:
    """y = gamma * x / r with r = sqrt(mean(x^2) + eps) over each row.

    x: (N, D) with D >= 1 (N = 0 allowed), gamma: (D,) -> (y: (N, D), NormCache).
    """
    eps = _check_inputs(x, gamma, None, eps, ("N", "D"))
    layout = _rows_layout(x, 1)
    _check_group_size(x, layout, "the feature count D")
    return _normalise(x, gamma, None, eps, layout, centred=False)


def rmsnorm_backward(dout: np.ndarray, cache: NormCache) -> tuple[np.ndarray, np.ndarray]:
    """dx = (1/r)(g - xhat mean(g xhat)), g = gamma dy; dgamma = sum_n dy xhat.

    dout: (N, D) -> (dx: (N, D), dgamma: (D,)).
    """
    dy = _grouped_dout(dout, cache)
    return _closed_backward(dy * cache.gamma, cache, centred=False), _per_feature_sum(dy * cache.xhat, cache)
