"""JAX specifications of the pooling family (``reference/pooling.py``).

``max_pool2d`` and ``avg_pool2d`` are ``lax.reduce_window`` (max, and sum divided by the
window size); ``global_avg_pool`` is a ``lax.reduce_window`` sum over the whole plane.
None of them shares anything with the NumPy code (windows views, membership matrices).

The input space of the windowed pools: per axis a kernel of 1-4, the stride left out (it
defaults to the kernel: windows that tile) or drawn per axis 1-4, so that windows
overlap (stride < kernel), tile, or leave gaps (stride > kernel), on each axis on its
own, square or not; 1-3 output positions per axis and 0 to stride - 1 trailing positions
that no window reads, from which the input size follows (so the output is never empty,
by construction); then N 0-3 and C 1-3, as many as keep the input at most
``MAX_POOL_ELEMENTS`` and the explicit Jacobian at most ``JACOBIAN_ENTRIES``. Kernel
and stride are static to the oracle: each configuration compiles once.

Max pooling is not differentiable where a window's maximum is tied, so its strategy keeps
ties out by construction: the entries of x are distinct multiples of 2^-7, a gap wider
than the finite-difference steps move two entries apart (x +- h t moves each by ~1e-3 at
most), and exact in float32, so rounding to float32 creates no tie either. What the layer
does at a tie is pinned by tests/layers/test_pooling.py.
"""
from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import pooling as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays, distinct_arrays, rarely_zero
from verification.tolerance import multilinear_magnitude, nonnegative_magnitude

TIE_FREE_STEP = 2.0 ** -7
"""The smallest gap between two entries of max pooling's inputs (see the module docstring)."""
MAX_POOL_ELEMENTS = 256
"""x.size at most: 256 distinct multiples of TIE_FREE_STEP fit in [-2, 2]."""
JACOBIAN_ENTRIES = 20_000
"""out.size * x.size at most, for the explicit Jacobian check."""


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _compact(pair):
    """One int when both axes agree (as a caller writes it), else the pair."""
    return pair[0] if pair[0] == pair[1] else tuple(pair)


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


# ----------------------------------------------------------------------------------------
# The input spaces.

def pool_config(n, c, spatial, kernel, stride=None) -> dict:
    """A configuration: N, C, H, W, the kernel and the stride (None: the default, the kernel)."""
    config = {"N": n, "C": c, "H": spatial[0], "W": spatial[1], "kernel": _compact(_pair(kernel))}
    if stride is not None:
        config["stride"] = _compact(_pair(stride))
    return config


def pool_hyper(config: dict) -> dict:
    return {key: config[key] for key in ("kernel", "stride") if key in config}


@st.composite
def pool_configs(draw):
    n = draw(rarely_zero(3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    # the stride left out (the simplest case) on a few draws, else drawn per axis
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4))) if draw(st.integers(0, 7)) else None
    step = kernel if stride is None else stride
    # per axis 1-3 windows, then 0 to stride - 1 trailing positions that no window reads
    spatial = tuple((draw(st.integers(1, 3)) - 1) * s + k + draw(st.integers(0, s - 1)) for k, s in zip(kernel, step))
    plane = math.prod(spatial)
    out = math.prod(1 + (size - k) // s for size, k, s in zip(spatial, kernel, step))

    def fits(c):
        planes = max(n, 1) * c
        return planes * plane <= MAX_POOL_ELEMENTS and planes ** 2 * plane * out <= JACOBIAN_ENTRIES

    c = draw(st.integers(1, next((v for v in range(3, 0, -1) if fits(v)), 1)))
    return pool_config(n, c, spatial, kernel, stride)


GLOBAL_N, GLOBAL_C = 4, 4


@st.composite
def global_pool_configs(draw):
    return {"N": draw(rarely_zero(GLOBAL_N)), "C": draw(st.integers(1, GLOBAL_C)), "H": draw(st.integers(1, 6)),
            "W": draw(st.integers(1, 6))}


def _global_bucket(arrays, hyper):
    """Hints.pad, one bucket per plane (H, W): N and C grown to GLOBAL_N and GLOBAL_C with zero planes,
    whose means are outputs of their own, cut off. The plane stays: the mean divides by H W."""
    (x,) = arrays
    return (grow(x, (GLOBAL_N, GLOBAL_C, *x.shape[2:])),), hyper


def _shape(config):
    return config["N"], config["C"], config["H"], config["W"]


def max_pool_values(config):
    hyper = pool_hyper(config)
    return distinct_arrays(_shape(config), TIE_FREE_STEP).map(lambda x: ((x,), dict(hyper)))


def avg_pool_values(config):
    hyper = pool_hyper(config)
    return arrays(_shape(config)).map(lambda x: ((x,), dict(hyper)))


def global_pool_values(config):
    return arrays(_shape(config)).map(lambda x: ((x,), {}))


POOL_EDGES = (
    # 2x2, stride 2; H = 3 and W = 5 leave the last row and column outside every window
    pool_config(2, 2, (3, 5), 2),
    # overlapping windows on both axes (stride (2, 1) under a 3x2 kernel), KH != KW, N = 1
    pool_config(1, 2, (5, 4), (3, 2), (2, 1)),
    # the kernel is the whole plane: global pooling in disguise
    pool_config(2, 1, (2, 3), (2, 3)),
    # an empty batch
    pool_config(0, 2, (3, 3), 2, 1),
    # all ones: a 1x1 window over a 1x1 plane
    pool_config(1, 1, (1, 1), 1),
    # overlapping windows with a square stride: each entry in up to four windows
    pool_config(2, 2, (4, 4), 3, 1),
    # windows overlapping along the rows only (stride (1, 2) under 2x2)
    pool_config(2, 1, (3, 5), 2, (1, 2)),
    # gaps: stride 3 under a 2x2 kernel leaves a row and a column between windows
    pool_config(1, 2, (5, 6), 2, 3),
)
GLOBAL_EDGES = (
    {"N": 2, "C": 3, "H": 2, "W": 3},
    # a 1x1 plane: the mean is the entry itself
    {"N": 1, "C": 2, "H": 1, "W": 1},
    # H = 2, W = 5: a missing factor of one axis
    {"N": 3, "C": 1, "H": 2, "W": 5},
    # an empty batch
    {"N": 0, "C": 2, "H": 3, "W": 3},
    # square: H = W and N = C, where a transposed axis keeps its shape
    {"N": 3, "C": 3, "H": 3, "W": 3},
)


def pool_bench(**hyper):
    """A feature map of a small CNN, (32, 64, 32, 32)."""
    return lambda rng: BenchCase((rng.standard_normal((32, 64, 32, 32)),), hyper)


def _error(description, x, hyper, error, message):
    return ErrorCase(description, (x,), hyper, error, re.escape(message))


def _window_errors():
    ones = np.ones((1, 1, 4, 4))
    return (
        _error("the kernel does not fit", np.ones((1, 1, 2, 5)), {"kernel": 3}, ValueError,
               "x has shape (1, 1, 2, 5) but kernel is (3, 3): the window (3, 3) does not fit in the input's "
               "spatial size (2, 5)"),
        _error("stride 0", ones, {"kernel": 2, "stride": 0}, ValueError, "stride is 0 but must be at least 1"),
        _error("a kernel of 0 on one axis", ones, {"kernel": (2, 0)}, ValueError,
               "kernel[1] is 0 but must be at least 1"),
        _error("a kernel of three axes", ones, {"kernel": (2, 2, 2)}, ValueError,
               "kernel is (2, 2, 2) but an int or a sequence of 2 ints (h, w) is expected"),
        _error("a float stride", ones, {"kernel": 2, "stride": 1.5}, TypeError, "stride must be an int, got float 1.5"),
        _error("x is 3-d", np.ones((1, 4, 4)), {"kernel": 2}, ValueError,
               "x has shape (1, 4, 4) but a 4-d array (N, C, H, W) is expected"),
        _error("integer x", np.ones((1, 1, 4, 4), np.int64), {"kernel": 2}, TypeError,
               "x has dtype int64 (shape (1, 1, 4, 4)) but float32 or float64 is expected"),
        _error("float16", np.ones((1, 1, 4, 4), np.float16), {"kernel": 2}, TypeError,
               "x has dtype float16 (shape (1, 1, 4, 4)) but float32 or float64 is expected"),
    )


GLOBAL_POOL_ERRORS = (
    _error("an empty plane", np.ones((2, 3, 0, 4)), {}, ValueError,
           "x has shape (2, 3, 0, 4) but global average pooling needs H >= 1 and W >= 1"),
    _error("x is 3-d", np.ones((2, 3, 4)), {}, ValueError,
           "x has shape (2, 3, 4) but a 4-d array (N, C, H, W) is expected"),
    _error("float16", np.ones((2, 3, 2, 2), np.float16), {}, TypeError,
           "x has dtype float16 (shape (2, 3, 2, 2)) but float32 or float64 is expected"),
)


max_pool2d = Layer("max_pool2d", ref.max_pool2d_forward, ref.max_pool2d_backward, jax_max_pool2d,
                   Space(pool_configs(), max_pool_values, edges=POOL_EDGES), magnitude=nonnegative_magnitude,
                   hints=Hints(per_example=True), errors=_window_errors(),
                   bench=pool_bench(kernel=2, stride=2))
avg_pool2d = Layer("avg_pool2d", ref.avg_pool2d_forward, ref.avg_pool2d_backward, jax_avg_pool2d,
                   Space(pool_configs(), avg_pool_values, edges=POOL_EDGES), magnitude=multilinear_magnitude,
                   hints=Hints(per_example=True, linear_in=(0,)), errors=_window_errors(),
                   bench=pool_bench(kernel=2, stride=2))
global_avg_pool = Layer("global_avg_pool", ref.global_avg_pool_forward, ref.global_avg_pool_backward,
                        jax_global_avg_pool, Space(global_pool_configs(), global_pool_values, edges=GLOBAL_EDGES),
                        magnitude=multilinear_magnitude,
                        hints=Hints(per_example=True, linear_in=(0,), pad=_global_bucket),
                        errors=GLOBAL_POOL_ERRORS, bench=pool_bench())


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


# A fast path for windows that share no entry, right as a variant, wrong in two mutants.

def _tile_row(i, a, kernel, stride):
    return i * kernel[0] + a // kernel[1]


def _tile_col(j, a, kernel, stride):
    return j * kernel[1] + a % kernel[1]


def _disjoint(kernel, stride):
    """No two windows share an entry: stride >= kernel on both axes."""
    return stride[0] >= kernel[0] and stride[1] >= kernel[1]


def _max_disjoint_fast_path(disjoint=_disjoint, *, tiles=False):
    """max_pool2d's backward with a path for windows that share no entry: there an entry wins
    one window at most, so each dy is assigned (=) to its winner; else the reference's.
    (``disjoint`` and ``tiles``, the windows placed at the kernel's pitch, are for the mutants.)"""
    assigned = _max_routed(*((_tile_row, _tile_col) if tiles else (_row, _col)), accumulate=False)

    def backward(dout, cache):
        if disjoint(cache.kernel, cache.stride):
            return assigned(dout, cache)
        return ref.max_pool2d_backward(dout, cache)
    return backward


def _avg_disjoint_blocks(*, tiles=False):
    """avg_pool2d's backward with a path for windows that share no entry: dx is a grid of
    blocks, one per window at the stride's pitch (the kernel's, if ``tiles``, for the
    mutant), each holding its dy / (KH KW) in its first KH x KW entries; else the reference's."""
    def backward(dout, cache):
        x, (kh, kw), (sh, sw) = cache
        if not _disjoint((kh, kw), (sh, sw)):
            return ref.avg_pool2d_backward(dout, cache)
        ph, pw = (kh, kw) if tiles else (sh, sw)
        n, c, h, w = x.shape
        ho, wo = dout.shape[2:]
        grid = np.zeros((n, c, ho, ph, wo, pw), x.dtype)
        grid[:, :, :, :kh, :, :kw] = (dout / (kh * kw))[:, :, :, None, :, None]
        grid = grid.reshape(n, c, ho * ph, wo * pw)
        dx = np.zeros_like(x)
        rows, cols = min(h, ho * ph), min(w, wo * pw)  # past the last window: its gap, or nothing
        dx[:, :, :rows, :cols] = grid[:, :, :rows, :cols]
        return (dx,)
    return backward


# Correct variants (the loops, taps and as_avg_pool2d above; the fast paths' twins).
VARIANTS = (
    Variant("max_pool2d", "loops", "window by window, the argmax found again from x", _max_pool2d_backward_loops),
    Variant("avg_pool2d", "loops", "window by window, dy / (KH KW) added to each entry", _avg_pool2d_backward_loops),
    Variant("avg_pool2d", "taps", "one strided add per kernel tap instead of membership matrices",
            _avg_pool2d_backward_taps),
    Variant("global_avg_pool", "as_avg_pool2d", "avg_pool2d's backward with the whole plane as the kernel",
            _global_avg_pool_backward_as_avg_pool),
    # the correct twins of the fast-path mutants below
    Variant("max_pool2d", "disjoint_fast_path", "windows that share no entry take an assignment path",
            _max_disjoint_fast_path()),
    Variant("avg_pool2d", "disjoint_blocks", "windows that share no entry: dx as a grid of blocks at the stride's pitch",
            _avg_disjoint_blocks()),
)


MUTANTS = (
    Mutant("max_pool2d", "offset_transposed", "the winner's offset decoded as (a % KW, a // KW), row and column swapped",
           _max_routed(lambda i, a, k, s: i * s[0] + a % k[1], lambda j, a, k, s: j * s[1] + a // k[1]), bug='transpose'),
    Mutant("max_pool2d", "stride_ignored", "the winner placed at row i + kh, as if the stride were 1",
           _max_routed(lambda i, a, k, s: i + a // k[1], _col), bug='transpose'),
    Mutant("max_pool2d", "planes_mixed", "the flat index takes plane c*N + n for n*C + c: dy lands in the wrong plane",
           _max_planes_mixed, bug='transpose'),
    Mutant("max_pool2d", "overlaps_assigned", "dx[winner] = dy instead of +=: overlapping windows overwrite",
           _max_routed(_row, _col, accumulate=False), bug='partial'),
    Mutant("avg_pool2d", "missing_scale", "dy spread to the window without the 1/(KH KW)", _avg_with(scale=False), bug='factor'),
    Mutant("avg_pool2d", "stride_ignored", "windows taken at stride 1 in the backward",
           _avg_with(stride_of=lambda s, k: (1, 1)), bug='formula'),
    Mutant("avg_pool2d", "kernel_axes_swapped", "the backward's windows are KW x KH",
           _avg_with(kernel_of=lambda k: k[::-1]), bug='formula'),
    Mutant("global_avg_pool", "missing_scale", "dx = dy broadcast, without the 1/(H W)",
           lambda dout, c: (np.broadcast_to(dout[:, :, None, None], c.x.shape).copy(),), bug='factor'),
    Mutant("global_avg_pool", "height_only", "dx = dy / H: the mean taken over the rows only",
           lambda dout, c: (np.broadcast_to(dout[:, :, None, None] / c.x.shape[2], c.x.shape).copy(),), bug='factor'),
)

# Mutants that only a space can catch: each is wrong only at configurations that the menu
# this space replaced never held (their twins are the fast-path variants above).
SPACE_MUTANTS = (
    Mutant("max_pool2d", "disjoint_test_with_or", "the no-overlap test reads stride >= kernel on either axis, not "
           "both: windows overlapping along one axis only assign dy (=) and lose a shared winner's other dy",
           _max_disjoint_fast_path(lambda k, s: s[0] >= k[0] or s[1] >= k[1]), bug="partial"),
    Mutant("max_pool2d", "gaps_as_tiles", "disjoint windows placed at the kernel's pitch, as if they tiled x: "
           "wrong when stride > kernel leaves gaps", _max_disjoint_fast_path(tiles=True), bug="transpose"),
    Mutant("avg_pool2d", "gaps_as_tiles", "disjoint windows' blocks laid at the kernel's pitch (np.repeat), as if "
           "they tiled x: wrong when stride > kernel leaves gaps", _avg_disjoint_blocks(tiles=True), bug="transpose"),
)
