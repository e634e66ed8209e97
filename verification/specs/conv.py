"""JAX specifications of the convolution family (``reference/conv.py``): ``conv1d`` and ``conv2d``.

The specification is ``lax.conv_general_dilated`` (XLA's own convolution, with
``feature_group_count``, ``rhs_dilation`` and explicit padding pairs), nothing like the
NumPy im2col, so the forward is checked too.

The input space: N 0-3; C/G and F/G 1-3, then the groups G, as many as keep C and F at
most 6 (so G runs 1-6, depthwise included, and C/G > 1 with F/G > 1 and G > 1 is as
common as each alone; a dense layer has at most 3 channels and filters); per spatial axis a
kernel of 1-3 taps (1-4 for conv1d), dilation 1-3, stride 1-3 and padding 0-3, each
drawn on its own, so that every combination occurs (stride 3 with padding 2, a padding
beyond the kernel's reach, a dilation that differs between the axes); then the input
size, from the smallest that the dilated kernel fits in once padded (so the output has at
least one position, by construction) up to a few more, as far as ``JACOBIAN_ENTRIES``
allows. Every draw shrinks toward its simplest value (N 0 then 1, sizes 1, padding 0),
so a shrunk failure is small. Stride, padding, dilation and groups are static to the
oracle: each configuration compiles once. ``CONV2D_EDGES`` and ``CONV1D_EDGES`` are the
configurations every run includes, each with the reason it is there.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import conv as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space
from verification.strategies import arrays_of, rarely_zero
from verification.tolerance import multilinear_magnitude

JACOBIAN_ENTRIES = 40_000
"""The most entries the explicit Jacobian of one example may have, out.size * (x.size + w.size + b.size)."""
MAX_CHANNELS = 6

_SPATIAL = {1: ("L",), 2: ("H", "W")}
_KERNEL = {1: ("K",), 2: ("KH", "KW")}


def _per_axis(value, nd):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd


def _compact(values):
    """One int when every axis agrees (as a caller writes it), else the tuple."""
    return values[0] if len(set(values)) == 1 else tuple(values)


def jax_conv(x, w, b, *, stride=1, padding=0, dilation=1, groups=1):
    """Any number of spatial axes; x (N, C, *S), w (F, C/groups, *K), b (F,)."""
    nd = x.ndim - 2
    spatial = "HW"[:nd]
    y = lax.conv_general_dilated(
        x, w, window_strides=_per_axis(stride, nd), padding=[(p, p) for p in _per_axis(padding, nd)],
        rhs_dilation=_per_axis(dilation, nd), dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial),
        feature_group_count=groups)
    return y + jnp.expand_dims(b, tuple(range(1, nd + 1)))


# ----------------------------------------------------------------------------------------
# The input space.

def conv_config(n, c, f, spatial, kernel, *, stride=1, padding=0, dilation=1, groups=1) -> dict:
    """A configuration: sizes by name (N, C, F, H, W, KH, KW or L, K) and the hyperparameters."""
    nd = len(spatial)
    return {"N": n, "C": c, "F": f, **dict(zip(_SPATIAL[nd], spatial)), **dict(zip(_KERNEL[nd], kernel)),
            "stride": _compact(_per_axis(stride, nd)), "padding": _compact(_per_axis(padding, nd)),
            "dilation": _compact(_per_axis(dilation, nd)), "groups": groups}


def conv_case(config: dict):
    """(x shape, w shape, hyperparameters) of a configuration."""
    nd = 1 if "L" in config else 2
    spatial = tuple(config[k] for k in _SPATIAL[nd])
    kernel = tuple(config[k] for k in _KERNEL[nd])
    hyper = {key: config[key] for key in ("stride", "padding", "dilation", "groups")}
    return ((config["N"], config["C"], *spatial), (config["F"], config["C"] // config["groups"], *kernel), hyper)


def _out(spatial, kernel, stride, padding, dilation):
    return tuple(1 + (size + 2 * p - d * (k - 1) - 1) // s for size, k, s, p, d in
                 zip(spatial, kernel, stride, padding, dilation))


def _largest(fits, low: int, high: int) -> int:
    """The largest v in low .. high with fits(v); low when there is none."""
    return next((v for v in range(high, low - 1, -1) if fits(v)), low)


@st.composite
def conv_configs(draw, nd: int, max_kernel: int, max_extra: int):
    """Configurations over the whole valid space (see the module docstring)."""
    n = draw(rarely_zero(3))
    # channels and filters per group first, then the groups: a grouped layer with several
    # channels and filters per group (where they swap roles in the backward) is then common
    cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    groups = draw(st.integers(1, MAX_CHANNELS // max(cg, fg)))
    c, f = groups * cg, groups * fg
    taps = [(draw(st.integers(1, max_kernel)), draw(st.integers(1, 3)), draw(st.integers(1, 3)),
             draw(st.integers(0, 3))) for _ in range(nd)]
    kernel, dilation, stride, padding = zip(*taps)
    # the smallest size the dilated kernel fits in once padded, then up to max_extra more,
    # as far as the explicit Jacobian's out.size * (x.size + w.size + b.size) entries allow
    spatial = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, s, p in taps]

    def entries(sizes):
        out, rows = math.prod(_out(sizes, kernel, stride, padding, dilation)), max(n, 1)
        return rows * f * out * (rows * c * math.prod(sizes) + f * cg * math.prod(kernel) + f)

    for axis in range(nd):
        low = spatial[axis]
        spatial[axis] = draw(st.integers(low, _largest(
            lambda v: entries(spatial[:axis] + [v] + spatial[axis + 1:]) <= JACOBIAN_ENTRIES, low, low + max_extra)))
    return conv_config(n, c, f, tuple(spatial), kernel, stride=stride, padding=padding, dilation=dilation,
                       groups=groups)


def conv_values(config: dict):
    x_shape, w_shape, hyper = conv_case(config)
    return arrays_of(x_shape, w_shape, (w_shape[0],)).map(lambda arrays: (arrays, dict(hyper)))


CONV2D_EDGES = (
    # padding 0 (the CS231n dx_pad[:, :, p:-p] bug), H != W and KH != KW
    conv_config(2, 2, 2, (3, 4), (2, 3)),
    # stride 2, padding 1, groups 2 with two channels per group, N = 1; (H + 2 - 2) % 2 = 1:
    # the last padded row is read by no window
    conv_config(1, 4, 2, (3, 4), (2, 2), stride=2, padding=1, groups=2),
    # dilation 2 with stride (1, 2) and padding (2, 1), depthwise (groups = C = F)
    conv_config(2, 2, 2, (3, 4), (2, 2), stride=(1, 2), padding=(2, 1), dilation=2, groups=2),
    # a 1x1 kernel with stride (2, 1): a channel mix that skips every other row
    conv_config(2, 2, 3, (3, 2), (1, 1), stride=(2, 1)),
    # the kernel is the whole input: one output position, a dense layer in disguise
    conv_config(1, 2, 2, (2, 3), (2, 3)),
    # an empty batch
    conv_config(0, 2, 2, (4, 4), (3, 3), padding=1, groups=2),
    # all ones: one example, channel, filter, pixel and tap
    conv_config(1, 1, 1, (1, 1), (1, 1)),
    # square everywhere (C = F, H = W, KH = KW): a missing transpose keeps every shape
    conv_config(2, 3, 3, (3, 3), (2, 2)),
    # stride 3 with two outputs per axis and padding 1 (2p % s != 0): dy dilated by 3
    conv_config(1, 1, 2, (5, 6), (2, 2), stride=3, padding=1),
    # two groups of two channels and two filters each: filters and channels swap per group
    conv_config(2, 4, 4, (3, 3), (2, 2), groups=2),
    # padding beyond the kernel's reach (p > d(K - 1)): windows that read only zeros,
    # and a dilation that differs between the axes
    conv_config(1, 2, 1, (3, 3), (1, 2), padding=(1, 2), dilation=(1, 3)),
)
CONV1D_EDGES = (
    # stride 2, padding 0; (6 - 3) % 2 = 1: the last position is read by no window
    conv_config(2, 2, 2, (6,), (3,), stride=2),
    # dilation 2, padding 1, groups 2, N = 1
    conv_config(1, 4, 2, (5,), (2,), padding=1, dilation=2, groups=2),
    # the kernel is the whole input; two filters per group (a depthwise multiplier of 2)
    conv_config(2, 2, 4, (4,), (4,), groups=2),
    # an empty batch
    conv_config(0, 2, 2, (3,), (2,), groups=2),
    # all ones
    conv_config(1, 1, 1, (1,), (1,)),
    # stride 3, padding 2, dilation 3: three outputs
    conv_config(2, 1, 1, (8,), (2,), stride=3, padding=2, dilation=3),
    # groups 2 with two channels and two filters each; padding 2 beyond a 1-tap kernel
    conv_config(1, 4, 4, (3,), (1,), padding=2, groups=2),
)


def conv_bench(n, c, spatial, f, kernel):
    """A 'same' convolution (stride 1, padding kernel // 2); its backward, dx and dw, is
    two products of 2 N F C prod(K) prod(spatial) flops each."""
    def bench(rng):
        x = rng.standard_normal((n, c, *spatial))
        w = rng.standard_normal((f, c, *kernel)) / math.sqrt(c * math.prod(kernel))
        flops = 4.0 * n * f * c * math.prod(kernel) * math.prod(spatial)
        return BenchCase((x, w, rng.standard_normal(f)), {"padding": kernel[0] // 2}, flops=flops)
    return bench


# ----------------------------------------------------------------------------------------
# Bad calls and the messages they must raise.

def _ones(*shapes, dtype=np.float64):
    return tuple(np.ones(shape, dtype) for shape in shapes)


_X, _W, _B = (2, 3, 5, 5), (4, 3, 3, 3), (4,)
CONV2D_ERRORS = (
    ErrorCase.literal("w.shape[1] is not C / groups", _ones(_X, (4, 2, 3, 3), _B), {}, ValueError,
           "w has shape (4, 2, 3, 3) but x has shape (2, 3, 5, 5): w.shape[1] must equal C / groups = 3 / 1 = 3"),
    ErrorCase.literal("groups does not divide C", _ones(_X, (4, 1, 3, 3), _B), {"groups": 2}, ValueError,
           "x has shape (2, 3, 5, 5): its C = 3 channels must be divisible by groups = 2"),
    ErrorCase.literal("groups does not divide F", _ones((2, 4, 5, 5), (3, 2, 3, 3), (3,)), {"groups": 2}, ValueError,
           "w has shape (3, 2, 3, 3): its F = 3 filters must be divisible by groups = 2"),
    ErrorCase.literal("the kernel does not fit", _ones((1, 3, 2, 3), _W, _B), {}, ValueError,
           "x has shape (1, 3, 2, 3) but w has shape (4, 3, 3, 3): the window (3, 3) does not fit in the "
           "input's spatial size (2, 3)"),
    ErrorCase.literal("the dilated kernel does not fit the padded input", _ones((1, 3, 4, 4), _W, _B),
           {"dilation": 2, "padding": (0, 1)}, ValueError,
           "the window (3, 3) with dilation (2, 2) spans (5, 5) and does not fit in the input's spatial size "
           "(4, 4) padded by (0, 1) on each side, (4, 6)"),
    ErrorCase.literal("stride 0", _ones(_X, _W, _B), {"stride": 0}, ValueError, "stride is 0 but must be at least 1"),
    ErrorCase.literal("stride 0 on one axis", _ones(_X, _W, _B), {"stride": (1, 0)}, ValueError,
           "stride[1] is 0 but must be at least 1"),
    ErrorCase.literal("a stride of three axes", _ones(_X, _W, _B), {"stride": (1, 2, 3)}, ValueError,
           "stride is (1, 2, 3) but an int or a sequence of 2 ints (h, w) is expected"),
    ErrorCase.literal("a float stride", _ones(_X, _W, _B), {"stride": 1.5}, TypeError, "stride must be an int, got float 1.5"),
    ErrorCase.literal("negative padding", _ones(_X, _W, _B), {"padding": -1}, ValueError, "padding is -1 but must be at least 0"),
    ErrorCase.literal("dilation 0", _ones(_X, _W, _B), {"dilation": 0}, ValueError, "dilation is 0 but must be at least 1"),
    ErrorCase.literal("groups 0", _ones(_X, _W, _B), {"groups": 0}, ValueError, "groups is 0 but must be at least 1"),
    ErrorCase.literal("b does not match F", _ones(_X, _W, (3,)), {}, ValueError,
           "b has shape (3,) but w has shape (4, 3, 3, 3): b.shape[0] must equal w.shape[0] = 4"),
    ErrorCase.literal("x is 3-d", _ones((2, 3, 5), _W, _B), {}, ValueError,
           "x has shape (2, 3, 5) but a 4-d array (N, C, H, W) is expected"),
    ErrorCase.literal("w is 3-d", _ones(_X, (4, 3, 3), _B), {}, ValueError,
           "w has shape (4, 3, 3) but a 4-d array (F, C/groups, KH, KW) is expected"),
    ErrorCase.literal("an empty kernel", _ones(_X, (4, 3, 0, 3), _B), {}, ValueError,
           "w has shape (4, 3, 0, 3): every kernel size must be at least 1"),
    ErrorCase.literal("mixed precision", (np.ones(_X, np.float32), *_ones(_W, _B)), {}, TypeError,
           "w has dtype float64 but x has dtype float32"),
    ErrorCase.literal("integer x", (np.ones(_X, np.int64), *_ones(_W, _B)), {}, TypeError,
           "x has dtype int64 (shape (2, 3, 5, 5)) but float32 or float64 is expected"),
    ErrorCase.literal("float16", _ones(_X, _W, _B, dtype=np.float16), {}, TypeError,
           "x has dtype float16 (shape (2, 3, 5, 5)) but float32 or float64 is expected"),
)
CONV1D_ERRORS = (
    ErrorCase.literal("w is 4-d", _ones((2, 3, 5), (4, 3, 3, 3), (4,)), {}, ValueError,
           "w has shape (4, 3, 3, 3) but a 3-d array (F, C/groups, K) is expected"),
    ErrorCase.literal("padding for two axes", _ones((2, 3, 5), (4, 3, 3), (4,)), {"padding": (1, 1)}, ValueError,
           "padding is (1, 1) but an int or a sequence of 1 ints (l,) is expected"),
    ErrorCase.literal("the kernel does not fit", _ones((2, 3, 2), (4, 3, 3), (4,)), {}, ValueError,
           "x has shape (2, 3, 2) but w has shape (4, 3, 3): the window (3,) does not fit in the "
           "input's spatial size (2,)"),
    ErrorCase.literal("groups does not divide C", _ones((2, 3, 5), (4, 1, 3), (4,)), {"groups": 2}, ValueError,
           "x has shape (2, 3, 5): its C = 3 channels must be divisible by groups = 2"),
    ErrorCase.literal("x is 4-d", _ones((2, 3, 5, 5), (4, 3, 3), (4,)), {}, ValueError,
           "x has shape (2, 3, 5, 5) but a 3-d array (N, C, L) is expected"),
    ErrorCase.literal("float16", _ones((2, 3, 5), (4, 3, 3), (4,), dtype=np.float16), {}, TypeError,
           "x has dtype float16 (shape (2, 3, 5)) but float32 or float64 is expected"),
)


conv1d = Layer("conv1d", ref.conv1d_forward, ref.conv1d_backward, jax_conv,
               Space(conv_configs(1, max_kernel=4, max_extra=8), conv_values, edges=CONV1D_EDGES),
               magnitude=multilinear_magnitude, hints=Hints(per_example=True, linear_in=(0, 1, 2)),
               errors=CONV1D_ERRORS, bench=conv_bench(32, 64, (1024,), 64, (3,)))
conv2d = Layer("conv2d", ref.conv2d_forward, ref.conv2d_backward, jax_conv,
               Space(conv_configs(2, max_kernel=3, max_extra=5), conv_values, edges=CONV2D_EDGES),
               magnitude=multilinear_magnitude, hints=Hints(per_example=True, linear_in=(0, 1, 2)),
               errors=CONV2D_ERRORS, bench=conv_bench(32, 64, (32, 32), 64, (3, 3)))


# Correct variants: other ways to write the same derivative, which the verifier must accept.

def naive_conv_forward(x, w, b, *, stride=1, padding=0, dilation=1, groups=1):
    """The definition, one output element and one term at a time (any number of spatial axes)."""
    nd = x.ndim - 2
    s, p, d = (_per_axis(v, nd) for v in (stride, padding, dilation))
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((q, q) for q in p))
    f, cg, *kernel = w.shape
    out = tuple(1 + (n - dd * (k - 1) - 1) // ss for n, k, ss, dd in zip(xp.shape[2:], kernel, s, d))
    y = np.zeros((x.shape[0], f, *out), x.dtype)
    for n in range(x.shape[0]):
        for filt in range(f):
            first = filt // (f // groups) * cg  # the group's first input channel
            for o in np.ndindex(*out):
                total = b[filt]
                for c in range(cg):
                    for k in np.ndindex(*kernel):
                        at = tuple(oo * ss + kk * dd for oo, kk, ss, dd in zip(o, k, s, d))
                        total += w[(filt, c) + k] * xp[(n, first + c) + at]
                y[(n, filt) + o] = total
    return y, ref.ConvCache(x, w, s, p, d, groups)


def naive_conv_backward(dout, cache):
    """Each output element's dy, times the weight and the input it was computed from, added where they came from."""
    x, w, s, p, d, groups = cache
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((q, q) for q in p))
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros(w.shape[0], x.dtype)
    f, cg, *kernel = w.shape
    for n in range(x.shape[0]):
        for filt in range(f):
            first = filt // (f // groups) * cg
            for o in np.ndindex(*dout.shape[2:]):
                g = dout[(n, filt) + o]
                db[filt] += g
                for c in range(cg):
                    for k in np.ndindex(*kernel):
                        at = (n, first + c) + tuple(oo * ss + kk * dd for oo, kk, ss, dd in zip(o, k, s, d))
                        dw[(filt, c) + k] += g * xp[at]
                        dxp[at] += g * w[(filt, c) + k]
    return dxp[(slice(None),) * 2 + tuple(slice(q, q + n) for q, n in zip(p, x.shape[2:]))], dw, db


def _conv2d_backward_col2im(dout, cache):
    """dx by col2im: dcols = W^T dy per example and group, then each kernel tap's slice added back.

    A loop over the KH*KW taps (not over output positions): for one tap, distinct windows
    read distinct positions, so each strided += is conflict-free and vectorised.
    """
    x, w, (sh, sw), (ph, pw), (dh, dw), groups = cache
    n, f, ho, wo = dout.shape
    _, cg, kh, kw = w.shape
    dy = dout.reshape(n, groups, f // groups, ho * wo)
    dcols = w.reshape(groups, f // groups, cg * kh * kw).swapaxes(1, 2) @ dy  # (N, G, C/G KH KW, H' W')
    dcols = dcols.reshape(n, groups * cg, kh, kw, ho, wo)
    dxp = np.zeros((n, groups * cg, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw] += dcols[:, :, i, j]
    _, dweight, dbias = ref.conv2d_backward(dout, cache)
    return dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]], dweight, dbias


def _lift(cache):
    """conv1d's cache as conv2d's: a height of 1, with a 1-row kernel, stride 1, padding 0, dilation 1."""
    x, w, s, p, d, groups = cache
    return ref.ConvCache(x[:, :, None, :], w[:, :, None, :], (1, *s), (0, *p), (1, *d), groups)


def _conv1d_backward_as_conv2d(dout, cache):
    dx, dw, db = ref.conv2d_backward(dout[:, :, None, :], _lift(cache))
    return dx[:, :, 0, :], dw[:, :, 0, :], db


def _interleave(a, axis, zeros):
    """``zeros`` zeros between consecutive entries of ``a`` along ``axis``: a stack with zeros and a reshape."""
    if zeros == 0:
        return a
    a = np.moveaxis(a, axis, -1)
    stacked = np.concatenate([a[..., None], np.zeros(a.shape + (zeros,), a.dtype)], axis=-1)
    spread = stacked.reshape(*a.shape[:-1], a.shape[-1] * (zeros + 1))[..., :-zeros]  # none after the last
    return np.moveaxis(spread, -1, axis)


def _frame(a, axis, before, after):
    """``a`` with ``before`` zeros in front and ``after`` behind along ``axis``; a negative count crops instead."""
    a = np.moveaxis(a, axis, -1)
    padded = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(max(before, 0), max(after, 0))])
    return np.moveaxis(padded[..., max(-before, 0):padded.shape[-1] - max(-after, 0)], -1, axis)


def _dx_transposed(dout, cache, *, zeros=lambda s: s - 1, dilation=lambda d: d, flip=ref._flip, crop=True):
    """dx as one transposed convolution at x's own size, with no padded dxp to crop.

    Per axis, dy gets s - 1 zeros between its entries and d(K - 1) - p zeros in front, and
    as many behind as make S + d(K - 1) in all; correlated (stride 1, dilation d) with the
    flipped kernel, it gives dx[q] = sum over (o, k) with o*s + k*d - p = q. Where the
    padding exceeds the kernel's reach, p > d(K - 1), the count in front is negative: dy
    entries whose windows read only padding are cropped off. (The arguments replace one
    step, for the mutants below; ``crop=False`` frames with max(0, count) zeros.)
    """
    x, w, stride, padding, dil, groups = cache
    dil = dilation(dil)
    spread = dout
    for axis, (size, k, s, p, d) in enumerate(zip(x.shape[2:], w.shape[2:], stride, padding, dil), start=2):
        spread = _interleave(spread, axis, zeros(s))
        before = d * (k - 1) - p
        after = size + d * (k - 1) - before - spread.shape[axis]
        if not crop:
            before, after = max(before, 0), max(after, 0)
        spread = _frame(spread, axis, before, after)
    dx = ref._correlate(spread, flip(w, groups), (1,) * len(dil), dil, groups)
    return dx[(slice(None),) * 2 + tuple(slice(0, size) for size in x.shape[2:])]


def _with_dx(**step):
    """The reference's dw and db with dx by ``_dx_transposed`` (one step maybe replaced)."""
    def backward(dout, cache):
        _, dw, db = ref._backward(dout, cache)
        return _dx_transposed(dout, cache, **step), dw, db
    return backward


VARIANTS = (
    Variant("conv2d", "loops", "forward and backward as explicit loops over every term",
            naive_conv_backward, naive_conv_forward),
    Variant("conv1d", "loops", "forward and backward as explicit loops over every term",
            naive_conv_backward, naive_conv_forward),
    Variant("conv2d", "col2im", "dx as W^T dy scattered back tap by tap, instead of the transposed convolution",
            _conv2d_backward_col2im),
    Variant("conv1d", "as_conv2d", "conv1d's backward as conv2d's on a height of 1", _conv1d_backward_as_conv2d),
    # the correct twin of the mutants built on _dx_transposed below: each replaces one of its steps
    Variant("conv2d", "transposed_at_x_size", "dx as one transposed convolution at x's size: dy interleaved "
            "with s - 1 zeros, framed by d(K - 1) - p zeros (cropped where negative)", _with_dx()),
    Variant("conv1d", "transposed_at_x_size", "dx as one transposed convolution at x's size: dy interleaved "
            "with s - 1 zeros, framed by d(K - 1) - p zeros (cropped where negative)", _with_dx()),
)


# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.
# Each is the reference's own sequence of steps with one step wrong.

def _crop(dxp, padding, spatial):
    return dxp[ref._interior(padding, spatial)]


def _dx_steps(dout, cache, *, stride=None, dilation=None, kernel=ref._flip, crop=_crop):
    """dx by the reference's steps (spread dy, correlate with the transposed kernel, crop), one replaced."""
    x, w, s, p, d, groups = cache
    s, d = s if stride is None else stride, d if dilation is None else dilation
    padded = tuple(n + 2 * q for n, q in zip(x.shape[2:], p))
    dxp = ref._correlate(ref._spread(dout, padded, w.shape[2:], s, d), kernel(w, groups),
                         (1,) * len(s), d, groups)
    return crop(dxp, p, x.shape[2:])


def _wrong_dx(**step):
    def backward(dout, cache):
        _, dw, db = ref._backward(dout, cache)
        return _dx_steps(dout, cache, **step), dw, db
    return backward


def _flipped(w):
    return w[(slice(None),) * 2 + (slice(None, None, -1),) * (w.ndim - 2)]


def _unflipped(w, groups):
    return _flipped(ref._flip(w, groups))  # flipped twice


def _transposed_across_groups(w, groups):
    f, cg, *kernel = w.shape  # swaps F and C/G as if there were one group, then cuts into C rows
    return _flipped(w.swapaxes(0, 1).reshape(groups * cg, f // groups, *kernel))


def _cs231n_crop(dxp, padding, spatial):
    return dxp[(slice(None),) * 2 + tuple(slice(p, -p) for p in padding)]


def _dw_reshaped_not_transposed(dout, cache):
    dx, _, db = ref._backward(dout, cache)
    x, w, s, p, d, groups = cache
    cols, out = ref._im2col(ref._pad(x, p), w.shape[2:], s, d, groups)
    dy = dout.reshape(dout.shape[0], groups, w.shape[0] // groups, math.prod(out))
    taps_by_filters = (cols @ dy.swapaxes(2, 3)).sum(axis=0)  # (G, C/G prod K, F/G)
    return dx, taps_by_filters.reshape(w.shape), db


def _db_first_position(dout, cache):
    dx, dw, _ = ref._backward(dout, cache)
    return dx, dw, dout[(slice(None), slice(None)) + (0,) * (dout.ndim - 2)].sum(axis=0)


MUTANTS = (
    Mutant("conv2d", "kernel_not_flipped", "dx correlates dy with the kernel as is, not flipped",
           _wrong_dx(kernel=_unflipped), bug='transpose'),
    Mutant("conv2d", "stride_ignored_in_dx", "dy is not dilated by the stride before the transposed convolution",
           _wrong_dx(stride=(1, 1)), bug='formula'),
    Mutant("conv2d", "dilation_ignored_in_dx", "the transposed convolution uses dilation 1",
           _wrong_dx(dilation=(1, 1)), bug='formula'),
    Mutant("conv2d", "pad_slicing", "crops dx_padded[:, :, p:-p, p:-p], which is empty for p = 0 (CS231n)",
           _wrong_dx(crop=_cs231n_crop), bug='partial'),
    Mutant("conv2d", "groups_mixed", "transposes filters and channels across groups, as if there were one",
           _wrong_dx(kernel=_transposed_across_groups), bug='transpose'),
    Mutant("conv2d", "dw_reshaped_not_transposed", "dw built as (C/G KH KW, F/G) and reshaped to (F, C/G, KH, KW)",
           _dw_reshaped_not_transposed, bug='transpose'),
    Mutant("conv2d", "db_first_position", "db sums dy over the batch at the first output position only",
           _db_first_position, bug='formula'),
    Mutant("conv1d", "kernel_not_flipped", "dx correlates dy with the kernel as is, not flipped",
           _wrong_dx(kernel=_unflipped), bug='transpose'),
    Mutant("conv1d", "pad_slicing", "crops dx_padded[:, :, p:-p], which is empty for p = 0 (CS231n)",
           _wrong_dx(crop=_cs231n_crop), bug='partial'),
)


def _regrouped_by_reshape(w, groups):
    """The transposed kernel, with the grouped case's (F/G, C/G) -> (C/G, F/G) done by a reshape."""
    if groups == 1:
        return ref._flip(w, 1)
    f, cg, *kernel = w.shape
    return _flipped(w.reshape(groups * cg, f // groups, *kernel))


def _one_zero_between(stride):
    return min(stride - 1, 1)


# Mutants that only a space can catch: each is wrong only at configurations that the
# menus these spaces replaced never held (their twin is the transposed_at_x_size variant).
SPACE_MUTANTS = tuple(
    mutant for layer in ("conv1d", "conv2d") for mutant in (
        Mutant(layer, "one_zero_between_dy", "dy dilated with one zero between entries whatever the stride: "
               "right for stride 1 and 2, wrong for 3", _with_dx(zeros=_one_zero_between), bug="formula"),
        Mutant(layer, "frame_clamped_at_zero", "dy framed by max(0, d(K - 1) - p) zeros, not cropped: wrong "
               "once the padding exceeds the kernel's reach", _with_dx(crop=False), bug="formula"),
        Mutant(layer, "groups_regrouped_by_reshape", "with groups > 1 the kernel's (F/G, C/G) are swapped by a "
               "reshape, not a transpose: right while C/G = 1 or F/G = 1", _with_dx(flip=_regrouped_by_reshape),
               bug="transpose"),
    )
) + (
    Mutant("conv2d", "dilation_axes_swapped", "the transposed convolution dilates the height by the width's "
           "dilation and the width by the height's", _with_dx(dilation=lambda d: d[::-1]), bug="wrong_axis"),
)
