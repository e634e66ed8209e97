"""Convolution: conv1d and conv2d, one implementation over any number of spatial axes.
Derivations: docs/derivations/conv2d.md, docs/derivations/conv1d.md

Cross-correlation, as in every framework. x: (N, C, *S), w: (F, C/G, *K), b: (F,), with S
= (L,) or (H, W) and K = (K,) or (KH, KW); G groups (filter f sees the C/G channels of its
group g(f) = f // (F/G)); per spatial axis stride s, zero padding p and dilation d; xp is
x padded:

    y[n, f, o] = b[f] + sum_{c < C/G, k} w[f, c, k] xp[n, g(f) C/G + c, o*s + k*d]
    O = 1 + (S + 2p - d(K - 1) - 1) // s                                    y: (N, F, *O)

Backward, from dy = dL/dy:

    db[f]       = sum_{n, o} dy[n, f, o]                                    (F,)
    dw[f, c, k] = sum_{n, o} dy[n, f, o] xp[n, g(f) C/G + c, o*s + k*d]     (F, C/G, *K)
                  a correlation of x with dy, over the forward's own windows
    dxp         = the full correlation of dy, dilated by s (s - 1 zeros between entries,
                  d(K - 1) around), with the kernel flipped along every spatial axis and
                  filters and channels swapped within each group: the transposed
                  convolution, which adds to each padded position the dy of every window
                  that read it, times the weight it was read with
    dx          = dxp[..., p : p + S], the padding cropped off                 (N, C, *S)

Each is one matrix product per example and group on an im2col copy of the windows: no
loop over output positions, and no Jacobian.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate, _windows

__all__ = ["ConvCache", "conv1d_backward", "conv1d_forward", "conv2d_backward", "conv2d_forward"]


class ConvCache(NamedTuple):
    x: np.ndarray  # (N, C, *S), as given
    w: np.ndarray  # (F, C/G, *K)
    stride: tuple[int, ...]  # one entry per spatial axis
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


def conv1d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, *, stride=1, padding=0, dilation=1,
                   groups=1) -> tuple[np.ndarray, ConvCache]:
    """y[n, f, o] = b[f] + sum_{c, k} w[f, c, k] xp[n, g(f) C/G + c, o*stride + k*dilation].

    x: (N, C, L), w: (F, C/groups, K), b: (F,), one floating dtype. stride >= 1, padding >= 0
    (zeros on both ends) and dilation >= 1: an int or a 1-sequence; groups divides C and F.
    -> (y: (N, F, L'), ConvCache),   L' = 1 + (L + 2*padding - dilation*(K - 1) - 1) // stride.
    """
    return _forward(x, w, b, 1, stride, padding, dilation, groups)


def conv1d_backward(dout: np.ndarray, cache: ConvCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, L') -> (dx: (N, C, L), dw: (F, C/groups, K), db: (F,)), in the forward's dtype."""
    return _backward(dout, cache)


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, *, stride=1, padding=0, dilation=1,
                   groups=1) -> tuple[np.ndarray, ConvCache]:
    """y[n, f, i, j] = b[f] + sum_{c, kh, kw} w[f, c, kh, kw] xp[n, g(f) C/G + c, i*sh + kh*dh, j*sw + kw*dw].

    x: (N, C, H, W), w: (F, C/groups, KH, KW), b: (F,), one floating dtype. stride >= 1,
    padding >= 0 (zeros on every side) and dilation >= 1: an int or an (h, w) pair; groups
    divides C and F.
    -> (y: (N, F, H', W'), ConvCache),
       H' = 1 + (H + 2*pad_h - dil_h*(KH - 1) - 1) // stride_h,  W' likewise.
    """
    return _forward(x, w, b, 2, stride, padding, dilation, groups)


def conv2d_backward(dout: np.ndarray, cache: ConvCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H', W') -> (dx: (N, C, H, W), dw: (F, C/groups, KH, KW), db: (F,)), in the forward's dtype."""
    return _backward(dout, cache)


def _forward(x, w, b, nd, stride, padding, dilation, groups):
    stride, padding, dilation, groups = _check(x, w, b, nd, stride, padding, dilation, groups)
    y = _correlate(_pad(x, padding), w, stride, dilation, groups)
    y += b.reshape((len(b),) + (1,) * nd)
    return y, ConvCache(x, w, stride, padding, dilation, groups)


def _backward(dout, cache):
    x, w, stride, padding, dilation, groups = cache
    nd = x.ndim - 2
    out = _windows.output_shape(x, w.shape[2:], stride, padding, dilation, f"w has shape {w.shape}")
    _validate.upstream(dout, (x.shape[0], w.shape[0], *out), x.dtype)
    n, f = dout.shape[:2]
    # y = ... + b[f] at every example and output position
    db = dout.sum(axis=(0, *range(2, 2 + nd)))
    # y = w . windows(xp): the forward's windows, now contracted with dy over examples and positions
    xp = _pad(x, padding)
    cols, _ = _im2col(xp, w.shape[2:], stride, dilation, groups)  # (N, G, C/G prod K, prod O)
    dy = dout.reshape(n, groups, f // groups, math.prod(out))
    dw = (dy @ cols.swapaxes(2, 3)).sum(axis=0).reshape(w.shape)
    # xp -> windows: each padded position collects the dy of the windows that read it
    spread = _spread(dout, xp.shape[2:], w.shape[2:], stride, dilation)
    dxp = _correlate(spread, _flip(w, groups), (1,) * nd, dilation, groups)
    # x -> xp: the padding is not an input, so dx is dxp's interior
    return dxp[_interior(padding, x.shape[2:])], dw, db


def _interior(padding, spatial):
    """The index of x inside xp: p : p + S on each spatial axis (not p : -p, which is empty for p = 0)."""
    return (slice(None),) * 2 + tuple(slice(p, p + s) for p, s in zip(padding, spatial))


def _pad(x, padding):
    """x with ``padding`` zeros at both ends of each spatial axis; x itself when there are none (it is only read)."""
    if not any(padding):
        return x
    xp = np.zeros(x.shape[:2] + tuple(s + 2 * p for s, p in zip(x.shape[2:], padding)), x.dtype)
    xp[_interior(padding, x.shape[2:])] = x
    return xp


def _im2col(xp, kernel, stride, dilation, groups):
    """The windows of xp (N, C, *S) as one matrix per example and group: (N, G, C/G prod K, prod O), and O.

    Row (c, k), column o holds xp[n, g C/G + c, o*s + k*d]. This copy is the layer's one
    large allocation; taps go before outputs so that its inner loop runs along an output
    row rather than over the few taps of a window.
    """
    nd = len(kernel)
    win = _windows.windows(xp, kernel, stride, dilation)  # (N, C, *O, *K), a view
    out = win.shape[2:2 + nd]
    n, c = xp.shape[:2]
    taps_first = (0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd))
    cols = win.transpose(taps_first).reshape(n, groups, c // groups * math.prod(kernel), math.prod(out))
    return cols, out


def _correlate(xp, w, stride, dilation, groups):
    """The unpadded grouped cross-correlation: xp (N, C, *S), w (F, C/G, *K) -> (N, F, *O)."""
    cols, out = _im2col(xp, w.shape[2:], stride, dilation, groups)
    f = w.shape[0]
    y = w.reshape(groups, f // groups, cols.shape[2]) @ cols  # (N, G, F/G, prod O): a GEMM per example and group
    return y.reshape(xp.shape[0], f, *out)


def _spread(dout, padded, kernel, stride, dilation):
    """dy (N, F, *O) dilated by the stride and framed by d(K - 1) zeros: (N, F, *(padded + d(K - 1))).

    dy[o] lands at d(K - 1) + o*s, so correlating this array (stride 1, dilation d) with the
    flipped kernel gives at padded position q the sum over every (o, k) with o*s + k*d = q.
    """
    lead = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    n, f = dout.shape[:2]
    spread = np.zeros((n, f) + tuple(s + m for s, m in zip(padded, lead)), dout.dtype)
    spread[(slice(None),) * 2 + tuple(slice(m, m + s * (o - 1) + 1, s)
                                      for m, s, o in zip(lead, stride, dout.shape[2:]))] = dout
    return spread


def _flip(w, groups):
    """The kernel of the transposed convolution: (F, C/G, *K) -> (C, F/G, *K), flipped on every spatial axis.

    Within a group, filters and channels swap roles (channel c gathers from the filters it
    feeds); the flip turns the forward's tap k into the offset K - 1 - k at which the spread
    dy holds the window that read position q with tap k.
    """
    f, cg, *kernel = w.shape
    swapped = w.reshape(groups, f // groups, cg, *kernel).swapaxes(1, 2).reshape(groups * cg, f // groups, *kernel)
    return swapped[(slice(None),) * 2 + (slice(None, None, -1),) * len(kernel)]


_SYMBOLS = {1: ("(N, C, L)", "(F, C/groups, K)"), 2: ("(N, C, H, W)", "(F, C/groups, KH, KW)")}


def _check(x, w, b, nd, stride, padding, dilation, groups):
    """Validate the forward's arguments; return stride, padding and dilation per axis, and groups."""
    for name, value in (("x", x), ("w", w), ("b", b)):
        _validate.float_array(name, value)
    x_symbols, w_symbols = _SYMBOLS[nd]
    _validate.ndim("x", x, nd + 2, x_symbols)
    _validate.ndim("w", w, nd + 2, w_symbols)
    _validate.ndim("b", b, 1, "(F,)")
    _validate.same_dtype("w", w, "x", x)
    _validate.same_dtype("b", b, "x", x)
    groups = _validate.positive_int("groups", groups)
    stride = _windows.per_axis("stride", stride, nd, 1)
    padding = _windows.per_axis("padding", padding, nd, 0)
    dilation = _windows.per_axis("dilation", dilation, nd, 1)
    c, f = x.shape[1], w.shape[0]
    if c % groups:
        raise ValueError(f"x has shape {x.shape}: its C = {c} channels must be divisible by groups = {groups}")
    if f % groups:
        raise ValueError(f"w has shape {w.shape}: its F = {f} filters must be divisible by groups = {groups}")
    if w.shape[1] != c // groups:
        raise ValueError(
            f"w has shape {w.shape} but x has shape {x.shape}: w.shape[1] must equal "
            f"C / groups = {c} / {groups} = {c // groups}"
        )
    _validate.dim_equals("b", b, 0, "w", w, 0)
    if min(w.shape[2:]) < 1:
        raise ValueError(f"w has shape {w.shape}: every kernel size must be at least 1")
    _windows.output_shape(x, w.shape[2:], stride, padding, dilation, f"w has shape {w.shape}")
    return stride, padding, dilation, groups
