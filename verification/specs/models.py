"""JAX specifications of the models (``reference/models.py``): whole networks, proven end to end.

Each model's ``jax_*`` forward is written directly in ``jnp`` (einsum, ``lax.conv_general_dilated``,
``lax.reduce_window``, ``lax.scan`` over the stacked blocks), not through the reference's step
lists, so the composition itself is checked: a step wired to the wrong value, a residual left
out or an unembedding not tied changes the loss.

The error magnitude is the chain rule of error scales, written once (``chained_magnitude``): a
running error analysis at the granularity of layers, each layer's own rounding bounded as the
single layers are and the errors it passes on added in quadrature, walking the *reference's own
step list* (``reference.models.*_steps``) with one rule per layer. Derivation:
docs/derivations/network.md.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import models as ref
from reference import network
from reference.conv import conv2d_forward
from reference.pooling import max_pool2d_forward
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays, choices, indices
from verification.specs.activations import _gelu_tanh_gate, jax_gelu_tanh
from verification.specs.attention import _allowed, _attention_scales
from verification.specs.conv import jax_conv
from verification.specs.normalisation import _normalisation_magnitude
from verification.specs.pooling import jax_max_pool2d
from verification.specs.recurrent import (Bound, _input_grads, _lstm_backward, _lstm_forward, _rnn_backward,
                                          _rnn_forward, jax_lstm, jax_rnn)
from verification.specs.temporal import ABSENT_SCORE, jax_temporal_affine

# ----------------------------------------------------------------------------------------
# Independent forwards.
#
# The keyword arguments after a blank line in each signature are the buckets' (Hints.pad,
# "The buckets" below): oracle-only hyperparameters that leave the padding of a bucket out of
# every mean, statistic and softmax. The NumPy forwards never see them, and without them each
# forward is the plain model.

def _mean(a, axis, mask=None):
    """The mean over ``axis`` (kept), or over the entries where ``mask`` (broadcast to a's shape) is 1."""
    if mask is None:
        return jnp.mean(a, axis=axis, keepdims=True)
    mask = jnp.broadcast_to(mask, a.shape)
    return jnp.sum(mask * a, axis=axis, keepdims=True) / jnp.sum(mask, axis=axis, keepdims=True)


def _standardise(a, axis, eps, mask=None):
    centred = a - _mean(a, axis, mask)
    return centred / jnp.sqrt(_mean(jnp.square(centred), axis, mask) + eps)


def _batchnorm(x, gamma, beta, *, eps, mask=None):
    """x (R, D) standardised per column over the rows (where mask (R, 1) is 1)."""
    return _standardise(x, 0, eps, mask) * gamma + beta


def _layernorm(x, gamma, beta, *, eps, mask=None):
    """x (..., D) standardised per row over the features (where mask (D,) is 1)."""
    return _standardise(x, -1, eps, mask) * gamma + beta


def _cross_entropy(logits, labels, weights=None):
    """-log softmax(logits)[label] for logits (..., V), labels (...): the mean, or the sum weighted by ``weights`` (...)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    return -(jnp.mean(picked) if weights is None else jnp.sum(weights * picked))


def jax_two_layer_net(x, w1, b1, w2, b2, *, labels,
                      row_weights=None):
    return _cross_entropy(jax.nn.relu(x @ w1 + b1) @ w2 + b2, labels, row_weights)


NORMS = tuple(ref.NORMS)
"""fc_net's normalisations, in the order of the bucket's traced ``norm_index``."""


def _fc_norm(a, gamma, beta, *, norm, eps, norm_index, rows, units):
    """fc_net's normalisation of a (N, H): the one ``norm`` names, or the one ``norm_index`` picks (traced)."""
    batch = lambda: _batchnorm(a, gamma, beta, eps=eps, mask=None if rows is None else rows[:, None])  # noqa: E731
    feature = lambda: _layernorm(a, gamma, beta, eps=eps, mask=units)  # noqa: E731
    if norm_index is None:
        return {"none": lambda: a, "batchnorm": batch, "layernorm": feature}[norm]()
    return jnp.where(norm_index == 1, batch(), jnp.where(norm_index == 2, feature(), a))


def jax_fc_net(x, w_in, b_in, w_mid, b_mid, gamma, beta, w_out, b_out, *, labels, norm="none", eps=1e-5,
               dropout_masks=None, p=1.0,
               row_weights=None, rows=None, units=None, norm_index=None, active=None):
    h = x
    for layer, (w, b) in enumerate([(w_in, b_in)] + [(w_mid[i], b_mid[i]) for i in range(w_mid.shape[0])]):
        a = _fc_norm(h @ w + b, gamma[layer], beta[layer], norm=norm, eps=eps, norm_index=norm_index, rows=rows,
                     units=units)
        out = jax.nn.relu(a)
        if dropout_masks is not None:
            out = jnp.where(dropout_masks[layer] != 0, out / p, 0.0)
        h = out if active is None or layer == 0 else jnp.where(active[layer] != 0, out, h)
    return _cross_entropy(h @ w_out + b_out, labels, row_weights)


def jax_conv_net(x, w1, b1, w2, b2, w3, b3, *, labels, pool=2,
                 row_weights=None, taps1=None, taps2=None, kept1=None, kept2=None, flat=None):
    h = x
    for w, b, taps, kept in ((w1, b1, taps1, kept1), (w2, b2, taps2, kept2)):
        if taps is not None:
            w = w[:, :, taps][:, :, :, taps]
        padding = [((k - 1) // 2,) * 2 for k in w.shape[2:]]
        h = lax.conv_general_dilated(h, w, (1, 1), padding, dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + b[:, None, None])
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, pool, pool), (1, 1, pool, pool), "VALID")
        if kept is not None:
            h = h * kept
    return _cross_entropy(h.reshape(h.shape[0], -1) @ (w3 if flat is None else w3[flat]) + b3, labels, row_weights)


def _any_cell(words, h0, wx, wh, b, *, lstm):
    """The lstm where ``lstm`` (traced) is 1, else the rnn, whose weights are the lstm's first gate block."""
    h = h0.shape[1]
    return jnp.where(lstm != 0, jax_lstm(words, h0, wx, wh, b), jax_rnn(words, h0, wx[:, :h], wh[:, :h], b[:h]))


def jax_captioning_rnn(features, w_proj, b_proj, w_embed, wx, wh, b, w_vocab, b_vocab, *, captions, cell="rnn",
                       null=0,
                       columns=None, batch=None, lstm=None):
    if columns is not None:
        wx, wh, b = (a[..., columns] for a in (wx, wh, b))
    h0 = features @ w_proj + b_proj
    words = w_embed[captions[:, :-1]]
    if lstm is None:
        hidden = (jax_rnn if cell == "rnn" else jax_lstm)(words, h0, wx, wh, b)
    else:
        hidden = _any_cell(words, h0, wx, wh, b, lstm=lstm)
    log_probs = jax.nn.log_softmax(jnp.einsum("nth,hv->ntv", hidden, w_vocab) + b_vocab, axis=-1)
    targets = captions[:, 1:]
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(targets != null, picked, 0.0)) / (captions.shape[0] if batch is None else batch)


def jax_gpt(wte, wpe, ln1_gamma, ln1_beta, wq, bq, wk, bk, wv, bv, wo, bo, ln2_gamma, ln2_beta, w_fc, b_fc,
            w_proj, b_proj, lnf_gamma, lnf_beta, *, tokens, targets, heads, eps=1e-5,
            row_weights=None, features=None, head_columns=None, scale=None, absent=None, active=None):
    n, t = tokens.shape
    e = wte.shape[1]
    d = e // heads
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    causal = jnp.tril(jnp.ones((t, t), bool))
    if head_columns is not None:
        wq, bq, wk, bk, wv, bv = (a[..., head_columns] for a in (wq, bq, wk, bk, wv, bv))
        wo = wo[:, head_columns]
    on = jnp.ones(wq.shape[0]) if active is None else active

    def heads_of(a, w, b):
        return (jnp.einsum("nte,ef->ntf", a, w) + b).reshape(n, t, heads, d)

    def block(h, p):
        g1, c1, wq, bq, wk, bk, wv, bv, wo, bo, g2, c2, w_fc, b_fc, w_proj, b_proj, on = p
        a = _layernorm(h, g1, c1, eps=eps, mask=features)
        scores = scale * jnp.einsum("nqhd,nkhd->nhqk", heads_of(a, wq, bq), heads_of(a, wk, bk))
        weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        attended = jnp.einsum("nhqk,nkhd->nqhd", weights, heads_of(a, wv, bv)).reshape(n, t, e)
        mid = h + jnp.einsum("nte,ef->ntf", attended, wo) + bo
        hidden = jax_gelu_tanh(jnp.einsum("nte,em->ntm", _layernorm(mid, g2, c2, eps=eps, mask=features), w_fc) + b_fc)
        return jnp.where(on != 0, mid + jnp.einsum("ntm,me->nte", hidden, w_proj) + b_proj, h), None

    blocks = (ln1_gamma, ln1_beta, wq, bq, wk, bk, wv, bv, wo, bo, ln2_gamma, ln2_beta, w_fc, b_fc, w_proj, b_proj, on)
    h, _ = lax.scan(block, wte[tokens] + wpe[:t], blocks)
    logits = jnp.einsum("nte,ve->ntv", _layernorm(h, lnf_gamma, lnf_beta, eps=eps, mask=features), wte)
    return _cross_entropy(logits if absent is None else logits + absent, targets, row_weights)


# ----------------------------------------------------------------------------------------
# The error magnitude: the chain rule of error bounds.
#
# A model is a list of steps (the reference's own, from reference.models.*_steps). The loss is
# computed through every one of them in the forward, and its gradient through every one of
# their backwards; each rounds, and each passes on the errors it receives. The magnitude
# follows both, to first order in u (units: the tolerance's eps * scale, see
# verification.tolerance), walking the steps twice with values from the float64 specification:
#
#   forward  F(v): the error scale of each computed value v. Given values are exact (F = 0: the
#            oracle evaluates the same rounded inputs). A step's output has its own rounding O
#            (the sum of |terms| it is computed from, the layer's worst case) and its inputs'
#            errors carried through J:
#                F(out)^2 = O^2 + (J o J) F(x)^2            (o: entrywise; squares entrywise)
#   backward E(v): the error scale of each computed gradient; E(loss) = 0 (dout is given). A step
#            hands each input
#                E(x)^2 = (J o J)^T E(out)^2 + S(|g|)^2 + Q(F(x), |g|)^2
#            the incoming error carried back, its own rounding S (the layer's magnitude for the
#            true upstream gradient g: the sum of |terms| of its backward) and Q, the effect of
#            the forward's errors on its backward (dW = x^T g reads the computed x, layernorm's
#            dx the computed sigma, softmax's p - onehot the computed logits). A value read by
#            several steps gets E^2 = sum of its readers' E^2 + (sum of |their gradients|)^2,
#            the last for the rounding of the sum itself.
#
# Why errors from different layers add in quadrature, not in absolute value: a layer's own
# rounding is bounded in the worst case (its S, exactly what the single layers are proven
# with), but what it hands on mixes many independent roundings of either sign; their sum
# through the next layers behaves as a random walk, the probabilistic model of rounding error
# analysis (Higham and Mary, SIAM J. Sci. Comput. 41, 2019) that tolerance.C already leans on
# within one contraction. The worst case, |J|^T E instead of ((J o J)^T E^2)^(1/2), adds every
# rounding with the sign that hurts, and compounds: each contraction of K terms multiplies
# E/|g| by up to ~sqrt(K) and each normalisation by |J|'s row sums (3/sigma against J's norm
# 1/sigma), so over gpt's 23 steps at the demo's size and initialisation it reached
# E ~ 10^45 |g|, a tolerance no gradient could fail. Within a layer the worst case is kept
# (multi-head attention and the recurrent cells propagate their inputs' errors through |J|).
# Unrolled from the loss, E counts one rounding per layer along every path: the number of
# layers the errors accumulate over is counted by the walk, not assumed. The gradient's
# tolerance is C eps E, the loss's C eps F(loss).
#
# The rules, per kind of layer (derived in docs/derivations/network.md):
#   multilinear (affine, linear, conv2d, temporal_affine, embedding, dropout): every term a
#            product of input entries, each read once per output; so O and S are the forward
#            on |a| and its pullback of |g| (tolerance.multilinear_magnitude), J o J is the
#            same map on squared inputs (its jvp along F^2, its pullback of E^2), and Q the
#            mixed second derivative on squares: dW's variance (F_x^2)^T g^2;
#   exact    (relu, max_pool2d without overlap, reshape, transpose): J in {0, 1}, no rounding:
#            F(out)^2 = J F^2 (a jvp), E(x)^2 = J^T E(out)^2 (a vjp), away from kinks and ties,
#            which the input spaces keep at a distance;
#   add      F(out)^2 = F(a)^2 + F(b)^2 + (|a| + |b|)^2, E(a) = E(b) = E(out) (the backward copies);
#   gelu_tanh, layernorm, batchnorm, multi-head self-attention, softmax cross-entropy,
#   temporal softmax loss, rnn and lstm: below, each next to its rule.

class Rule(NamedTuple):
    """A layer's part in the walk: its JAX forward, ``forward_error(inputs, errors, hyper) -> F(out)``
    and ``backward_error(inputs, errors, g, e, hyper) -> E of each input``. A rule walked as its own
    sub-steps gives ``walk(inputs, errors, hyper) -> (out, F(out), backward)`` instead, with
    ``backward(g, e) -> (the pullback of g, E of each input)``: its sub-steps' forward, values and
    errors alike, then serves both directions, traced once."""

    forward: Callable
    forward_error: Callable | None
    backward_error: Callable | None
    walk: Callable | None = None


def _pullback(function, inputs, hyper, cotangent):
    return jax.vjp(lambda *a: function(*a, **hyper), *inputs)[1](cotangent)


def _along(function, inputs, hyper, tangents):
    return jax.jvp(lambda *a: function(*a, **hyper), tuple(inputs), tuple(tangents))[1]


def _norm(*squares):
    return jnp.sqrt(sum(squares))


def multilinear(function) -> Rule:
    def forward_error(inputs, errors, hyper):
        own = function(*(jnp.abs(a) for a in inputs), **hyper)
        squares = [jnp.square(a) for a in inputs]
        return _norm(jnp.square(own), _along(function, squares, hyper, [jnp.square(f) for f in errors]))

    def backward_error(inputs, errors, g, e, hyper):
        own = _pullback(function, [jnp.abs(a) for a in inputs], hyper, jnp.abs(g))
        squares = [jnp.square(a) for a in inputs]
        carried = _pullback(function, squares, hyper, jnp.square(e))
        # Q: the terms that read an erroneous input and the one differentiated, d^2 f / du_i du_j F_i^2
        mixed = jax.vjp(lambda *u: _along(function, u, hyper, [jnp.square(f) for f in errors]), *squares)[1](
            jnp.square(g))
        return tuple(_norm(jnp.square(o), c, q) for o, c, q in zip(own, carried, mixed))

    return Rule(function, forward_error, backward_error)


def exact(function) -> Rule:
    return Rule(function,
                lambda inputs, errors, hyper: jnp.sqrt(_along(function, inputs, hyper,
                                                              [jnp.square(f) for f in errors])),
                lambda inputs, errors, g, e, hyper: tuple(jnp.sqrt(c) for c in
                                                          _pullback(function, inputs, hyper, jnp.square(e))))


ADD = Rule(lambda a, b: a + b,
           lambda inputs, errors, hyper: _norm(jnp.square(errors[0]), jnp.square(errors[1]),
                                               jnp.square(jnp.abs(inputs[0]) + jnp.abs(inputs[1]))),
           lambda inputs, errors, g, e, hyper: (e, e))


def _gelu_tanh_forward_error(inputs, errors, hyper):
    (x,), (f,) = inputs, errors
    y, slope = jax.jvp(jax_gelu_tanh, (x,), (jnp.ones_like(x),))
    return _norm(jnp.square(jnp.abs(y) + jnp.abs(slope * x)), jnp.square(slope * f))


def _gelu_tanh_backward_error(inputs, errors, g, e, hyper):
    """Own: the activation's magnitude (verification/specs/activations.py: the product rule's
    terms |G| + |x G'| for f' = G + x G', and the condition |f''| |x|); carried: f'(x) e; Q:
    f' evaluated at the computed x, |f''| F |g|."""
    (x,), (f,) = inputs, errors
    ones = jnp.ones_like(x)
    gate, dgate = jax.jvp(_gelu_tanh_gate, (x,), (ones,))
    slope, curvature = jax.jvp(lambda z: jax.jvp(jax_gelu_tanh, (z,), (jnp.ones_like(z),))[1], (x,), (ones,))
    own = (jnp.abs(gate) + jnp.abs(x * dgate) + jnp.abs(curvature * x)) * jnp.abs(g)
    return (_norm(jnp.square(own), jnp.square(slope * e), jnp.square(curvature * f * g)),)


GELU_TANH = Rule(jax_gelu_tanh, _gelu_tanh_forward_error, _gelu_tanh_backward_error)


def _normalisation(function, axis) -> Rule:
    """layernorm (axis 1) or batchnorm (axis 0) of x (R, D); n elements per group, means over it.

    J = d y_j / d x_i = (gamma_j / sigma) P_ij within a group, P = I - (1 + xhat xhat^T)/n
    (symmetric), so (J o J) needs sum_i P_ij^2 u_i, in closed form:
        P_ij^2 = delta_ij (1 - 2 (1 + xhat_j^2)/n) + (1 + 2 xhat_i xhat_j + xhat_i^2 xhat_j^2)/n^2
        sum_i P_ij^2 u_i = u_j (1 - 2 (1 + xhat_j^2)/n) + (mean u + 2 xhat_j mean(u xhat) + xhat_j^2 mean(u xhat^2))/n
    Own rounding: the layer's magnitude (verification/specs/normalisation.py). Q: an error F of x
    moves xhat by at most Phi = (F + mean F + |xhat| mean(|xhat| F))/sigma and sigma relatively by
    psi = mean(|xhat| F)/sigma, so dgamma = sum dy xhat gains sum |g| Phi, and
    dx = (1/sigma)(gamma g - mean(gamma g) - xhat mean(gamma g xhat)) gains
    psi |dx| + (1/sigma)(Phi mean|gamma g xhat| + |xhat| mean(|gamma g| Phi)), |dx| bounded by
    the layer's own magnitude for dx.

    With the hyperparameter ``mask`` (a bucket's, broadcast to x: (R, 1) or (D,)), a group is its
    entries where the mask is 1: the means and n count those, and the others, the padding, carry
    no error (their outputs and gradients are the padding's own, which no real one reads; the
    closed forms above, meant for members of the group, need not even be positive there)."""
    magnitude = _normalisation_magnitude(lambda t, statistics: statistics["group_mean"](t), centred=True)

    def walk(inputs, errors, hyper):
        x, gamma, f = inputs[0], inputs[1], errors[0]
        mask = hyper.get("mask")
        keep = jnp.ones_like(x) if mask is None else jnp.broadcast_to(mask, x.shape)
        n = jnp.sum(keep, axis=axis, keepdims=True)
        weights = keep / n
        mean = lambda t: jnp.sum(weights * t, axis=axis, keepdims=True)  # noqa: E731
        statistics = {"eps": hyper["eps"], "group_mean": lambda t: jnp.broadcast_to(mean(t), t.shape)}
        sigma = jnp.sqrt(mean(jnp.square(x - mean(x))) + hyper["eps"])
        xhat = (x - mean(x)) / sigma
        abs_gamma = jnp.abs(gamma)

        def projected(u):
            return u * (1 - 2 * (1 + jnp.square(xhat)) / n) + (
                mean(u) + 2 * xhat * mean(u * xhat) + jnp.square(xhat) * mean(u * jnp.square(xhat))) / n

        out, pullback = jax.vjp(lambda *a: function(*a, **hyper), *inputs)
        own, _ = magnitude(None, inputs, statistics, jnp.zeros_like(x))
        forward_error = jnp.where(keep != 0, _norm(jnp.square(own), jnp.square(abs_gamma / sigma) * projected(
            jnp.square(f))), 0.0)

        def backward(g, e):
            phi = (f + mean(f) + jnp.abs(xhat) * mean(jnp.abs(xhat) * f)) / sigma
            psi = mean(jnp.abs(xhat) * f) / sigma
            _, (dx, dgamma, dbeta) = magnitude(None, inputs, statistics, jnp.abs(g))
            gg = abs_gamma * jnp.abs(g)
            q_x = psi * dx + (phi * mean(gg * jnp.abs(xhat)) + jnp.abs(xhat) * mean(gg * phi)) / sigma
            carried_x = projected(jnp.square(abs_gamma * e)) / jnp.square(sigma)
            carried_gamma = jnp.sum(jnp.square(xhat * e), axis=0)
            q_gamma = jnp.sum(jnp.abs(g) * phi, axis=0)
            return pullback(g), (jnp.where(keep != 0, _norm(jnp.square(dx), carried_x, jnp.square(q_x)), 0.0),
                                 _norm(jnp.square(dgamma), carried_gamma, jnp.square(q_gamma)),
                                 _norm(jnp.square(dbeta), jnp.sum(jnp.square(e), axis=0)))

        return out, forward_error, backward

    return Rule(function, None, None, walk)


LAYERNORM = _normalisation(_layernorm, 1)
BATCHNORM = _normalisation(_batchnorm, 0)


def _any_norm(x, gamma, beta, *, eps, norm_index, rows, units):
    return _fc_norm(x, gamma, beta, norm=None, eps=eps, norm_index=norm_index, rows=rows, units=units)


def _any_norm_walk(inputs, errors, hyper):
    """What the normalisation ``norm_index`` picks gives: none (no step: the input's own value,
    error and gradient, nothing for gamma and beta), or the batchnorm's or layernorm's rule's."""
    index, eps = hyper["norm_index"], hyper["eps"]
    batch = BATCHNORM.walk(inputs, errors, {"eps": eps, "mask": hyper["rows"][:, None]})
    feature = LAYERNORM.walk(inputs, errors, {"eps": eps, "mask": hyper["units"]})

    def pick(none, by_rows, by_units):
        return jnp.where(index == 1, by_rows, jnp.where(index == 2, by_units, none))

    def backward(g, e):
        (batch_grads, batch_bounds), (feature_grads, feature_bounds) = batch[2](g, e), feature[2](g, e)
        zeros = tuple(jnp.zeros_like(a) for a in inputs[1:])
        return (tuple(map(pick, (g, *zeros), batch_grads, feature_grads)),
                tuple(map(pick, (e, *zeros), batch_bounds, feature_bounds)))

    return pick(inputs[0], batch[0], feature[0]), pick(errors[0], batch[1], feature[1]), backward


ANY_NORM = Rule(_any_norm, None, None, _any_norm_walk)
"""fc_net's bucket: the normalisation its traced ``norm_index`` picks (or none: the identity, which
passes errors on unchanged and leaves gamma and beta none), among the rules of each."""


def _split_heads(a, heads):
    n, t, e = a.shape
    return a.reshape(n, t, heads, e // heads).swapaxes(1, 2)


def _merge_heads(a):
    n, heads, t, d = a.shape
    return a.swapaxes(1, 2).reshape(n, t, heads * d)


def _scale(q, hyper):
    """The scores' scale: 1/sqrt(E/heads), or the bucket's own (that of the real head width)."""
    return hyper["scale"] if "scale" in hyper else 1.0 / math.sqrt(q.shape[2] // hyper["heads"])


def _attention_core(q, k, v, *, heads, causal, scale=None):
    """softmax(scale q k^T, causal) v per head, scale = 1/sqrt(E/heads) by default: multi-head
    attention between its projections."""
    scale = _scale(q, {"heads": heads} if scale is None else {"heads": heads, "scale": scale})
    weights = jax.nn.softmax(jnp.where(_allowed(q.shape[1], k.shape[1], causal, None),
                                       scale * jnp.einsum("nhqd,nhkd->nhqk", _split_heads(q, heads),
                                                          _split_heads(k, heads)), -jnp.inf), axis=-1)
    return _merge_heads(jnp.einsum("nhqk,nhkd->nhqd", weights, _split_heads(v, heads)))


def _core_scales(inputs, errors, g, e, hyper):
    """(out, dq, dk, dv) of the attention core: verification/specs/attention.py's running bound, worst
    case within the core, with the projections' errors as the inputs' errors and e as the upstream
    gradient's, taken to first order in the errors (its products (|q| + e_q)(|k| + e_k) would count
    e_q e_k, a u^2 term, as u: harmless where e ~ |q|, not where q carries a chain's errors)."""
    heads, (q, k, v) = hyper["heads"], inputs
    split = lambda a: _split_heads(a, heads)  # noqa: E731
    allowed = _allowed(q.shape[1], k.shape[1], hyper.get("causal", False), None)
    errors = tuple(split(a) for a in (*errors, e))

    def scales(errors):
        return _attention_scales(split(q), split(k), split(v), split(jnp.abs(g)), errors, allowed, None,
                                 _scale(q, hyper))

    at_zero, slope = jax.jvp(scales, (tuple(jnp.zeros_like(a) for a in errors),), (errors,))
    return tuple(_merge_heads(a + b) for a, b in zip(at_zero, slope))


ATTENTION_CORE = Rule(_attention_core,
                      lambda inputs, errors, hyper: _core_scales(inputs, errors, jnp.zeros_like(inputs[0]),
                                                                 jnp.zeros_like(inputs[0]), hyper)[0],
                      lambda inputs, errors, g, e, hyper: _core_scales(inputs, errors, g, e, hyper)[1:])


def _projection(x, w, b):
    return jnp.einsum("nte,ef->ntf", x, w) + b


def _self_attention_steps(hyper):
    """multi-head self-attention as the four projections around its core: the walk's own sub-steps."""
    core = {key: hyper[key] for key in ("heads", "causal", "scale") if key in hyper}
    return [network.Step(PROJECTION, ("x", "wq", "bq"), "q"), network.Step(PROJECTION, ("x", "wk", "bk"), "k"),
            network.Step(PROJECTION, ("x", "wv", "bv"), "v"), network.Step(ATTENTION_CORE, ("q", "k", "v"), "a", core),
            network.Step(PROJECTION, ("a", "wo", "bo"), "out")]


_SELF_ATTENTION_NAMES = ("x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo")


def _self_attention(x, wq, bq, wk, bk, wv, bv, wo, bo, **hyper):
    q, k, v = (_projection(x, w, b) for w, b in ((wq, bq), (wk, bk), (wv, bv)))
    return _projection(_attention_core(q, k, v, **hyper), wo, bo)


def _self_attention_walk(inputs, errors, hyper):
    return _sub_walk(_self_attention_steps(hyper), _SELF_ATTENTION_NAMES, inputs, errors)


def _softmax_terms(x, f, labels):
    """Per row of logits x (..., V) with errors f: (the loss's own |terms|, dx's |terms| per unit of
    dL, dL/dx per unit of dL).

    As in verification/specs/losses.py: p = exp(s)/Z with s = x - max x, and p's relative error is
    1 + |s| (exp of a rounded argument) plus, now, the error f of the computed x (Q): softmax is
    shift-invariant, so the max's own error cancels and p_j moves by p_j (f_j + sum_k p_k f_k),
    the sum_error below. The loss's own terms are log Z, |s_y| and sum_error without f; x's
    errors reach the loss through dL/dx = p - onehot, in quadrature.
    """
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    probs = jax.nn.softmax(x, axis=-1)
    onehot = jax.nn.one_hot(labels, x.shape[-1], dtype=x.dtype)
    exp_error = 1.0 + jnp.abs(shifted)
    own_sum = jnp.sum(probs * exp_error, axis=-1, keepdims=True)
    loss = jax.nn.logsumexp(shifted, axis=-1) + jnp.sum(onehot * jnp.abs(shifted), axis=-1) + own_sum[..., 0]
    exp_error = exp_error + f
    sum_error = jnp.sum(probs * exp_error, axis=-1, keepdims=True)
    return loss, probs * (exp_error + sum_error) + onehot, probs - onehot


def _loss_rule(function, weights):
    """softmax cross-entropy (weights: 1/N per row) and the temporal softmax loss (m/N per position)."""
    def forward_error(inputs, errors, hyper):
        x, f = inputs[0], errors[0]
        own, _, slope = _softmax_terms(x, f, hyper["labels"])
        w = weights(x, hyper)
        return _norm(jnp.square(jnp.sum(w * own)), jnp.sum(jnp.square(w[..., None] * slope * f)))

    def backward_error(inputs, errors, g, e, hyper):
        x, f = inputs[0], errors[0]
        _, terms, slope = _softmax_terms(x, f, hyper["labels"])
        w = weights(x, hyper)[..., None]
        return (_norm(jnp.square(jnp.abs(g) * w * terms), jnp.square(e * w * slope)),)

    return Rule(function, forward_error, backward_error)


def _row_weights(x, hyper):
    """Each row's weight in the mean: 1/N, or the bucket's (0 for its added rows)."""
    return hyper["row_weights"] if "row_weights" in hyper else jnp.full(x.shape[:-1], 1.0 / x.shape[0])


def _position_weights(x, hyper):
    """Each position's weight: m/N, N the bucket's real batch where it gives one."""
    return hyper["mask"].astype(x.dtype) / hyper.get("batch", x.shape[0])


SOFTMAX_CROSS_ENTROPY = _loss_rule(lambda x, *, labels, row_weights=None: _cross_entropy(x, labels, row_weights),
                                   _row_weights)
TEMPORAL_SOFTMAX_LOSS = _loss_rule(
    lambda x, *, labels, mask, batch=None: _cross_entropy(x, labels, mask / (x.shape[0] if batch is None else batch)),
    _position_weights)


def _recurrent(function, cell_forward, cell_backward, cell_state) -> Rule:
    """rnn and lstm: verification/specs/recurrent.py's running error bound (every quantity the
    reference computes, as a Bound of value and error), started from the computed x and h0 with
    their errors F, and from the upstream gradient g with its error E rather than exact ones."""
    def walk(inputs, errors, dout):
        x, h0, *w = inputs
        w = [Bound(a) for a in w]
        xs = Bound(jnp.swapaxes(x, 0, 1), jnp.swapaxes(errors[0], 0, 1))
        zero = Bound(jnp.zeros_like(h0))
        state0 = (Bound(h0, errors[1]), zero) if cell_state else Bound(h0, errors[1])

        def step_forward(state, x_t):
            new, h_t, local = cell_forward(x_t, state, w)
            return new, (h_t, state[0] if cell_state else state, local)

        _, (h, h_prev, local) = lax.scan(step_forward, state0, xs)
        if dout is None:
            return h, None

        def step_backward(dstate, inputs_t):
            dout_t, local_t = inputs_t
            dh = dout_t + (dstate[0] if cell_state else dstate)
            return cell_backward((dh, dstate[1]) if cell_state else dh, local_t, w)

        dlast = (zero, zero) if cell_state else zero
        dstate0, dpre = lax.scan(step_backward, dlast, (dout.map(lambda a: jnp.swapaxes(a, 0, 1)), local),
                                 reverse=True)
        dx, dwx, db = _input_grads(dpre[0], xs, w[0])
        dwh = h_prev.rows().T @ dpre[0].rows()
        dh0 = dstate0[0] if cell_state else dstate0
        return h, (dx.e, dh0.e, dwx.e, dwh.e, db.e)

    return Rule(function,
                lambda inputs, errors, hyper: jnp.swapaxes(walk(inputs, errors, None)[0].e, 0, 1),
                lambda inputs, errors, g, e, hyper: walk(inputs, errors, Bound(g, e))[1])


RNN = _recurrent(jax_rnn, _rnn_forward, _rnn_backward, cell_state=False)
LSTM = _recurrent(jax_lstm, _lstm_forward, _lstm_backward, cell_state=True)


def _any_cell_walk(inputs, errors, hyper):
    """captioning_rnn's bucket: the lstm's rule where ``lstm`` is 1, else the rnn's on the first gate
    block of the weights (their other columns then neither read nor given an error)."""
    h = inputs[1].shape[1]
    first_block = lambda values: (*values[:2], *(a[..., :h] for a in values[2:]))  # noqa: E731
    rnn = _step_walk(RNN, first_block(inputs), first_block(errors), {})
    lstm = _step_walk(LSTM, inputs, errors, {})
    on = hyper["lstm"] != 0

    def widened(values):
        return (*values[:2], *(jnp.zeros_like(w).at[..., :h].set(a) for a, w in zip(values[2:], inputs[2:])))

    def backward(g, e):
        (rnn_grads, rnn_bounds), (lstm_grads, lstm_bounds) = rnn[2](g, e), lstm[2](g, e)
        return (tuple(jnp.where(on, a, b) for a, b in zip(lstm_grads, widened(rnn_grads))),
                tuple(jnp.where(on, a, b) for a, b in zip(lstm_bounds, widened(rnn_bounds))))

    return jnp.where(on, lstm[0], rnn[0]), jnp.where(on, lstm[1], rnn[1]), backward


ANY_CELL = Rule(_any_cell, None, None, _any_cell_walk)


def _affine(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b


PROJECTION = multilinear(_projection)
SELF_ATTENTION = Rule(_self_attention, None, None, _self_attention_walk)


def _dropout(x, *, mask, p):
    return x * (mask / p)


def _dropout_own(x, hyper):
    """The product's own rounding, none at p = 1 (x * 1 and x * 0 are exact: a bucket's dropout that keeps all)."""
    return jnp.where(hyper["p"] == 1, 0.0, jnp.abs(x))


DROPOUT = Rule(
    _dropout,
    lambda inputs, errors, hyper: _norm(jnp.square(_dropout(_dropout_own(inputs[0], hyper), **hyper)),
                                        jnp.square(_dropout(errors[0], **hyper))),
    lambda inputs, errors, g, e, hyper: (_norm(jnp.square(_dropout(_dropout_own(g, hyper), **hyper)),
                                               jnp.square(_dropout(e, **hyper))),))
"""dropout, multilinear in x with the constant mask/p: J o J scales by (mask/p)^2."""

KEEP = exact(lambda x, *, keep: x * keep)
"""A bucket's padding zeroed (``keep`` in {0, 1}): exact."""
ABSENT = Rule(lambda a, *, absent: a + absent,
              lambda inputs, errors, hyper: _norm(jnp.square(errors[0]), jnp.square(hyper["absent"])),
              lambda inputs, errors, g, e, hyper: (e,))
"""A bucket's padded words' scores set apart (``absent`` = ABSENT_SCORE there, 0 at the real words,
where a + 0 is exact)."""


RULES = {
    ref.AFFINE: multilinear(_affine),
    ref.LINEAR: multilinear(lambda x, w: x @ w),
    ref.CONV2D: multilinear(jax_conv),
    ref.TEMPORAL_AFFINE: multilinear(jax_temporal_affine),
    ref.EMBEDDING: multilinear(lambda w, *, indices: w[indices]),
    ref.DROPOUT: DROPOUT,
    ref.RELU: exact(jax.nn.relu),
    ref.MAX_POOL2D: exact(jax_max_pool2d),
    network.RESHAPE: exact(lambda x, *, shape: x.reshape(shape)),
    network.TRANSPOSE: exact(jnp.transpose),
    network.ADD: ADD,
    ref.GELU_TANH: GELU_TANH,
    ref.LAYERNORM: LAYERNORM,
    ref.BATCHNORM: BATCHNORM,
    ref.SELF_ATTENTION: SELF_ATTENTION,
    ref.SOFTMAX_CROSS_ENTROPY: SOFTMAX_CROSS_ENTROPY,
    ref.TEMPORAL_SOFTMAX_LOSS: TEMPORAL_SOFTMAX_LOSS,
    ref.RNN: RNN,
    ref.LSTM: LSTM,
}
"""The rule of each reference op the models use."""


def _rule(op) -> Rule:
    return op if isinstance(op, Rule) else RULES[op]


def _step_walk(rule: Rule, inputs, errors, hyper):
    """(out, F(out), backward(g, e) -> (pullback of g, E of each input)) of one step."""
    if rule.walk is not None:
        return rule.walk(inputs, errors, hyper)
    out, pullback = jax.vjp(lambda *a: rule.forward(*a, **hyper), *inputs)
    return out, rule.forward_error(inputs, errors, hyper), lambda g, e: (
        pullback(g), rule.backward_error(inputs, errors, g, e, hyper))


def _error_pass(steps, values: dict, value_errors: dict):
    """The forward of a walk: (the last step's output, its F, backward(dout, dout_error) -> ({name:
    gradient}, {name: E}) for every given value).

    steps: a step list (reference ops, or Rules for a layer's own sub-steps); values: name ->
    JAX array; value_errors: their errors F (0 for a model's arguments); dout, dout_error: the
    output's cotangent and its error E.
    """
    env, errors, backwards = dict(values), dict(value_errors), []
    for step in steps:
        env[step.output], errors[step.output], backward = _step_walk(
            _rule(step.op), [env[name] for name in step.inputs], [errors[name] for name in step.inputs], step.hyper)
        backwards.append(backward)
    last = steps[-1].output

    def walk_back(dout, dout_error):
        grads, squares, sizes = {last: dout}, {last: jnp.square(dout_error)}, {}
        for step, backward in zip(reversed(steps), reversed(backwards)):
            if step.output not in grads:
                continue
            g = grads.pop(step.output)
            pulled, local = backward(g, jnp.sqrt(squares.pop(step.output) + jnp.square(sizes.pop(step.output, 0.0))))
            for name, grad, bound in zip(step.inputs, pulled, local):
                if name in grads:  # a second use: its sum rounds once more, relative to both terms
                    sizes[name] = sizes.get(name, jnp.abs(grads[name])) + jnp.abs(grad)
                grads[name] = grad + grads.get(name, 0.0)
                squares[name] = jnp.square(bound) + squares.get(name, 0.0)
        return ({name: grads[name] if name in grads else jnp.zeros_like(a) for name, a in values.items()},
                {name: jnp.sqrt(squares[name] + jnp.square(sizes.get(name, 0.0))) if name in squares
                 else jnp.zeros_like(a) for name, a in values.items()})

    return env[last], errors[last], walk_back


def _error_walk(steps, values: dict, value_errors: dict, dout=None, dout_error=None):
    """(F of the last step's output, {name: E} for every given value, or None without dout)."""
    _, f, walk_back = _error_pass(steps, values, value_errors)
    return f, None if dout is None else walk_back(dout, dout_error)[1]


def _sub_walk(steps, names, inputs, errors):
    """A rule's ``walk`` through its own sub-steps, the inputs given the names ``names``."""
    out, f, walk_back = _error_pass(steps, dict(zip(names, inputs)), dict(zip(names, errors)))

    def backward(g, e):
        grads, bounds = walk_back(g, e)
        return tuple(grads[name] for name in names), tuple(bounds[name] for name in names)

    return out, f, backward


def gated(steps, on) -> network.Step:
    """``steps`` (one layer of a stack, its first input the layer's input) as one step that runs them
    where ``on`` (traced: 0 or 1) is 1 and hands that input on unchanged where it is 0: a bucket's
    layers beyond the real depth. Walked as its own sub-steps, as self-attention is: where on, the
    errors are exactly the flat walk's (the input's readers, and their sum, inside the step); where
    off, the identity's (F passed on, E handed back, none to the layer's parameters)."""
    through, produced = steps[0].inputs[0], {step.output for step in steps}
    names = tuple(dict.fromkeys([through] + [n for step in steps for n in step.inputs if n not in produced]))

    def pick(active, off):
        return tuple(jnp.where(on != 0, a, o) for a, o in zip(active, off))

    def walk(inputs, errors, hyper):
        out, f, backward = _sub_walk(steps, names, inputs, errors)

        def gated_backward(g, e):
            grads, bounds = backward(g, e)
            return (pick(grads, (g, *map(jnp.zeros_like, inputs[1:]))),
                    pick(bounds, (e, *map(jnp.zeros_like, inputs[1:]))))

        return jnp.where(on != 0, out, inputs[0]), jnp.where(on != 0, f, errors[0]), gated_backward

    def forward(*inputs):
        return walk(inputs, [jnp.zeros_like(a) for a in inputs], {})[0]

    return network.Step(Rule(forward, None, None, walk), names, steps[-1].output)


def _gate(steps, first: str, last: str, on) -> list:
    """The steps from the one writing ``first`` to the one writing ``last`` as one ``gated`` step."""
    outputs = [step.output for step in steps]
    i, j = outputs.index(first), outputs.index(last)
    return [*steps[:i], gated(steps[i:j + 1], on), *steps[j + 1:]]


def scanned(block, stacked: tuple, on) -> Rule:
    """A stack of identical layers walked by ``lax.scan``: ``block`` is layer 0's steps (its first
    input the layer's input, its other inputs the slices ``name.0`` of the arguments ``stacked``),
    traced once whatever the depth, and a layer where ``on`` (traced, one 0 or 1 per layer) is 0
    hands its input on, as ``gated``'s. The step reads the layers' input and the stacked
    arguments whole; each layer's errors are exactly its flat walk's (the forward scan keeps every
    layer's input and its F, the backward scan walks each layer again from them)."""
    through = block[0].inputs[0]
    names = (through, *(f"{name}.0" for name in stacked))

    def walk(inputs, errors, hyper):
        def forward(carry, layer):
            h, f = carry
            params, param_errors, active = layer
            out, out_error, _ = _sub_walk(block, names, (h, *params), (f, *param_errors))
            return (jnp.where(active != 0, out, h), jnp.where(active != 0, out_error, f)), (h, f)

        (out, out_error), (hs, fs) = lax.scan(forward, (inputs[0], errors[0]), (inputs[1:], errors[1:], on))

        def backward(g, e):
            def layer_back(carry, layer):
                g, e = carry
                h, f, params, param_errors, active = layer
                _, _, back = _sub_walk(block, names, (h, *params), (f, *param_errors))
                grads, bounds = back(g, e)
                kept = lambda values: tuple(jnp.where(active != 0, v, 0.0) for v in values)  # noqa: E731
                return ((jnp.where(active != 0, grads[0], g), jnp.where(active != 0, bounds[0], e)),
                        (kept(grads[1:]), kept(bounds[1:])))

            (g0, e0), (grads, bounds) = lax.scan(layer_back, (g, e), (hs, fs, inputs[1:], errors[1:], on),
                                                 reverse=True)
            return (g0, *grads), (e0, *bounds)

        return out, out_error, backward

    def forward(*inputs):
        return walk(inputs, [jnp.zeros_like(a) for a in inputs], {})[0]

    return Rule(forward, None, None, walk)


def _interpose(steps, op, name: str, hyper: dict) -> list:
    """``op`` applied to the value ``name`` before anything reads it; its readers read the result
    (``name`` + ".bucket"): a bucket's parameter gathered into the bucket's layout, padding zeroed."""
    output = f"{name}.bucket"
    first = next(i for i, step in enumerate(steps) if name in step.inputs)
    readers = [step._replace(inputs=tuple(output if n == name else n for n in step.inputs)) for step in steps[first:]]
    return [*steps[:first], network.Step(op, (name,), output, hyper), *readers]


def _loss_reads(steps, **hyper) -> list:
    """The last step, the loss, with the bucket's weights among its hyperparameters."""
    return [*steps[:-1], steps[-1]._replace(hyper={**steps[-1].hyper, **hyper})]


def chained_magnitude(steps, values: dict, dout):
    """(F of the loss, {name: E} for every given value): the walk from exact values and an exact dout."""
    exact = {name: jnp.zeros_like(a) for name, a in values.items()}
    return _error_walk(steps, values, exact, dout, jnp.zeros_like(dout))


def model_magnitude(names, build, stacked=frozenset(), layout=None):
    """The magnitude of a model whose step list ``build(arrays, hyper)`` returns, for
    ``Layer.magnitude``: arguments named ``names``, those in ``stacked`` read per layer.

    ``layout(hyper)``: for a bucket whose arguments hold their real entries first where the
    bucket's layout has them elsewhere, {argument index: (axes, index)}: each is read along
    ``axes`` through ``index`` (a permutation: where each entry of the bucket's layout is
    stored) before the walk, as the specification reads it, and its E is put back where its
    entries are stored. A model's arguments carry no error of their own, so nothing else
    changes."""
    def magnitude(f, arrays, hyper, dout):
        reads = {} if layout is None else layout(hyper)
        arrays = tuple(_permuted(a, *reads[i]) if i in reads else a for i, a in enumerate(arrays))
        steps = build(arrays, hyper)
        read = {name for step in steps for name in step.inputs}
        whole = {name: a for name, a in zip(names, arrays) if name in stacked and name in read}  # a scanned stack's
        out, bounds = chained_magnitude(steps, {**ref.named_values(names, arrays, stacked), **whole}, dout)
        grads = tuple(
            bounds[name] if name in whole else
            (jnp.stack([bounds[f"{name}.{layer}"] for layer in range(a.shape[0])]) if a.shape[0]
             else jnp.zeros_like(a)) if name in stacked else bounds[name]
            for name, a in zip(names, arrays))
        return out, tuple(_permuted(g, reads[i][0], jnp.argsort(reads[i][1])) if i in reads else g
                          for i, g in enumerate(grads))
    return magnitude


def _permuted(a, axes, index):
    for axis in axes:
        a = jnp.take(a, index, axis=axis)
    return a


# ----------------------------------------------------------------------------------------
# The input spaces.
#
# Compile economy rules here: one configuration of a model would be one oracle program of
# hundreds of operations (forward, pullback, Jacobian row, a jvp per argument, the magnitude's
# walk), 0.5-3 s to compile on 2 cores (gpt is the largest), against a fraction of a second for
# one layer. So every configuration of a model's space is evaluated in one bucket (two for
# captioning_rnn, one per cell), its largest configuration, into which the example is embedded
# exactly (Hints.pad; "The buckets" below): a run compiles the bucket's one program (the
# Jacobian of the scalar loss rides in it: one more pullback), whatever the number of
# configurations it explores. The spaces then range over every size (N, D, H, C, L,
# T, V, E, M, image sizes, kernels, heads and their width) and structure (each normalisation,
# dropout on and off), and the edges guarantee the cases that matter (N = 1, T = 1, L = 0, one
# class, a square hidden layer, each normalisation, dropout on and off, rnn and lstm, a pooled
# size that drops a row).
#
# Kinks and ties, by construction: finite differences across a relu's kink or a max-pool tie
# are not derivatives (the `fd` check would rightly fail the draw, not the layer). Every relu
# input is moved at least MARGIN from 0 by shifting the bias (or beta) that feeds it, column
# by column, to the nearest value that clears all of the column's entries; a conv_net draw
# whose pooling windows hold two maxima closer than MARGIN is dithered (deterministically,
# from its own bytes) until none does. MARGIN = 0.1 is 20 times the largest step the `fd`
# check takes along a relu input here (2^-12 |t| |d a / d theta . t| < 5e-3).

MARGIN = 0.1


def _clear_of_zero(z: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The bias nearest ``bias`` with |z[..., j] + bias[j]| >= MARGIN for every entry of column j.

    z: (..., D), the pre-activations without their bias, reduced over every axis but the last.
    """
    z = z.reshape(-1, z.shape[-1])
    cleared = bias.copy()
    for j in range(z.shape[1]):
        centres = np.sort(-z[:, j])
        value = cleared[j]
        for _ in range(len(centres) + 1):  # each move clears one interval: at most every one once
            inside = np.abs(value - centres) < MARGIN
            if not inside.any():
                break
            near = centres[inside]
            low, high = near.min() - MARGIN, near.max() + MARGIN
            value = low if value - low <= high - value else high
        cleared[j] = value
    return cleared


def _seed(*arrays) -> int:
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).digest()
    return int.from_bytes(digest[:8], "little")


def _labels(n, c):
    return indices((n,), c)


def _two_layer_net_values(config):
    n, d, h, c = config["N"], config["D"], config["H"], config["C"]

    def repaired(drawn):
        (x, w1, b1, w2, b2), labels = drawn
        return (x, w1, _clear_of_zero(x @ w1, b1), w2, b2), {"labels": labels}

    return st.tuples(st.tuples(arrays((n, d)), arrays((d, h)), arrays((h,)), arrays((h, c)), arrays((c,))),
                     _labels(n, c)).map(repaired)


def _dims(spans: dict) -> dict:
    return {name: st.integers(*span) for name, span in spans.items()}


TWO_LAYER_NET_DIMS = {"N": (1, 6), "D": (1, 6), "H": (1, 6), "C": (1, 6)}
TWO_LAYER_NET_EDGES = (
    {"N": 3, "D": 4, "H": 5, "C": 3},
    {"N": 1, "D": 2, "H": 3, "C": 1},   # one example, one class: the loss is 0 and so is every gradient
    {"N": 2, "D": 3, "H": 3, "C": 3},   # square w2 and square hidden: a missing transpose keeps shapes
)
two_layer_net_space = Space(st.fixed_dictionaries(_dims(TWO_LAYER_NET_DIMS)), _two_layer_net_values,
                            edges=TWO_LAYER_NET_EDGES)


def _standardised(a, axis, eps):
    return (a - a.mean(axis=axis, keepdims=True)) / np.sqrt(a.var(axis=axis, keepdims=True) + eps)


def _fc_net_values(config):
    n, d, h, c, layers = config["N"], config["D"], config["H"], config["C"], config["L"]
    norm, dropout = config["norm"], config["dropout"]
    params = st.tuples(arrays((n, d)), arrays((d, h)), arrays((h,)), arrays((layers - 1, h, h)),
                       arrays((layers - 1, h)), arrays((layers, h), low=0.5, high=2.0), arrays((layers, h)),
                       arrays((h, c)), arrays((c,)))
    masks = choices((layers, n, h), (1.0, 0.0)) if dropout else st.none()
    keep = st.floats(0.25, 1.0) if dropout else st.just(1.0)

    @st.composite
    def example(draw):
        x, w_in, b_in, w_mid, b_mid, gamma, beta, w_out, b_out = draw(params)
        labels, mask, p = draw(_labels(n, c)), draw(masks), draw(keep)
        eps = 10.0 ** draw(st.floats(-5.0, -1.0))
        b_mid, beta = b_mid.copy(), beta.copy()
        hidden = x
        for layer in range(layers):
            w, b = (w_in, b_in) if layer == 0 else (w_mid[layer - 1], b_mid[layer - 1])
            z = hidden @ w
            if norm == "none":
                b = _clear_of_zero(z, b)
                if layer == 0:
                    b_in = b
                else:
                    b_mid[layer - 1] = b
                a = z + b
            else:
                scaled = gamma[layer] * _standardised(z + b, 0 if norm == "batchnorm" else 1, eps)
                beta[layer] = _clear_of_zero(scaled, beta[layer])
                a = scaled + beta[layer]
            hidden = np.maximum(a, 0) * (1.0 if mask is None else mask[layer] / p)
        hyper = {"labels": labels, "norm": norm, "eps": eps}
        if dropout:
            hyper.update(dropout_masks=mask, p=p)
        return (x, w_in, b_in, w_mid, b_mid, gamma, beta, w_out, b_out), hyper

    return example()


FC_NET_DIMS = {"N": (1, 5), "D": (1, 5), "H": (1, 5), "C": (1, 5), "L": (1, 2)}
FC_NET_EDGES = (
    {"N": 2, "D": 4, "H": 3, "C": 2, "L": 1, "norm": "none", "dropout": False},
    {"N": 3, "D": 3, "H": 4, "C": 3, "L": 2, "norm": "batchnorm", "dropout": True},
    {"N": 3, "D": 2, "H": 3, "C": 3, "L": 2, "norm": "layernorm", "dropout": False},
    {"N": 1, "D": 2, "H": 2, "C": 2, "L": 1, "norm": "batchnorm", "dropout": False},  # N = 1: xhat = 0, y = beta
    {"N": 4, "D": 3, "H": 2, "C": 1, "L": 2, "norm": "none", "dropout": True},        # one class
)
fc_net_space = Space(st.fixed_dictionaries({**_dims(FC_NET_DIMS), "norm": st.sampled_from(NORMS),
                                            "dropout": st.booleans()}), _fc_net_values, edges=FC_NET_EDGES)


def _pool_clear(r: np.ndarray, pool: int) -> bool:
    """Every pool x pool window of r (N, F, H, W) has its maximum at most 0 (all units off) or MARGIN above the rest."""
    n, f, h, w = r.shape
    h, w = h // pool * pool, w // pool * pool
    windows = r[:, :, :h, :w].reshape(n, f, h // pool, pool, w // pool, pool).swapaxes(3, 4).reshape(
        n, f, h // pool, w // pool, pool * pool)
    ordered = np.sort(windows, axis=-1)
    if ordered.shape[-1] < 2:
        return True
    return bool(np.all((ordered[..., -1] <= 0) | (ordered[..., -1] - ordered[..., -2] >= MARGIN)))


def _conv_net_repaired(x, w1, b1, w2, b2, pool):
    """(x, w1, b1, w2, b2) dithered until the pooling windows are tie-free, with biases clear of the relu kinks."""
    rng = np.random.default_rng(_seed(x, w1, w2))
    for attempt in range(200):
        if attempt:
            scale = 0.02 * min(attempt, 20)
            x, w1, w2 = (a + scale * rng.standard_normal(a.shape) for a in (x, w1, w2))
        h, clear, biases = x, True, []
        for w, b in ((w1, b1), (w2, b2)):
            z, _ = conv2d_forward(h, w, np.zeros_like(b), padding=tuple((k - 1) // 2 for k in w.shape[2:]))
            b = _clear_of_zero(np.moveaxis(z, 1, -1), b)
            biases.append(b)
            r = np.maximum(z + b[:, None, None], 0)
            clear = clear and _pool_clear(r, pool)
            h, _ = max_pool2d_forward(r, kernel=pool)
        if clear:
            break
    return x, w1, biases[0], w2, biases[1]


def _conv_net_values(config):
    n, c, size, f1, f2, k1, k2, classes = (config[key] for key in ("N", "C", "S", "F1", "F2", "K1", "K2", "classes"))
    after = _pooled(_pooled(size, k1), k2)
    params = st.tuples(arrays((n, c, size, size)), arrays((f1, c, k1, k1)), arrays((f1,)),
                       arrays((f2, f1, k2, k2)), arrays((f2,)), arrays((f2 * after * after, classes)),
                       arrays((classes,)))

    def repaired(drawn):
        (x, w1, b1, w2, b2, w3, b3), labels = drawn
        return (*_conv_net_repaired(x, w1, b1, w2, b2, 2), w3, b3), {"labels": labels}

    return st.tuples(params, _labels(n, classes)).map(repaired)


CONV_NET_DIMS = {"N": (1, 2), "C": (1, 2), "F1": (1, 2), "F2": (1, 2), "K1": (1, 3), "K2": (1, 3),
                 "classes": (1, 3), "S": (4, 7)}


def _pooled(size: int, kernel: int, pool: int = 2) -> int:
    """The side after a block: an odd kernel keeps it (zero padding (K-1)//2), an even one loses 1; the pool divides it."""
    return (size - (kernel + 1) % 2) // pool


@st.composite
def _conv_net_configs(draw):
    """Kernels of 1 to 3 (an even one shrinks the side), then image sides from the smallest that
    leaves a pixel after both blocks."""
    config = {name: draw(st.integers(*span)) for name, span in CONV_NET_DIMS.items() if name != "S"}
    smallest = 4 + 2 * ((config["K2"] + 1) % 2) + (config["K1"] + 1) % 2
    return {**config, "S": draw(st.integers(smallest, CONV_NET_DIMS["S"][1]))}


CONV_NET_EDGES = (
    {"N": 2, "C": 2, "F1": 2, "F2": 2, "K1": 3, "K2": 3, "classes": 3, "S": 4},
    {"N": 1, "C": 1, "F1": 2, "F2": 1, "K1": 1, "K2": 3, "classes": 2, "S": 5},  # 5 -> 2 -> 1: a row and column dropped
    {"N": 2, "C": 1, "F1": 1, "F2": 2, "K1": 2, "K2": 2, "classes": 1, "S": 7},  # even kernels (7 -> 6 -> 3 -> 2 -> 1), one class
)
conv_net_space = Space(_conv_net_configs(), _conv_net_values, edges=CONV_NET_EDGES)


def _captioning_rnn_values(config):
    n, t, d, w, h, v, cell = (config[key] for key in ("N", "T", "D", "W", "H", "V", "cell"))
    g = 1 if cell == "rnn" else 4
    params = st.tuples(arrays((n, d)), arrays((d, h)), arrays((h,)), arrays((v, w)), arrays((w, g * h)),
                       arrays((h, g * h)), arrays((g * h,)), arrays((h, v)), arrays((v,)))
    return st.tuples(params, indices((n, t + 1), v)).map(
        lambda drawn: (drawn[0], {"captions": drawn[1], "cell": cell}))


CAPTIONING_RNN_DIMS = {"N": (1, 3), "T": (0, 4), "D": (1, 3), "W": (1, 3), "H": (1, 3), "V": (2, 5)}
CAPTIONING_RNN_EDGES = (
    {"N": 2, "T": 3, "D": 3, "W": 2, "H": 3, "V": 4, "cell": "rnn"},
    {"N": 2, "T": 2, "D": 2, "W": 3, "H": 2, "V": 3, "cell": "lstm"},
    {"N": 1, "T": 1, "D": 1, "W": 1, "H": 1, "V": 2, "cell": "lstm"},  # one word: T = 1, every size 1
    {"N": 2, "T": 0, "D": 2, "W": 2, "H": 2, "V": 3, "cell": "rnn"},   # no word at all: L = 0
)
captioning_rnn_space = Space(st.fixed_dictionaries({**_dims(CAPTIONING_RNN_DIMS),
                                                    "cell": st.sampled_from(tuple(ref.CELLS))}),
                             _captioning_rnn_values, edges=CAPTIONING_RNN_EDGES)


def _gpt_values(config):
    n, t, vocab, heads, width, hidden, layers = (config[key] for key in ("N", "T", "V", "heads", "d", "M", "L"))
    e = heads * width
    per_block = [(layers, e), (layers, e)] + [(layers, e, e), (layers, e)] * 4 + [
        (layers, e), (layers, e), (layers, e, hidden), (layers, hidden), (layers, hidden, e), (layers, e)]
    params = st.tuples(arrays((vocab, e)), arrays((t + config["extra"], e)),
                       *(arrays(shape, low=-1.0, high=1.0) for shape in per_block), arrays((e,)), arrays((e,)))

    def example(drawn):
        params, tokens, targets, eps = drawn
        return params, {"tokens": tokens, "targets": targets, "heads": heads, "eps": 10.0 ** eps}

    return st.tuples(params, indices((n, t), vocab), indices((n, t), vocab), st.floats(-5.0, -1.0)).map(example)


GPT_DIMS = {"N": (1, 2), "T": (1, 4), "V": (1, 5), "heads": (1, 2), "d": (1, 2), "M": (1, 3), "L": (0, 2),
            "extra": (0, 1)}
GPT_EDGES = (
    {"N": 2, "T": 3, "V": 4, "heads": 2, "d": 2, "M": 3, "L": 1, "extra": 1},
    {"N": 1, "T": 1, "V": 3, "heads": 1, "d": 2, "M": 2, "L": 2, "extra": 0},   # T = 1: attention to itself only
    {"N": 1, "T": 2, "V": 2, "heads": 1, "d": 1, "M": 1, "L": 0, "extra": 0},   # no block: embeddings, lnf, tied head
)
gpt_space = Space(st.fixed_dictionaries(_dims(GPT_DIMS)), _gpt_values, edges=GPT_EDGES)


# ----------------------------------------------------------------------------------------
# The buckets (Hints.pad): every configuration of a model's space is evaluated in the space's
# largest one (two for captioning_rnn: a cell each), the example embedded in it exactly. The
# arrays grow at the end of their axes (verification.space.grow), and the bucket's own
# hyperparameters (the keyword arguments after the blank line in each forward's signature)
# leave the padding out wherever zeros alone would not:
#
# * added rows (examples, positions) are rows of their own, through every per-row layer; the
#   loss gives them weight 0 (``row_weights``: 1/N at the real rows, 1/(N T) for gpt's
#   positions; the temporal loss masks them as null words and divides by the real N,
#   ``batch``), so they pull nothing back; batchnorm takes its statistics over the real rows
#   (``rows``); gpt's added positions come after the real ones, which causal attention keeps
#   them from; captioning_rnn's added steps come after the real ones too, and are masked;
# * added features, hidden units, channels and filters are 0 and meet zero weights (a zero row
#   of the next weight, zero columns and bias of their own); layernorm takes its statistics
#   over the real features (``units``, gpt's ``features``), where a zero gamma and beta keep
#   the added ones at 0;
# * added classes and words get the score ABSENT_SCORE (-1e4: the added entries of b2, b_out,
#   b3 and b_vocab; gpt, whose unembedding has no bias, adds ``absent``): e^(-1e4 - max)
#   underflows to exactly 0 in float64, so the softmax over the real ones is unchanged;
# * added layers (fc_net, gpt) are switched off (``active``: the layer's output is its input)
#   and added blocks of kernels, image sides and heads are zeroed: conv_net's pooled maps are
#   multiplied by ``kept1``, ``kept2`` (1 on the real pooled pixels), so the next convolution
#   reads zeros beyond them as its zero padding;
# * a structure becomes traced: fc_net's normalisation is ``norm_index`` (every norm shares the
#   program), and without dropout the masks are all ones with p = 1 (x * 1 / 1 = x exactly);
# * where the bucket's layout puts real entries elsewhere than at the front, the arrays hold
#   them at the front as they are and an index says where each entry of the bucket's layout is
#   stored (as verification/specs/recurrent.py's ``columns``, which captioning_rnn's lstm
#   uses): conv_net's kernels, centred in the bucket's 3 x 3 (``taps1``, ``taps2``), and the
#   rows of w3 in the flattened (F2, H2, W2) order (``flat``); gpt's head columns (``head_columns``:
#   head h's columns are a block of the bucket's head width), with ``scale`` = 1/sqrt(E/heads)
#   of the real head width.
#
# The magnitude walks the same bucket: the reference's step list for the bucket's sizes, each
# step given the bucket's hyperparameters (the masked normalisations, the weighted losses), the
# gathers and masks interposed as steps of their own (exact: J in {0, 1}) and each added
# layer a ``gated`` step; every padded entry carries no error into a real one, so the real
# entries' magnitudes are the plain example's. An example larger than the bucket (the demo's,
# the bench's) is evaluated as it is. Padded and plain oracles agree, magnitudes included
# (tests/test_catalogue.py on drawn configurations; a run where an example fails).

def _bucket(sizes: dict, dims: dict) -> dict | None:
    """The bucket's sizes (each dimension's largest), or None where the example is larger."""
    top = {name: span[1] for name, span in dims.items()}
    return top if all(size <= top[name] for name, size in sizes.items()) else None


def _fixed(function):
    """``function`` of a few integers, computed once for each and handed out read-only."""
    @functools.lru_cache(maxsize=None)
    def cached(*args):
        result = function(*args)
        result.setflags(write=False)
        return result
    return functools.wraps(function)(cached)


@_fixed
def _mask(n: int, top: int) -> np.ndarray:
    """1 at the n real entries of top."""
    return grow(np.ones(n), (top,))


def _weighted_rows(labels: np.ndarray, top: int) -> dict:
    return {"labels": grow(labels, (top,)), "row_weights": grow(np.full(labels.shape, 1.0 / labels.size), (top,))}


def _two_layer_net_bucket(arrays, hyper):
    x, w1, b1, w2, b2 = arrays
    top = _bucket({"N": x.shape[0], "D": x.shape[1], "H": w1.shape[1], "C": w2.shape[1]}, TWO_LAYER_NET_DIMS)
    if top is None:
        return arrays, hyper
    n, d, h, c = (top[name] for name in ("N", "D", "H", "C"))
    return ((grow(x, (n, d)), grow(w1, (d, h)), grow(b1, (h,)), grow(w2, (h, c)), grow(b2, (c,), ABSENT_SCORE)),
            {**hyper, **_weighted_rows(hyper["labels"], n)})


def _fc_net_bucket(arrays, hyper):
    x, w_in, b_in, w_mid, b_mid, gamma, beta, w_out, b_out = arrays
    (n, d), h, layers, c = x.shape, w_in.shape[1], gamma.shape[0], w_out.shape[1]
    top = _bucket({"N": n, "D": d, "H": h, "C": c, "L": layers}, FC_NET_DIMS)
    if top is None:
        return arrays, hyper
    big_n, big_d, big_h, big_c, big_l = (top[name] for name in ("N", "D", "H", "C", "L"))
    masks = hyper.get("dropout_masks")
    grown = (grow(x, (big_n, big_d)), grow(w_in, (big_d, big_h)), grow(b_in, (big_h,)),
             grow(w_mid, (big_l - 1, big_h, big_h)), grow(b_mid, (big_l - 1, big_h)), grow(gamma, (big_l, big_h)),
             grow(beta, (big_l, big_h)), grow(w_out, (big_h, big_c)), grow(b_out, (big_c,), ABSENT_SCORE))
    padded = {key: value for key, value in hyper.items() if key != "norm"}
    padded.update(_weighted_rows(hyper["labels"], big_n), eps=hyper.get("eps", 1e-5), p=float(hyper.get("p", 1.0)),
                  dropout_masks=grow(np.ones((layers, n, h)) if masks is None else masks, (big_l, big_n, big_h)),
                  norm_index=np.array(NORMS.index(hyper.get("norm", "none"))), rows=_mask(n, big_n),
                  units=_mask(h, big_h), active=_mask(layers, big_l))
    return grown, padded


@_fixed
def _taps(kernel: int, top: int) -> np.ndarray:
    """Where tap t of the bucket's kernel is stored, the real kernel centred in it as zero padding
    (K-1)//2 centres it (its taps stored first)."""
    offset = (top - 1) // 2 - (kernel - 1) // 2
    tap = np.arange(top)
    real = (tap >= offset) & (tap < offset + kernel)
    return np.where(real, tap - offset, kernel + np.cumsum(~real) - 1)


@_fixed
def _flat_rows(filters: int, side: int, top_filters: int, top_side: int) -> np.ndarray:
    """Where row (f, i, j) of the bucket's flattened (F2, H2, W2) features is stored: the real rows first, in order."""
    f, i, j = (a.ravel() for a in np.meshgrid(np.arange(top_filters), np.arange(top_side), np.arange(top_side),
                                              indexing="ij"))
    real = (f < filters) & (i < side) & (j < side)
    return np.where(real, (f * side + i) * side + j, filters * side * side + np.cumsum(~real) - 1)


@_fixed
def _kept(side: int, top: int) -> np.ndarray:
    """1 on the side x side real pixels of a top x top pooled map."""
    return np.outer(_mask(side, top), _mask(side, top))


def _conv_net_bucket(arrays, hyper):
    x, w1, b1, w2, b2, w3, b3 = arrays
    (n, c, size, _), (f1, _, k1, _), (f2, _, k2, _), classes = x.shape, w1.shape, w2.shape, w3.shape[1]
    top = _bucket({"N": n, "C": c, "F1": f1, "F2": f2, "K1": k1, "K2": k2, "classes": classes, "S": size},
                  CONV_NET_DIMS)
    if top is None or x.shape[3] != size or w1.shape[3] != k1 or w2.shape[3] != k2 or hyper.get("pool", 2) != 2:
        return arrays, hyper
    big_n, big_c, big_f1, big_f2, kernel, big_classes, big_s = (top[name] for name in (
        "N", "C", "F1", "F2", "K1", "classes", "S"))
    side1, big_side1 = _pooled(size, k1), _pooled(big_s, kernel)
    side2, big_side2 = _pooled(side1, k2), _pooled(big_side1, kernel)
    grown = (grow(x, (big_n, big_c, big_s, big_s)), grow(w1, (big_f1, big_c, kernel, kernel)), grow(b1, (big_f1,)),
             grow(w2, (big_f2, big_f1, kernel, kernel)), grow(b2, (big_f2,)),
             grow(w3, (big_f2 * big_side2 * big_side2, big_classes)), grow(b3, (big_classes,), ABSENT_SCORE))
    return grown, {**hyper, **_weighted_rows(hyper["labels"], big_n), "taps1": _taps(k1, kernel),
                   "taps2": _taps(k2, kernel), "kept1": _kept(side1, big_side1), "kept2": _kept(side2, big_side2),
                   "flat": _flat_rows(f2, side2, big_f2, big_side2)}


@_fixed
def _cell_columns(gates: int, hidden: int, top: int) -> np.ndarray:
    """Where column (gate q, unit j) of the bucket's lstm layout, q top + j, is stored: q H + j for a real
    one (an rnn's one gate is the first), after the G H real columns for a padded one."""
    gate, unit = np.divmod(np.arange(4 * top), top)
    real = (gate < gates) & (unit < hidden)
    return np.where(real, gate * hidden + unit, gates * hidden + np.cumsum(~real) - 1)


def _captioning_rnn_bucket(arrays, hyper):
    features, w_proj, b_proj, w_embed, wx, wh, b, w_vocab, b_vocab = arrays
    captions, null, cell = hyper["captions"], hyper.get("null", 0), hyper.get("cell", "rnn")
    (n, d), h, (v, w) = features.shape, w_proj.shape[1], w_embed.shape
    top = _bucket({"N": n, "T": captions.shape[1] - 1, "D": d, "W": w, "H": h, "V": v}, CAPTIONING_RNN_DIMS)
    if top is None:
        return arrays, hyper
    big_n, big_t, big_d, big_w, big_h, big_v = (top[name] for name in ("N", "T", "D", "W", "H", "V"))
    grown = (grow(features, (big_n, big_d)), grow(w_proj, (big_d, big_h)), grow(b_proj, (big_h,)),
             grow(w_embed, (big_v, big_w)), grow(wx, (big_w, 4 * big_h)), grow(wh, (big_h, 4 * big_h)),
             grow(b, (4 * big_h,)), grow(w_vocab, (big_h, big_v)), grow(b_vocab, (big_v,), ABSENT_SCORE))
    padded = {key: value for key, value in hyper.items() if key != "cell"}
    padded.update(captions=grow(captions, (big_n, big_t + 1), null), batch=float(n),
                  columns=_cell_columns(ref.CELLS[cell][1], h, big_h), lstm=np.array(float(cell == "lstm")))
    return grown, padded


GPT_SHAPES = ("VE", "PE", "LE", "LE", "LEE", "LE", "LEE", "LE", "LEE", "LE", "LEE", "LE", "LE", "LE", "LEM", "LM",
              "LME", "LE", "E", "E")
"""The axes of gpt's arguments: V words, P positions (T_max), L blocks, E features, M hidden units."""


@_fixed
def _head_columns(heads: int, width: int, top_heads: int, top_width: int) -> np.ndarray:
    """Where column (head h, unit i) of the bucket's heads, h top_width + i, is stored: h width + i for a
    real one, after the heads x width real columns for a padded one."""
    head, unit = np.divmod(np.arange(top_heads * top_width), top_width)
    real = (head < heads) & (unit < width)
    return np.where(real, head * width + unit, heads * width + np.cumsum(~real) - 1)


def _gpt_bucket(arrays, hyper):
    tokens, targets, heads = hyper["tokens"], hyper["targets"], hyper["heads"]
    (v, e), positions, layers, m = arrays[0].shape, arrays[1].shape[0], arrays[4].shape[0], arrays[14].shape[2]
    (n, t), width = tokens.shape, e // heads
    top = _bucket({"N": n, "T": t, "V": v, "heads": heads, "d": width, "M": m, "L": layers}, GPT_DIMS)
    if top is None or positions > top["T"] + top["extra"] or width * heads != e:
        return arrays, hyper
    sizes = {"V": top["V"], "P": top["T"] + top["extra"], "L": top["L"], "E": top["heads"] * top["d"], "M": top["M"]}
    grown = tuple(grow(a, tuple(sizes[axis] for axis in axes)) for a, axes in zip(arrays, GPT_SHAPES))
    rows = (top["N"], top["T"])
    return grown, {**hyper, "tokens": grow(tokens, rows), "targets": grow(targets, rows), "heads": top["heads"],
                   "eps": hyper.get("eps", 1e-5), "row_weights": grow(np.full((n, t), 1.0 / (n * t)), rows),
                   "features": _mask(e, sizes["E"]), "head_columns": _head_columns(heads, width, top["heads"], top["d"]),
                   "scale": 1.0 / math.sqrt(width), "absent": grow(np.zeros(v), (sizes["V"],), ABSENT_SCORE),
                   "active": _mask(layers, top["L"])}


# ----------------------------------------------------------------------------------------
# Bad calls: each model names its own argument in the message.

def _errors(good, hyper, *rows):
    """ErrorCases from rows (description, argument index or None, replacement, hyper change, error, message)."""
    cases = []
    for what, index, replacement, change, error, message in rows:
        arrays = list(good)
        if index is not None:
            arrays[index] = replacement
        cases.append(ErrorCase(what, tuple(arrays), {**hyper, **change}, error, re.escape(message)))
    return tuple(cases)


_TWO = (np.ones((2, 3)), np.ones((3, 4)), np.ones(4), np.ones((4, 2)), np.ones(2))
TWO_LAYER_NET_ERRORS = _errors(
    _TWO, {"labels": np.array([0, 1])},
    ("w2 of the wrong height", 3, np.ones((5, 2)), {}, ValueError,
     "w2 has shape (5, 2) but (H, C) = (4, 2) is expected"),
    ("b1 float32", 2, np.ones(4, np.float32), {}, TypeError, "b1 has dtype float32 but x has dtype float64"),
    ("a label out of range", None, None, {"labels": np.array([0, 2])}, ValueError,
     "labels has entries in [0, 2] but they must lie in [0, 2)"),
    ("x 1-d", 0, np.ones(3), {}, ValueError, "x has shape (3,) but a 2-d array (N, D) is expected"),
)
_FC = (np.ones((2, 3)), np.ones((3, 4)), np.ones(4), np.ones((1, 4, 4)), np.ones((1, 4)), np.ones((2, 4)),
       np.ones((2, 4)), np.ones((4, 2)), np.ones(2))
FC_NET_ERRORS = _errors(
    _FC, {"labels": np.array([0, 1])},
    ("gamma for one layer of two", 5, np.ones((1, 4)), {}, ValueError,
     "gamma has shape (1, 4) but (L, H) = (2, 4) is expected"),
    ("an unknown norm", None, None, {"norm": "groupnorm"}, ValueError,
     "norm is 'groupnorm' but must be one of 'none', 'batchnorm', 'layernorm'"),
    ("dropout masks of the wrong shape", None, None, {"dropout_masks": np.ones((2, 2, 3)), "p": 0.5}, ValueError,
     "dropout_masks has shape (2, 2, 3) but (L, N, H) = (2, 2, 4) is expected"),
)
_CONV = (np.ones((2, 1, 4, 4)), np.ones((2, 1, 3, 3)), np.ones(2), np.ones((2, 2, 3, 3)), np.ones(2),
         np.ones((2, 3)), np.ones(3))
CONV_NET_ERRORS = _errors(
    _CONV, {"labels": np.array([0, 2])},
    ("w3 not matching the pooled size", 5, np.ones((8, 3)), {}, ValueError,
     "w3 has shape (8, 3) but (F2 H2 W2, classes) = (2, 3) is expected"),
    ("an image too small for two pools", 0, np.ones((2, 1, 3, 3)), {}, ValueError,
     "x has shape (2, 1, 3, 3): after two blocks of convolution and 2x2 pooling nothing is left, (0, 0)"),
    ("w1 reading the wrong channels", 1, np.ones((2, 3, 3, 3)), {}, ValueError,
     "w1 has shape (2, 3, 3, 3) but (F1, C, K1, K1') = (2, 1, 3, 3) is expected"),
)
_CAPTION = (np.ones((2, 3)), np.ones((3, 4)), np.ones(4), np.ones((5, 2)), np.ones((2, 4)), np.ones((4, 4)),
            np.ones(4), np.ones((4, 5)), np.ones(5))
CAPTIONING_RNN_ERRORS = _errors(
    _CAPTION, {"captions": np.array([[1, 2, 0], [3, 4, 4]])},
    ("lstm weights for an rnn", 4, np.ones((2, 16)), {}, ValueError,
     "wx has shape (2, 16) but (W, G H) = (2, 4) is expected"),
    ("a word beyond the vocabulary", None, None, {"captions": np.array([[1, 5, 0], [3, 4, 4]])}, ValueError,
     "captions has entries in [0, 5] but they must lie in [0, 5)"),
    ("an unknown cell", None, None, {"cell": "gru"}, ValueError, "cell is 'gru' but must be 'rnn' or 'lstm'"),
)
_E, _L = 4, 1
_GPT = (np.ones((5, _E)), np.ones((3, _E)), *(np.ones(s) for s in [(_L, _E), (_L, _E)] + [(_L, _E, _E), (_L, _E)] * 4
                                             + [(_L, _E), (_L, _E), (_L, _E, 6), (_L, 6), (_L, 6, _E), (_L, _E)]),
        np.ones(_E), np.ones(_E))
GPT_ERRORS = _errors(
    _GPT, {"tokens": np.array([[0, 1, 2]]), "targets": np.array([[1, 2, 3]]), "heads": 2},
    ("a sequence longer than wpe", None, None, {"tokens": np.zeros((1, 4), int), "targets": np.zeros((1, 4), int)},
     ValueError, "tokens has shape (1, 4) but wpe has shape (3, 4): T = 4 must be at most T_max = 3"),
    ("wq of another width", 4, np.ones((1, 4, 3)), {}, ValueError,
     "wq has shape (1, 4, 3) but (L, E, E) = (1, 4, 4) is expected"),
    ("a target beyond the vocabulary", None, None, {"targets": np.array([[1, 2, 5]])}, ValueError,
     "targets has entries in [1, 5] but they must lie in [0, 5)"),
    ("heads not dividing E", None, None, {"heads": 3}, ValueError, "divisible by heads = 3"),
)


# ----------------------------------------------------------------------------------------
# Realistic sizes for make bench.

def _normal(rng, *shapes):
    """Standard normal arrays, each matrix scaled by 1/sqrt(its rows) (inputs stay of order 1 through it)."""
    return tuple(rng.standard_normal(s) / math.sqrt(s[-2] if len(s) > 1 else 1) for s in shapes)


def _two_layer_net_bench(rng):
    """CS231n's two-layer net on CIFAR-10 sized input: N = 200, D = 3072, H = 100, C = 10."""
    x, w1, w2 = _normal(rng, (200, 3072), (3072, 100), (100, 10))
    return BenchCase((x, w1, np.zeros(100), w2, np.zeros(10)), {"labels": rng.integers(0, 10, 200)})


def _fc_net_bench(rng):
    """N = 128 digits-sized rows of D = 784, three hidden layers of 256 with batchnorm and dropout (p = 0.5)."""
    n, d, h, c, layers = 128, 784, 256, 10, 3
    x, w_in, w_out = _normal(rng, (n, d), (d, h), (h, c))
    w_mid = rng.standard_normal((layers - 1, h, h)) / math.sqrt(h)
    masks = (rng.random((layers, n, h)) < 0.5).astype(float)
    return BenchCase((x, w_in, np.zeros(h), w_mid, np.zeros((layers - 1, h)), np.ones((layers, h)),
                      np.zeros((layers, h)), w_out, np.zeros(c)),
                     {"labels": rng.integers(0, c, n), "norm": "batchnorm", "dropout_masks": masks, "p": 0.5})


def _conv_net_bench(rng):
    """N = 32 CIFAR-sized images (3 x 32 x 32), 32 filters of 3 x 3 in both blocks, 10 classes."""
    x = rng.standard_normal((32, 3, 32, 32))
    w1, w2 = rng.standard_normal((32, 3, 3, 3)) / 5, rng.standard_normal((32, 32, 3, 3)) / 17
    w3 = rng.standard_normal((32 * 8 * 8, 10)) / 45
    return BenchCase((x, w1, np.zeros(32), w2, np.zeros(32), w3, np.zeros(10)), {"labels": rng.integers(0, 10, 32)})


def _captioning_rnn_bench(rng):
    """CS231n's COCO captioning sizes: N = 50, D = 512 features, W = 256, H = 512, V = 1004, T = 16, lstm."""
    n, d, w, h, v, t = 50, 512, 256, 512, 1004, 16
    features, w_proj, wx, wh, w_vocab = _normal(rng, (n, d), (d, h), (w, 4 * h), (h, 4 * h), (h, v))
    return BenchCase((features, w_proj, np.zeros(h), rng.standard_normal((v, w)) / 100, wx, wh, np.zeros(4 * h),
                      w_vocab, np.zeros(v)), {"captions": rng.integers(0, v, (n, t + 1)), "cell": "lstm"})


def _gpt_bench(rng):
    """The issue's size: L = 2 blocks, E = 128, heads = 4, T = 64, N = 8, V = 65 characters, M = 4E."""
    n, t, v, e, layers = 8, 64, 65, 128, 2
    m = 4 * e
    small = lambda *s: 0.02 * rng.standard_normal(s)  # noqa: E731  GPT-2's initialisation
    params = (small(v, e), small(t, e), np.ones((layers, e)), np.zeros((layers, e)),
              small(layers, e, e), np.zeros((layers, e)), small(layers, e, e), np.zeros((layers, e)),
              small(layers, e, e), np.zeros((layers, e)), small(layers, e, e), np.zeros((layers, e)),
              np.ones((layers, e)), np.zeros((layers, e)), small(layers, e, m), np.zeros((layers, m)),
              small(layers, m, e), np.zeros((layers, e)), np.ones(e), np.zeros(e))
    return BenchCase(params, {"tokens": rng.integers(0, v, (n, t)), "targets": rng.integers(0, v, (n, t)),
                              "heads": 4})


# ----------------------------------------------------------------------------------------
# The catalogue entries.

def _two_layer_net_steps(arrays, hyper):
    steps = ref.two_layer_net_steps(labels=hyper["labels"])
    return _loss_reads(steps, row_weights=hyper["row_weights"]) if "row_weights" in hyper else steps


def _fc_net_steps(arrays, hyper):
    layers = arrays[5].shape[0]
    if "norm_index" not in hyper:
        return ref.fc_net_steps(layers, labels=hyper["labels"], norm=hyper.get("norm", "none"),
                                eps=hyper.get("eps", 1e-5), dropout_masks=hyper.get("dropout_masks"),
                                p=hyper.get("p", 1.0))
    steps = ref.fc_net_steps(layers, labels=hyper["labels"], norm="batchnorm", eps=hyper["eps"],
                             dropout_masks=hyper["dropout_masks"], p=hyper["p"])
    norm = {key: hyper[key] for key in ("eps", "norm_index", "rows", "units")}
    steps = _loss_reads([step._replace(op=ANY_NORM, hyper=norm) if step.op is ref.BATCHNORM else step
                         for step in steps], row_weights=hyper["row_weights"])
    for layer in range(1, layers):
        steps = _gate(steps, f"affine.{layer}", f"dropout.{layer}", hyper["active"][layer])
    return steps


def _conv_net_steps(arrays, hyper):
    steps = ref.conv_net_steps(arrays[1], arrays[3], labels=hyper["labels"], pool=hyper.get("pool", 2))
    if "flat" not in hyper:
        return steps
    for block in (1, 2):
        steps = _interpose(steps, KEEP, f"pool{block}", {"keep": hyper[f"kept{block}"]})
    return _loss_reads(steps, row_weights=hyper["row_weights"])


def _conv_net_layout(hyper):
    return {} if "flat" not in hyper else {1: ((2, 3), hyper["taps1"]), 3: ((2, 3), hyper["taps2"]),
                                           5: ((0,), hyper["flat"])}


def _captioning_rnn_layout(hyper):
    return {} if "columns" not in hyper else {i: ((-1,), hyper["columns"]) for i in (4, 5, 6)}


def _gpt_layout(hyper):
    if "head_columns" not in hyper:
        return {}
    return {**{i: ((-1,), hyper["head_columns"]) for i in range(4, 10)}, 10: ((1,), hyper["head_columns"])}


def _captioning_rnn_steps(arrays, hyper):
    if "lstm" not in hyper:
        return ref.captioning_rnn_steps(captions=hyper["captions"], cell=hyper.get("cell", "rnn"),
                                        null=hyper.get("null", 0))
    steps = [step._replace(op=ANY_CELL, hyper={"lstm": hyper["lstm"]}) if step.op is ref.LSTM else step
             for step in ref.captioning_rnn_steps(captions=hyper["captions"], cell="lstm", null=hyper.get("null", 0))]
    return _loss_reads(steps, batch=hyper["batch"])


GPT_BLOCK_PARAMS = ref.GPT_PARAMS[2:-2]
"""gpt's arguments stacked along its blocks, in order (reference.models.GPT_STACKED)."""


def _gpt_steps(arrays, hyper):
    layers = arrays[4].shape[0]
    steps = ref.gpt_steps(layers, tokens=hyper["tokens"], targets=hyper["targets"], heads=hyper["heads"],
                          eps=hyper.get("eps", 1e-5))
    if "active" not in hyper:
        return steps
    steps = [step._replace(hyper={**step.hyper, "mask": hyper["features"]}) if step.op is ref.LAYERNORM else
             step._replace(hyper={**step.hyper, "scale": hyper["scale"]}) if step.op is ref.SELF_ATTENTION else step
             for step in steps]
    steps = _interpose(steps, ABSENT, "logits", {"absent": hyper["absent"]})
    steps = _loss_reads(steps, row_weights=hyper["row_weights"].reshape(-1))
    if not layers:
        return steps
    outputs = [step.output for step in steps]
    first, block_end, last = outputs.index("ln1.0"), outputs.index("h.1"), outputs.index(f"h.{layers}")
    stack = network.Step(scanned(steps[first:block_end + 1], GPT_BLOCK_PARAMS, hyper["active"]),
                         ("h.0", *GPT_BLOCK_PARAMS), f"h.{layers}")
    return [*steps[:first], stack, *steps[last + 1:]]


two_layer_net = Layer(
    "two_layer_net", ref.two_layer_net_forward, ref.two_layer_net_backward, jax_two_layer_net, two_layer_net_space,
    magnitude=model_magnitude(ref.TWO_LAYER_NET_PARAMS, _two_layer_net_steps),
    hints=Hints(pad=_two_layer_net_bucket), errors=TWO_LAYER_NET_ERRORS, bench=_two_layer_net_bench)
fc_net = Layer(
    "fc_net", ref.fc_net_forward, ref.fc_net_backward, jax_fc_net, fc_net_space,
    magnitude=model_magnitude(ref.FC_NET_PARAMS, _fc_net_steps, ref.FC_NET_STACKED),
    hints=Hints(pad=_fc_net_bucket), errors=FC_NET_ERRORS, bench=_fc_net_bench)
conv_net = Layer(
    "conv_net", ref.conv_net_forward, ref.conv_net_backward, jax_conv_net, conv_net_space,
    magnitude=model_magnitude(ref.CONV_NET_PARAMS, _conv_net_steps, layout=_conv_net_layout),
    hints=Hints(pad=_conv_net_bucket), errors=CONV_NET_ERRORS, bench=_conv_net_bench)
captioning_rnn = Layer(
    "captioning_rnn", ref.captioning_rnn_forward, ref.captioning_rnn_backward, jax_captioning_rnn,
    captioning_rnn_space,
    magnitude=model_magnitude(ref.CAPTIONING_RNN_PARAMS, _captioning_rnn_steps, layout=_captioning_rnn_layout),
    hints=Hints(pad=_captioning_rnn_bucket), errors=CAPTIONING_RNN_ERRORS, bench=_captioning_rnn_bench)
gpt = Layer(
    "gpt", ref.gpt_forward, ref.gpt_backward, jax_gpt, gpt_space,
    magnitude=model_magnitude(ref.GPT_PARAMS, _gpt_steps, ref.GPT_STACKED, _gpt_layout), hints=Hints(pad=_gpt_bucket),
    errors=GPT_ERRORS, bench=_gpt_bench)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs of composing layers. Each is the reference's walk with one thing wrong.

def _with_ops(replace):
    """The model's backward on a tape whose steps' ops ``replace(step)`` swaps (or keeps)."""
    def backward(dout, cache):
        steps = tuple(step._replace(op=replace(step)) for step in cache.tape.steps)
        return ref._gradients(dout, cache._replace(tape=cache.tape._replace(steps=steps)))
    return backward


def _walk(dout, cache, *, order=reversed, caches=None, leaves_summed=True):
    """The network's backward walk with one choice made differently: the order the steps are
    walked in, which cache each step's backward gets, or whether a given value's uses are summed."""
    tape = cache.tape
    caches = caches(tape) if caches else tape.caches
    grads = {tape.output: dout}
    for step, step_cache in order(list(zip(tape.steps, caches))):
        if step.output not in grads:
            continue
        for name, grad in zip(step.inputs, step.op.backward(grads.pop(step.output), step_cache)):
            summed = name in grads and (leaves_summed or name not in tape.given)
            grads[name] = grads[name] + grad if summed else grad
    return ref._collect({name: grads.get(name, np.zeros(shape, dtype)) for name, (shape, dtype) in tape.given.items()},
                        cache)


def _previous_layernorm_cache(tape):
    """Each layernorm step's cache replaced by the previous layernorm step's (the first keeps its own)."""
    caches, previous = list(tape.caches), None
    for i, step in enumerate(tape.steps):
        if step.op is ref.LAYERNORM:
            previous, caches[i] = tape.caches[i], tape.caches[i] if previous is None else previous
    return caches


def _skip_dropped(step):
    """The residual additions' backward hands the whole gradient to the branch and none to the skip path."""
    if step.op is network.ADD and step.inputs[0].startswith("h."):
        return network.Op(network.add_forward, lambda dout, cache: (np.zeros_like(dout), dout.copy()))
    return step.op


def _dropout_unmasked(step):
    if step.op is ref.DROPOUT:
        return network.Op(step.op.forward, lambda dout, cache: (dout * cache.scale.max(initial=0.0),))
    return step.op


def _h0_dropped(step):
    """The recurrent layer's dh0 dropped: the image features' projection gets no gradient."""
    if step.op in (ref.RNN, ref.LSTM):
        def backward(dout, cache, inner=step.op.backward):
            dx, dh0, *rest = inner(dout, cache)
            return (dx, np.zeros_like(dh0), *rest)
        return network.Op(step.op.forward, backward)
    return step.op


MUTANTS = (
    Mutant("gpt", "residual_path_missing", "the residual additions' backward passes the gradient to the branch "
           "only, not along the skip path: a term missing", _with_ops(_skip_dropped), bug="formula"),
    Mutant("gpt", "tied_embedding_one_gradient", "wte's gradient is overwritten by each of its two uses (the "
           "embedding, the unembedding) instead of summed: a term missing",
           lambda dout, cache: _walk(dout, cache, leaves_summed=False), bug="formula"),
    Mutant("gpt", "cache_from_wrong_layer", "each layernorm's backward gets the cache of the layernorm before "
           "it", lambda dout, cache: _walk(dout, cache, caches=_previous_layernorm_cache), bug="formula"),
    Mutant("fc_net", "chain_walked_forward", "the steps' backwards run in the forward's order: a step's "
           "output gradient is not there yet when it runs", lambda dout, cache: _walk(dout, cache, order=list),
           bug="missing"),
    Mutant("fc_net", "dropout_mask_not_reapplied", "dropout's backward scales dout by 1/p everywhere, the "
           "dropped units included", _with_ops(_dropout_unmasked), bug="formula"),
    Mutant("captioning_rnn", "h0_gradient_dropped", "the recurrent layer's dh0 is dropped: the features' "
           "projection gets no gradient", _with_ops(_h0_dropped), bug="missing"),
)


# Correct variants: the same gradients by another route, which the verifier must accept.

def _two_layer_net_by_hand(dout, cache):
    """The backward written out for this one network, no walk: the CS231n assignment's way."""
    (_, affine1), (_, relu), (_, affine2), (_, loss) = zip(cache.tape.steps, cache.tape.caches)
    x, w1 = affine1
    h, w2 = affine2
    n = loss.probs.shape[0]
    dscores = loss.probs * (dout / n)
    dscores[np.arange(n), loss.labels] -= dout / n
    dh = dscores @ w2.T
    da = dh * (h > 0)
    return da @ w1.T, x.T @ da, da.sum(axis=0), h.T @ dscores, dscores.sum(axis=0)


def _closed_form_batchnorm(step):
    if step.op is ref.BATCHNORM:
        from reference.normalisation import batchnorm_alt_backward
        return network.Op(step.op.forward, batchnorm_alt_backward)
    return step.op


VARIANTS = (
    Variant("two_layer_net", "by_hand", "the backward written out by hand for this network, no walk",
            _two_layer_net_by_hand),
    Variant("fc_net", "closed_form_batchnorm", "batchnorm's backward in closed form (batchnorm_alt) inside the walk",
            _with_ops(_closed_form_batchnorm)),
)
