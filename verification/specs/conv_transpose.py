"""JAX specification of the transposed convolution (``reference/conv_transpose.py``): ``conv_transpose2d``.

The specification is the textbook form of a transposed convolution as a forward one: XLA's
``lax.conv_general_dilated`` over the input dilated by the stride (``lhs_dilation``: s - 1
zeros between entries), padded by d(K - 1) - p on each side (negative padding crops) and by
output_padding more at the end, with the kernel flipped and its two channel axes swapped
within each group (``feature_group_count``). The NumPy reference computes its backward from
the adjointness with conv2d instead, and its forward through conv.py's im2col, so the
forward is checked too. Stride, padding, output_padding and dilation are (h, w) pairs,
static to the oracle; the space draws them per axis, with PyTorch's constraint
output_padding < max(stride, dilation) and an output of at least one position built in.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import conv as conv_ref
from reference import conv_transpose as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space
from verification.strategies import arrays
from verification.tolerance import multilinear_magnitude


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def jax_conv_transpose2d(x, w, b, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """x (N, C, H, W), w (C, F/groups, KH, KW), b (F,) -> (N, F, H_out, W_out)."""
    s, p, op, d = (_pair(v) for v in (stride, padding, output_padding, dilation))
    c, fg, kh, kw = w.shape
    # the forward convolution's kernel: (F, C/G, KH, KW), each group's (C/G, F/G) block transposed, flipped
    kernel = jnp.flip(w.reshape(groups, c // groups, fg, kh, kw).transpose(0, 2, 1, 3, 4)
                      .reshape(groups * fg, c // groups, kh, kw), axis=(2, 3))
    frame = [(dd * (k - 1) - pp, dd * (k - 1) - pp + o) for k, pp, o, dd in zip((kh, kw), p, op, d)]
    y = lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding=frame, lhs_dilation=s,
                                 rhs_dilation=d, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                 feature_group_count=groups)
    return y + b[:, None, None]


# ----------------------------------------------------------------------------------------
# The input space.
#
# Per spatial axis: stride s, dilation d in 1..3, kernel K in 1..3, input size 1..3,
# output_padding in 0 .. max(s, d) - 1 (PyTorch's constraint), and padding in 0..3 but at
# most what leaves an output of one position, (full - 1) // 2 with full the uncropped size
# (H - 1) s + d (K - 1) + op + 1, so the constraint holds by construction. Groups 1..3 with
# 1..2 channels and filters per group; N 0..2. The largest output, 2 x 6 x 13 x 13, keeps the
# explicit Jacobian check within its memory budget.

@st.composite
def _axis(draw):
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel, size = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    full = (size - 1) * stride + dilation * (kernel - 1) + output_padding + 1
    padding = draw(st.integers(0, min(3, (full - 1) // 2)))
    return size, kernel, stride, padding, output_padding, dilation


def _config(n, c, f, groups, rows, columns):
    """A configuration from per-axis (size, kernel, stride, padding, output_padding, dilation)."""
    (h, kh, *per_h), (w, kw, *per_w) = rows, columns
    names = ("stride", "padding", "output_padding", "dilation")
    return {"N": n, "C": c, "F": f, "groups": groups, "H": h, "W": w, "KH": kh, "KW": kw,
            **{name: (a, b) for name, a, b in zip(names, per_h, per_w)}}


@st.composite
def _configs(draw):
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    return _config(draw(st.integers(0, 2)), c, f, groups, draw(_axis()), draw(_axis()))


EDGES = (
    # the bench's case shrunk: stride 2, 3x3, padding 1, output_padding 1 (16 -> 32 becomes 3 -> 6)
    _config(2, 2, 3, 1, (3, 3, 2, 1, 1, 1), (3, 3, 2, 1, 1, 1)),
    # output_padding >= stride, allowed because dilation 3 > stride 1; non-square kernel and image
    _config(1, 2, 2, 1, (2, 2, 1, 1, 2, 3), (3, 1, 1, 0, 0, 1)),
    # an empty batch, groups 2
    _config(0, 2, 4, 2, (2, 3, 2, 1, 0, 1), (2, 2, 1, 0, 0, 1)),
    # 1x1 kernel, stride 1, no padding: a channel mix at every position
    _config(2, 3, 2, 1, (3, 1, 1, 0, 0, 1), (2, 1, 1, 0, 0, 1)),
    # depthwise (groups = C = F), stride 3 with padding 0 and output_padding 2
    _config(2, 2, 2, 2, (2, 2, 3, 0, 2, 1), (1, 3, 3, 0, 0, 2)),
    # one input position, the padding crops the output to one position
    _config(1, 1, 1, 1, (1, 3, 2, 1, 0, 1), (1, 3, 1, 1, 0, 1)),
)


def _values(config):
    n, c, f, groups = (config[k] for k in ("N", "C", "F", "groups"))
    x = arrays((n, c, config["H"], config["W"]))
    w = arrays((c, f // groups, config["KH"], config["KW"]))
    hyper = {k: config[k] for k in ("stride", "padding", "output_padding", "dilation", "groups")}
    return st.tuples(x, w, arrays((f,))).map(lambda a: (a, dict(hyper)))


def _bench(rng):
    """A decoder's upsampling: N = 32, 64 -> 64 channels, 16x16 -> 32x32 by a 3x3 kernel at stride 2
    (padding 1, output_padding 1). dx and dw are each 2 N C F 9 H W flops."""
    n, c, f, h = 32, 64, 64, 16
    x = rng.standard_normal((n, c, h, h))
    w = rng.standard_normal((c, f, 3, 3)) / math.sqrt(c * 9)
    return BenchCase((x, w, rng.standard_normal(f)), {"stride": 2, "padding": 1, "output_padding": 1},
                     flops=4.0 * n * c * f * 9 * h * h)


def _bad(x=(2, 4, 3, 3), w=(4, 2, 3, 3), b=2):
    return np.ones(x), np.ones(w), np.ones(b)


ERRORS = (
    ErrorCase("w.shape[0] is not C", _bad(w=(3, 2, 3, 3)), {}, ValueError,
              r"w has shape \(3, 2, 3, 3\) but x has shape \(2, 4, 3, 3\): w.shape\[0\] must equal x.shape\[1\] = 4"),
    ErrorCase("b is not (groups * F/groups,)", _bad(b=3), {"groups": 2}, ValueError,
              r"b has shape \(3,\) but w has shape \(4, 2, 3, 3\): b must have shape \(F,\) = \(4,\)"),
    ErrorCase("groups does not divide C", _bad(x=(2, 3, 3, 3), w=(3, 2, 3, 3)), {"groups": 2}, ValueError,
              r"x has shape \(2, 3, 3, 3\): its C = 3 channels must be divisible by groups = 2"),
    ErrorCase("output_padding not below stride or dilation", _bad(), {"stride": 2, "output_padding": (1, 2)},
              ValueError, r"output_padding\[1\] must be smaller than stride\[1\] = 2 or dilation\[1\] = 1"),
    ErrorCase("an empty output", _bad(x=(2, 4, 1, 1), w=(4, 2, 1, 1)), {"padding": 1}, ValueError,
              r"the output size .* is \(-1, -1\), but must be at least 1 on each axis"),
    ErrorCase("a 3-d x", (np.ones((2, 4, 3)), *_bad()[1:]), {}, ValueError,
              r"x has shape \(2, 4, 3\) but a 4-d array \(N, C, H, W\) is expected"),
    ErrorCase("an empty image", _bad(x=(2, 4, 0, 3)), {}, ValueError,
              r"x has shape \(2, 4, 0, 3\): its spatial sizes H and W must be at least 1"),
    ErrorCase("stride 0", _bad(), {"stride": 0}, ValueError, r"stride is 0 but must be at least 1"),
    ErrorCase("mixed dtypes", (np.ones((2, 4, 3, 3), np.float32), *_bad()[1:]), {}, TypeError,
              r"w has dtype float64 but x has dtype float32"),
)


conv_transpose2d = Layer(
    "conv_transpose2d", ref.conv_transpose2d_forward, ref.conv_transpose2d_backward, jax_conv_transpose2d,
    Space(_configs(), _values, edges=EDGES), magnitude=multilinear_magnitude,
    hints=Hints(per_example=True, linear_in=(0, 1, 2)), errors=ERRORS, bench=_bench)


# ----------------------------------------------------------------------------------------
# Correct variants: other ways to write the same derivative, which the verifier must accept.

def naive_conv_transpose2d_forward(x, w, b, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """The definition: every input entry times every tap, added where it lands (loops over every term)."""
    s, p, op, d = (_pair(v) for v in (stride, padding, output_padding, dilation))
    n, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    out = tuple((i - 1) * ss - 2 * pp + dd * (k - 1) + o + 1
                for i, k, ss, pp, o, dd in zip((h, wd), (kh, kw), s, p, op, d))
    y = np.zeros((n, fg * groups, *out), x.dtype) + b.reshape(-1, 1, 1)
    for batch, channel, i, j in np.ndindex(n, c, h, wd):
        first = channel // (c // groups) * fg  # the group's first output channel
        for f, ki, kj in np.ndindex(fg, kh, kw):
            row, col = i * s[0] + ki * d[0] - p[0], j * s[1] + kj * d[1] - p[1]
            if 0 <= row < out[0] and 0 <= col < out[1]:
                y[batch, first + f, row, col] += x[batch, channel, i, j] * w[channel, f, ki, kj]
    return y, ref.ConvTransposeCache(x, w, s, p, op, d, groups)


def naive_conv_transpose2d_backward(dout, cache):
    """Each term x w of the forward, its dy read back where it landed."""
    x, w, s, p, op, d, groups = cache
    n, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for batch, channel, i, j in np.ndindex(n, c, h, wd):
        first = channel // (c // groups) * fg
        for f, ki, kj in np.ndindex(fg, kh, kw):
            row, col = i * s[0] + ki * d[0] - p[0], j * s[1] + kj * d[1] - p[1]
            if 0 <= row < dout.shape[2] and 0 <= col < dout.shape[3]:
                g = dout[batch, first + f, row, col]
                dx[batch, channel, i, j] += g * w[channel, f, ki, kj]
                dw[channel, f, ki, kj] += g * x[batch, channel, i, j]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def _backward_by_conv2d(dout, cache):
    """Both gradients from the reference conv2d itself: dx = conv2d(dy, w) (its forward), and dw
    as conv2d's weight gradient for the input dy and the output gradient x, zero-extended to
    conv2d's output size (larger than x's when output_padding >= stride)."""
    x, w, s, p, op, d, groups = cache
    dx, conv_cache = conv_ref.conv2d_forward(dout, w, np.zeros(w.shape[0], x.dtype), stride=s, padding=p,
                                             dilation=d, groups=groups)
    grown = np.zeros_like(dx)
    grown[:, :, :x.shape[2], :x.shape[3]] = x
    _, dw, db = conv_ref.conv2d_backward(grown, conv_cache)
    return np.ascontiguousarray(dx[:, :, :x.shape[2], :x.shape[3]]), dw, dout.sum(axis=(0, 2, 3))


VARIANTS = (
    Variant("conv_transpose2d", "loops", "forward and backward as explicit loops over every term",
            naive_conv_transpose2d_backward, naive_conv_transpose2d_forward),
    Variant("conv_transpose2d", "by_conv2d", "dx as conv2d's forward, dw as conv2d's weight gradient",
            _backward_by_conv2d),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _output_padding_ignored(dout, cache):
    """The backward recomputes the output size without output_padding and crops dy to it: the
    last output_padding rows and columns of dy, which p > 0 puts inside some windows, are lost."""
    op = cache.output_padding
    cropped = np.ascontiguousarray(dout[:, :, :dout.shape[2] - op[0], :dout.shape[3] - op[1]])
    grown = np.zeros_like(dout)
    grown[:, :, :cropped.shape[2], :cropped.shape[3]] = cropped
    dx, dw, _ = ref.conv_transpose2d_backward(grown, cache)
    return dx, dw, dout.sum(axis=(0, 2, 3))


def _kernel_flipped_in_dx(dout, cache):
    """dx correlates dy with the flipped kernel, as the forward's own spread-and-correlate does."""
    flipped = cache.w[:, :, ::-1, ::-1]
    _, dw, db = ref.conv_transpose2d_backward(dout, cache)
    dx, _, _ = ref.conv_transpose2d_backward(dout, cache._replace(w=np.ascontiguousarray(flipped)))
    return dx, dw, db


def _stride_ignored(dout, cache):
    """dx and dw read dy's windows at stride 1 (the first H x W of them), as if there were no stride."""
    (n, c, h, w), (_, _, kh, kw), g = cache.x.shape, cache.w.shape, cache.groups
    _, _, db = ref.conv_transpose2d_backward(dout, cache)
    cols, (oh, ow) = conv_ref._im2col(conv_ref._pad(dout, cache.padding), (kh, kw), (1, 1), cache.dilation, g)
    cols = cols.reshape(*cols.shape[:3], oh, ow)[..., :h, :w].reshape(*cols.shape[:3], h * w)
    return ((cache.w.reshape(g, c // g, -1) @ cols).reshape(cache.x.shape),
            (cache.x.reshape(n, g, c // g, h * w) @ cols.swapaxes(2, 3)).sum(axis=0).reshape(cache.w.shape), db)


def _db_over_batch_only(dout, cache):
    dx, dw, _ = ref.conv_transpose2d_backward(dout, cache)
    return dx, dw, dout[:, :, 0, 0].sum(axis=0)


MUTANTS = (
    Mutant("conv_transpose2d", "output_padding_ignored",
           "the backward crops dy to the output size without output_padding, losing its last rows and columns",
           _output_padding_ignored, bug="partial"),
    Mutant("conv_transpose2d", "kernel_flipped_in_dx", "dx correlates dy with the flipped kernel",
           _kernel_flipped_in_dx, bug="transpose"),
    Mutant("conv_transpose2d", "stride_ignored", "dx and dw read dy's windows at stride 1",
           _stride_ignored, bug="formula"),
    Mutant("conv_transpose2d", "db_first_position", "db sums dy over the batch at the first position only",
           _db_over_batch_only, bug="formula"),
)
