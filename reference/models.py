"""Models built from the reference layers with ``reference.network``: each is a list of steps,
and its gradient is the network's one backward walk. Derivations: docs/derivations/
two_layer_net.md, fc_net.md, conv_net.md, captioning_rnn.md, gpt.md (network.md for the walk).

Every model maps its data and parameters to one scalar loss and follows the layer contract:
``<model>_forward(*arrays, **hyper) -> (loss, cache)``, ``<model>_backward(dloss, cache) ->
one gradient per array``, in argument order. Labels, tokens, masks and the structure are
keyword hyperparameters.

two_layer_net   x (N, D) -> affine w1 (D, H), b1 -> relu -> affine w2 (H, C), b2 -> softmax cross-entropy
fc_net          x (N, D) -> L x [affine -> batchnorm | layernorm | nothing -> relu -> dropout | nothing]
                -> affine w_out (H, C), b_out -> softmax cross-entropy. The first hidden layer
                is w_in (D, H), b_in (H,); hidden layer l >= 2 is w_mid[l-2] (H, H), b_mid[l-2];
                gamma[l], beta[l] (H,) scale and shift its normalisation (unused without one)
conv_net        x (N, C, H, W) -> 2 x [conv2d (stride 1, zero padding (K-1)//2) -> relu ->
                max_pool2d (pool x pool)] -> affine w3, b3 -> softmax cross-entropy
captioning_rnn  features (N, D) -> affine -> h0;  captions[:, :-1] -> embedding w_embed (V, W);
                rnn or lstm from h0 -> temporal affine w_vocab (H, V), b_vocab -> temporal softmax
                loss against captions[:, 1:], padding (the null token) masked
gpt             tokens (N, T): wte[tokens] + wpe[t] -> L x [h += attention(layernorm(h));
                h += proj(gelu_tanh(fc(layernorm(h))))] -> layernorm -> logits = h wte^T (the
                unembedding tied to the token embedding) -> softmax cross-entropy against the targets

Layer-indexed parameters are stacked along a leading axis of L (gpt: wq is (L, E, E)), so a
model has a fixed list of arguments whatever its depth; the steps read their slices by name
(``wq.0``, ``wq.1``, ...), and the backward stacks their gradients again.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate
from .activations import gelu_tanh_backward, gelu_tanh_forward, relu_backward, relu_forward
from .attention import multi_head_self_attention_backward, multi_head_self_attention_forward
from .conv import conv2d_backward, conv2d_forward
from .embedding import embedding_backward, embedding_forward
from .linear import affine_backward, affine_forward, linear_backward, linear_forward
from .losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .network import ADD, RESHAPE, TRANSPOSE, Op, Step, Tape, network_backward, network_forward
from .normalisation import batchnorm_backward, batchnorm_forward, layernorm_backward, layernorm_forward
from .pooling import max_pool2d_backward, max_pool2d_forward
from .recurrent import lstm_backward, lstm_forward, rnn_backward, rnn_forward
from .regularisation import dropout_backward, dropout_forward
from .temporal import (temporal_affine_backward, temporal_affine_forward, temporal_softmax_loss_backward,
                       temporal_softmax_loss_forward)

__all__ = [
    "CAPTIONING_RNN_PARAMS", "CONV_NET_PARAMS", "FC_NET_PARAMS", "FC_NET_STACKED", "GPT_PARAMS", "GPT_STACKED",
    "ModelCache", "TWO_LAYER_NET_PARAMS", "named_values",
    "captioning_rnn_backward", "captioning_rnn_forward", "captioning_rnn_steps",
    "conv_net_backward", "conv_net_forward", "conv_net_steps",
    "fc_net_backward", "fc_net_forward", "fc_net_steps",
    "gpt_backward", "gpt_forward", "gpt_steps",
    "two_layer_net_backward", "two_layer_net_forward", "two_layer_net_steps",
]

AFFINE = Op(affine_forward, affine_backward)
LINEAR = Op(linear_forward, linear_backward)
RELU = Op(relu_forward, relu_backward)
GELU_TANH = Op(gelu_tanh_forward, gelu_tanh_backward)
BATCHNORM = Op(batchnorm_forward, batchnorm_backward)
LAYERNORM = Op(layernorm_forward, layernorm_backward)
DROPOUT = Op(dropout_forward, dropout_backward)
EMBEDDING = Op(embedding_forward, embedding_backward)
CONV2D = Op(conv2d_forward, conv2d_backward)
MAX_POOL2D = Op(max_pool2d_forward, max_pool2d_backward)
SELF_ATTENTION = Op(multi_head_self_attention_forward, multi_head_self_attention_backward)
SOFTMAX_CROSS_ENTROPY = Op(softmax_cross_entropy_forward, softmax_cross_entropy_backward)
TEMPORAL_AFFINE = Op(temporal_affine_forward, temporal_affine_backward)
TEMPORAL_SOFTMAX_LOSS = Op(temporal_softmax_loss_forward, temporal_softmax_loss_backward)
RNN = Op(rnn_forward, rnn_backward)
LSTM = Op(lstm_forward, lstm_backward)
NORMS = {"none": None, "batchnorm": BATCHNORM, "layernorm": LAYERNORM}

TWO_LAYER_NET_PARAMS = ("x", "w1", "b1", "w2", "b2")
FC_NET_PARAMS = ("x", "w_in", "b_in", "w_mid", "b_mid", "gamma", "beta", "w_out", "b_out")
CONV_NET_PARAMS = ("x", "w1", "b1", "w2", "b2", "w3", "b3")
CAPTIONING_RNN_PARAMS = ("features", "w_proj", "b_proj", "w_embed", "wx", "wh", "b", "w_vocab", "b_vocab")
GPT_PARAMS = ("wte", "wpe", "ln1_gamma", "ln1_beta", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo",
              "ln2_gamma", "ln2_beta", "w_fc", "b_fc", "w_proj", "b_proj", "lnf_gamma", "lnf_beta")
FC_NET_STACKED = frozenset({"w_mid", "b_mid", "gamma", "beta"})
GPT_STACKED = frozenset(GPT_PARAMS[2:-2])
"""The arguments stacked along a leading layer axis: layer l reads the slice ``name.l``."""


class ModelCache(NamedTuple):
    tape: Tape  # the network's record: steps and their caches
    names: tuple[str, ...]  # the model's arguments, in order
    shapes: tuple[tuple[int, ...], ...]  # ... their shapes
    stacked: frozenset  # the arguments stacked along a leading layer axis
    dtype: np.dtype


# ---------------------------------------------------------------------------------------
# Running a model: its arguments as named values, the walk, the gradients back in order.

def named_values(names, arrays, stacked=frozenset()) -> dict:
    """A model's arguments as the network's named values: a stacked argument ``name`` becomes its
    slices ``name.0``, ``name.1``, ... (views), one per layer."""
    values = {}
    for name, a in zip(names, arrays):
        if name in stacked:
            values.update({f"{name}.{layer}": a[layer] for layer in range(a.shape[0])})
        else:
            values[name] = a
    return values


def _run(steps, names, arrays, stacked=frozenset()) -> tuple[np.ndarray, ModelCache]:
    loss, tape = network_forward(steps, named_values(names, arrays, stacked))
    return loss, ModelCache(tape, tuple(names), tuple(a.shape for a in arrays), stacked, arrays[0].dtype)


def _gradients(dout, cache: ModelCache) -> tuple[np.ndarray, ...]:
    return _collect(network_backward(dout, cache.tape), cache)


def _collect(grads: dict, cache: ModelCache) -> tuple[np.ndarray, ...]:
    """The gradients of the model's arguments, in order, from the walk's gradients of the named values."""
    result = []
    for name, shape in zip(cache.names, cache.shapes):
        if name in cache.stacked:  # the slices' gradients, stacked back into the argument's shape
            stacked = np.empty(shape, cache.dtype)
            for layer in range(shape[0]):
                stacked[layer] = grads[f"{name}.{layer}"]
            result.append(stacked)
        else:
            result.append(grads[name])
    return tuple(result)


def _check(arrays, names, shapes: dict, symbols: dict) -> None:
    """Every argument a float array of the first's dtype, with its expected shape (a dict of tuples, None = any)."""
    if len(arrays) != len(names):
        raise TypeError(f"{len(arrays)} arrays given but {len(names)} are expected: {', '.join(names)}")
    for name, a in zip(names, arrays):
        _validate.float_array(name, a)
        _validate.same_dtype(name, a, names[0], arrays[0])
        expected = shapes.get(name)
        if expected is not None and a.shape != tuple(expected):
            raise ValueError(f"{name} has shape {a.shape} but {symbols[name]} = {tuple(expected)} is expected")


def _labels(name, labels, shape, classes):
    _validate.int_array(name, labels, shape)
    _validate.index_range(name, labels, classes, f"class indices, C = {classes}")


# ---------------------------------------------------------------------------------------
# two_layer_net

def two_layer_net_steps(*, labels) -> list[Step]:
    return [Step(AFFINE, ("x", "w1", "b1"), "a1"), Step(RELU, ("a1",), "h1"),
            Step(AFFINE, ("h1", "w2", "b2"), "scores"),
            Step(SOFTMAX_CROSS_ENTROPY, ("scores",), "loss", {"labels": labels})]


def two_layer_net_forward(x, w1, b1, w2, b2, *, labels) -> tuple[np.ndarray, ModelCache]:
    """L = softmax_cross_entropy(relu(x w1 + b1) w2 + b2, labels).

    x: (N, D), N >= 1; w1: (D, H), b1: (H,), w2: (H, C), b2: (C,); labels: (N,) in [0, C)
    -> (loss: 0-d, ModelCache).
    """
    arrays = (x, w1, b1, w2, b2)
    _validate.float_array("x", x)
    _validate.ndim("x", x, 2, "(N, D)")
    _validate.float_array("w1", w1)
    _validate.ndim("w1", w1, 2, "(D, H)")
    _validate.float_array("w2", w2)
    _validate.ndim("w2", w2, 2, "(H, C)")
    (n, d), (_, h), c = x.shape, w1.shape, w2.shape[1]
    _check(arrays, TWO_LAYER_NET_PARAMS, {"w1": (d, h), "b1": (h,), "w2": (h, c), "b2": (c,)},
           {"w1": "(D, H)", "b1": "(H,)", "w2": "(H, C)", "b2": "(C,)"})
    _labels("labels", labels, (n,), c)
    return _run(two_layer_net_steps(labels=labels), TWO_LAYER_NET_PARAMS, arrays)


def two_layer_net_backward(dout, cache: ModelCache) -> tuple[np.ndarray, ...]:
    """dout: 0-d -> (dx, dw1, db1, dw2, db2)."""
    return _gradients(dout, cache)


# ---------------------------------------------------------------------------------------
# fc_net

def fc_net_steps(layers: int, *, labels, norm="none", eps=1e-5, dropout_masks=None, p=1.0) -> list[Step]:
    steps, h = [], "x"
    for layer in range(layers):
        w, b = ("w_in", "b_in") if layer == 0 else (f"w_mid.{layer - 1}", f"b_mid.{layer - 1}")
        steps.append(Step(AFFINE, (h, w, b), h := f"affine.{layer}"))
        if NORMS[norm] is not None:
            steps.append(Step(NORMS[norm], (h, f"gamma.{layer}", f"beta.{layer}"), h := f"{norm}.{layer}",
                              {"eps": eps}))
        steps.append(Step(RELU, (h,), h := f"relu.{layer}"))
        if dropout_masks is not None:
            steps.append(Step(DROPOUT, (h,), h := f"dropout.{layer}", {"mask": dropout_masks[layer], "p": p}))
    return steps + [Step(AFFINE, (h, "w_out", "b_out"), "scores"),
                    Step(SOFTMAX_CROSS_ENTROPY, ("scores",), "loss", {"labels": labels})]


def fc_net_forward(x, w_in, b_in, w_mid, b_mid, gamma, beta, w_out, b_out, *, labels, norm="none", eps=1e-5,
                   dropout_masks=None, p=1.0) -> tuple[np.ndarray, ModelCache]:
    """L hidden layers of width H, each affine -> norm -> relu -> dropout, then affine -> softmax cross-entropy.

    x: (N, D), N >= 1; w_in: (D, H), b_in: (H,); w_mid: (L-1, H, H), b_mid: (L-1, H); gamma, beta:
    (L, H); w_out: (H, C), b_out: (C,); L >= 1. labels: (N,) in [0, C); norm: "none", "batchnorm"
    or "layernorm" (then eps > 0); dropout_masks: None (no dropout) or (L, N, H) of 0s and 1s,
    applied as inverted dropout with keep probability p -> (loss: 0-d, ModelCache).
    """
    arrays = (x, w_in, b_in, w_mid, b_mid, gamma, beta, w_out, b_out)
    _validate.float_array("x", x)
    _validate.ndim("x", x, 2, "(N, D)")
    for name, a, symbols in (("w_in", w_in, "(D, H)"), ("w_mid", w_mid, "(L-1, H, H)"), ("w_out", w_out, "(H, C)")):
        _validate.float_array(name, a)
        _validate.ndim(name, a, len(symbols.split(",")), symbols)
    (n, d), h, layers, c = x.shape, w_in.shape[1], w_mid.shape[0] + 1, w_out.shape[1]
    _check(arrays, FC_NET_PARAMS,
           {"w_in": (d, h), "b_in": (h,), "w_mid": (layers - 1, h, h), "b_mid": (layers - 1, h),
            "gamma": (layers, h), "beta": (layers, h), "w_out": (h, c), "b_out": (c,)},
           {"w_in": "(D, H)", "b_in": "(H,)", "w_mid": "(L-1, H, H)", "b_mid": "(L-1, H)", "gamma": "(L, H)",
            "beta": "(L, H)", "w_out": "(H, C)", "b_out": "(C,)"})
    _labels("labels", labels, (n,), c)
    if norm not in NORMS:
        raise ValueError(f"norm is {norm!r} but must be one of {', '.join(map(repr, NORMS))}")
    if dropout_masks is not None:
        _validate.float_array("dropout_masks", dropout_masks)
        if dropout_masks.shape != (layers, n, h):
            raise ValueError(f"dropout_masks has shape {dropout_masks.shape} but (L, N, H) = {(layers, n, h)} "
                             f"is expected")
    steps = fc_net_steps(layers, labels=labels, norm=norm, eps=eps, dropout_masks=dropout_masks, p=p)
    return _run(steps, FC_NET_PARAMS, arrays, FC_NET_STACKED)


def fc_net_backward(dout, cache: ModelCache) -> tuple[np.ndarray, ...]:
    """dout: 0-d -> (dx, dw_in, db_in, dw_mid, db_mid, dgamma, dbeta, dw_out, db_out); dgamma = dbeta = 0
    without a normalisation."""
    return _gradients(dout, cache)


# ---------------------------------------------------------------------------------------
# conv_net

def _same_padding(w):
    return tuple((k - 1) // 2 for k in w.shape[2:])


def conv_net_steps(w1, w2, *, labels, pool=2) -> list[Step]:
    steps, h = [], "x"
    for block, w in ((1, w1), (2, w2)):
        steps += [Step(CONV2D, (h, f"w{block}", f"b{block}"), f"conv{block}", {"padding": _same_padding(w)}),
                  Step(RELU, (f"conv{block}",), f"relu{block}"),
                  Step(MAX_POOL2D, (f"relu{block}",), h := f"pool{block}", {"kernel": pool})]
    return steps + [Step(AFFINE, (h, "w3", "b3"), "scores"),
                    Step(SOFTMAX_CROSS_ENTROPY, ("scores",), "loss", {"labels": labels})]


def conv_net_forward(x, w1, b1, w2, b2, w3, b3, *, labels, pool=2) -> tuple[np.ndarray, ModelCache]:
    """Two blocks of conv2d (stride 1, zero padding (K-1)//2) -> relu -> max_pool2d (pool x pool), then
    affine -> softmax cross-entropy.

    x: (N, C, H, W), N >= 1; w1: (F1, C, K1, K1'), b1: (F1,); w2: (F2, F1, K2, K2'), b2: (F2,);
    w3: (F2 H2 W2, classes), b3: (classes,), where H2 x W2 is the size after both blocks (an odd
    kernel keeps the size, each pool divides it by pool, rounding down); labels: (N,)
    -> (loss: 0-d, ModelCache).
    """
    arrays = (x, w1, b1, w2, b2, w3, b3)
    _validate.float_array("x", x)
    _validate.ndim("x", x, 4, "(N, C, H, W)")
    for name, a, symbols in (("w1", w1, "(F1, C, K1, K1')"), ("w2", w2, "(F2, F1, K2, K2')"),
                             ("w3", w3, "(F2 H2 W2, classes)")):
        _validate.float_array(name, a)
        _validate.ndim(name, a, len(symbols.split(",")), symbols)
    pool = _validate.positive_int("pool", pool)
    size = np.array(x.shape[2:])
    for w in (w1, w2):
        size = (size + 2 * np.array(_same_padding(w)) - np.array(w.shape[2:]) + 1) // pool
    flat = w2.shape[0] * int(np.prod(size))
    if min(size) < 1:
        raise ValueError(f"x has shape {x.shape}: after two blocks of convolution and {pool}x{pool} pooling "
                         f"nothing is left, {tuple(int(s) for s in size)}")
    (n, c), f1, f2, classes = x.shape[:2], w1.shape[0], w2.shape[0], w3.shape[1]
    _check(arrays, CONV_NET_PARAMS,
           {"w1": (f1, c) + w1.shape[2:], "b1": (f1,), "w2": (f2, f1) + w2.shape[2:], "b2": (f2,),
            "w3": (flat, classes), "b3": (classes,)},
           {"w1": "(F1, C, K1, K1')", "b1": "(F1,)", "w2": "(F2, F1, K2, K2')", "b2": "(F2,)",
            "w3": "(F2 H2 W2, classes)", "b3": "(classes,)"})
    _labels("labels", labels, (n,), classes)
    return _run(conv_net_steps(w1, w2, labels=labels, pool=pool), CONV_NET_PARAMS, arrays)


def conv_net_backward(dout, cache: ModelCache) -> tuple[np.ndarray, ...]:
    """dout: 0-d -> (dx, dw1, db1, dw2, db2, dw3, db3)."""
    return _gradients(dout, cache)


# ---------------------------------------------------------------------------------------
# captioning_rnn

CELLS = {"rnn": (RNN, 1), "lstm": (LSTM, 4)}


def captioning_rnn_steps(*, captions, cell="rnn", null=0) -> list[Step]:
    words_in, words_out = captions[:, :-1], captions[:, 1:]
    return [Step(AFFINE, ("features", "w_proj", "b_proj"), "h0"),
            Step(EMBEDDING, ("w_embed",), "words", {"indices": words_in}),
            Step(CELLS[cell][0], ("words", "h0", "wx", "wh", "b"), "hidden"),
            Step(TEMPORAL_AFFINE, ("hidden", "w_vocab", "b_vocab"), "scores"),
            Step(TEMPORAL_SOFTMAX_LOSS, ("scores",), "loss", {"labels": words_out, "mask": words_out != null})]


def captioning_rnn_forward(features, w_proj, b_proj, w_embed, wx, wh, b, w_vocab, b_vocab, *, captions,
                           cell="rnn", null=0) -> tuple[np.ndarray, ModelCache]:
    """h0 = features w_proj + b_proj; the RNN (or LSTM) reads the embedded captions[:, :-1] from h0 and
    scores each next word; L = the temporal softmax loss against captions[:, 1:], where the null
    (padding) token is masked out, summed over time and averaged over the N captions.

    features: (N, D), N >= 1; w_proj: (D, H), b_proj: (H,); w_embed: (V, W); wx: (W, G H), wh: (H, G H),
    b: (G H,) with G = 1 (rnn) or 4 (lstm); w_vocab: (H, V), b_vocab: (V,); captions: (N, T + 1)
    integers in [0, V); null: the padding token -> (loss: 0-d, ModelCache).
    """
    arrays = (features, w_proj, b_proj, w_embed, wx, wh, b, w_vocab, b_vocab)
    if cell not in CELLS:
        raise ValueError(f"cell is {cell!r} but must be 'rnn' or 'lstm'")
    for name, a, symbols in (("features", features, "(N, D)"), ("w_proj", w_proj, "(D, H)"),
                             ("w_embed", w_embed, "(V, W)")):
        _validate.float_array(name, a)
        _validate.ndim(name, a, 2, symbols)
    (n, d), h, (vocab, width), gates = features.shape, w_proj.shape[1], w_embed.shape, CELLS[cell][1]
    _check(arrays, CAPTIONING_RNN_PARAMS,
           {"w_proj": (d, h), "b_proj": (h,), "wx": (width, gates * h), "wh": (h, gates * h), "b": (gates * h,),
            "w_vocab": (h, vocab), "b_vocab": (vocab,)},
           {"w_proj": "(D, H)", "b_proj": "(H,)", "wx": "(W, G H)", "wh": "(H, G H)", "b": "(G H,)",
            "w_vocab": "(H, V)", "b_vocab": "(V,)"})
    _validate.int_array("captions", captions)
    _validate.ndim("captions", captions, 2, "(N, T + 1)")
    if captions.shape[0] != n or captions.shape[1] < 1:
        raise ValueError(f"captions has shape {captions.shape} but (N, T + 1) with N = {n} and T >= 0 is expected")
    _validate.index_range("captions", captions, vocab, f"word indices, V = {vocab}")
    return _run(captioning_rnn_steps(captions=captions, cell=cell, null=null), CAPTIONING_RNN_PARAMS, arrays)


def captioning_rnn_backward(dout, cache: ModelCache) -> tuple[np.ndarray, ...]:
    """dout: 0-d -> (dfeatures, dw_proj, db_proj, dw_embed, dwx, dwh, db, dw_vocab, db_vocab)."""
    return _gradients(dout, cache)


# ---------------------------------------------------------------------------------------
# gpt

def gpt_steps(layers: int, *, tokens, targets, heads, eps=1e-5) -> list[Step]:
    n, t = tokens.shape
    rows = (n * t, -1)
    positions = np.broadcast_to(np.arange(t), (n, t)).reshape(-1)
    steps = [Step(EMBEDDING, ("wte",), "tokens", {"indices": tokens.reshape(-1)}),
             Step(EMBEDDING, ("wpe",), "positions", {"indices": positions}),
             Step(ADD, ("tokens", "positions"), h := "h.0")]
    for layer in range(layers):
        p = lambda name: f"{name}.{layer}"  # noqa: E731  this block's slice of a stacked parameter
        steps += [
            Step(LAYERNORM, (h, p("ln1_gamma"), p("ln1_beta")), p("ln1"), {"eps": eps}),
            Step(RESHAPE, (p("ln1"),), p("sequences"), {"shape": (n, t, -1)}),
            Step(SELF_ATTENTION, (p("sequences"), *map(p, ("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"))),
                 p("attention"), {"heads": heads, "causal": True}),
            Step(RESHAPE, (p("attention"),), p("attention_rows"), {"shape": rows}),
            Step(ADD, (h, p("attention_rows")), h := p("h_mid")),
            Step(LAYERNORM, (h, p("ln2_gamma"), p("ln2_beta")), p("ln2"), {"eps": eps}),
            Step(AFFINE, (p("ln2"), p("w_fc"), p("b_fc")), p("fc")),
            Step(GELU_TANH, (p("fc"),), p("gelu")),
            Step(AFFINE, (p("gelu"), p("w_proj"), p("b_proj")), p("mlp")),
            Step(ADD, (h, p("mlp")), h := f"h.{layer + 1}"),
        ]
    return steps + [Step(LAYERNORM, (h, "lnf_gamma", "lnf_beta"), "lnf", {"eps": eps}),
                    Step(TRANSPOSE, ("wte",), "unembedding"),
                    Step(LINEAR, ("lnf", "unembedding"), "logits"),
                    Step(SOFTMAX_CROSS_ENTROPY, ("logits",), "loss", {"labels": targets.reshape(-1)})]


def gpt_forward(wte, wpe, ln1_gamma, ln1_beta, wq, bq, wk, bk, wv, bv, wo, bo, ln2_gamma, ln2_beta, w_fc, b_fc,
                w_proj, b_proj, lnf_gamma, lnf_beta, *, tokens, targets, heads, eps=1e-5
                ) -> tuple[np.ndarray, ModelCache]:
    """A GPT: L pre-norm transformer blocks with causal self-attention, the unembedding tied to wte.

    wte: (V, E) token embedding, also the unembedding; wpe: (T_max, E) position embedding, T <= T_max;
    per block, stacked along L: ln1_gamma, ln1_beta, ln2_gamma, ln2_beta: (L, E); wq, wk, wv, wo:
    (L, E, E); bq, bk, bv, bo: (L, E); w_fc: (L, E, M), b_fc: (L, M); w_proj: (L, M, E), b_proj: (L, E);
    lnf_gamma, lnf_beta: (E,). tokens, targets: (N, T) integers in [0, V), N T >= 1; heads divides E
    -> (loss: 0-d, the mean cross-entropy of the N T next-token predictions, ModelCache).
    """
    arrays = (wte, wpe, ln1_gamma, ln1_beta, wq, bq, wk, bk, wv, bv, wo, bo, ln2_gamma, ln2_beta, w_fc, b_fc,
              w_proj, b_proj, lnf_gamma, lnf_beta)
    for name, a, symbols in (("wte", wte, "(V, E)"), ("wpe", wpe, "(T_max, E)"), ("w_fc", w_fc, "(L, E, M)")):
        _validate.float_array(name, a)
        _validate.ndim(name, a, len(symbols.split(",")), symbols)
    (vocab, e), layers, m = wte.shape, w_fc.shape[0], w_fc.shape[2]
    per_block = {"ln1_gamma": (layers, e), "ln1_beta": (layers, e), "ln2_gamma": (layers, e),
                 "ln2_beta": (layers, e), "b_fc": (layers, m), "w_proj": (layers, m, e), "b_proj": (layers, e),
                 **{f"w{k}": (layers, e, e) for k in "qkvo"}, **{f"b{k}": (layers, e) for k in "qkvo"}}
    symbols = {name: "(L, E, E)" if len(shape) == 3 else "(L, E)" for name, shape in per_block.items()}
    symbols.update({"wpe": "(T_max, E)", "b_fc": "(L, M)", "w_proj": "(L, M, E)", "lnf_gamma": "(E,)",
                    "lnf_beta": "(E,)"})
    _check(arrays, GPT_PARAMS, {**per_block, "wpe": (wpe.shape[0], e), "lnf_gamma": (e,), "lnf_beta": (e,)}, symbols)
    _validate.int_array("tokens", tokens)
    _validate.ndim("tokens", tokens, 2, "(N, T)")
    _validate.int_array("targets", targets, tokens.shape)
    n, t = tokens.shape
    if n * t == 0:
        raise ValueError(f"tokens has shape {tokens.shape} but the loss is a mean over N T predictions: "
                         f"at least one is needed")
    if t > wpe.shape[0]:
        raise ValueError(f"tokens has shape {tokens.shape} but wpe has shape {wpe.shape}: T = {t} must be at most "
                         f"T_max = {wpe.shape[0]}")
    _validate.index_range("tokens", tokens, vocab, f"rows of wte, V = {vocab}")
    _validate.index_range("targets", targets, vocab, f"rows of wte, V = {vocab}")
    steps = gpt_steps(layers, tokens=tokens, targets=targets, heads=heads, eps=eps)
    return _run(steps, GPT_PARAMS, arrays, GPT_STACKED)


def gpt_backward(dout, cache: ModelCache) -> tuple[np.ndarray, ...]:
    """dout: 0-d -> one gradient per argument, in order; dwte sums its two uses (embedding and unembedding)."""
    return _gradients(dout, cache)
