"""JAX specifications of attention (``reference/attention.py``): ``scaled_dot_product_attention``,
``multi_head_attention`` and ``multi_head_self_attention``.

The forwards are written with ``jnp.einsum`` over named axes (the heads an index of the
contractions, E reshaped to (heads, E/heads) with no transposes), ``jnp.tril`` for the causal mask and
``jax.nn.softmax`` on logits set to -inf where a key is not allowed. A query row with no key
allowed is defined to attend to nothing: weights 0, output 0. The spec computes it with the
double ``where``: such a row's logits are replaced by 0 before the softmax (else max = -inf
gives -inf - -inf = NaN, whose gradient is NaN even where a second ``where`` discards the
value) and its weights by 0 after. The dropout mask is a selection,
``jnp.where(mask != 0, w / p, 0)``, as in the dropout spec.

Self-attention: the Layer's arrays are independent inputs, so "x_kv is x_q" cannot be drawn
as two of them. ``multi_head_self_attention`` is its own catalogue entry, with one x: its
forward computes ``multi_head_attention_forward(x, x, ...)`` (the same array object as x_q
and x_kv; only the names in its error messages differ) and its
spec ``jax_multi_head_attention(x, x, ...)``, which JAX differentiates through both uses. The
verifier thereby proves that the reference's dx_q + dx_kv is the whole gradient of x.

Masks, ``causal`` and the dropout mask are hyperparameters: the flags static (a compile per
value), the boolean masks and the dropout mask traced. Every configuration draws its masks'
values, including rows with every key masked (a row of the mask forced to False, or a causal
first row whose only key the mask hides). The oracles evaluate each example in a bucket
(``Hints.pad``, below), where the causal flag is folded into the mask: a few programs serve
every configuration.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import attention as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays, choices, floats

# ----------------------------------------------------------------------------------------
# Independent forwards.

def _allowed(tq, tk, causal, mask):
    """Booleans broadcastable to the weights (..., Tq, Tk), True where query i may attend key j; None: everywhere."""
    allowed = None if mask is None else mask
    if causal:
        lower = jnp.tril(jnp.ones((tq, tk), dtype=bool))
        allowed = lower if allowed is None else jnp.logical_and(allowed, lower)
    return allowed


def _attention_weights(scores, allowed):
    """softmax over the allowed keys; 0 at the others, and on a row with none allowed."""
    if allowed is None:
        return jax.nn.softmax(scores, axis=-1)
    allowed = jnp.broadcast_to(allowed, scores.shape)
    live = jnp.any(allowed, axis=-1, keepdims=True)
    logits = jnp.where(live, jnp.where(allowed, scores, -jnp.inf), 0.0)
    return jnp.where(live, jax.nn.softmax(logits, axis=-1), 0.0)


def jax_scaled_dot_product_attention(q, k, v, *, causal=False, mask=None, scale=None, dropout_mask=None, p=1.0):
    """q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> (..., Tq, dv)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = scale * jnp.einsum("...id,...jd->...ij", q, k)
    weights = _attention_weights(scores, _allowed(q.shape[-2], k.shape[-2], causal, mask))
    if dropout_mask is not None:
        weights = jnp.where(dropout_mask != 0, weights / p, 0.0)
    return jnp.einsum("...ij,...jc->...ic", weights, v)


def _head_mask(mask):
    """A mask broadcastable to (N, Tq, Tk), given a heads axis: (N, 1, Tq, Tk)-broadcastable."""
    return None if mask is None else jnp.expand_dims(mask.reshape((1,) * (3 - mask.ndim) + mask.shape), 1)


def _heads(x, w, b, heads):
    """x w + b split into heads: (N, T, E) -> (N, T, heads, E/heads), head h the h-th block of E/heads columns."""
    y = jnp.einsum("nte,ef->ntf", x, w) + b
    return y.reshape(*y.shape[:2], heads, y.shape[2] // heads)


def jax_multi_head_attention(x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo, *, heads, causal=False, mask=None):
    """x_q (N, Tq, E), x_kv (N, Tk, E), w (E, E), b (E,) -> (N, Tq, E)."""
    q, k, v = _heads(x_q, wq, bq, heads), _heads(x_kv, wk, bk, heads), _heads(x_kv, wv, bv, heads)
    scores = jnp.einsum("nihc,njhc->nhij", q, k) / math.sqrt(q.shape[-1])
    weights = _attention_weights(scores, _allowed(q.shape[1], k.shape[1], causal, _head_mask(mask)))
    attended = jnp.einsum("nhij,njhc->nihc", weights, v)
    return jnp.einsum("nie,ef->nif", attended.reshape(x_q.shape), wo) + bo


def jax_multi_head_self_attention(x, wq, bq, wk, bk, wv, bv, wo, bo, *, heads, causal=False, mask=None):
    """x (N, T, E) is both x_q and x_kv: JAX differentiates through both uses."""
    return jax_multi_head_attention(x, x, wq, bq, wk, bk, wv, bv, wo, bo, heads=heads, causal=causal, mask=mask)


# ----------------------------------------------------------------------------------------
# The error magnitudes.
#
# The default scale |J|^T |dY| fails correct float32 code here, as it does softmax's: with
# logits spanning tens to hundreds the weights are nearly one-hot, J is nearly 0, yet the
# computed dS = P (dP - rowsum(dP P)) is the rounding residue of a cancellation of terms of
# size |dP| (and where dP happens to equal its row's mean the exact dS is 0, the default
# scale 0, and the float64 oracle's own residue, ~1e-22, fails every float32 result). So the
# magnitude sums the absolute values of the terms each result is made of, each weighted by
# the relative error its factors carry, to first order, counted in units u: every rounding
# adds one unit of its own |value|; a contraction errs by u times the sum of its |terms|
# (tolerance.C absorbs the contraction length, as for the linear layer). Inputs may carry
# errors of their own (multi-head attention's Q, K, V are computed: e_q = |x_q| |wq| + |bq|,
# ...); for a single attention they are 0.
#
# Scores  S = scale q k^T errs by 2 A_ij (the dot product's terms and the multiplication by scale),
#             A_ij = |scale| sum_l (|q_il| + e_q,il)(|k_jl| + e_k,jl).
# Weights P_ij = e^(z_ij) / Z_i, z = S - max over the allowed keys (the max's own error shifts
#             the whole row, which cancels). e^(z_ij) errs relatively by r_ij = 1 + |z_ij| +
#             2 A_ij (its rounding, z's rounding |z| u, S's error). Relative errors eps_k of the
#             e^(z_k) change log P_ij by eps_j - sum_k P_ik eps_k, so P_ij carries
#             rho_ij = 2 + (1 - P_ij) r_ij + sum_{k != j} P_ik r_ik
#             (2: Z's sum and the division). Where the row is one-hot, the winning weight's
#             rho is ~2, not its score's |S|. P D (D = mask / p) carries rho + 2 (the division
#             by p, the product), with or without dropout.
# out_ia = sum_j (P D)_ij v_ja:
#             S_out = sum_j (P D)_ij ((rho_ij + 3) |v_ja| + e_v,ja)
# dv_ja = sum_i (P D)_ij dout_ia, dout carrying e_g (multi-head: |dout| |wo|^T):
#             S_dv = sum_i (P D)_ij ((rho_ij + 3) |dout_ia| + e_g,ia)
# dP_ij = D_ij sum_a dout_ia v_ja errs by 2 D_ij B_ij, B_ij = sum_a (|dout_ia| + e_g,ia)(|v_ja| + e_v,ja)
# sigma_i = rowsum(dP P): |sigma_i| <= beta_i = sum_j P_ij D_ij B_ij; it errs by
#             Sigma_i = sum_j P_ij D_ij B_ij (rho_ij + 4)   (P's rho, dP's 2, product, sum),
#             which also bounds rowsum(dout out), the reference's cheaper form (out carries S_out)
# dS_ij = P_ij (dP_ij - sigma_i): P's rho on |dP - sigma| <= D B + beta, dP's and sigma's
#             errors, the subtraction and the product, and (folded in here) dS's rounding
#             in the products below and the multiplication by scale:
#             E_ij = P_ij ((rho_ij + 4)(D_ij B_ij + beta_i) + 2 D_ij B_ij + Sigma_i)
# dq = scale dS k, dk = scale dS^T q:
#             S_dq = |scale| E (|k| + e_k),  S_dk = |scale| E^T (|q| + e_q)
#
# Where every weight is of order 1 (small logits) these are a few units times the sums of
# |terms|, the default's order; a masked key (P = 0) and a fully masked row add nothing.
# The first-order bound needs rho u << 1: the largest drawn scores (|S| ~ 2000) give
# rho u ~ 1e-4 in float32.
#
# Multi-head attention wraps this in four affine maps, whose terms add as in the linear
# layer, each term's computed factor carrying its magnitude: out = A wo + bo with A carrying
# S_out, so S = S_out |wo| + |bo|; dA = dout wo^T carries e_g = |dout| |wo|^T; dx_q = dQ
# wq^T gives S_dq |wq|^T, dwq = x_q^T dQ gives |x_q|^T S_dq, dbq = sum S_dq, and so on; dx_kv
# adds its K and V paths, and the self-attention's dx adds dx_q's and dx_kv's.

def _attention_scales(q, k, v, g, errors, allowed, keep, scale):
    """(S_out, S_dq, S_dk, S_dv) as derived above; ``errors`` = (e_q, e_k, e_v, e_g), shaped as q, k, v, g."""
    e_q, e_k, e_v, e_g = errors
    aq, ak, av, ag = jnp.abs(q) + e_q, jnp.abs(k) + e_k, jnp.abs(v) + e_v, jnp.abs(g) + e_g
    scores = scale * jnp.einsum("...id,...jd->...ij", q, k)
    weights = _attention_weights(scores, allowed)
    live = jnp.ones(scores.shape, bool) if allowed is None else jnp.broadcast_to(allowed, scores.shape)
    top = jnp.max(jnp.where(live, scores, -jnp.inf), axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    r = 1.0 + jnp.abs(scores - top) + 2.0 * abs(scale) * jnp.einsum("...id,...jd->...ij", aq, ak)
    pr = weights * r
    rho = 2.0 + r + jnp.sum(pr, axis=-1, keepdims=True) - 2.0 * pr
    dropped = weights if keep is None else weights * keep
    d_b = jnp.einsum("...ia,...ja->...ij", ag, av) * (1.0 if keep is None else keep)
    beta = jnp.sum(weights * d_b, axis=-1, keepdims=True)
    sigma = jnp.sum(weights * d_b * (rho + 4.0), axis=-1, keepdims=True)
    e = weights * ((rho + 4.0) * (d_b + beta) + 2.0 * d_b + sigma)
    out = (jnp.einsum("...ij,...ja->...ia", dropped * (rho + 3.0), jnp.abs(v))
           + jnp.einsum("...ij,...ja->...ia", dropped, e_v))
    dv = (jnp.einsum("...ij,...ia->...ja", dropped * (rho + 3.0), jnp.abs(g))
          + jnp.einsum("...ij,...ia->...ja", dropped, e_g))
    dq = abs(scale) * jnp.einsum("...ij,...jd->...id", e, ak)
    dk = abs(scale) * jnp.einsum("...ij,...id->...jd", e, aq)
    return out, dq, dk, dv


def _sdpa_magnitude(f, arrays, hyper, dout):
    q, k, v = arrays
    scale = hyper.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask = hyper.get("dropout_mask")
    keep = None if mask is None else jnp.where(mask != 0, 1.0 / hyper.get("p", 1.0), 0.0)
    allowed = _allowed(q.shape[-2], k.shape[-2], hyper.get("causal", False), hyper.get("mask"))
    exact = tuple(jnp.zeros_like(a) for a in (q, k, v, dout))  # the inputs are given, not computed
    out, dq, dk, dv = _attention_scales(q, k, v, dout, exact, allowed, keep, scale)
    return out, (dq, dk, dv)


def _multi_head_scales(x_q, x_kv, params, hyper, dout):
    """Every result's magnitude: out, dx_q, dx_kv, then each w's and b's, in the forward's order."""
    wq, bq, wk, bk, wv, bv, wo, bo = params
    heads = hyper["heads"]
    n, tq, e = x_q.shape
    split = lambda t: t.reshape(*t.shape[:2], heads, e // heads).swapaxes(1, 2)  # noqa: E731
    merge = lambda t: t.swapaxes(1, 2).reshape(*t.shape[:1], t.shape[2], e)  # noqa: E731
    project = lambda x, w, b: jnp.einsum("nte,ef->ntf", x, w) + b  # noqa: E731
    terms = lambda x, w, b: jnp.einsum("nte,ef->ntf", jnp.abs(x), jnp.abs(w)) + jnp.abs(b)  # noqa: E731
    q, k, v = (split(project(x, w, b)) for x, w, b in ((x_q, wq, bq), (x_kv, wk, bk), (x_kv, wv, bv)))
    errors = tuple(split(terms(x, w, b)) for x, w, b in ((x_q, wq, bq), (x_kv, wk, bk), (x_kv, wv, bv)))
    g = split(jnp.einsum("nif,ef->nie", dout, wo))
    e_g = split(jnp.einsum("nif,ef->nie", jnp.abs(dout), jnp.abs(wo)))
    allowed = _allowed(x_q.shape[1], x_kv.shape[1], hyper.get("causal", False), _head_mask(hyper.get("mask")))
    s_a, s_q, s_k, s_v = (merge(t) for t in _attention_scales(q, k, v, g, (*errors, e_g), allowed, None,
                                                               1.0 / math.sqrt(e // heads)))
    out = jnp.einsum("nie,ef->nif", s_a, jnp.abs(wo)) + jnp.abs(bo)
    back = lambda s, w: jnp.einsum("ntf,ef->nte", s, jnp.abs(w))  # noqa: E731
    weight = lambda x, s: jnp.einsum("nte,ntf->ef", jnp.abs(x), s)  # noqa: E731
    total = lambda s: jnp.sum(s, axis=(0, 1))  # noqa: E731
    grads = (back(s_q, wq), back(s_k, wk) + back(s_v, wv),
             weight(x_q, s_q), total(s_q), weight(x_kv, s_k), total(s_k), weight(x_kv, s_v), total(s_v),
             weight(s_a, jnp.abs(dout)), total(jnp.abs(dout)))
    return out, grads


def _mha_magnitude(f, arrays, hyper, dout):
    return _multi_head_scales(arrays[0], arrays[1], arrays[2:], hyper, dout)


def _self_attention_magnitude(f, arrays, hyper, dout):
    out, (dx_q, dx_kv, *params) = _multi_head_scales(arrays[0], arrays[0], arrays[1:], hyper, dout)
    return out, (dx_q + dx_kv, *params)


# ----------------------------------------------------------------------------------------
# The input spaces.
#
# scaled_dot_product_attention: leading axes () , (N,) or (N, heads), each 0..3; Tq and Tk
# 1..5 drawn apart (cross-attention), equal when causal; d and dv 1..4 drawn apart; a mask
# of one of four kinds; the scale given (a traced float in [-2, 4]) or the default; dropout
# on or off. Each example's q and k lie in [-b, b] for one b of LOGIT_BOUNDS.

LOGIT_BOUNDS = (2.0, 8.0, 25.0)
"""2: every key counts; 8: scores up to ~100, weights down to e^-100, below float32's normal
range; 25: scores up to ~2000, where e^S overflows even float64 and only the max shift saves
the forward."""
MASKS = ("none", "keys", "full", "shared")
"""The mask's shape: none; key padding (..., 1, Tk); one per query row (..., Tq, Tk); one
(Tq, Tk) broadcast over every leading axis."""


def _mask_shape(kind, lead, tq, tk):
    return {"none": None, "keys": (*lead, 1, tk), "full": (*lead, tq, tk), "shared": (tq, tk)}[kind]


def _with_dead_row(bits, dead):
    mask = bits.astype(bool)
    if dead is not None:
        mask.reshape(-1, mask.shape[-1])[dead] = False
    return mask


def _masks(shape):
    """Booleans of ``shape`` (True = attend), shrinking to all True; one drawn row of the mask
    may be forced all False: a fully masked query row (a key mask's row is a whole example,
    a shared mask's row that query in every example)."""
    rows = math.prod(shape[:-1])
    dead = st.none() | st.integers(0, rows - 1) if rows else st.none()
    return st.tuples(choices(shape, (1.0, 0.0)), dead).map(lambda drawn: _with_dead_row(*drawn))


SDPA_LEAD, SDPA_T, SDPA_D = 3, 5, 4
"""The largest leading axis, sequence length and width (d and dv) the space draws."""


@st.composite
def _sdpa_configs(draw):
    lead = tuple(draw(st.lists(st.integers(0, SDPA_LEAD), max_size=2)))
    causal = draw(st.booleans())
    tq = draw(st.integers(1, SDPA_T))
    tk = tq if causal else draw(st.integers(1, SDPA_T))
    d, dv = draw(st.integers(1, SDPA_D)), draw(st.integers(1, SDPA_D))
    return {"lead": lead, "Tq": tq, "Tk": tk, "d": d, "dv": dv, "causal": causal, "mask": draw(st.sampled_from(MASKS)),
            "scale": draw(st.booleans()), "dropout": draw(st.booleans())}


def _sdpa_config(lead, tq, tk, d, dv, *, causal=False, mask="none", scale=False, dropout=False):
    return {"lead": lead, "Tq": tq, "Tk": tk, "d": d, "dv": dv, "causal": causal, "mask": mask,
            "scale": scale, "dropout": dropout}


SDPA_EDGES = (
    _sdpa_config((2,), 1, 1, 1, 1),  # T = 1: a weight of exactly 1, dS = 0
    _sdpa_config((0, 2), 3, 2, 2, 3, mask="full"),  # an empty batch
    _sdpa_config((2, 2), 3, 3, 3, 3),  # square everywhere: a missing transpose keeps its shape
    _sdpa_config((), 4, 2, 3, 1, mask="shared", scale=True),  # no leading axes, cross-attention
    _sdpa_config((2,), 4, 4, 2, 3, causal=True, mask="full", dropout=True),  # causal, masked, dropped
    _sdpa_config((1, 3), 3, 5, 4, 2, mask="keys", dropout=True, scale=True),  # key padding, heads
)


def _sdpa_values(config):
    lead, tq, tk, d, dv = (config[key] for key in ("lead", "Tq", "Tk", "d", "dv"))
    logits = {b: st.tuples(arrays((*lead, tq, d), low=-b, high=b), arrays((*lead, tk, d), low=-b, high=b))
              for b in LOGIT_BOUNDS}
    values = arrays((*lead, tk, dv))
    shape = _mask_shape(config["mask"], lead, tq, tk)
    mask = None if shape is None else _masks(shape)
    dropout = choices((*lead, tq, tk), (1.0, 0.0)) if config["dropout"] else None

    @st.composite
    def example(draw):
        q, k = draw(logits[draw(st.sampled_from(LOGIT_BOUNDS))])
        hyper = {"causal": config["causal"]}
        if mask is not None:
            hyper["mask"] = draw(mask)
        if config["scale"]:
            hyper["scale"] = draw(floats(-2.0, 4.0))
        if dropout is not None:
            hyper["dropout_mask"] = draw(dropout)
            hyper["p"] = draw(st.just(1.0) | floats(0.05, 1.0))
        return (q, k, draw(values)), hyper

    return example()


# multi_head_attention: N 0..3, heads 1..4 of width 1..3 (so heads runs from 1 to E = heads *
# width), Tq and Tk 1..4 (equal when causal), a mask of one of the four kinds (over (N, Tq,
# Tk)). x in [-b, b], b one of X_BOUNDS, w and b in [-1, 1]: with E up to 12 the projected
# scores reach the hundreds, so the large-logit regime is drawn here too.
# multi_head_self_attention: the same with one x, T = Tq = Tk.

X_BOUNDS = (1.0, 4.0)
MHA_N, MHA_HEADS, MHA_T = 3, 4, 4
"""The largest batch, number of heads and sequence length the space draws."""


@st.composite
def _mha_configs(draw, self_attention):
    heads, width = draw(st.integers(1, MHA_HEADS)), draw(st.integers(1, 3))
    causal = draw(st.booleans())
    n, tq = draw(st.integers(0, MHA_N)), draw(st.integers(1, MHA_T))
    lengths = {"T": tq} if self_attention else {"Tq": tq, "Tk": tq if causal else draw(st.integers(1, MHA_T))}
    return {"N": n, **lengths, "E": heads * width, "heads": heads, "causal": causal,
            "mask": draw(st.sampled_from(MASKS))}


def _mha_config(n, tq, tk, e, heads, *, causal=False, mask="none"):
    return {"N": n, "Tq": tq, "Tk": tk, "E": e, "heads": heads, "causal": causal, "mask": mask}


def _self_config(n, t, e, heads, *, causal=False, mask="none"):
    return {"N": n, "T": t, "E": e, "heads": heads, "causal": causal, "mask": mask}


MHA_EDGES = (
    _mha_config(2, 3, 2, 4, 2),  # cross-attention, two heads of two
    _mha_config(0, 2, 3, 2, 1, mask="keys"),  # an empty batch
    _mha_config(2, 1, 1, 3, 3),  # T = 1, heads = E (width 1)
    _mha_config(2, 3, 3, 6, 2, causal=True, mask="full"),  # causal with a mask: fully masked rows
    _mha_config(1, 4, 2, 6, 3, mask="shared"),  # three heads of two, a shared (Tq, Tk) mask
)
SELF_EDGES = (
    _self_config(2, 3, 4, 2),
    _self_config(0, 2, 2, 1),
    _self_config(2, 1, 3, 3),
    _self_config(2, 4, 6, 3, causal=True, mask="full"),
    _self_config(1, 3, 6, 2, mask="keys"),
)


def _mha_values(config):
    n, e = config["N"], config["E"]
    tq, tk = (config["T"], None) if "T" in config else (config["Tq"], config["Tk"])  # T: self-attention, one x
    xs = {b: st.tuples(*(arrays((n, t, e), low=-b, high=b) for t in ((tq,) if tk is None else (tq, tk))))
          for b in X_BOUNDS}
    params = st.tuples(*(arrays((e, e) if i % 2 == 0 else (e,), low=-1.0, high=1.0) for i in range(8)))
    shape = _mask_shape(config["mask"], (n,), tq, tq if tk is None else tk)
    mask = None if shape is None else _masks(shape)

    @st.composite
    def example(draw):
        x = draw(xs[draw(st.sampled_from(X_BOUNDS))])
        hyper = {"heads": config["heads"], "causal": config["causal"]}
        if mask is not None:
            hyper["mask"] = draw(mask)
        return (*x, *draw(params)), hyper

    return example()


# ----------------------------------------------------------------------------------------
# Buckets (Hints.pad): the configurations of a space share the oracle programs of a few
# largest ones, into which each example is embedded exactly.
#
# scaled_dot_product_attention: one bucket per number of leading axes (the rank stays),
# each leading axis grown to SDPA_LEAD, Tq and Tk to SDPA_T, d and dv to SDPA_D, with zeros.
# Added query rows are computed and pulled back from a zero dout (their magnitude terms
# all carry |dout| = 0); added keys are masked out, so every real row's softmax runs over
# its real keys alone; added columns of q and k add 0 to every score, and added columns of
# v give added output columns that are cut off. The hyperparameters become those of the
# bucket's one program: the default scale 1/sqrt(d) of the real d given explicitly; the
# mask, whatever its kind (none, keys, shared, full), broadcast to the full (..., Tq, Tk),
# and-ed with the causal lower triangle (j <= i) when causal, and grown with False; causal
# itself then False (a static flag would double the programs); and without dropout, an
# all-ones dropout mask with p = 1, which keeps every weight exactly (w / 1 = w, and the
# magnitude's keep = 1). A mask of all True is exactly no mask (where(True, s, -inf) = s).
#
# multi_head_attention, multi_head_self_attention: one bucket per head width E/heads (the
# scale 1/sqrt(E/heads) must stay): N to MHA_N, Tq and Tk to MHA_T with the added keys
# masked out, the mask and the causal flag as above, and heads to MHA_HEADS, E to
# MHA_HEADS E/heads. The real heads keep their columns (head h is the h-th block of E/heads
# columns); an added head has zero projections (zero columns of wq, wk, wv and their
# biases), so its values are 0, and zero rows of wo keep it out of the output, whose added
# columns are cut off. Added input features are 0 and meet zero rows of wq, wk, wv.


def _full_mask(hyper, lead, tq, tk, bucket):
    """The keys each query may attend to, as the mask (None: every key) broadcast to (*lead, Tq, Tk)
    and, when causal, and-ed with the lower triangle; grown to ``bucket`` with False."""
    mask = hyper.get("mask")
    allowed = np.ones((*lead, tq, tk), bool) if mask is None else np.broadcast_to(mask, (*lead, tq, tk))
    if hyper.get("causal", False):
        allowed = allowed & np.tri(tq, tk, dtype=bool)
    return grow(allowed, bucket, False)


def _sdpa_bucket(arrays, hyper):
    """Hints.pad of scaled_dot_product_attention (above)."""
    q, k, _ = arrays
    lead, (tq, d), tk = q.shape[:-2], q.shape[-2:], k.shape[-2]
    top = (SDPA_LEAD,) * len(lead)
    weights = (*top, SDPA_T, SDPA_T)
    keep = hyper.get("dropout_mask")
    padded = {**hyper, "scale": hyper.get("scale", 1.0 / math.sqrt(d)), "causal": False,
              "mask": _full_mask(hyper, lead, tq, tk, weights),
              "dropout_mask": grow(np.ones((*lead, tq, tk)) if keep is None else keep, weights),
              "p": hyper.get("p", 1.0)}
    return tuple(grow(a, (*top, SDPA_T, SDPA_D)) for a in arrays), padded


def _mha_bucket(arrays, hyper):
    """Hints.pad of both multi-head layers (above): x_q and x_kv then the 8 parameters, or
    self-attention's one x then the 8."""
    inputs = len(arrays) - 8
    n, tq, e = arrays[0].shape
    tk = arrays[inputs - 1].shape[1]
    wide = MHA_HEADS * (e // hyper["heads"])
    grown = tuple(grow(a, (MHA_N, MHA_T, wide)) for a in arrays[:inputs]) + tuple(
        grow(a, (wide,) * a.ndim) for a in arrays[inputs:])
    return grown, {**hyper, "heads": MHA_HEADS, "causal": False,
                   "mask": _full_mask(hyper, (n,), tq, tk, (MHA_N, MHA_T, MHA_T))}


# ----------------------------------------------------------------------------------------
# Bench cases and bad input.

def _sdpa_bench(rng):
    """A transformer layer's attention: N = 8, 12 heads, T = 256, d = 64; its backward is four
    products of 2 N heads T^2 d flops."""
    q, k, v = (rng.standard_normal((8, 12, 256, 64)) for _ in range(3))
    return BenchCase((q, k, v), {}, flops=8.0 * 8 * 12 * 256 * 256 * 64)


def _mha_bench(rng):
    """N = 8, T = 128, E = 512, 8 heads, cross-attention shapes (x_q and x_kv apart); w ~ N(0, 1/E).
    The backward is eight E x E products (dwo, dA, three dx, three dw) and four attention products."""
    n, t, e, heads = 8, 128, 512, 8
    x_q, x_kv = rng.standard_normal((n, t, e)), rng.standard_normal((n, t, e))
    params = tuple(rng.standard_normal((e, e) if i % 2 == 0 else (e,)) / (math.sqrt(e) if i % 2 == 0 else 10)
                   for i in range(8))
    flops = 8 * 2.0 * n * t * e * e + 4 * 2.0 * n * t * t * e
    return BenchCase((x_q, x_kv, *params), {"heads": heads}, flops=flops)


def _self_attention_bench(rng):
    """The multi-head bench's sizes with one x (N = 8, T = 128, E = 512, 8 heads): x feeds Q, K and V."""
    x, _, *params = _mha_bench(rng).arrays
    return BenchCase((x, *params), {"heads": 8}, flops=_mha_bench(rng).flops)


def _ones(*shapes, dtype=np.float64):
    return tuple(np.ones(s, dtype) for s in shapes)


SDPA_ERRORS = (
    ErrorCase("q and k of different widths", _ones((2, 3, 2), (2, 4, 3), (2, 4, 5)), {}, ValueError,
              r"k has shape \(2, 4, 3\) but q has shape \(2, 3, 2\): k.shape\[-1\] must equal q.shape\[-1\] = 2"),
    ErrorCase("k and v of different lengths", _ones((2, 3, 2), (2, 4, 2), (2, 5, 5)), {}, ValueError,
              r"v has shape \(2, 5, 5\) but k has shape \(2, 4, 2\): v.shape\[-2\] must equal k.shape\[-2\] = 4"),
    ErrorCase("different leading axes", _ones((2, 3, 2), (3, 4, 2), (3, 4, 5)), {}, ValueError,
              r"k has shape \(3, 4, 2\) but q has shape \(2, 3, 2\): their leading \(batch\) axes must be the same"),
    ErrorCase("causal with Tq != Tk", _ones((2, 3, 2), (2, 4, 2), (2, 4, 5)), {"causal": True}, ValueError,
              r"causal attention .* needs Tq = Tk, got 3 and 4"),
    ErrorCase("a mask of floats", _ones((2, 3, 2), (2, 4, 2), (2, 4, 5)), {"mask": np.ones((3, 4))}, TypeError,
              r"mask must be a numpy.ndarray of booleans \(True = attend\), got dtype float64"),
    ErrorCase("a mask that does not broadcast", _ones((2, 3, 2), (2, 4, 2), (2, 4, 5)),
              {"mask": np.ones((3, 3), bool)}, ValueError,
              r"mask has shape \(3, 3\) but must broadcast to the attention weights' shape \(2, 3, 4\)"),
    ErrorCase("a dropout mask of other values", _ones((1, 2, 2), (1, 2, 2), (1, 2, 2)),
              {"dropout_mask": np.full((1, 2, 2), 0.5), "p": 0.5}, ValueError,
              r"dropout_mask \(shape \(1, 2, 2\)\) has an entry 0.5 that is neither 0 nor 1"),
    ErrorCase("a dropout mask of another shape", _ones((1, 2, 2), (1, 2, 2), (1, 2, 2)),
              {"dropout_mask": np.ones((2, 2)), "p": 0.5}, ValueError,
              r"dropout_mask has shape \(2, 2\) but the attention weights have shape \(1, 2, 2\)"),
    ErrorCase("p without a dropout mask", _ones((1, 2, 2), (1, 2, 2), (1, 2, 2)), {"p": 0.5}, ValueError,
              r"p is 0.5 but dropout_mask is None"),
    ErrorCase("a keep probability of 0", _ones((1, 2, 2), (1, 2, 2), (1, 2, 2)),
              {"dropout_mask": np.ones((1, 2, 2)), "p": 0.0}, ValueError, r"p is 0.0 but must lie in \(0.0, 1.0\]"),
    ErrorCase("a 1-d q", _ones((3,), (2, 3), (2, 3)), {}, ValueError,
              r"q has shape \(3,\) but an array of at least 2 dimensions \(\.\.\., T, d\) is expected"),
    ErrorCase("mixed dtypes", (np.ones((2, 2), np.float32), *_ones((2, 2), (2, 2))), {}, TypeError,
              r"k has dtype float64 but q has dtype float32"),
)


def _mha_args(x_q=(2, 3, 4), x_kv=(2, 5, 4), e=4, wk=None):
    return _ones(x_q, x_kv, (e, e), (e,), wk or (e, e), (e,), (e, e), (e,), (e, e), (e,))


MHA_ERRORS = (
    ErrorCase("heads not dividing E", _mha_args(), {"heads": 3}, ValueError,
              r"x_q has shape \(2, 3, 4\): its width E = 4 must be divisible by heads = 3"),
    ErrorCase("a weight of the wrong shape", _mha_args(wk=(4, 3)), {"heads": 2}, ValueError,
              r"wk has shape \(4, 3\) but x_q has shape \(2, 3, 4\): wk must have shape \(4, 4\)"),
    ErrorCase("batches of different sizes", _mha_args(x_kv=(3, 5, 4)), {"heads": 2}, ValueError,
              r"x_kv has shape \(3, 5, 4\) but x_q has shape \(2, 3, 4\): "
              r"x_kv.shape\[0\] must equal x_q.shape\[0\] = 2"),
    ErrorCase("causal with Tq != Tk", _mha_args(), {"heads": 2, "causal": True}, ValueError,
              r"causal attention .* needs Tq = Tk, got 3 and 5"),
    ErrorCase("a per-head mask", _mha_args(), {"heads": 2, "mask": np.ones((2, 2, 3, 5), bool)}, ValueError,
              r"mask has shape \(2, 2, 3, 5\) but must broadcast to the attention weights' shape "
              r"\(2, 3, 5\) \(N, Tq, Tk\)"),
    ErrorCase("heads 0", _mha_args(), {"heads": 0}, ValueError, r"heads is 0 but must be at least 1"),
    ErrorCase("a 2-d x_q", _mha_args(x_q=(3, 4)), {"heads": 2}, ValueError,
              r"x_q has shape \(3, 4\) but a 3-d array \(N, Tq, E\) is expected"),
)


SELF_ERRORS = (
    ErrorCase("heads not dividing E", _mha_args()[:1] + _mha_args()[2:], {"heads": 3}, ValueError,
              r"x has shape \(2, 3, 4\): its width E = 4 must be divisible by heads = 3"),
    ErrorCase("a 2-d x", _mha_args(x_q=(3, 4))[:1] + _mha_args()[2:], {"heads": 2}, ValueError,
              r"x has shape \(3, 4\) but a 3-d array \(N, T, E\) is expected"),
    ErrorCase("a mask over keys of another length", _mha_args()[:1] + _mha_args()[2:],
              {"heads": 2, "mask": np.ones((2, 1, 5), bool)}, ValueError,
              r"mask has shape \(2, 1, 5\) but must broadcast to the attention weights' shape \(2, 3, 3\) "
              r"\(N, T, T\)"),
)


# ----------------------------------------------------------------------------------------
# The layers.

scaled_dot_product_attention = Layer(
    "scaled_dot_product_attention", ref.scaled_dot_product_attention_forward,
    ref.scaled_dot_product_attention_backward, jax_scaled_dot_product_attention,
    Space(_sdpa_configs(), _sdpa_values, edges=SDPA_EDGES), magnitude=_sdpa_magnitude,
    hints=Hints(per_example=True, linear_in=(2,), pad=_sdpa_bucket), errors=SDPA_ERRORS, bench=_sdpa_bench)
multi_head_attention = Layer(
    "multi_head_attention", ref.multi_head_attention_forward, ref.multi_head_attention_backward,
    jax_multi_head_attention, Space(_mha_configs(False), _mha_values, edges=MHA_EDGES), magnitude=_mha_magnitude,
    hints=Hints(per_example=True, linear_in=(6, 7, 8, 9), pad=_mha_bucket), errors=MHA_ERRORS, bench=_mha_bench)
multi_head_self_attention = Layer(
    "multi_head_self_attention", ref.multi_head_self_attention_forward, ref.multi_head_self_attention_backward,
    jax_multi_head_self_attention, Space(_mha_configs(True), _mha_values, edges=SELF_EDGES),
    magnitude=_self_attention_magnitude, hints=Hints(per_example=True, linear_in=(5, 6, 7, 8), pad=_mha_bucket),
    errors=SELF_ERRORS, bench=_self_attention_bench)


# ----------------------------------------------------------------------------------------
# Correct variants: other ways to write the same derivatives, which the verifier must accept.

def _sdpa_backward_row_jacobians(dout, cache):
    """One query row at a time, with the softmax's explicit Tk x Tk Jacobian diag(P_i) - P_i P_i^T."""
    q, k, v, weights, keep, dropped, _, scale = cache
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for lead in np.ndindex(*q.shape[:-2]):
        for i in range(q.shape[-2]):
            p_i, g_i = weights[lead][i], dout[lead][i]
            d_i = np.ones_like(p_i) if keep is None else keep[lead][i]
            dv[lead] += np.outer(p_i * d_i, g_i)
            dp_i = d_i * (v[lead] @ g_i)
            ds_i = (np.diag(p_i) - np.outer(p_i, p_i)) @ dp_i
            dq[lead][i] = scale * (ds_i @ k[lead])
            dk[lead] += scale * np.outer(ds_i, q[lead][i])
    return dq, dk, dv


def _sdpa_backward_einsum(dout, cache):
    """Every product as an einsum, the row sum as rowsum(dP * P) rather than rowsum(dout * out)."""
    q, k, v, weights, keep, dropped, _, scale = cache
    dp = np.einsum("...ia,...ja->...ij", dout, v) * (1 if keep is None else keep)
    ds = weights * (dp - np.einsum("...ij,...ij->...i", dp, weights)[..., None])
    return (scale * np.einsum("...ij,...jd->...id", ds, k), scale * np.einsum("...ij,...id->...jd", ds, q),
            np.einsum("...ij,...ia->...ja", dropped, dout))


class _HeadsCache(NamedTuple):
    inputs: tuple  # x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo
    merged: np.ndarray  # (N, Tq, E)
    per_head: tuple  # each head's AttentionCache, on (N, T, E/heads) arrays


def _mha_forward_per_head(x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo, *, heads, causal=False, mask=None):
    """A loop over heads: head h projects with its own block of columns of wq, wk, wv."""
    width = x_q.shape[2] // heads
    caches, outputs = [], []
    for h in range(heads):
        cols = slice(h * width, (h + 1) * width)
        out, cache = ref.scaled_dot_product_attention_forward(
            x_q @ wq[:, cols] + bq[cols], x_kv @ wk[:, cols] + bk[cols], x_kv @ wv[:, cols] + bv[cols],
            causal=causal, mask=mask)
        outputs.append(out)
        caches.append(cache)
    merged = np.concatenate(outputs, axis=2) if outputs else np.zeros(x_q.shape, x_q.dtype)
    return merged @ wo + bo, _HeadsCache((x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo), merged, tuple(caches))


def _mha_backward_per_head(dout, cache):
    """Each head's block of columns of dA through its own attention, each block's gradients written in place."""
    x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo = cache.inputs
    heads = len(cache.per_head)
    width = x_q.shape[2] // heads
    dmerged = dout @ wo.T
    grads = [np.zeros_like(a) for a in cache.inputs]
    dx_q, dx_kv, dwq, dbq, dwk, dbk, dwv, dbv = grads[:8]
    for h, attention in enumerate(cache.per_head):
        cols = slice(h * width, (h + 1) * width)
        dq, dk, dv = ref.scaled_dot_product_attention_backward(np.ascontiguousarray(dmerged[:, :, cols]), attention)
        dx_q += dq @ wq[:, cols].T
        dx_kv += dk @ wk[:, cols].T + dv @ wv[:, cols].T
        for dw, db, x, g in ((dwq, dbq, x_q, dq), (dwk, dbk, x_kv, dk), (dwv, dbv, x_kv, dv)):
            dw[:, cols] = np.einsum("nte,ntc->ec", x, g)
            db[cols] = g.sum(axis=(0, 1))
    grads[8] = np.einsum("nte,ntf->ef", cache.merged, dout)
    grads[9] = dout.sum(axis=(0, 1))
    return tuple(grads)


def _self_attention_backward_stacked(dout, cache):
    """dx as one product of the stacked [dQ dK dV] (N, T, 3E) with the stacked [wq wk wv]^T: the
    three paths by which x reaches out, summed inside the product."""
    x, _, wq, wk, wv, wo, merged, attention, heads = cache
    dq, dk, dv = (ref._merge(g) for g in ref.scaled_dot_product_attention_backward(
        ref._split(dout @ wo.T, heads), attention))
    stacked = np.concatenate((dq, dk, dv), axis=2)
    rows = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    dx = stacked @ np.concatenate((wq, wk, wv), axis=1).T
    param_grads = []
    for g in (dq, dk, dv):
        param_grads += [rows(x).T @ rows(g), rows(g).sum(axis=0)]
    return (dx, *param_grads, rows(merged).T @ rows(dout), rows(dout).sum(axis=0))


VARIANTS = (
    Variant("scaled_dot_product_attention", "row_jacobians",
            "per query row, the explicit softmax Jacobian diag(P) - P P^T", _sdpa_backward_row_jacobians),
    Variant("scaled_dot_product_attention", "einsum", "einsum products, the row sum over dP * P",
            _sdpa_backward_einsum),
    Variant("multi_head_attention", "per_head", "forward and backward as a loop over heads, each with its own "
            "column blocks of the weights", _mha_backward_per_head, _mha_forward_per_head),
    Variant("multi_head_self_attention", "stacked", "dx from the stacked [dQ dK dV] and [wq wk wv] in one product",
            _self_attention_backward_stacked),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.
# Each is the reference's sequence of steps with one step wrong.

def _softmax_backward(weights, dp):
    return weights * (dp - np.sum(dp * weights, axis=-1, keepdims=True))


def _sdpa_steps(dout, cache, *, weights=None, softmax=_softmax_backward, scaled=True, keep_in_backward=True,
                dk_from=lambda ds, q: ds.swapaxes(-1, -2) @ q):
    """The reference's backward written out, each step replaceable."""
    q, k, v, p, keep, dropped, _, scale = cache
    p = p if weights is None else weights(cache)
    dp = dout @ v.swapaxes(-1, -2)
    if keep is not None and keep_in_backward:
        dp = dp * keep
    ds = softmax(p, dp)
    factor = scale if scaled else 1.0
    return factor * (ds @ k), factor * dk_from(ds, q), dropped.swapaxes(-1, -2) @ dout


def _unmasked_weights(cache):
    """softmax(scale q k^T) recomputed over every key: the mask and causal flag forgotten."""
    s = cache.scale * (cache.q @ cache.k.swapaxes(-1, -2))
    e = np.exp(s - s.max(axis=-1, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=-1, keepdims=True)


def _sdpa_forward_causal_strict(q, k, v, *, causal=False, mask=None, **rest):
    """causal lets query i see keys j < i: the diagonal masked too (row 0 then sees nothing)."""
    if causal:
        strict = np.tri(q.shape[-2], k.shape[-2], k=-1, dtype=bool)
        mask = strict if mask is None else mask & strict
    return ref.scaled_dot_product_attention_forward(q, k, v, mask=mask, **rest)


def _sdpa_forward_unshifted(q, k, v, **hyper):
    """The softmax without the max shift: e^S overflows (S > 88 in float32, 709 in float64), inf/inf = NaN."""
    out, cache = ref.scaled_dot_product_attention_forward(q, k, v, **hyper)
    s = cache.scale * (q @ k.swapaxes(-1, -2))
    e = np.exp(s) * (cache.weights > 0)  # the masked keys, as the reference masks them
    total = e.sum(axis=-1, keepdims=True)
    weights = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    dropped = weights if cache.keep is None else weights * cache.keep
    out = dropped @ v
    return out, cache._replace(weights=weights, dropped=dropped, out=out)


def _sdpa_forward_float32_weights(q, k, v, **hyper):
    """The weights cached in float32 (to halve the cache), whatever the input's dtype."""
    out, cache = ref.scaled_dot_product_attention_forward(q, k, v, **hyper)
    weights = cache.weights.astype(np.float32).astype(q.dtype)
    dropped = weights if cache.keep is None else weights * cache.keep
    return out, cache._replace(weights=weights, dropped=dropped)


def _merge_wrong_order(t):
    """(N, heads, T, E/heads) -> (N, T, E) with the width outer and the heads inner: columns interleaved."""
    n, heads, t_len, width = t.shape
    return t.transpose(0, 2, 3, 1).reshape(n, t_len, heads * width)


def _split_wrong_order(t, heads):
    n, t_len, e = t.shape
    return t.reshape(n, t_len, e // heads, heads).transpose(0, 3, 1, 2)


def _mha_steps(dout, cache, *, split=ref._split, merge=ref._merge, wo_t=lambda wo: wo.T, k_path=True):
    """The reference's multi-head backward written out, each step replaceable."""
    x_q, x_kv, wq, wk, wv, wo, merged, attention, heads = cache
    rows = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
    dq, dk, dv = (merge(g) for g in ref.scaled_dot_product_attention_backward(
        split(dout @ wo_t(wo), heads), attention))
    dx_kv = dv @ wv.T + (dk @ wk.T if k_path else 0)
    return (dq @ wq.T, dx_kv, rows(x_q).T @ rows(dq), rows(dq).sum(axis=0), rows(x_kv).T @ rows(dk),
            rows(dk).sum(axis=0), rows(x_kv).T @ rows(dv), rows(dv).sum(axis=0), rows(merged).T @ rows(dout),
            rows(dout).sum(axis=0))


def _self_attention_one_path(dout, cache):
    """dx = dx_q: x is treated as the queries only, its key and value paths dropped."""
    dx_q, _, *params = ref.multi_head_attention_backward(dout, cache)
    return (dx_q, *params)


MUTANTS = (
    Mutant("scaled_dot_product_attention", "scale_missing_in_backward",
           "dq = dS k and dk = dS^T q: the forward's scale 1/sqrt(d) left out of the backward",
           lambda dout, c: _sdpa_steps(dout, c, scaled=False), bug="factor"),
    Mutant("scaled_dot_product_attention", "mask_only_in_forward",
           "the backward recomputes the weights from q and k without the mask (and the causal flag)",
           lambda dout, c: _sdpa_steps(dout, c, weights=_unmasked_weights), bug="formula"),
    Mutant("scaled_dot_product_attention", "softmax_diagonal_only",
           "dS = P (1 - P) dP: only the diagonal of the softmax Jacobian",
           lambda dout, c: _sdpa_steps(dout, c, softmax=lambda p, dp: p * (1 - p) * dp), bug="formula"),
    Mutant("scaled_dot_product_attention", "dk_not_transposed",
           "dk = scale dS q: dS^T's transpose missing (it runs only where Tq = Tk)",
           lambda dout, c: _sdpa_steps(dout, c, dk_from=lambda ds, q: ds @ q), bug="transpose"),
    Mutant("scaled_dot_product_attention", "causal_off_by_one",
           "causal lets query i attend to keys j < i, not j <= i", forward=_sdpa_forward_causal_strict,
           bug="partial"),
    Mutant("scaled_dot_product_attention", "dropout_only_in_forward",
           "dP = dout v^T: the dropout mask and 1/p not applied to the weights' gradient",
           lambda dout, c: _sdpa_steps(dout, c, keep_in_backward=False), bug="formula"),
    Mutant("scaled_dot_product_attention", "unshifted_softmax", "the forward's softmax without the max shift",
           forward=_sdpa_forward_unshifted, bug="instability"),
    Mutant("scaled_dot_product_attention", "float32_weights", "the forward caches the weights rounded to float32",
           forward=_sdpa_forward_float32_weights, bug="precision"),
    Mutant("multi_head_attention", "heads_merged_wrong_order",
           "the backward splits dA and merges dQ, dK, dV with the head index inner, (E/heads, heads), "
           "not outer", lambda dout, c: _mha_steps(dout, c, split=_split_wrong_order, merge=_merge_wrong_order),
           bug="transpose"),
    Mutant("multi_head_attention", "wo_not_transposed", "dA = dout wo, not dout wo^T",
           lambda dout, c: _mha_steps(dout, c, wo_t=lambda wo: wo), bug="transpose"),
    Mutant("multi_head_attention", "key_path_missing", "dx_kv = dV wv^T: the path through the keys left out",
           lambda dout, c: _mha_steps(dout, c, k_path=False), bug="formula"),
    Mutant("multi_head_self_attention", "one_path", "dx = dx_q: the key and value paths of x left out",
           _self_attention_one_path, bug="formula"),
)
