"""Pooling on NCHW inputs: max_pool2d, avg_pool2d and global_avg_pool.
Derivations: docs/derivations/max_pool2d.md, docs/derivations/avg_pool2d.md,
docs/derivations/global_avg_pool.md

Windows of KH x KW with stride (sh, sw) and no padding: window (i, j) covers rows
i*sh .. i*sh + KH - 1 and columns j*sw .. j*sw + KW - 1 of each (n, c) plane;
H' = 1 + (H - KH) // sh,  W' = 1 + (W - KW) // sw.

max_pool2d:  y[n, c, i, j] = max of window (i, j)
    dx[n, c, p, q] = sum of dy[n, c, i, j] over the windows whose maximum is x[n, c, p, q]
    The gradient is routed to each window's argmax; where windows overlap (stride <
    kernel) and share their maximum, their dy add up. Ties: the first maximal element in
    the window's row-major order takes the whole dy, numpy.argmax's rule and what
    jax.vjp of lax.reduce_window max does on CPU (at a tie the max is not differentiable;
    this is a choice, pinned by tests/layers/test_pooling.py).

avg_pool2d:  Y = A_H^T X A_W / (KH KW) for each (n, c) plane,
    A_H: (H, H') with A_H[p, i] = 1 if row p lies in window row i, else 0 (A_W likewise)
    dX = A_H dY A_W^T / (KH KW)      each dy spread evenly, 1/(KH KW) to every entry of its
                                     window; overlapping windows add up

global_avg_pool:  y[n, c] = sum_{p, q} x[n, c, p, q] / (H W)      (N, C, H, W) -> (N, C)
    dx[n, c, p, q] = dy[n, c] / (H W)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate, _windows

__all__ = [
    "AvgPoolCache", "GlobalAvgPoolCache", "MaxPoolCache",
    "avg_pool2d_backward", "avg_pool2d_forward", "global_avg_pool_backward", "global_avg_pool_forward",
    "max_pool2d_backward", "max_pool2d_forward",
]


class MaxPoolCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W)
    argmax: np.ndarray  # (N, C, H', W') ints: each window's winner as kh * KW + kw within the window
    kernel: tuple[int, int]  # (KH, KW)
    stride: tuple[int, int]


class AvgPoolCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W)
    kernel: tuple[int, int]
    stride: tuple[int, int]


class GlobalAvgPoolCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W)


def max_pool2d_forward(x: np.ndarray, *, kernel, stride=None) -> tuple[np.ndarray, MaxPoolCache]:
    """y[n, c, i, j] = max_{kh < KH, kw < KW} x[n, c, i*sh + kh, j*sw + kw].

    x: (N, C, H, W) floating; kernel (KH, KW) and stride (sh, sw): an int or a pair, each
    >= 1; stride defaults to the kernel (non-overlapping windows).
    -> (y: (N, C, H', W'), MaxPoolCache),  H' = 1 + (H - KH) // sh,  W' = 1 + (W - KW) // sw.
    """
    kernel, stride = _check(x, kernel, stride)
    win = _windows.windows(x, kernel, stride, (1, 1))  # (N, C, H', W', KH, KW), a view
    flat = win.reshape(*win.shape[:4], kernel[0] * kernel[1])  # one row per window (a copy)
    argmax = flat.argmax(axis=-1)  # the first maximum in row-major order on ties
    y = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return y, MaxPoolCache(x, argmax, kernel, stride)


def max_pool2d_backward(dout: np.ndarray, cache: MaxPoolCache) -> tuple[np.ndarray]:
    """dx: dy routed to each window's argmax, summed where windows share it.

    dout: (N, C, H', W') -> (dx: (N, C, H, W),), in the forward's dtype.
    """
    x, argmax, (_, kw), (sh, sw) = cache
    _validate.upstream(dout, argmax.shape, x.dtype)
    n, c, h, w = x.shape
    ho, wo = argmax.shape[2:]
    # window (i, j)'s winner sits at row i*sh + kh, column j*sw + kw of its (n, c) plane
    rows = np.arange(ho)[:, None] * sh + argmax // kw
    cols = np.arange(wo) * sw + argmax % kw
    flat = (np.arange(n * c).reshape(n, c, 1, 1) * h + rows) * w + cols
    # bincount adds the dy of every window that an entry wins; it sums in float64, and a
    # sum of at most ceil(KH/sh) ceil(KW/sw) terms is then rounded once to x's dtype
    dx = np.bincount(flat.ravel(), weights=dout.ravel(), minlength=x.size)
    return (dx.reshape(x.shape).astype(x.dtype, copy=False),)


def avg_pool2d_forward(x: np.ndarray, *, kernel, stride=None) -> tuple[np.ndarray, AvgPoolCache]:
    """Y = A_H^T X A_W / (KH KW) per (n, c): the mean of each window.

    x: (N, C, H, W) floating; kernel (KH, KW) and stride (sh, sw): an int or a pair, each
    >= 1; stride defaults to the kernel.
    -> (y: (N, C, H', W'), AvgPoolCache),  H' = 1 + (H - KH) // sh,  W' = 1 + (W - KW) // sw.
    """
    kernel, stride = _check(x, kernel, stride)
    a_h, a_w = _memberships(x.shape[2:], kernel, stride, x.dtype)
    return a_h.T @ x @ (a_w / (kernel[0] * kernel[1])), AvgPoolCache(x, kernel, stride)


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPoolCache) -> tuple[np.ndarray]:
    """dX = A_H dY A_W^T / (KH KW) per (n, c).

    dout: (N, C, H', W') -> (dx: (N, C, H, W),), in the forward's dtype.
    """
    x, kernel, stride = cache
    a_h, a_w = _memberships(x.shape[2:], kernel, stride, x.dtype)
    _validate.upstream(dout, x.shape[:2] + (a_h.shape[1], a_w.shape[1]), x.dtype)
    return (a_h @ dout @ (a_w.T / (kernel[0] * kernel[1])),)


def global_avg_pool_forward(x: np.ndarray) -> tuple[np.ndarray, GlobalAvgPoolCache]:
    """y[n, c] = the mean of x[n, c] over its H W positions.

    x: (N, C, H, W) floating, H, W >= 1 -> (y: (N, C), GlobalAvgPoolCache).
    """
    _validate.float_array("x", x)
    _validate.ndim("x", x, 4, "(N, C, H, W)")
    if min(x.shape[2:]) < 1:
        raise ValueError(f"x has shape {x.shape} but global average pooling needs H >= 1 and W >= 1")
    return x.mean(axis=(2, 3)), GlobalAvgPoolCache(x)


def global_avg_pool_backward(dout: np.ndarray, cache: GlobalAvgPoolCache) -> tuple[np.ndarray]:
    """dx[n, c, p, q] = dy[n, c] / (H W).

    dout: (N, C) -> (dx: (N, C, H, W),), in the forward's dtype.
    """
    x = cache.x
    _validate.upstream(dout, x.shape[:2], x.dtype)
    dx = np.empty(x.shape, x.dtype)  # filled, not broadcast: a broadcast view would be read-only
    dx[...] = (dout / (x.shape[2] * x.shape[3]))[:, :, None, None]
    return (dx,)


def _memberships(spatial, kernel, stride, dtype):
    """A_H (H, H') and A_W (W, W'): A[p, i] = 1 where position p lies in window i, i*s <= p < i*s + K.

    0/1 in x's dtype, so the products with them are exact and only the sums round.
    """
    def membership(size, k, s):
        p = np.arange(size)[:, None]
        start = np.arange(1 + (size - k) // s) * s
        return ((start <= p) & (p < start + k)).astype(dtype)
    return tuple(membership(size, k, s) for size, k, s in zip(spatial, kernel, stride))


def _check(x, kernel, stride):
    """Validate a windowed pooling's arguments; return kernel and stride as pairs."""
    _validate.float_array("x", x)
    _validate.ndim("x", x, 4, "(N, C, H, W)")
    kernel = _windows.per_axis("kernel", kernel, 2, 1)
    stride = kernel if stride is None else _windows.per_axis("stride", stride, 2, 1)
    _windows.output_shape(x, kernel, stride, (0, 0), (1, 1), f"kernel is {kernel}")
    return kernel, stride
