"""JAX specifications of the pooling family (``reference/pooling.py``).

``max_pool2d`` and ``avg_pool2d`` are ``lax.reduce_window`` (max, and sum divided by the
window size); ``global_avg_pool`` is a ``lax.reduce_window`` sum over the whole plane.
None of them shares anything with the NumPy code (windows views, membership matrices).

Max pooling is not differentiable where a window's maximum is tied, so its strategy keeps
ties out by construction: the entries of x are distinct multiples of 2^-7, a gap wider
than the finite-difference steps move two entries apart (x +- h t moves each by ~1e-3 at
most), and exact in float32, so rounding to float32 creates no tie either. What the layer
does at a tie is pinned by tests/layers/test_pooling.py.
"""
from __future__ import annotations


import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import pooling as ref
from verification.layer import BenchCase, Hints, Layer, Mutant, Variant
from verification.strategies import arrays, distinct_arrays
from verification.tolerance import multilinear_magnitude

# (x shape, hyperparameters); a stride left out defaults to the kernel. Arrays are small:
# the shrunk failing example stays readable.
POOL_CASES = (
    # 2x2, stride 2; H = 3 and W = 5 leave the last row and column outside every window
    ((2, 2, 3, 5), {"kernel": 2}),
    # overlapping windows on both axes (stride (2, 1) under a 3x2 kernel), KH != KW, N = 1
    ((1, 2, 5, 4), {"kernel": (3, 2), "stride": (2, 1)}),
    # the kernel is the whole plane: global pooling in disguise
    ((2, 1, 2, 3), {"kernel": (2, 3)}),
    # an empty batch
    ((0, 2, 3, 3), {"kernel": 2, "stride": 1}),
)
GLOBAL_SHAPES = ((2, 3, 2, 3), (1, 2, 1, 1), (3, 1, 2, 5), (0, 2, 3, 3))

TIE_FREE_STEP = 2.0 ** -7
"""The smallest gap between two entries of max pooling's inputs (see the module docstring)."""


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _window(kernel, stride):
    k = _pair(kernel)
    return (1, 1, *k), (1, 1, *(k if stride is None else _pair(stride)))


def jax_max_pool2d(x, *, kernel, stride=None):
    return lax.reduce_window(x, -jnp.inf, lax.max, *_window(kernel, stride), "VALID")


def jax_avg_pool2d(x, *, kernel, stride=None):
    kh, kw = _pair(kernel)
    return lax.reduce_window(x, 0.0, lax.add, *_window(kernel, stride), "VALID") / (kh * kw)


def jax_global_avg_pool(x):
    h, w = x.shape[2:]
    return lax.reduce_window(x, 0.0, lax.add, (1, 1, h, w), (1, 1, 1, 1), "VALID")[:, :, 0, 0] / (h * w)


@st.composite
def max_pool_inputs(draw):
    shape, hyper = draw(st.sampled_from(POOL_CASES))
    return (draw(distinct_arrays(shape, TIE_FREE_STEP)),), dict(hyper)


@st.composite
def avg_pool_inputs(draw):
    shape, hyper = draw(st.sampled_from(POOL_CASES))
    return (draw(arrays(shape)),), dict(hyper)


@st.composite
def global_pool_inputs(draw):
    return (draw(arrays(draw(st.sampled_from(GLOBAL_SHAPES)))),), {}


def pool_bench(**hyper):
    """A feature map of a small CNN, (32, 64, 32, 32)."""
    return lambda rng: BenchCase((rng.standard_normal((32, 64, 32, 32)),), hyper)


max_pool2d = Layer("max_pool2d", ref.max_pool2d_forward, ref.max_pool2d_backward, jax_max_pool2d,
                   max_pool_inputs(), hints=Hints(per_example=True, linear_in=()), bench=pool_bench(kernel=2, stride=2))
avg_pool2d = Layer("avg_pool2d", ref.avg_pool2d_forward, ref.avg_pool2d_backward, jax_avg_pool2d,
                   avg_pool_inputs(), magnitude=multilinear_magnitude, hints=Hints(per_example=True, linear_in=(0,)),
                   bench=pool_bench(kernel=2, stride=2))
global_avg_pool = Layer("global_avg_pool", ref.global_avg_pool_forward, ref.global_avg_pool_backward,
                        jax_global_avg_pool, global_pool_inputs(), magnitude=multilinear_magnitude,
                        hints=Hints(per_example=True, linear_in=(0,)), bench=pool_bench())


# Correct variants: other ways to write the same derivative, which the verifier must accept.

def _max_pool2d_backward_loops(dout, cache):
    """Window by window: find its (first) maximum again and add dy there."""
    x, _, (kh, kw), (sh, sw) = cache
    dx = np.zeros_like(x)
    for n, c, i, j in np.ndindex(*dout.shape):
        window = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
        p, q = np.unravel_index(np.argmax(window), window.shape)
        dx[n, c, i * sh + p, j * sw + q] += dout[n, c, i, j]
    return (dx,)


def _avg_pool2d_backward_loops(dout, cache):
    x, (kh, kw), (sh, sw) = cache
    dx = np.zeros_like(x)
    for n, c, i, j in np.ndindex(*dout.shape):
        dx[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw] += dout[n, c, i, j] / (kh * kw)
    return (dx,)


def _avg_pool2d_backward_taps(dout, cache):
    """One strided += per kernel tap: for one tap, distinct windows touch distinct entries."""
    x, (kh, kw), (sh, sw) = cache
    ho, wo = dout.shape[2:]
    dx = np.zeros_like(x)
    share = dout / (kh * kw)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += share
    return (dx,)


def _global_avg_pool_backward_as_avg_pool(dout, cache):
    x = cache.x
    (dx,) = ref.avg_pool2d_backward(dout[:, :, None, None], ref.AvgPoolCache(x, x.shape[2:], (1, 1)))
    return (dx,)


VARIANTS = (
    Variant("max_pool2d", "loops", "window by window, the argmax found again from x", _max_pool2d_backward_loops),
    Variant("avg_pool2d", "loops", "window by window, dy / (KH KW) added to each entry", _avg_pool2d_backward_loops),
    Variant("avg_pool2d", "taps", "one strided add per kernel tap instead of membership matrices",
            _avg_pool2d_backward_taps),
    Variant("global_avg_pool", "as_avg_pool2d", "avg_pool2d's backward with the whole plane as the kernel",
            _global_avg_pool_backward_as_avg_pool),
)


# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _max_routed(rows_of, cols_of, *, accumulate=True):
    """max_pool2d's backward with the winner's row and column computed by the given (maybe wrong) rules."""
    def backward(dout, cache):
        x, argmax, kernel, stride = cache
        ho, wo = argmax.shape[2:]
        rows = rows_of(np.arange(ho)[:, None], argmax, kernel, stride)
        cols = cols_of(np.arange(wo), argmax, kernel, stride)
        n, c = np.indices(argmax.shape[:2])
        index = (n[..., None, None], c[..., None, None], rows, cols)
        dx = np.zeros_like(x)
        if accumulate:
            np.add.at(dx, index, dout)
        else:
            dx[index] = dout  # a plain assignment: the last overlapping window wins
        return (dx,)
    return backward


def _max_planes_mixed(dout, cache):
    """The reference's flat index with the plane n*C + c computed as c*N + n."""
    x, argmax, (_, kw), (sh, sw) = cache
    n, c, h, w = x.shape
    rows = np.arange(argmax.shape[2])[:, None] * sh + argmax // kw
    cols = np.arange(argmax.shape[3]) * sw + argmax % kw
    planes = np.arange(c).reshape(1, c, 1, 1) * n + np.arange(n).reshape(n, 1, 1, 1)
    dx = np.bincount(((planes * h + rows) * w + cols).ravel(), weights=dout.ravel(), minlength=x.size)
    return (dx.reshape(x.shape).astype(x.dtype),)


def _row(i, a, kernel, stride):
    return i * stride[0] + a // kernel[1]


def _col(j, a, kernel, stride):
    return j * stride[1] + a % kernel[1]


def _avg_with(kernel_of=lambda k: k, stride_of=lambda s, k: s, scale=True):
    """avg_pool2d's backward, dX = A_H dY A_W^T / (KH KW), with the windows or the scale (maybe) wrong."""
    def membership(size, k, s, out, dtype):
        p = np.arange(size)[:, None]
        start = np.arange(out) * s
        return ((start <= p) & (p < start + k)).astype(dtype)

    def backward(dout, cache):
        x, kernel, stride = cache
        (kh, kw), (sh, sw) = kernel_of(kernel), stride_of(stride, kernel)
        a_h = membership(x.shape[2], kh, sh, dout.shape[2], x.dtype)
        a_w = membership(x.shape[3], kw, sw, dout.shape[3], x.dtype)
        dx = a_h @ dout @ a_w.T
        return (dx / (kernel[0] * kernel[1]) if scale else dx,)
    return backward


MUTANTS = (
    Mutant("max_pool2d", "offset_transposed", "the winner's offset decoded as (a % KW, a // KW), row and column swapped",
           _max_routed(lambda i, a, k, s: i * s[0] + a % k[1], lambda j, a, k, s: j * s[1] + a // k[1]), bug='transpose'),
    Mutant("max_pool2d", "stride_ignored", "the winner placed at row i + kh, as if the stride were 1",
           _max_routed(lambda i, a, k, s: i + a // k[1], _col), bug='formula'),
    Mutant("max_pool2d", "planes_mixed", "the flat index takes plane c*N + n for n*C + c: dy lands in the wrong plane",
           _max_planes_mixed, bug='batch_mixing'),
    Mutant("max_pool2d", "overlaps_assigned", "dx[winner] = dy instead of +=: overlapping windows overwrite",
           _max_routed(_row, _col, accumulate=False), bug='partial'),
    Mutant("avg_pool2d", "missing_scale", "dy spread to the window without the 1/(KH KW)", _avg_with(scale=False), bug='factor'),
    Mutant("avg_pool2d", "stride_ignored", "windows taken at stride 1 in the backward",
           _avg_with(stride_of=lambda s, k: (1, 1)), bug='formula'),
    Mutant("avg_pool2d", "kernel_axes_swapped", "the backward's windows are KW x KH",
           _avg_with(kernel_of=lambda k: k[::-1]), bug='transpose'),
    Mutant("global_avg_pool", "missing_scale", "dx = dy broadcast, without the 1/(H W)",
           lambda dout, c: (np.broadcast_to(dout[:, :, None, None], c.x.shape).copy(),), bug='factor'),
    Mutant("global_avg_pool", "height_only", "dx = dy / H: the mean taken over the rows only",
           lambda dout, c: (np.broadcast_to(dout[:, :, None, None] / c.x.shape[2], c.x.shape).copy(),), bug='factor'),
)
