"""Transposed 2-d convolution, PyTorch's ``conv_transpose2d``.   Derivation: docs/derivations/conv_transpose2d.md

x: (N, C, H, W), w: (C, F/G, KH, KW), b: (F,), G groups (input channel c belongs to group
g(c) = c // (C/G) and feeds its F/G output channels); per spatial axis stride s, padding p,
output padding op (0 <= op < max(s, d)) and dilation d. Every input position scatters its
value, times the kernel, into the output at stride s:

    y[n, g(c) F/G + f, q] = b[..] + sum_{c, i, k : i*s + k*d - p = q} x[n, c, i] w[c, f, k]
    H_out = (H - 1) s - 2p + d (KH - 1) + op + 1                         y: (N, F, H_out, W_out)

This is the adjoint of conv2d's map from its input to its output, for the conv2d with the
same stride, padding, dilation and groups whose weight is w itself, read as (F' = C,
C'/G = F/G, KH, KW): y = T x with T = (conv2d)^T, which is why w is laid out (C, F/G, ...).
The backward therefore needs no transposed convolution at all:

    db[f]       = sum_{n, q} dy[n, f, q]                                             (F,)
    dx          = T^T dy = conv2d(dy, w): dy padded by p, correlated with w at stride s,
                  dilation d (the windows of its first H x W outputs)                (N, C, H, W)
    dw[c, f, k] = sum_{n, i} x[n, c, i] dyp[n, g(c) F/G + f, i*s + k*d]             (C, F/G, KH, KW)
                  x contracted with the same windows of the padded dy

Both are one matrix product per example and group on one im2col copy of dy's windows, the
machinery of reference/conv.py (read only, shared).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate, _windows
from . import conv as _conv

__all__ = ["ConvTransposeCache", "conv_transpose2d_backward", "conv_transpose2d_forward"]


class ConvTransposeCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W), as given
    w: np.ndarray  # (C, F/G, KH, KW)
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def conv_transpose2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, *, stride=1, padding=0,
                             output_padding=0, dilation=1, groups=1) -> tuple[np.ndarray, ConvTransposeCache]:
    """y[n, g(c) F/G + f, i*s + k*d - p] += x[n, c, i] w[c, f, k], plus b.

    x: (N, C, H, W), w: (C, F/groups, KH, KW), b: (F,), one floating dtype. stride >= 1,
    padding >= 0 (cropped from every side of the full output), output_padding (added to the
    bottom and right; 0 <= output_padding < max(stride, dilation), per axis) and
    dilation >= 1: an int or an (h, w) pair; groups divides C (and F = groups w.shape[1]).
    -> (y: (N, F, H_out, W_out), ConvTransposeCache),
       H_out = (H - 1)*stride_h - 2*pad_h + dil_h*(KH - 1) + out_pad_h + 1,  W_out likewise.
    """
    stride, padding, output_padding, dilation, groups, out = _check(
        x, w, b, stride, padding, output_padding, dilation, groups)
    padded = tuple(o + 2 * p for o, p in zip(out, padding))
    # y = crop(yp), yp = conv2d's x-gradient of "dy" = x: x spread by the stride, framed, then
    # correlated with w's flipped kernel, filters and channels swapped within each group
    spread = _conv._spread(x, padded, w.shape[2:], stride, dilation)
    yp = _conv._correlate(spread, _conv._flip(w, groups), (1, 1), dilation, groups)
    y = yp[_conv._interior(padding, out)] + b.reshape(-1, 1, 1)
    return y, ConvTransposeCache(x, w, stride, padding, output_padding, dilation, groups)


def conv_transpose2d_backward(dout: np.ndarray, cache: ConvTransposeCache
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (N, F, H_out, W_out) -> (dx: (N, C, H, W), dw: (C, F/groups, KH, KW), db: (F,)), in x's dtype."""
    x, w, stride, padding, output_padding, dilation, groups = cache
    out = _output_shape(x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation)
    n, c, h, wd = x.shape
    _validate.upstream(dout, (n, w.shape[1] * groups, *out), x.dtype)
    # y = ... + b[f] at every example and position
    db = dout.sum(axis=(0, 2, 3))
    # y = crop(yp): the cropped padding gets no gradient, so dyp is dy with p zeros around; its
    # last op rows and columns lie beyond every window of an input position (dropped, so that
    # the windows below are exactly the H x W that x's positions scatter through)
    dyp = _conv._pad(dout, padding)
    dyp = dyp[:, :, :dyp.shape[2] - output_padding[0], :dyp.shape[3] - output_padding[1]]
    cols, _ = _conv._im2col(dyp, w.shape[2:], stride, dilation, groups)  # (N, G, F/G KH KW, H W)
    # yp = T x: dx = T^T dyp, conv2d's forward with weight w, a GEMM per example and group
    dx = (w.reshape(groups, c // groups, cols.shape[2]) @ cols).reshape(x.shape)
    # yp[.., i*s + k*d] += x[.., i] w[.., k]: dw gathers x times the dy each tap reached
    dw = (x.reshape(n, groups, c // groups, h * wd) @ cols.swapaxes(2, 3)).sum(axis=0).reshape(w.shape)
    return dx, dw, db


def _output_shape(spatial, kernel, stride, padding, output_padding, dilation):
    return tuple((i - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for i, k, s, p, op, d in zip(spatial, kernel, stride, padding, output_padding, dilation))


def _check(x, w, b, stride, padding, output_padding, dilation, groups):
    """Validate; return stride, padding, output_padding and dilation per axis, groups and (H_out, W_out)."""
    for name, value in (("x", x), ("w", w), ("b", b)):
        _validate.float_array(name, value)
    _validate.ndim("x", x, 4, "(N, C, H, W)")
    _validate.ndim("w", w, 4, "(C, F/groups, KH, KW)")
    _validate.ndim("b", b, 1, "(F,)")
    _validate.same_dtype("w", w, "x", x)
    _validate.same_dtype("b", b, "x", x)
    groups = _validate.positive_int("groups", groups)
    stride = _windows.per_axis("stride", stride, 2, 1)
    padding = _windows.per_axis("padding", padding, 2, 0)
    output_padding = _windows.per_axis("output_padding", output_padding, 2, 0)
    dilation = _windows.per_axis("dilation", dilation, 2, 1)
    if min(x.shape[2:]) < 1:
        raise ValueError(f"x has shape {x.shape}: its spatial sizes H and W must be at least 1")
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"x has shape {x.shape}: its C = {c} channels must be divisible by groups = {groups}")
    _validate.dim_equals("w", w, 0, "x", x, 1)
    f = w.shape[1] * groups
    if b.shape != (f,):
        raise ValueError(f"b has shape {b.shape} but w has shape {w.shape}: b must have shape (F,) = "
                         f"({f},), F = groups * w.shape[1] = {groups} * {w.shape[1]}")
    if min(w.shape[2:]) < 1:
        raise ValueError(f"w has shape {w.shape}: every kernel size must be at least 1")
    for axis, (op, s, d) in enumerate(zip(output_padding, stride, dilation)):
        if op >= max(s, d):
            raise ValueError(f"output_padding is {output_padding} but output_padding[{axis}] must be smaller "
                             f"than stride[{axis}] = {s} or dilation[{axis}] = {d}")
    out = _output_shape(x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation)
    if min(out) < 1:
        raise ValueError(
            f"x has shape {x.shape} and w has shape {w.shape}: the output size (H - 1)*stride - 2*padding + "
            f"dilation*(K - 1) + output_padding + 1 is {out}, but must be at least 1 on each axis")
    return stride, padding, output_padding, dilation, groups, out
