"""JAX specifications of the normalisation family (``reference/normalisation.py``).

batchnorm, batchnorm_alt, spatial_batchnorm, layernorm, groupnorm and rmsnorm, in training
mode (batch statistics, biased variance). The forwards are written from the textbook
definitions with ``jnp.mean``, ``jnp.var`` and ``lax.rsqrt`` on each layer's own axes
(groupnorm through a (G, C, H, W) mask of its groups' members), not through the reference's
shared grouped view. ``jax.nn.standardize`` is avoided on purpose: it takes the variance as
mean(x^2) - mean(x)^2, whose float64 rounding error grows as (|mean|/sigma)^2 and would
make the oracle, not the layer, the inaccurate side on offset inputs.

Each forward takes an oracle-only keyword the NumPy forward never sees (None by default):
``where``, the elements the statistics run over, or groupnorm's ``members``. The buckets
(``Hints.pad``, at the end of the input spaces) use it to leave their padding out.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import normalisation as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays, floats

# ----------------------------------------------------------------------------------------
# Independent forwards.

def jax_batchnorm(x, gamma, beta, *, eps, where=None):
    mean, var = jnp.mean(x, axis=0, where=where), jnp.var(x, axis=0, where=where)
    return (x - mean) * lax.rsqrt(var + eps) * gamma + beta


def jax_spatial_batchnorm(x, gamma, beta, *, eps, where=None):
    axes = (0, 2, 3)
    mean, var = jnp.mean(x, axis=axes, keepdims=True, where=where), jnp.var(x, axis=axes, keepdims=True, where=where)
    return (x - mean) * lax.rsqrt(var + eps) * gamma[:, None, None] + beta[:, None, None]


def jax_layernorm(x, gamma, beta, *, eps, where=None):
    mean, var = jnp.mean(x, axis=-1, keepdims=True, where=where), jnp.var(x, axis=-1, keepdims=True, where=where)
    return gamma * (x - mean) / jnp.sqrt(var + eps) + beta


def _group_members(shape, groups) -> np.ndarray:
    """(G, C, H, W) booleans for x of shape (N, C, H, W): group g holds channels g C/G to
    (g + 1) C/G - 1, every pixel of them."""
    _, c, h, w = shape
    channel_group = np.arange(c) // (c // groups)
    return np.broadcast_to((channel_group == np.arange(groups)[:, None])[:, :, None, None], (groups, c, h, w))


def _group_mean(t, members):
    """Each element of t (N, C, H, W) replaced by the mean of its group (0 for an element of no group)."""
    weights = members.astype(t.dtype)
    sizes = jnp.maximum(jnp.sum(weights, axis=(1, 2, 3)), 1.0)  # a group of no element is empty, not 0/0
    return jnp.einsum("ng,gchw->nchw", jnp.einsum("nchw,gchw->ng", t, weights) / sizes, weights)


def jax_groupnorm(x, gamma, beta, *, eps, groups=None, members=None):
    if members is None:
        members = _group_members(x.shape, groups)
    mean = _group_mean(x, members)
    xhat = (x - mean) * lax.rsqrt(_group_mean(jnp.square(x - mean), members) + eps)
    return xhat * gamma[:, None, None] + beta[:, None, None]


def jax_rmsnorm(x, gamma, *, eps, where=None):
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True, where=where) + eps) * gamma


# ----------------------------------------------------------------------------------------
# The error magnitude.
#
# The default scale |J|^T |dY| is blind to these layers' rounding error: the closed form
# dx = (1/sigma)(g - mean(g) - xhat mean(g xhat)), g = gamma dy, is a difference of terms
# of size |g|/sigma whose result can be far smaller (batchnorm with N = 2: J = 0 up to eps,
# yet the computed dx is the rounding residue of those terms). So the magnitude sums the
# absolute values of every term a backward adds up, plus the first-order effect of the
# rounding of the statistics, u = unit roundoff, per group:
#
# 1. The terms. The closed form adds |g_i|, mean|g| and |xhat_i| mean|g xhat|. The staged
#    backward (batchnorm.md) forms dx1 = g/sigma - xhat mean(g xhat)/sigma, then
#    dx = dx1 - mean(dx1), whose mean adds mean|g| + mean|xhat| mean|g xhat|. Both are
#    correct derivations, so the magnitude is the union:
#        S_dx = (|g_i| + mean|g| + (|xhat_i| + mean|xhat|) mean|g xhat|) / sigma.
# 2. The mean. mu is a sum of the group's x: its computed value is off by
#    delta ~ u mean|x|, so every xhat of the group shifts by the same c = delta/sigma,
#    c ~ u m with m = mean|x|/sigma (>> 1 when |mu| >> sigma: x = 1e4 + noise). A shift
#    c of xhat changes the closed form by -(c/sigma)(mean(g xhat) + xhat_i mean(g)) + O(c^2),
#    so S_dx gains m (mean|g xhat| + |xhat_i| mean|g|) / sigma, and xhat itself, hence
#    the output and dgamma, gains m next to |xhat|. The O(c^2) term is left out: the bound
#    is first order in u m. The strategy keeps m <= ~130, so c <~ 3e-5 in float32 and the
#    c^2 term stays below 1e-3 tolerance units.
# 3. The variance. It is the mean of squares of x - mu, computed after the subtraction
#    (two passes), so its relative error is ~u: the shift c moves it by sigma^2 c^2 only.
#    A relative error r of sigma scales xhat by (1 - r); the closed form then changes by
#    (2r/sigma) xhat_i mean(g xhat), inside the |xhat_i| mean|g xhat| term of 1.
#    (A one-pass mean(x^2) - mu^2 has relative error u m^2, not covered: such code is
#    numerically unstable, and rejecting it on offset inputs is right; it is not in the
#    mutant library because how far it lands outside the bound depends on the drawn m.)
# 4. dgamma = sum dy xhat: terms |dy| (|xhat| + m); dbeta = sum dy: terms |dy|;
#    y = gamma xhat + beta: terms |gamma| (|xhat| + m) + |beta|.
#
# rmsnorm subtracts no mean: no mean(g) term, no mean(dx1) (its staged backward ends
# at dx1), and m = 0, as x / r has only relative errors ~u.
#
# What C = 8 (tolerance.C) absorbs: each term is a product of a few rounded factors, the
# statistics among them (1/sigma carries the error of a mean of n squares), so a term's
# own relative error is several u, not one, and grows slowly with the group size n
# (log2 n for pairwise sums, sqrt(n) for random-sign rounding). For the old menus' n <= 8
# the measured worst was 0.64 units (rmsnorm, whose S has no slack terms: with gamma_i = 0,
# S_dx is the single product |xhat_i| mean|g xhat| / r) and 0.22 for the centred layers.
# Over the spaces below (groups of up to 24 elements for batchnorm, 12 along a row, 64 for
# spatial_batchnorm, 128 for groupnorm), 2 seeds x 150 examples per layer and dtype: 0.48
# (rmsnorm) and 0.29 (the centred layers).

def _normalisation_magnitude(group_mean, *, centred):
    """The magnitude for a layer normalising over the groups ``group_mean`` averages.

    ``group_mean(t, hyper)``: each element replaced by the mean of its group (t's shape).
    Every layer here keeps its feature (channel) axis at 1: gamma and beta broadcast
    along it, and dgamma, dbeta sum over the others.
    """
    def magnitude(f, arrays, hyper, dout):
        x, gamma = arrays[0], arrays[1]
        mean = lambda t: group_mean(t, hyper)  # noqa: E731
        channels = (1, gamma.shape[0]) + (1,) * (x.ndim - 2)
        per_channel = lambda t: jnp.sum(t, axis=(0, *range(2, t.ndim)))  # noqa: E731
        abs_gamma, abs_dout = jnp.abs(gamma).reshape(channels), jnp.abs(dout)

        d = x - mean(x) if centred else x
        sigma = jnp.sqrt(mean(d * d) + hyper["eps"])
        abs_xhat = jnp.abs(d) / sigma
        abs_g = abs_gamma * abs_dout
        g_xhat = mean(abs_g * abs_xhat)  # mean|g xhat|
        dx = abs_g + abs_xhat * g_xhat
        m = 0.0
        if centred:
            m = mean(jnp.abs(x)) / sigma
            mean_g = mean(abs_g)
            dx = dx + mean_g + mean(abs_xhat) * g_xhat + m * (g_xhat + abs_xhat * mean_g)
        out = abs_gamma * (abs_xhat + m)
        grads = [dx / sigma, per_channel(abs_dout * (abs_xhat + m))]
        if len(arrays) == 3:
            out = out + jnp.abs(arrays[2]).reshape(channels)
            grads.append(per_channel(abs_dout))
        return out, tuple(grads)

    return magnitude


def _mean_over(axes):
    def group_mean(t, hyper):
        return jnp.broadcast_to(jnp.mean(t, axis=axes, keepdims=True, where=hyper.get("where")), t.shape)
    return group_mean


def _group_mean_groupnorm(t, hyper):
    members = hyper.get("members")
    return _group_mean(t, _group_members(t.shape, hyper["groups"]) if members is None else members)


_batch_magnitude = _normalisation_magnitude(_mean_over((0,)), centred=True)
_spatial_magnitude = _normalisation_magnitude(_mean_over((0, 2, 3)), centred=True)
_row_magnitude = _normalisation_magnitude(_mean_over((1,)), centred=True)
_group_magnitude = _normalisation_magnitude(_group_mean_groupnorm, centred=True)
_rms_magnitude = _normalisation_magnitude(_mean_over((1,)), centred=False)


# ----------------------------------------------------------------------------------------
# The input spaces.
#
# x is built, not filtered: x = scale * (shift + s * a), with a in [0.25, 2] drawn per
# element and s = +-1 alternating along every axis (a checkerboard). Each group of two or
# more elements then has values on both sides of scale * shift, so its variance is at
# least ~scale^2/16: never the accidental 0 of a constant column, whose mean's rounding
# (relative to sigma = sqrt(eps)) the first-order bound does not cover. Small variance
# comes on purpose: scale down to 1e-3 against eps up to 0.1 gives var << eps. The shift
# (|shift| <= 30, so mean|x|/sigma <= ~130) exercises the mean's rounding term. Groups of
# one element (batchnorm N = 1, layernorm D = 1, groupnorm G = C with H = W = 1) are the
# deliberate degenerate case: var = 0 exactly, y = beta, dx = 0.
#
# The shapes: (N, D) with N 1-24 (batchnorm) or 0-23 (layernorm, rmsnorm: an empty batch
# is legal there) and D 1-16, D = N a third of the time when N <= 12 (square: a missing
# transpose keeps every shape); (N, C, H, W) with N and C 1-4, H and W 1-6; groupnorm's (N, C, H, W, G)
# with N 0-4, C 1-8 and any divisor G of it, H and W 1-4, at most GROUP_MAX_SIZE elements.
# Two sides are the whole configuration of the (N, D) layers: small ranges would be a few
# dozen shapes, each seen in every run; these reach well over 200 in 20 seeds of 30 draws (D
# up to 12 and H, W up to 4 reached 198-203), while dY/dx, computed in the largest bucket
# (below), stays under (24 * 16)^2 = 147,456 entries (331,776 spatial; 262,144 groupnorm,
# whose bucket holds every N, C, H and W of its space).

SHIFT = 30.0
ROWS, FEATURES = 24, 16
"""The largest (N, D) of the (N, D) layers."""
SIDE = 4
"""The largest N and C of an (N, C, H, W) x (groupnorm: N, H and W; its channels below)."""
SPATIAL_SIDE = 6
"""The largest H and W of spatial_batchnorm's x."""
GROUP_CHANNELS = 8
GROUP_MAX_SIZE = 160


def _side(draw, low: int, high: int) -> int:
    """An int in [low, high] drawn as low + 2 * steps + (0 or 1): shrinking lowers it two at a time,
    keeping its parity, so a failure that needs an odd batch (an uneven split) still shrinks
    to the smallest such batch, where lowering one at a time would stop at the first odd one."""
    steps = draw(st.integers(0, (high - low - 1) // 2))
    return low + 2 * steps + draw(st.integers(0, 1))


def _rows(low_n):
    """(N, D), D = N a third of the time when 1 <= N <= 12. Every draw is made whatever the
    others are, so that the shrinker can lower N without the rest changing meaning."""
    @st.composite
    def configs(draw):
        square, n, d = draw(st.integers(0, 2)) == 2, _side(draw, low_n, ROWS), _side(draw, 1, FEATURES)
        return {"shape": (n, n if square and 1 <= n <= 12 else d)}
    return configs()


@st.composite
def spatial_configs(draw):
    n, c, h, w = (draw(st.integers(1, side)) for side in (SIDE, SIDE, SPATIAL_SIDE, SPATIAL_SIDE))
    return {"shape": (n, c, h, w)}


@st.composite
def group_configs(draw):
    """C/G channels per group, then G, with C = G * C/G <= 8: every divisor G of every C
    reachable, and 1 < G < C common (C/G of 2-4 with G of 2-4 a fifth of the time). Then N,
    H, W within GROUP_MAX_SIZE elements. Shrinking moves toward C/G = G = 1."""
    per_group = draw(st.integers(1, GROUP_CHANNELS))
    groups = draw(st.integers(1, GROUP_CHANNELS // per_group))
    c = groups * per_group
    n = draw(st.integers(0, SIDE))
    h = draw(st.integers(1, max(1, min(SIDE, GROUP_MAX_SIZE // (max(n, 1) * c)))))
    w = draw(st.integers(1, max(1, min(SIDE, GROUP_MAX_SIZE // (max(n, 1) * c * h)))))
    return {"shape": (n, c, h, w), "groups": groups}


BATCH_EDGES = (
    {"shape": (2, 3)},  # N = 2, the smallest meaningful batch: xhat = +-1 and J is 0 up to eps
    {"shape": (1, 3)},  # N = 1: degenerate, y = beta, dx = 0
    {"shape": (4, 1)},  # D = 1
    {"shape": (6, 2)},  # a taller batch
    {"shape": (3, 3)},  # square, and an odd batch: halves of unequal size
)
ROW_EDGES = (
    {"shape": (2, 3)},  # a few rows of a few features
    {"shape": (0, 4)},  # an empty batch
    {"shape": (3, 1)},  # D = 1: degenerate for layernorm
    {"shape": (4, 5)},  # wider rows
    {"shape": (1, 4)},  # a single example
    {"shape": (3, 3)},  # square
    {"shape": (2, 9)},  # a row longer than 8: it splits unevenly over 8 lanes or devices
)
SPATIAL_EDGES = (
    {"shape": (2, 3, 2, 2)},  # every axis longer than 1
    {"shape": (1, 2, 1, 1)},  # N*H*W = 1: degenerate
    {"shape": (3, 2, 1, 1)},  # H = W = 1: batchnorm of a (N, C) matrix
    {"shape": (1, 2, 3, 2)},  # N = 1 with an image, H != W
)
GROUP_EDGES = (
    {"shape": (2, 4, 2, 2), "groups": 2},  # two groups of two channels, an image
    {"shape": (2, 3, 1, 2), "groups": 1},  # G = 1: layernorm over (C, H, W)
    {"shape": (1, 4, 2, 1), "groups": 4},  # G = C: instance normalisation
    {"shape": (2, 2, 1, 1), "groups": 2},  # groups of one element: degenerate
    {"shape": (0, 2, 2, 2), "groups": 1},  # an empty batch
    {"shape": (2, 6, 1, 2), "groups": 2},  # 1 < G < C with C/G != G: groups of 3 channels, not 2
)


def _checkerboard(shape) -> np.ndarray:
    return (-1.0) ** np.indices(shape).sum(axis=0)


def normalisation_space(configs, edges, *, n_params=2) -> Space:
    """(x, gamma[, beta]), {"eps": ..., **the configuration's groups}: x as described above,
    eps in [1e-5, 0.1] as a NumPy float64 (which must not promote float32 arithmetic)."""
    def examples(config):
        shape = config["shape"]
        static = {key: value for key, value in config.items() if key != "shape"}
        checkerboard, spread = _checkerboard(shape), arrays(shape, low=0.25, high=2.0)
        params = st.tuples(*[arrays((shape[1],))] * n_params)

        @st.composite
        def example(draw):
            shift = draw(floats(-SHIFT, SHIFT))
            scale = 10.0 ** draw(st.floats(-3.0, 1.0))
            x = scale * (shift + checkerboard * draw(spread))
            eps = np.float64(10.0 ** draw(st.floats(-5.0, -1.0)))
            return (x, *draw(params)), {"eps": eps, **static}

        return example()

    return Space(configs, examples, edges=edges)


# ----------------------------------------------------------------------------------------
# Buckets (Hints.pad): the configurations of a layer's space share the oracle programs of two
# buckets, into which each example is embedded with zeros appended to x, gamma and beta: the
# space's largest configuration, (N, D) = (ROWS, FEATURES), (N, C, H, W) = (SIDE, SIDE,
# SPATIAL_SIDE, SPATIAL_SIDE) (groupnorm: (SIDE, GROUP_CHANNELS, SIDE, SIDE)), and a small one
# that holds every edge. The edges' examples get the explicit Jacobian, computed at the
# bucket's size, and its cost grows as the square of the size at XLA's -O0 (layernorm: 0.4 ms
# a call at (6, 12), 1.3 ms at (24, 12); groupnorm: 0.6 ms at 64 elements, 5.4 ms at 512).
# What the padding adds must stay out of the real outputs:
# * a group of its own is harmless: an added feature of batchnorm (a channel of
#   spatial_batchnorm) is a zero column normalised on its own, var = 0 and y = 0 (gamma and
#   beta are 0 there); an added row of layernorm or rmsnorm, an added example of groupnorm,
#   likewise;
# * an element added to a real group would move its statistics: ``where`` (a boolean mask of
#   x's real elements along the statistics' axes, broadcast along the others) keeps the added
#   rows of batchnorm, the added N, H, W of spatial_batchnorm and the added features of
#   layernorm and rmsnorm out of every mean, in the specification and in the magnitude; the
#   means divide by the real count;
# * groupnorm's groups are contiguous blocks of C/G channels, which no padding at the end
#   keeps: ``members`` (G, C, H, W) says which elements form each group, grown to the
#   bucket's GROUP_CHANNELS groups (the added ones empty) with no added element in any group,
#   so G, C, H and W share the program (``groups``, an int that would compile per value, is
#   left out of the bucket's hyperparameters).
# Their outputs are cut off and pull nothing back (their cotangents are 0); padded and plain
# agree (tests/test_catalogue.py on drawn configurations; a run where an example fails).

ROW_BUCKETS = ((6, FEATURES), (ROWS, FEATURES))
SPATIAL_BUCKETS = ((3, 3, 3, 3), (SIDE, SIDE, SPATIAL_SIDE, SPATIAL_SIDE))
GROUP_BUCKETS = ((2, GROUP_CHANNELS, 2, 2), (SIDE, GROUP_CHANNELS, SIDE, SIDE))


def _bucket_of(shape, buckets):
    """The first of ``buckets`` (the smallest first) that holds an array of ``shape``."""
    return next(bucket for bucket in buckets if all(n <= m for n, m in zip(shape, bucket)))


def _statistics_bucket(buckets, axes):
    """Hints.pad for a layer whose statistics run over ``axes`` of x: x grown to its bucket and each
    parameter to the bucket's features, with zeros, and the mask ``where`` of x's real elements
    along ``axes``."""
    def pad(arrays, hyper):
        x, *params = arrays
        top = _bucket_of(x.shape, buckets)
        own = tuple(n if axis in axes else 1 for axis, n in enumerate(x.shape))
        where = grow(np.ones(own, bool), tuple(n if axis in axes else 1 for axis, n in enumerate(top)))
        return (grow(x, top), *(grow(p, top[1:2]) for p in params)), {**hyper, "where": where}
    return pad


def _group_bucket(arrays, hyper):
    """Hints.pad for groupnorm: x grown to its bucket, gamma and beta to GROUP_CHANNELS, with zeros;
    ``members`` in place of ``groups``."""
    x, *params = arrays
    top = _bucket_of(x.shape, GROUP_BUCKETS)
    members = grow(_group_members(x.shape, hyper["groups"]), (GROUP_CHANNELS, *top[1:]))
    rest = {key: value for key, value in hyper.items() if key != "groups"}
    return (grow(x, top), *(grow(p, top[1:2]) for p in params)), {**rest, "members": members}


BATCH_BUCKET = _statistics_bucket(ROW_BUCKETS, (0,))
ROW_BUCKET = _statistics_bucket(ROW_BUCKETS, (1,))
SPATIAL_BUCKET = _statistics_bucket(SPATIAL_BUCKETS, (0, 2, 3))


def _bench(x_shape, n_params=2, **static):
    """A realistic size for make bench: standard-normal x, gamma, beta, eps = 1e-5."""
    def bench(rng):
        params = tuple(rng.standard_normal(x_shape[1]) for _ in range(n_params))
        return BenchCase((rng.standard_normal(x_shape), *params), {"eps": 1e-5, **static})
    return bench


# Bad calls and the errors they must raise.

X2, P3 = np.ones((4, 3)), np.ones(3)
X4, P4 = np.ones((2, 4, 2, 2)), np.ones(4)
COMMON_ERRORS = (  # batchnorm's; every layer with (N, D) and beta refuses the same way
    ("x 1-d", (np.ones(3), P3, P3), {}, ValueError, "x has shape (3,) but a 2-d array (N, D) is expected"),
    ("gamma of another length", (X2, np.ones(4), P3), {}, ValueError,
     "gamma has shape (4,) but x has shape (4, 3): gamma.shape[0] must equal x.shape[1] = 3"),
    ("beta 2-d", (X2, P3, np.ones((1, 3))), {}, ValueError, "beta has shape (1, 3) but a 1-d array (D,)"),
    ("x of integers", (np.ones((4, 3), int), P3, P3), {}, TypeError,
     "x has dtype int64 (shape (4, 3)) but float32 or float64"),
    ("x float16", (X2.astype(np.float16), P3.astype(np.float16), P3.astype(np.float16)), {}, TypeError,
     "x has dtype float16 (shape (4, 3)) but float32 or float64 is expected"),
    ("gamma float32 with x float64", (X2, P3.astype(np.float32), P3), {}, TypeError,
     "gamma has dtype float32 but x has dtype float64"),
    ("beta a list", (X2, P3, [1.0, 1.0, 1.0]), {}, TypeError, "beta must be a numpy.ndarray of floats, got list"),
    ("eps 0", (X2, P3, P3), {"eps": 0.0}, ValueError, "eps is 0.0 but must lie in (0.0, inf)"),
    ("eps negative", (X2, P3, P3), {"eps": -1e-5}, ValueError, "eps is -1e-05 but must lie in (0.0, inf)"),
    ("eps a string", (X2, P3, P3), {"eps": "1e-5"}, TypeError, "eps must be a real number, got str"),
)
BATCH_ERRORS = ErrorCase.literal_rows(*COMMON_ERRORS, (
    "an empty batch", (np.ones((0, 3)), P3, P3), {}, ValueError,
    "x has shape (0, 3) but the batch size N must be at least 1"))
LAYERNORM_ERRORS = ErrorCase.literal_rows(*COMMON_ERRORS, (
    "no features", (np.ones((4, 0)), np.ones(0), np.ones(0)), {}, ValueError,
    "x has shape (4, 0) but the feature count D must be at least 1"))
RMSNORM_ERRORS = ErrorCase.literal_rows(
    ("x 1-d", (np.ones(3), P3), {}, ValueError, "x has shape (3,) but a 2-d array (N, D) is expected"),
    ("gamma of another length", (X2, np.ones(2)), {}, ValueError,
     "gamma has shape (2,) but x has shape (4, 3): gamma.shape[0] must equal x.shape[1] = 3"),
    ("x float16", (X2.astype(np.float16), P3.astype(np.float16)), {}, TypeError,
     "x has dtype float16 (shape (4, 3)) but float32 or float64 is expected"),
    ("eps 0", (X2, P3), {"eps": 0.0}, ValueError, "eps is 0.0 but must lie in (0.0, inf)"),
    ("no features", (np.ones((4, 0)), np.ones(0)), {}, ValueError,
     "x has shape (4, 0) but the feature count D must be at least 1"),
)
SPATIAL_ERRORS = ErrorCase.literal_rows(
    ("x 2-d", (X2, P3, P3), {}, ValueError, "x has shape (4, 3) but a 4-d array (N, C, H, W) is expected"),
    ("gamma of another length", (X4, np.ones(2), P4), {}, ValueError, "gamma.shape[0] must equal x.shape[1] = 4"),
    ("x float16", (X4.astype(np.float16), P4.astype(np.float16), P4.astype(np.float16)), {}, TypeError,
     "x has dtype float16 (shape (2, 4, 2, 2)) but float32 or float64 is expected"),
    ("no pixels", (np.ones((0, 4, 2, 2)), P4, P4), {}, ValueError, "N*H*W must be at least 1"),
)
GROUP_ERRORS = ErrorCase.literal_rows(
    ("groups not dividing C", (X4, P4, P4), {"groups": 3}, ValueError,
     "groups is 3 but x has shape (2, 4, 2, 2): the channel count C = 4 must be divisible by groups"),
    ("groups 0", (X4, P4, P4), {"groups": 0}, ValueError, "groups is 0 but must be at least 1"),
    ("groups a float", (X4, P4, P4), {"groups": 2.0}, TypeError, "groups must be an int, got float 2.0"),
    ("groups missing", (X4, P4, P4), {}, TypeError, "groups"),
    ("an empty image", (np.ones((2, 4, 0, 2)), P4, P4), {"groups": 2}, ValueError,
     "x has shape (2, 4, 0, 2) but C/groups*H*W must be at least 1"),
    ("x float16", (X4.astype(np.float16), P4.astype(np.float16), P4.astype(np.float16)), {"groups": 2}, TypeError,
     "x has dtype float16 (shape (2, 4, 2, 2)) but float32 or float64 is expected"),
)


batchnorm = Layer("batchnorm", ref.batchnorm_forward, ref.batchnorm_backward, jax_batchnorm,
                  normalisation_space(_rows(1), BATCH_EDGES), magnitude=_batch_magnitude,
                  hints=Hints(linear_in=(1, 2), pad=BATCH_BUCKET), errors=BATCH_ERRORS, bench=_bench((256, 1024)))
batchnorm_alt = Layer("batchnorm_alt", ref.batchnorm_alt_forward, ref.batchnorm_alt_backward, jax_batchnorm,
                      normalisation_space(_rows(1), BATCH_EDGES), magnitude=_batch_magnitude,
                      hints=Hints(linear_in=(1, 2), pad=BATCH_BUCKET), errors=BATCH_ERRORS, bench=_bench((256, 1024)))
spatial_batchnorm = Layer("spatial_batchnorm", ref.spatial_batchnorm_forward, ref.spatial_batchnorm_backward,
                          jax_spatial_batchnorm, normalisation_space(spatial_configs(), SPATIAL_EDGES),
                          magnitude=_spatial_magnitude, hints=Hints(linear_in=(1, 2), pad=SPATIAL_BUCKET),
                          errors=SPATIAL_ERRORS, bench=_bench((32, 64, 32, 32)))
layernorm = Layer("layernorm", ref.layernorm_forward, ref.layernorm_backward, jax_layernorm,
                  normalisation_space(_rows(0), ROW_EDGES), magnitude=_row_magnitude,
                  hints=Hints(per_example=True, linear_in=(1, 2), pad=ROW_BUCKET), errors=LAYERNORM_ERRORS,
                  bench=_bench((256, 1024)))
groupnorm = Layer("groupnorm", ref.groupnorm_forward, ref.groupnorm_backward, jax_groupnorm,
                  normalisation_space(group_configs(), GROUP_EDGES), magnitude=_group_magnitude,
                  hints=Hints(per_example=True, linear_in=(1, 2), pad=_group_bucket), errors=GROUP_ERRORS,
                  bench=_bench((32, 64, 32, 32), groups=8))
rmsnorm = Layer("rmsnorm", ref.rmsnorm_forward, ref.rmsnorm_backward, jax_rmsnorm,
                normalisation_space(_rows(0), ROW_EDGES, n_params=1), magnitude=_rms_magnitude,
                hints=Hints(per_example=True, linear_in=(1,), pad=ROW_BUCKET), errors=RMSNORM_ERRORS,
                bench=_bench((256, 1024), n_params=1))


# ----------------------------------------------------------------------------------------
# Correct variants: other derivations of the same gradients, which the verifier must accept.

def _batchnorm_backward_per_feature(dout, cache):
    """The textbook sum form, one feature (column) at a time:
    dx = (gamma/sigma)/N (N dy - sum(dy) - xhat sum(dy xhat))."""
    n = dout.shape[0]
    dx = np.empty_like(dout)
    for j in range(dout.shape[1]):
        dy, xhat = dout[:, j], cache.xhat[:, j]
        dx[:, j] = cache.gamma[0, j] * cache.inv_std[0, j] / n * (n * dy - dy.sum() - xhat * (dy * xhat).sum())
    return dx, (dout * cache.xhat).sum(axis=0), dout.sum(axis=0)


def _spatial_via_batchnorm(dout, cache):
    """spatial_batchnorm is batchnorm of the (N*H*W, C) matrix: move C last, use the staged graph."""
    n, c, h, w = dout.shape
    rows = lambda t: t.transpose(0, 2, 3, 1).reshape(n * h * w, c)  # noqa: E731
    flat = ref.NormCache(rows(cache.xmu), cache.inv_std.reshape(1, c), rows(cache.xhat),
                         cache.gamma.reshape(1, c), (n * h * w, c), (0,), (0,))
    dx, dgamma, dbeta = ref.batchnorm_backward(rows(dout), flat)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta


def _layernorm_via_batchnorm(dout, cache):
    """Layernorm's rows are batchnorm's columns of x^T: run the staged batchnorm graph on
    the transpose, with gamma folded into the upstream gradient (it varies along a row)."""
    n, d = dout.shape
    transposed = ref.NormCache(cache.xmu.T, cache.inv_std.T, cache.xhat.T, np.ones((1, n), dout.dtype),
                               (d, n), (0,), (0,))
    dx_t, _, _ = ref.batchnorm_backward((dout * cache.gamma).T, transposed)
    return dx_t.T, (dout * cache.xhat).sum(axis=0), dout.sum(axis=0)


def _groupnorm_loop_over_groups(dout, cache):
    """One group of channels at a time, each example's block (C/G, H, W) as a flat vector."""
    n, c, h, w = dout.shape
    groups = cache.xhat.shape[1]
    per = c // groups
    dx = np.empty_like(dout)
    for k in range(groups):
        block = slice(k * per, (k + 1) * per)
        g = (dout[:, block] * cache.gamma[0, k]).reshape(n, per * h * w)
        xhat = cache.xhat[:, k].reshape(n, per * h * w)
        dxhat = g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)
        dx[:, block] = (cache.inv_std[:, k].reshape(n, 1) * dxhat).reshape(n, per, h, w)
    xhat = cache.xhat.reshape(dout.shape)
    return dx, (dout * xhat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def _rmsnorm_staged(dout, cache):
    """Back through ms = mean(x^2), inv = (ms + eps)^(-1/2), xhat = x * inv, y = gamma xhat."""
    d = dout.shape[1]
    dxhat = dout * cache.gamma
    dinv = (dxhat * cache.xmu).sum(axis=1, keepdims=True)  # xmu is x itself for rmsnorm
    dms = -0.5 * dinv * cache.inv_std ** 3  # d(1/sqrt(ms + eps))/dms = -(1/2) inv^3
    return dxhat * cache.inv_std + 2.0 * cache.xmu * dms / d, (dout * cache.xhat).sum(axis=0)


# Written so that one switch plants a bug the menus of fixed shapes could not see: the
# mutants below are these backwards with the switch the other way.

def _synced_mean(devices, axis, *, weighted):
    """The mean along ``axis`` as ``devices`` devices compute it between them: t split by
    np.array_split, each device's mean of its part, combined over the devices holding any,
    weighted by their sizes (or each counted once: right only when all hold as many)."""
    def mean(t):
        parts = [part for part in np.array_split(t, devices, axis=axis) if part.shape[axis]]
        if weighted:
            return sum(part.shape[axis] * part.mean(axis=axis, keepdims=True) for part in parts) / t.shape[axis]
        return sum(part.mean(axis=axis, keepdims=True) for part in parts) / len(parts)
    return mean


def _closed_batchnorm(*, mean_term=True, projection_term=True, mean=lambda t: t.mean(axis=0, keepdims=True)):
    """batchnorm's closed form, the means over the batch taken by ``mean``; a term may be left out."""
    def backward(dout, c):
        g = dout * c.gamma
        dxhat = g
        if mean_term:
            dxhat = dxhat - mean(g)
        if projection_term:
            dxhat = dxhat - c.xhat * mean(g * c.xhat)
        return c.inv_std * dxhat, (dout * c.xhat).sum(axis=0), dout.sum(axis=0)
    return backward


def _batchnorm_backward_features_first(features_first):
    """The closed form on (D, N) arrays, as a library that takes either layout computes it:
    dout is transposed to (D, N) unless ``features_first(dout, cache)`` says it already is."""
    def backward(dout, c):
        dy = dout if features_first(dout, c) else dout.T
        xhat, g = c.xhat.T, dy * c.gamma.T
        dx = c.inv_std.T * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
        return dx.T, (dy * xhat).sum(axis=1), dy.sum(axis=1)
    return backward


def _groupnorm_backward_dispatching(channels_per_block):
    """groupnorm's backward as a library dispatches it: G = 1 and G = C to their own paths
    (the layernorm and instance-norm kernels; here the reference), any other G through a
    general path whose means run over blocks of ``channels_per_block(C, G)`` channels."""
    def backward(dout, cache):
        n, c, h, w = dout.shape
        groups = cache.xhat.shape[1]
        if groups in (1, c):
            return ref.groupnorm_backward(dout, cache)
        per_block = channels_per_block(c, groups)

        def block_mean(t):
            blocks = t.reshape(n, c // per_block, per_block * h * w)
            return np.broadcast_to(blocks.mean(axis=2, keepdims=True), blocks.shape).reshape(t.shape)

        xhat = cache.xhat.reshape(dout.shape)
        inv_std = np.broadcast_to(cache.inv_std, cache.xhat.shape).reshape(dout.shape)
        g = dout * cache.gamma.reshape(1, c, 1, 1)
        dx = inv_std * (g - block_mean(g) - xhat * block_mean(g * xhat))
        return dx, (dout * xhat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))
    return backward


def _rmsnorm_backward_with(mean):
    """dx = (1/r)(g - xhat mean(g xhat)), the mean along each row taken by ``mean``."""
    def backward(dout, c):
        g = dout * c.gamma
        return c.inv_std * (g - c.xhat * mean(g * c.xhat)), (dout * c.xhat).sum(axis=0)
    return backward


TENSOR_PARALLEL = 8
"""Devices an rmsnorm row's features are split over (tensor parallelism)."""


VARIANTS = (
    Variant("batchnorm", "closed_form", "batchnorm_alt's closed form on batchnorm's cache",
            ref.batchnorm_alt_backward),
    Variant("batchnorm_alt", "staged", "batchnorm's staged graph walk", ref.batchnorm_backward),
    Variant("batchnorm_alt", "per_feature_sums", "the sum form, one feature at a time",
            _batchnorm_backward_per_feature),
    Variant("spatial_batchnorm", "via_batchnorm", "batchnorm's staged graph on the (N*H*W, C) matrix",
            _spatial_via_batchnorm),
    Variant("layernorm", "via_batchnorm", "batchnorm's staged graph on x^T, gamma folded into dy",
            _layernorm_via_batchnorm),
    Variant("groupnorm", "loop_over_groups", "explicit loop over the channel groups", _groupnorm_loop_over_groups),
    Variant("rmsnorm", "staged", "graph walk through mean(x^2) and (ms + eps)^(-1/2)", _rmsnorm_staged),
    Variant("batchnorm_alt", "two_devices", "the batch means synced over two devices, weighted by their rows",
            _closed_batchnorm(mean=_synced_mean(2, 0, weighted=True))),
    Variant("batchnorm", "features_first", "the closed form on (D, N) arrays, the layout read from the "
            "shape the forward recorded", _batchnorm_backward_features_first(lambda dout, c: dout.shape != c.x_shape)),
    Variant("groupnorm", "dispatching", "G = 1 and G = C by their own paths, any other G by blocks of C/G channels",
            _groupnorm_backward_dispatching(lambda c, groups: c // groups)),
    Variant("rmsnorm", "tensor_parallel", f"each row's mean synced over {TENSOR_PARALLEL} devices, weighted "
            "by their features", _rmsnorm_backward_with(_synced_mean(TENSOR_PARALLEL, 1, weighted=True))),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs the verifier must reject.

def _staged_batchnorm(*, mean_path=True, variance_path=True, var_divisor=lambda n: n):
    """batchnorm's staged backward with a path through the graph cut or a wrong divisor."""
    def backward(dout, c):
        n = dout.shape[0]
        dxhat = dout * c.gamma
        dxmu = dxhat * c.inv_std
        if variance_path:
            dvar = -0.5 * (dxhat * c.xmu).sum(axis=0, keepdims=True) * c.inv_std ** 3
            dxmu = dxmu + 2.0 * c.xmu * dvar / var_divisor(n)
        dx = dxmu - dxmu.sum(axis=0, keepdims=True) / n if mean_path else dxmu
        return dx, (dout * c.xhat).sum(axis=0), dout.sum(axis=0)
    return backward


def _with_cache(backward, **changes):
    """A correct backward fed a cache with fields replaced: the statistics over the wrong axes."""
    return lambda dout, cache: backward(dout, cache._replace(**changes))


def _layernorm_gamma_outside(dout, c):
    """gamma applied after the projection, as if constant along the row (it is per feature)."""
    dx = c.gamma * c.inv_std * (dout - dout.mean(axis=1, keepdims=True)
                                - c.xhat * (dout * c.xhat).mean(axis=1, keepdims=True))
    return dx, (dout * c.xhat).sum(axis=0), dout.sum(axis=0)


def _batchnorm_dgamma_without_xhat(dout, cache):
    dx, _, dbeta = ref.batchnorm_backward(dout, cache)
    return dx, dbeta.copy(), dbeta


def _spatial_dbeta_spatial_mean(dout, cache):
    dx, dgamma, _ = ref.spatial_batchnorm_backward(dout, cache)
    return dx, dgamma, dout.mean(axis=(2, 3)).sum(axis=0)


MUTANTS = (
    Mutant("batchnorm", "mean_path_dropped", "dx misses the gradient through mu (the -mean(dx1) step)",
           _staged_batchnorm(mean_path=False), bug='formula'),
    Mutant("batchnorm", "variance_path_dropped", "sigma treated as a constant: no gradient through var",
           _staged_batchnorm(variance_path=False), bug='formula'),
    Mutant("batchnorm", "unbiased_variance", "the var step divides by N - 1, as the unbiased variance",
           _staged_batchnorm(var_divisor=lambda n: max(n - 1, 1)), bug='formula'),
    Mutant("batchnorm", "dgamma_without_xhat", "dgamma = sum dy, forgetting the xhat factor",
           _batchnorm_dgamma_without_xhat, bug='formula'),
    Mutant("batchnorm_alt", "missing_mean_term", "dx = (gamma/sigma)(dy - xhat mean(dy xhat)): no -mean(dy)",
           _closed_batchnorm(mean_term=False), bug='formula'),
    Mutant("batchnorm_alt", "missing_projection_term", "dx = (gamma/sigma)(dy - mean(dy)): no xhat mean(dy xhat)",
           _closed_batchnorm(projection_term=False), bug='formula'),
    Mutant("batchnorm_alt", "dbeta_mean", "dbeta = mean of dy over the batch instead of its sum",
           lambda dout, c: (*ref.batchnorm_alt_backward(dout, c)[:2], dout.mean(axis=0)), bug='factor'),
    Mutant("spatial_batchnorm", "batch_axis_only", "statistics' gradient over N only, forgetting H and W",
           _with_cache(ref.spatial_batchnorm_backward, stat_axes=(0,)), bug='wrong_axis'),
    Mutant("spatial_batchnorm", "dbeta_spatial_mean", "dbeta averages over H, W instead of summing",
           _spatial_dbeta_spatial_mean, bug='factor'),
    Mutant("layernorm", "batch_axis", "the backward normalises over the batch axis, as batchnorm",
           _with_cache(ref.layernorm_backward, stat_axes=(0,)), bug='batch_mixing'),
    Mutant("layernorm", "gamma_outside_means", "gamma factored out of the means, as if it were a scalar",
           _layernorm_gamma_outside, bug='formula'),
    Mutant("groupnorm", "all_channels", "the backward reduces over all channels (as groups = 1)",
           _with_cache(ref.groupnorm_backward, stat_axes=(1, 2, 3, 4)), bug='wrong_axis'),
    Mutant("groupnorm", "per_channel", "the backward reduces over (H, W) only (as groups = C)",
           _with_cache(ref.groupnorm_backward, stat_axes=(3, 4)), bug='wrong_axis'),
    Mutant("rmsnorm", "rms_constant", "r treated as a constant: dx = gamma dy / r",
           lambda dout, c: (dout * c.gamma * c.inv_std, (dout * c.xhat).sum(axis=0)), bug='formula'),
    Mutant("rmsnorm", "centred", "layernorm's backward, subtracting a mean that rmsnorm never took",
           lambda dout, c: ref.layernorm_backward(dout, c)[:2], bug='formula'),
    # Wrong only where no menu looked: an odd batch of 3 or more, a square (N, N) batch,
    # 1 < G < C with C != G^2, more features than devices and not a multiple of them.
    Mutant("batchnorm_alt", "two_devices_unweighted", "the batch means synced over two devices as the mean "
           "of their means: right only when both hold as many rows (N even)",
           _closed_batchnorm(mean=_synced_mean(2, 0, weighted=False)), bug='formula'),
    Mutant("batchnorm", "layout_by_length", "dout taken as features-first (D, N) whenever its first axis has "
           "D entries: a square batch is not transposed",
           _batchnorm_backward_features_first(lambda dout, c: dout.shape[0] == c.gamma.size), bug='transpose'),
    Mutant("groupnorm", "blocks_of_g_channels", "the general path (1 < G < C) averages over blocks of G "
           "channels, not C/G: the same blocks only when C = G^2",
           _groupnorm_backward_dispatching(lambda c, groups: groups), bug='wrong_axis'),
    Mutant("rmsnorm", "tensor_parallel_unweighted", f"each row's mean synced over {TENSOR_PARALLEL} devices as "
           "the mean of their means: right only when all hold as many features",
           _rmsnorm_backward_with(_synced_mean(TENSOR_PARALLEL, 1, weighted=False)), bug='formula'),
)
