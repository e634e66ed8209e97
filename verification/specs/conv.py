"""JAX specifications of the convolution family (``reference/conv.py``): ``conv1d`` and ``conv2d``.

The specification is ``lax.conv_general_dilated`` (XLA's own convolution, with
``feature_group_count``, ``rhs_dilation`` and explicit padding pairs), nothing like the
NumPy im2col, so the forward is checked too. Stride, padding, dilation and groups are
ints or tuples, static to the oracle: each distinct (shape, hyperparameters) pair
compiles once (~0.3 s on 2 cores), so the strategies draw from small menus of cases
that together cover the edge cases, and hypothesis varies the values.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import conv as ref
from verification.layer import BenchCase, Hints, Layer, Mutant, Variant
from verification.strategies import arrays_of
from verification.tolerance import multilinear_magnitude

# (x shape, w shape, hyperparameters); hyperparameters left out take the defaults
# (stride 1, padding 0, dilation 1, groups 1), as they would for a caller. Arrays are
# small: the shrunk failing example stays readable.
CONV2D_CASES = (
    # padding 0 (the CS231n dx_pad[:, :, p:-p] bug), H != W and KH != KW
    ((2, 2, 3, 4), (2, 2, 2, 3), {}),
    # stride 2, padding 1, groups 2 with two channels per group, N = 1; (H + 2 - 2) % 2 = 1:
    # the last padded row is read by no window
    ((1, 4, 3, 4), (2, 2, 2, 2), {"stride": 2, "padding": 1, "groups": 2}),
    # dilation 2 with stride (1, 2) and padding (2, 1), depthwise (groups = C = F)
    ((2, 2, 3, 4), (2, 1, 2, 2), {"stride": (1, 2), "padding": (2, 1), "dilation": 2, "groups": 2}),
    # a 1x1 kernel with stride (2, 1): a channel mix that skips every other row
    ((2, 2, 3, 2), (3, 2, 1, 1), {"stride": (2, 1)}),
    # the kernel is the whole input: one output position, a dense layer in disguise
    ((1, 2, 2, 3), (2, 2, 2, 3), {}),
    # an empty batch
    ((0, 2, 4, 4), (2, 1, 3, 3), {"padding": 1, "groups": 2}),
)
CONV1D_CASES = (
    # stride 2, padding 0; (6 - 3) % 2 = 1: the last position is read by no window
    ((2, 2, 6), (2, 2, 3), {"stride": 2}),
    # dilation 2, padding 1, groups 2, N = 1
    ((1, 4, 5), (2, 2, 2), {"padding": 1, "dilation": 2, "groups": 2}),
    # the kernel is the whole input; two filters per group (a depthwise multiplier of 2)
    ((2, 2, 4), (4, 1, 4), {"groups": 2}),
    # an empty batch
    ((0, 2, 3), (2, 1, 2), {"groups": 2}),
)


def _per_axis(value, nd):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd


def jax_conv(x, w, b, *, stride=1, padding=0, dilation=1, groups=1):
    """Any number of spatial axes; x (N, C, *S), w (F, C/groups, *K), b (F,)."""
    nd = x.ndim - 2
    spatial = "HW"[:nd]
    y = lax.conv_general_dilated(
        x, w, window_strides=_per_axis(stride, nd), padding=[(p, p) for p in _per_axis(padding, nd)],
        rhs_dilation=_per_axis(dilation, nd), dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial),
        feature_group_count=groups)
    return y + jnp.expand_dims(b, tuple(range(1, nd + 1)))


@st.composite
def conv_inputs(draw, cases):
    x_shape, w_shape, hyper = draw(st.sampled_from(cases))
    return draw(arrays_of(x_shape, w_shape, (w_shape[0],))), dict(hyper)


def conv_bench(n, c, spatial, f, kernel):
    """A 'same' convolution (stride 1, padding kernel // 2); its backward, dx and dw, is
    two products of 2 N F C prod(K) prod(spatial) flops each."""
    def bench(rng):
        x = rng.standard_normal((n, c, *spatial))
        w = rng.standard_normal((f, c, *kernel)) / math.sqrt(c * math.prod(kernel))
        flops = 4.0 * n * f * c * math.prod(kernel) * math.prod(spatial)
        return BenchCase((x, w, rng.standard_normal(f)), {"padding": kernel[0] // 2}, flops=flops)
    return bench


conv1d = Layer("conv1d", ref.conv1d_forward, ref.conv1d_backward, jax_conv, conv_inputs(CONV1D_CASES),
               magnitude=multilinear_magnitude, hints=Hints(per_example=True, linear_in=(0, 1, 2)),
               bench=conv_bench(32, 64, (1024,), 64, (3,)))
conv2d = Layer("conv2d", ref.conv2d_forward, ref.conv2d_backward, jax_conv, conv_inputs(CONV2D_CASES),
               magnitude=multilinear_magnitude, hints=Hints(per_example=True, linear_in=(0, 1, 2)),
               bench=conv_bench(32, 64, (32, 32), 64, (3, 3)))


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


VARIANTS = (
    Variant("conv2d", "loops", "forward and backward as explicit loops over every term",
            naive_conv_backward, naive_conv_forward),
    Variant("conv1d", "loops", "forward and backward as explicit loops over every term",
            naive_conv_backward, naive_conv_forward),
    Variant("conv2d", "col2im", "dx as W^T dy scattered back tap by tap, instead of the transposed convolution",
            _conv2d_backward_col2im),
    Variant("conv1d", "as_conv2d", "conv1d's backward as conv2d's on a height of 1", _conv1d_backward_as_conv2d),
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
           _wrong_dx(kernel=_unflipped), bug='formula'),
    Mutant("conv2d", "stride_ignored_in_dx", "dy is not dilated by the stride before the transposed convolution",
           _wrong_dx(stride=(1, 1)), bug='formula'),
    Mutant("conv2d", "dilation_ignored_in_dx", "the transposed convolution uses dilation 1",
           _wrong_dx(dilation=(1, 1)), bug='formula'),
    Mutant("conv2d", "pad_slicing", "crops dx_padded[:, :, p:-p, p:-p], which is empty for p = 0 (CS231n)",
           _wrong_dx(crop=_cs231n_crop), bug='partial'),
    Mutant("conv2d", "groups_mixed", "transposes filters and channels across groups, as if there were one",
           _wrong_dx(kernel=_transposed_across_groups), bug='formula'),
    Mutant("conv2d", "dw_reshaped_not_transposed", "dw built as (C/G KH KW, F/G) and reshaped to (F, C/G, KH, KW)",
           _dw_reshaped_not_transposed, bug='transpose'),
    Mutant("conv2d", "db_first_position", "db sums dy over the batch at the first output position only",
           _db_first_position, bug='partial'),
    Mutant("conv1d", "kernel_not_flipped", "dx correlates dy with the kernel as is, not flipped",
           _wrong_dx(kernel=_unflipped), bug='formula'),
    Mutant("conv1d", "pad_slicing", "crops dx_padded[:, :, p:-p], which is empty for p = 0 (CS231n)",
           _wrong_dx(crop=_cs231n_crop), bug='partial'),
)
