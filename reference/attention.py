"""Attention: scaled dot-product attention and multi-head attention.
Derivations: docs/derivations/scaled_dot_product_attention.md, docs/derivations/multi_head_attention.md

scaled_dot_product_attention, per query row i (leading batch axes, N or N and heads, broadcast):

    S = scale q k^T                     (..., Tq, Tk)    scale = 1/sqrt(d) unless given
    P = softmax over the allowed keys   (..., Tq, Tk)    allowed: mask[i, j] (and j <= i if causal);
                                                         0 at a key not allowed; a row with no key
                                                         allowed is all 0, so its output is 0
    out = (P * D) v                     (..., Tq, dv)    D = dropout_mask / p (1 without dropout)

    dv = (P * D)^T dout                                  (..., Tk, dv)
    dP = D * (dout v^T)                                  (..., Tq, Tk)
    dS = P * (dP - rowsum(dP * P)),   rowsum(dP * P) = rowsum(dout * out)
    dq = scale dS k                                      (..., Tq, d)
    dk = scale dS^T q                                    (..., Tk, d)

A fully masked row is a constant (0) of q, k and v, so its gradients are 0, and with P = 0
there the formulas give exactly that: no 0/0 and no NaN.

multi_head_attention, x_q (N, Tq, E), x_kv (N, Tk, E), every w (E, E) applied as x w, every b (E,):

    Q = x_q wq + bq, K = x_kv wk + bk, V = x_kv wv + bv          (N, T, E)
    split: (N, T, E) -> (N, heads, T, E/heads), head h the columns h E/heads ... (h+1) E/heads - 1
    A = merge(scaled_dot_product_attention(split Q, split K, split V))      (N, Tq, E)
    out = A wo + bo

    dwo = A^T dout, dbo = sum dout, dA = dout wo^T; dQ, dK, dV = merge(attention backward(split dA))
    dx_q = dQ wq^T, dwq = x_q^T dQ, dbq = sum dQ
    dx_kv = dK wk^T + dV wv^T (x_kv feeds both K and V), dwk = x_kv^T dK, dwv = x_kv^T dV

multi_head_self_attention is multi_head_attention with x_q = x_kv = x: x feeds Q, K and V,
so its gradient is the sum of both paths, dx = dx_q + dx_kv.

No backward forms a Jacobian or any (T, T, T) array: the largest intermediate is the
(..., Tq, Tk) weight matrix, and every contraction is one batched matrix product (``@``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = [
    "AttentionCache", "MultiHeadAttentionCache",
    "multi_head_attention_backward", "multi_head_attention_forward",
    "multi_head_self_attention_backward", "multi_head_self_attention_forward",
    "scaled_dot_product_attention_backward", "scaled_dot_product_attention_forward",
]


class AttentionCache(NamedTuple):
    q: np.ndarray  # (..., Tq, d)
    k: np.ndarray  # (..., Tk, d)
    v: np.ndarray  # (..., Tk, dv)
    weights: np.ndarray  # P (..., Tq, Tk): 0 at masked keys and on fully masked rows
    keep: np.ndarray | None  # D = dropout_mask / p (..., Tq, Tk), in q's dtype; None without dropout
    dropped: np.ndarray  # P * D, the weights out was made of (P itself without dropout)
    out: np.ndarray  # (..., Tq, dv), for rowsum(dP * P) = rowsum(dout * out)
    scale: float


class MultiHeadAttentionCache(NamedTuple):
    x_q: np.ndarray  # (N, Tq, E)
    x_kv: np.ndarray  # (N, Tk, E)
    wq: np.ndarray  # (E, E)
    wk: np.ndarray
    wv: np.ndarray
    wo: np.ndarray
    merged: np.ndarray  # A (N, Tq, E): the heads' outputs side by side, the input of wo
    attention: AttentionCache  # of the split (N, heads, T, E/heads) arrays
    heads: int


# ----------------------------------------------------------------------------------------
# Scaled dot-product attention.

def scaled_dot_product_attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, causal: bool = False,
                                         mask: np.ndarray | None = None, scale: float | None = None,
                                         dropout_mask: np.ndarray | None = None,
                                         p: float = 1.0) -> tuple[np.ndarray, AttentionCache]:
    """out = (softmax(scale q k^T over the allowed keys) * dropout_mask / p) v.

    q: (..., Tq, d), k: (..., Tk, d), v: (..., Tk, dv), one floating dtype and the same
    leading (batch) axes "...", any number of them. causal: query i attends to keys j <= i
    (needs Tq = Tk). mask: booleans broadcastable to (..., Tq, Tk), True = attend (key
    padding: (..., 1, Tk)). scale: default 1/sqrt(d). dropout_mask: 0s and 1s of shape
    (..., Tq, Tk), any floating dtype, applied to the weights as inverted dropout with keep
    probability p in (0, 1] (p = 1 and no mask: no dropout).
    A query row with no key allowed gets out = 0 (and zero gradients).
    -> (out: (..., Tq, dv), AttentionCache).
    """
    scale, allowed, keep = _check_attention(q, k, v, causal, mask, scale, dropout_mask, p)
    s = q @ k.swapaxes(-1, -2)
    s *= scale
    if allowed is not None:
        np.copyto(s, -np.inf, where=~allowed)  # e^(-inf) = 0: a masked key gets no weight
    # softmax, shifted by the row's max over its allowed keys (-inf on a fully masked row, shifted by 0)
    top = np.max(s, axis=-1, keepdims=True, initial=-np.inf)
    top[np.isneginf(top)] = 0
    s -= top
    weights = np.exp(s, out=s)
    total = np.sum(weights, axis=-1, keepdims=True)
    np.divide(weights, total, out=weights, where=total > 0)  # a fully masked row stays 0, not 0/0
    dropped = weights if keep is None else weights * keep
    out = dropped @ v
    return out, AttentionCache(q, k, v, weights, keep, dropped, out, scale)


def scaled_dot_product_attention_backward(dout: np.ndarray, cache: AttentionCache
                                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout: (..., Tq, dv) -> (dq: (..., Tq, d), dk: (..., Tk, d), dv: (..., Tk, dv)), in q's dtype."""
    q, k, v, weights, keep, dropped, out, scale = cache
    _validate.upstream(dout, out.shape, out.dtype)
    # out = (P * D) v
    dv = dropped.swapaxes(-1, -2) @ dout
    ds = dout @ v.swapaxes(-1, -2)  # the gradient of P * D; made dP, then dS, in place (one Tq x Tk array)
    # P * D: the dropout mask passes the gradient of the weights it kept, times 1/p
    if keep is not None:
        ds *= keep
    # P = softmax(S): dS = P * (dP - rowsum(dP * P)); the row sum is rowsum(dout * out), which
    # costs Tq dv products instead of Tq Tk, as out = (P * D) v
    ds -= np.einsum("...ia,...ia->...i", dout, out)[..., None]
    ds *= weights
    # S = scale q k^T
    dq = ds @ k
    dq *= scale
    dk = ds.swapaxes(-1, -2) @ q
    dk *= scale
    return dq, dk, dv


def _check_attention(q, k, v, causal, mask, scale, dropout_mask, p):
    """Validate; return the scale, the allowed keys (booleans broadcast to (..., Tq, Tk), or None
    when every key is) and D = dropout_mask / p in q's dtype (or None)."""
    for name, value in (("q", q), ("k", k), ("v", v)):
        _validate.float_array(name, value)
        _validate.min_ndim(name, value, 2, "(..., T, d)")
    _validate.same_dtype("k", k, "q", q)
    _validate.same_dtype("v", v, "q", q)
    for name, value in (("k", k), ("v", v)):
        if value.shape[:-2] != q.shape[:-2]:
            raise ValueError(
                f"{name} has shape {value.shape} but q has shape {q.shape}: their leading (batch) axes "
                f"must be the same, {q.shape[:-2]}")
    _validate.dim_equals("k", k, -1, "q", q, -1)
    _validate.dim_equals("v", v, -2, "k", k, -2)
    tq, tk = q.shape[-2], k.shape[-2]
    weights_shape = q.shape[:-1] + (tk,)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    if causal and tq != tk:
        raise ValueError(
            f"q has shape {q.shape} and k has shape {k.shape}: causal attention (query i attends to keys "
            f"j <= i) needs Tq = Tk, got {tq} and {tk}")
    if scale is None:
        if q.shape[-1] == 0:
            raise ValueError(f"q has shape {q.shape}: the default scale 1/sqrt(d) needs d >= 1")
        scale = 1.0 / math.sqrt(q.shape[-1])
    else:
        scale = _validate.real_in("scale", scale, -math.inf, math.inf, low_open=True, high_open=True)
    allowed = None
    if mask is not None:
        _check_mask(mask, weights_shape, "(..., Tq, Tk)")
        allowed = np.broadcast_to(mask, weights_shape)
    if causal:
        below = np.tri(tq, tk, dtype=bool)  # [i, j] = j <= i
        allowed = below if allowed is None else allowed & below
    p = _validate.real_in("p", p, 0.0, 1.0, low_open=True)
    keep = None
    if dropout_mask is not None:
        _validate.float_array("dropout_mask", dropout_mask)
        if dropout_mask.shape != weights_shape:
            raise ValueError(
                f"dropout_mask has shape {dropout_mask.shape} but the attention weights have shape "
                f"{weights_shape} (..., Tq, Tk): they must have the same shape")
        binary = (dropout_mask == 0) | (dropout_mask == 1)
        if not binary.all():
            raise ValueError(
                f"dropout_mask (shape {dropout_mask.shape}) has an entry {dropout_mask[~binary].flat[0]} "
                f"that is neither 0 nor 1: a dropout mask keeps (1) or drops (0) each weight")
        keep = np.divide(dropout_mask, p, dtype=q.dtype)
    elif p != 1.0:
        raise ValueError(f"p is {p} but dropout_mask is None: pass the mask drawn with keep probability p")
    return scale, allowed, keep


def _check_mask(mask, shape, symbols):
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = f"dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"mask must be a numpy.ndarray of booleans (True = attend), got {got}")
    try:
        fits = np.broadcast_shapes(mask.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"mask has shape {mask.shape} but must broadcast to the attention weights' "
                         f"shape {shape} {symbols}")


# ----------------------------------------------------------------------------------------
# Multi-head attention.

def multi_head_attention_forward(x_q: np.ndarray, x_kv: np.ndarray, wq: np.ndarray, bq: np.ndarray,
                                 wk: np.ndarray, bk: np.ndarray, wv: np.ndarray, bv: np.ndarray,
                                 wo: np.ndarray, bo: np.ndarray, *, heads: int, causal: bool = False,
                                 mask: np.ndarray | None = None) -> tuple[np.ndarray, MultiHeadAttentionCache]:
    """out = merge(attention(split(x_q wq + bq), split(x_kv wk + bk), split(x_kv wv + bv))) wo + bo.

    x_q: (N, Tq, E), x_kv: (N, Tk, E) (the same array for self-attention), every w (E, E),
    every b (E,), one floating dtype; heads divides E, each head of width E/heads with the
    scale 1/sqrt(E/heads). causal: query i attends to keys j <= i (Tq = Tk); mask: booleans
    broadcastable to (N, Tq, Tk), True = attend, the same for every head.
    -> (out: (N, Tq, E), MultiHeadAttentionCache).
    """
    params = (wq, bq, wk, bk, wv, bv, wo, bo)
    heads, head_mask = _check_multi_head((("x_q", x_q, "Tq"), ("x_kv", x_kv, "Tk")), params, heads, causal, mask)
    return _multi_head_forward(x_q, x_kv, params, heads, causal, head_mask)


def multi_head_attention_backward(dout: np.ndarray, cache: MultiHeadAttentionCache) -> tuple[np.ndarray, ...]:
    """dout: (N, Tq, E) -> (dx_q (N, Tq, E), dx_kv (N, Tk, E), dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo),
    each w's gradient (E, E), each b's (E,), in the forward's dtype."""
    x_q, x_kv, wq, wk, wv, wo, merged, attention, heads = cache
    _validate.upstream(dout, merged.shape, merged.dtype)
    # out = A wo + bo
    dwo, dbo = _rows(merged).T @ _rows(dout), _rows(dout).sum(axis=0)
    dmerged = _affine(dout, wo.T)
    # A = merge(attention(split Q, split K, split V))
    dq, dk, dv = (_merge(g) for g in scaled_dot_product_attention_backward(_split(dmerged, heads), attention))
    # Q = x_q wq + bq
    dx_q, dwq, dbq = _affine(dq, wq.T), _rows(x_q).T @ _rows(dq), _rows(dq).sum(axis=0)
    # K = x_kv wk + bk and V = x_kv wv + bv: x_kv feeds both
    dx_kv = _affine(dk, wk.T)
    dx_kv += _affine(dv, wv.T)
    dwk, dbk = _rows(x_kv).T @ _rows(dk), _rows(dk).sum(axis=0)
    dwv, dbv = _rows(x_kv).T @ _rows(dv), _rows(dv).sum(axis=0)
    return dx_q, dx_kv, dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo


def multi_head_self_attention_forward(x: np.ndarray, wq: np.ndarray, bq: np.ndarray, wk: np.ndarray,
                                      bk: np.ndarray, wv: np.ndarray, bv: np.ndarray, wo: np.ndarray,
                                      bo: np.ndarray, *, heads: int, causal: bool = False,
                                      mask: np.ndarray | None = None) -> tuple[np.ndarray, MultiHeadAttentionCache]:
    """multi_head_attention_forward(x, x, ...): x (N, T, E) is queries, keys and values at once.

    -> (out: (N, T, E), MultiHeadAttentionCache).
    """
    params = (wq, bq, wk, bk, wv, bv, wo, bo)
    heads, head_mask = _check_multi_head((("x", x, "T"),), params, heads, causal, mask)
    return _multi_head_forward(x, x, params, heads, causal, head_mask)


def multi_head_self_attention_backward(dout: np.ndarray, cache: MultiHeadAttentionCache) -> tuple[np.ndarray, ...]:
    """dout: (N, T, E) -> (dx (N, T, E), dwq, dbq, dwk, dbk, dwv, dbv, dwo, dbo).

    x reaches out along two paths, as x_q and as x_kv, so dx = dx_q + dx_kv.
    """
    dx, dx_kv, *params = multi_head_attention_backward(dout, cache)
    dx += dx_kv
    return (dx, *params)


def _multi_head_forward(x_q, x_kv, params, heads, causal, head_mask):
    wq, bq, wk, bk, wv, bv, wo, bo = params
    q, k, v = (_split(_affine(x, w, b), heads) for x, w, b in ((x_q, wq, bq), (x_kv, wk, bk), (x_kv, wv, bv)))
    attended, attention = scaled_dot_product_attention_forward(q, k, v, causal=causal, mask=head_mask)
    merged = _merge(attended)
    return _affine(merged, wo, bo), MultiHeadAttentionCache(x_q, x_kv, wq, wk, wv, wo, merged, attention, heads)


def _split(x, heads):
    """(N, T, E) -> (N, heads, T, E/heads), a view: head h holds columns h E/heads ... (h+1) E/heads - 1."""
    n, t, e = x.shape
    return x.reshape(n, t, heads, e // heads).swapaxes(1, 2)


def _merge(x):
    """(N, heads, T, E/heads) -> (N, T, E), the inverse of _split (a copy: the heads go side by side)."""
    n, heads, t, width = x.shape
    return x.swapaxes(1, 2).reshape(n, t, heads * width)


def _affine(x, w, b=None):
    """x w (+ b) for x (N, T, E): one matrix product over all N T rows, not one per example."""
    y = _rows(x) @ w
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (w.shape[1],))


def _rows(x):
    """(N, T, E) -> (N T, E): every position of every example is one row of a linear layer."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _check_multi_head(xs, params, heads, causal, mask):
    """Validate; return heads and the mask with a head axis, broadcastable to (N, heads, Tq, Tk).

    ``xs``: (name, array, length symbol) of each sequence, ("x_q", x_q, "Tq") and ("x_kv", x_kv,
    "Tk"), or ("x", x, "T") alone for self-attention, so that every message names the caller's argument.
    """
    for name, x, length in xs:
        _validate.float_array(name, x)
        _validate.ndim(name, x, 3, f"(N, {length}, E)")
    (first, x_q, tq), (last, x_kv, tk) = xs[0], xs[-1]
    _validate.same_dtype(last, x_kv, first, x_q)
    _validate.dim_equals(last, x_kv, 0, first, x_q, 0)
    _validate.dim_equals(last, x_kv, 2, first, x_q, 2)
    e = x_q.shape[2]
    for name, value in zip(("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"), params):
        _validate.float_array(name, value)
        _validate.same_dtype(name, value, first, x_q)
        expected = (e, e) if name[0] == "w" else (e,)
        if value.shape != expected:
            raise ValueError(f"{name} has shape {value.shape} but {first} has shape {x_q.shape}: {name} must "
                             f"have shape {expected} ({'E, E' if name[0] == 'w' else 'E,'}), E = {e}")
    heads = _validate.positive_int("heads", heads)
    if e == 0:
        raise ValueError(f"{first} has shape {x_q.shape}: the width E must be at least 1")
    if e % heads:
        raise ValueError(f"{first} has shape {x_q.shape}: its width E = {e} must be divisible by heads = {heads}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    if causal and x_q.shape[1] != x_kv.shape[1]:
        raise ValueError(
            f"{first} has shape {x_q.shape} and {last} has shape {x_kv.shape}: causal attention (query i "
            f"attends to keys j <= i) needs Tq = Tk, got {x_q.shape[1]} and {x_kv.shape[1]}")
    if mask is None:
        return heads, None
    _check_mask(mask, (x_q.shape[0], x_q.shape[1], x_kv.shape[1]), f"(N, {tq}, {tk})")
    return heads, mask.reshape((1,) * (3 - mask.ndim) + mask.shape)[:, None]
