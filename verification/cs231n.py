"""The CS231n checker: ``python -m verification cs231n layers.py rnn_layers.py``.

It finds the course's functions in a student's files and checks each forward/backward pair
against the catalogue layer it computes, through the course's own calling conventions:

    affine_forward(x, w, b)                          -> affine
    batchnorm_forward(x, gamma, beta, bn_param)      -> batchnorm (batchnorm_backward_alt: batchnorm_alt)
    dropout_forward(x, dropout_param)                -> dropout, the mask drawn as the course draws it
    conv_forward_naive(x, w, b, conv_param)          -> conv2d with one stride and pad for both axes
    svm_loss(x, y) -> (loss, dx)                     -> svm_hinge
    lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)  -> lstm_step
    ... (``COURSE`` below: every function the checker knows)

Each pair becomes a ``Layer`` whose forward and backward wrap the student's functions into the
catalogue's convention (positional arrays, keyword hyperparameters, a tuple of gradients),
converting only what the course's convention itself differs in: the ``*_param`` dicts built
fresh on every call (the course's forwards store running statistics in them), a bare dx
taken as a tuple of one, a loss's ``(loss, dx)`` split into a forward that caches dx and a
backward that scales it by dloss, the LSTM step's ``(next_h, next_c, cache)``. What the
student returns is otherwise passed on untouched, so a (1, D) dgamma reaches the verifier as
(1, D) and is reported ``contract``. The layer keeps the catalogue layer's JAX specification,
magnitude and hints, and draws from a space restricted to what the course's API expresses
(``Spec.restrictions``), which the output states.

A function that is missing, raises ``NotImplementedError`` or returns None where it must
return an array (the assignment's stubs) is reported ``not implemented``, never checked.
Every checked layer carries the locator ``cs231n:FILE.py:NAME``, so a failure's reproducer
(``python -m verification replay``) rebuilds exactly the adapted layer in a fresh process.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
from hypothesis import HealthCheck, Phase, find
from hypothesis import settings as Settings
from hypothesis import strategies as st

from .catalogue import LAYERS
from .layer import Hints, Layer
from .locate import LocatorError
from .oracles import ELEMENTWISE_LENGTH
from .runner import DTYPES, SEVERITY, LayerReport, check_layer
from .space import Space
from .specs.activations import draw_shape
from .specs.conv import JACOBIAN_ENTRIES as CONV_JACOBIAN_ENTRIES
from .specs.conv import conv_config
from .specs.normalisation import GROUP_MAX_SIZE
from .specs.pooling import JACOBIAN_ENTRIES as POOL_JACOBIAN_ENTRIES
from .specs.pooling import MAX_POOL_ELEMENTS, pool_config
from .strategies import arrays, floats

DEFAULT_EXAMPLES = 15
"""Examples per function and dtype: a whole layers.py and rnn_layers.py in well under a minute."""
NOT_IMPLEMENTED = "not implemented"
VERDICTS = ("wrong", "contract", "inaccurate", "pass", NOT_IMPLEMENTED)
"""A function's verdict: a tier of the verifier, or not implemented (missing or a stub)."""
EVERY_SPACE = "N >= 1 (and T >= 1): the assignment never calls a layer with an empty batch or sequence"


class CourseFileError(ValueError):
    """A course file that cannot be read as Python (a syntax error, a failing import): one line."""


class Unfinished(TypeError):
    """A course function returned None where it must return an array: the assignment's stub."""


# ----------------------------------------------------------------------------------------
# Spaces restricted to what the course's API expresses. Each draws configurations in the
# catalogue's own format (constructively, shrinking toward small ones) and takes its values
# from the catalogue layer's ``values``: the inputs and their hyperparameters' names are the
# catalogue's, so its specification, magnitude and hints apply as they are; the adapters
# below turn them into the course's arguments.

def _restricted(catalogue: str, configs, edges=None, convert=None) -> Space:
    """The catalogue layer's values on ``configs`` (each example through ``convert``); the
    catalogue's edges less those with an empty axis by default."""
    space = LAYERS[catalogue].space
    if edges is None:
        edges = tuple(e for e in space.edges if not _empty(e))

    def values(config):
        drawn = space.values(config)
        return drawn if convert is None else drawn.map(lambda example: convert(*example))

    return Space(configs, values, edges=edges)


def _empty(config) -> bool:
    """An edge the course never meets: an empty batch, sequence or shape."""
    return any(config.get(key) == 0 for key in ("N", "T")) or 0 in config.get("shape", (1,))


def _dims(**spans):
    return st.fixed_dictionaries({name: st.integers(*span) for name, span in spans.items()})


@st.composite
def _affine_configs(draw):
    """N 1-6, x of rank 2-4 with trailing sides 1-4, M 1-6."""
    features = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3))))
    return {"N": draw(st.integers(1, 6)), "features": features, "M": draw(st.integers(1, 6))}


@st.composite
def _any_shape(draw, max_size: int):
    """A shape of rank 1-4, every side 1-8, at most ``max_size`` elements."""
    return {"shape": draw_shape(draw, draw(st.integers(1, 4)), low=1, high=8, max_size=max_size)}


SHAPE_EDGES = ({"shape": (2, 3)}, {"shape": (1, 1)}, {"shape": (3, 2, 2)}, {"shape": (2, 2, 2, 2)})


def _dropout_values(config):
    """x, the keep probability p and the seed; the mask the specification applies is the one the
    course draws from them, np.random.seed(seed); np.random.rand(*x.shape) < p. The seed travels
    as a 0-d array (traced by the oracle: a new seed does not recompile)."""
    shape = config["shape"]

    def example(drawn):
        x, p, seed = drawn
        mask = (np.random.RandomState(seed).rand(*shape) < p).astype(np.float64)
        return (x,), {"mask": mask, "p": p, "seed": np.asarray(seed, np.int64)}

    return st.tuples(arrays(shape), st.one_of(st.just(1.0), floats(0.05, 1.0)), st.integers(0, 2**32 - 1)).map(example)


@st.composite
def _rows_configs(draw):
    """(N, D) for layernorm, as the catalogue's less the empty batch: N 1-24, D 1-12, square a third
    of the time where it can be."""
    square, n, d = draw(st.integers(0, 2)) == 2, draw(st.integers(1, 24)), draw(st.integers(1, 12))
    return {"shape": (n, n if square and n <= 12 else d)}


@st.composite
def _group_configs(draw):
    """As the catalogue's groupnorm space, with N >= 1: C/G channels per group, then G."""
    per_group = draw(st.integers(1, 8))
    groups = draw(st.integers(1, 8 // per_group))
    c = groups * per_group
    n = draw(st.integers(1, 4))
    h = draw(st.integers(1, max(1, min(4, GROUP_MAX_SIZE // (n * c)))))
    w = draw(st.integers(1, max(1, min(4, GROUP_MAX_SIZE // (n * c * h)))))
    return {"shape": (n, c, h, w), "groups": groups}


def _params_4d(arrays_, hyper):
    """gamma and beta in the course's spatial_groupnorm shape, (1, C, 1, 1)."""
    x, gamma, beta = arrays_
    return (x, gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)), hyper


def _fewest_outputs(kernel: int, stride: int, pad: int) -> int:
    """The fewest output positions for which the input size (o - 1) stride + kernel - 2 pad is >= 1."""
    return max(1, -(-(1 - kernel + 2 * pad) // stride) + 1)


CONV_EXTRA = 5
"""Input sides beyond the smallest the kernel fits in, at most: the catalogue's conv2d space."""


@st.composite
def _conv_configs(draw):
    """N 1-3, C and F 1-3, a kernel HH x WW of 1-3 each, one stride 1-3 and one pad 0-3 for both
    axes, then 1-3 output positions per axis from the fewest the padding allows (fewer where the
    input would leave the catalogue's sizes or the explicit Jacobian its limit); H and W follow,
    so that (H + 2 pad - HH) % stride == 0 as the assignment assumes."""
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    fewest = [_fewest_outputs(k, stride, pad) for k in kernel]
    outs = [low + draw(st.integers(0, 2)) for low in fewest]

    def sides():
        return tuple((o - 1) * stride + k - 2 * pad for k, o in zip(kernel, outs))

    def too_large(axis):
        side, k = sides()[axis], kernel[axis]
        entries = n * f * math.prod(outs) * (n * c * math.prod(sides()) + f * c * math.prod(kernel) + f)
        return side > max(1, k - 2 * pad) + CONV_EXTRA or entries > CONV_JACOBIAN_ENTRIES

    for axis in (0, 1):
        while too_large(axis) and outs[axis] > fewest[axis]:
            outs[axis] -= 1
    return conv_config(n, c, f, sides(), kernel, stride=stride, padding=pad)


CONV_EDGES = (
    conv_config(2, 2, 2, (3, 4), (2, 3)),                       # pad 0: dx_pad[:, :, p:-p] is empty; H != W
    conv_config(2, 3, 3, (3, 3), (2, 2)),                       # square everywhere: a missing transpose fits
    conv_config(1, 2, 2, (5, 5), (3, 3), stride=2, padding=1),  # the notebook's stride 2, pad 1
    conv_config(2, 1, 2, (4, 4), (2, 2), stride=2),             # stride 2 without padding
    conv_config(1, 2, 2, (2, 3), (2, 3)),                       # the kernel is the whole input: one output
    conv_config(1, 1, 1, (1, 1), (1, 1)),                       # all ones
    conv_config(1, 2, 1, (3, 2), (3, 2), stride=3, padding=2),  # stride 3, pad 2: windows reading only padding
)


@st.composite
def _pool_configs(draw):
    """N 1-3, C 1-3, a pool of 1-4 by 1-4, one stride 1-4, 1-3 windows per axis; H and W follow
    ((H - pool_height) % stride == 0, as the assignment assumes), within the catalogue's sizes."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.integers(1, 4))
    spatial = tuple((draw(st.integers(1, 3)) - 1) * stride + k for k in kernel)
    outs = math.prod((size - k) // stride + 1 for size, k in zip(spatial, kernel))
    n = draw(st.integers(1, 3))

    def fits(c):
        planes, plane = n * c, math.prod(spatial)
        return planes * plane <= MAX_POOL_ELEMENTS and planes ** 2 * plane * outs <= POOL_JACOBIAN_ENTRIES

    c = draw(st.integers(1, next((v for v in range(3, 0, -1) if fits(v)), 1)))
    return pool_config(n, c, spatial, kernel, stride)


POOL_EDGES = (
    pool_config(2, 2, (4, 4), 2, 2),          # the notebook's 2x2 pool, stride 2
    pool_config(1, 2, (5, 4), (3, 2), 1),     # overlapping windows (= for +=) of a 3x2 pool (argmax unravelled)
    pool_config(2, 1, (3, 5), (2, 3), 2),     # a 2x3 pool, stride 2: windows overlap along W only
    pool_config(2, 1, (2, 3), (2, 3), 1),     # the pool is the whole plane
    pool_config(1, 1, (1, 1), 1, 1),          # all ones
    pool_config(1, 2, (5, 5), 2, 3),          # stride 3 under a 2x2 pool: rows and columns no window reads
)

STEP_DIMS = {"N": (1, 6), "D": (1, 8), "H": (1, 7)}
SEQUENCE_DIMS = {"N": (1, 4), "T": (1, 6), "D": (1, 5), "H": (1, 5)}
STEP_EDGES = ({"N": 1, "D": 1, "H": 1}, {"N": 3, "D": 1, "H": 1}, {"N": 2, "D": 3, "H": 3}, {"N": 2, "D": 4, "H": 1})
SEQUENCE_EDGES = ({"N": 2, "T": 1, "D": 3, "H": 2},   # one step: no step t + 1 (an rnn_backward that crashes at T = 1)
                  {"N": 1, "T": 1, "D": 1, "H": 1},
                  {"N": 2, "T": 3, "D": 2, "H": 3},
                  {"N": 2, "T": 3, "D": 4, "H": 1},   # Wx square for the LSTM (D = 4 H)
                  {"N": 3, "T": 6, "D": 2, "H": 3})   # the longest sequence


@st.composite
def _embedding_configs(draw):
    """(N, T) indices, N and T 1-4, into V rows (crowded on half the draws: some row read three
    times or more, as in the catalogue's space), D 1-5."""
    n, t = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    crowded = n * t >= 3 and draw(st.booleans())
    return {"V": draw(st.integers(1, n * t // 3 if crowded else 8)), "D": draw(st.integers(1, 5)), "indices": (n, t)}


EMBEDDING_EDGES = ({"V": 3, "D": 2, "indices": (2, 4)}, {"V": 5, "D": 3, "indices": (2, 2)},
                   {"V": 1, "D": 1, "indices": (3, 1)}, {"V": 3, "D": 3, "indices": (1, 3)})


# ----------------------------------------------------------------------------------------
# A catalogue layer as the course sees it.

def _flat_params(arrays_):
    x, gamma, beta = arrays_
    return x, gamma.reshape(-1), beta.reshape(-1)


def _params_scales(grads):
    dx, dgamma, dbeta = grads
    return dx, dgamma.reshape(1, -1, 1, 1), dbeta.reshape(1, -1, 1, 1)


@dataclass(frozen=True)
class Spec:
    """catalogue: the catalogue layer; space: its inputs restricted to what the course's API
    expresses; restrictions: what that leaves out, in words (beyond ``EVERY_SPACE``).
    course_only: hyperparameters the course needs and the specification does not take (the
    dropout seed); course_arrays: the course's arrays -> the catalogue's, and the catalogue's
    gradient scales -> the course's shapes (groupnorm's (1, C, 1, 1) gamma). Either wraps the
    specification and its magnitude, and leaves out the catalogue's ``pad`` hint (a compile
    economy written for the catalogue's own arguments)."""

    catalogue: str
    space: Space
    restrictions: str = ""
    course_only: tuple[str, ...] = ()
    course_arrays: tuple[Callable, Callable] | None = None

    @functools.cached_property
    def oracle(self) -> tuple[Callable, Callable | None, Hints]:
        """(jax_forward, magnitude, hints): the catalogue layer's, wrapped where needed; one
        object each per spec (the oracle's compiled programs are keyed by the function)."""
        layer = LAYERS[self.catalogue]
        if not self.course_only and self.course_arrays is None:
            return layer.jax_forward, layer.magnitude, layer.hints
        to_catalogue, to_course = self.course_arrays or ((lambda a: a), (lambda g: g))
        only = self.course_only

        def jax_forward(*arrays_, **hyper):
            return layer.jax_forward(*to_catalogue(arrays_), **{k: v for k, v in hyper.items() if k not in only})

        magnitude = None
        if layer.magnitude is not None:
            def magnitude(f, arrays_, hyper, dout):
                out, grads, *rest = layer.magnitude(f, tuple(to_catalogue(arrays_)), hyper, dout)
                return (out, tuple(to_course(grads)), *rest)

        return jax_forward, magnitude, dataclasses.replace(layer.hints, pad=None)


SPECS = {
    "affine": Spec("affine", _restricted("affine", _affine_configs()), "x of rank 2-4"),
    "relu": Spec("relu", _restricted("relu", _any_shape(ELEMENTWISE_LENGTH), SHAPE_EDGES), "x of rank 1-4"),
    "batchnorm": Spec("batchnorm", LAYERS["batchnorm"].space),
    "batchnorm_alt": Spec("batchnorm_alt", LAYERS["batchnorm_alt"].space),
    "layernorm": Spec("layernorm", _restricted("layernorm", _rows_configs())),
    "dropout": Spec("dropout", Space(_any_shape(64), _dropout_values, edges=SHAPE_EDGES),
                    "x of rank 1-4; p (the keep probability) 1 or in [0.05, 1]; the mask the specification applies "
                    "is the one the course draws, np.random.seed(seed); np.random.rand(*x.shape) < p",
                    course_only=("seed",)),
    "conv2d": Spec("conv2d", _restricted("conv2d", _conv_configs(), CONV_EDGES),
                   "one stride and one pad for both axes; (H + 2 pad - HH) % stride == 0 and likewise for W; "
                   "dilation 1, groups 1"),
    "max_pool2d": Spec("max_pool2d", _restricted("max_pool2d", _pool_configs(), POOL_EDGES),
                       "one stride for both axes; (H - pool_height) % stride == 0 and likewise for W"),
    "spatial_batchnorm": Spec("spatial_batchnorm", LAYERS["spatial_batchnorm"].space),
    "groupnorm": Spec("groupnorm", _restricted("groupnorm", _group_configs(), convert=_params_4d), "G divides C",
                      course_arrays=(_flat_params, _params_scales)),
    "svm_hinge": Spec("svm_hinge", LAYERS["svm_hinge"].space),
    "softmax_cross_entropy": Spec("softmax_cross_entropy", LAYERS["softmax_cross_entropy"].space),
    "rnn_step": Spec("rnn_step", _restricted("rnn_step", _dims(**STEP_DIMS), STEP_EDGES)),
    "rnn": Spec("rnn", _restricted("rnn", _dims(**SEQUENCE_DIMS), SEQUENCE_EDGES)),
    "lstm_step": Spec("lstm_step", _restricted("lstm_step", _dims(**STEP_DIMS), STEP_EDGES),
                      "gates stacked i, f, o, g"),
    "lstm": Spec("lstm", _restricted("lstm", _dims(**SEQUENCE_DIMS), SEQUENCE_EDGES), "gates stacked i, f, o, g"),
    "embedding": Spec("embedding", _restricted("embedding", _embedding_configs(), EMBEDDING_EDGES),
                      "indices of shape (N, T)"),
    "temporal_affine": Spec("temporal_affine", _restricted("temporal_affine",
                                                           _dims(N=(1, 5), T=(1, 6), D=(1, 6), M=(1, 6)))),
    "temporal_softmax_loss": Spec("temporal_softmax_loss", _restricted("temporal_softmax_loss",
                                                                       _dims(N=(1, 6), T=(1, 6), V=(1, 8)))),
}


# ----------------------------------------------------------------------------------------
# The course's functions and how the course calls them.

def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _eps(hyper) -> float:
    # a Python float, as the course passes it: a NumPy float64 would promote float32 arithmetic
    return float(hyper["eps"])


class Call(NamedTuple):
    """How the course calls a forward: ``arguments(arrays, hyper)`` gives its arguments from the
    arrays and the hyperparameters as the space draws them; ``names`` are the arguments after
    the arrays (before them for the embedding's indices); ``text`` says it in words."""

    arguments: Callable[[tuple, dict], tuple]
    names: tuple[str, ...]
    text: str


CALLS = {
    "arrays": Call(lambda a, h: a, (), "{f}({args})"),
    "bn_param": Call(lambda a, h: (*a, {"mode": "train", "eps": _eps(h), "momentum": 0.9}), ("bn_param",),
                     "{f}({args}, bn_param), bn_param = {{'mode': 'train', 'eps': eps, 'momentum': 0.9}} made fresh "
                     "for every call"),
    "ln_param": Call(lambda a, h: (*a, {"eps": _eps(h)}), ("ln_param",),
                     "{f}({args}, ln_param), ln_param = {{'eps': eps}} made fresh for every call"),
    "gn_param": Call(lambda a, h: (*a, h["groups"], {"eps": _eps(h)}), ("G", "gn_param"),
                     "{f}({args}, G, gn_param), G = groups, gn_param = {{'eps': eps}} made fresh for every call; "
                     "gamma, beta (and dgamma, dbeta) of shape (1, C, 1, 1)"),
    "dropout_param": Call(lambda a, h: (*a, {"p": float(h["p"]), "mode": "train", "seed": int(h["seed"])}),
                          ("dropout_param",), "{f}({args}, dropout_param), dropout_param = {{'p': p, 'mode': 'train', "
                          "'seed': seed}} made fresh for every call"),
    "conv_param": Call(lambda a, h: (*a, {"stride": h["stride"], "pad": h["padding"]}), ("conv_param",),
                       "{f}({args}, conv_param), conv_param = {{'stride': stride, 'pad': padding}}"),
    "pool_param": Call(lambda a, h: (*a, {"pool_height": _pair(h["kernel"])[0], "pool_width": _pair(h["kernel"])[1],
                                          "stride": h["stride"]}), ("pool_param",),
                       "{f}({args}, pool_param), pool_param = {{'pool_height': kernel[0], 'pool_width': kernel[1], "
                       "'stride': stride}}"),
    "indices_first": Call(lambda a, h: (h["indices"], *a), ("x",), "{f}(x, {args}), x = indices"),
    "labels": Call(lambda a, h: (*a, h["labels"]), ("y",), "{f}({args}, y), y = labels"),
    "labels_mask": Call(lambda a, h: (*a, h["labels"], h["mask"]), ("y", "mask"), "{f}({args}, y, mask), y = labels"),
}
"""The course's calling conventions, by the hyperparameters' names the space draws (and the
failures print)."""


@dataclass(frozen=True)
class Course:
    """One row of the checker: a course forward (and backward) adapted to a catalogue layer.

    kind: "layer" (forward -> (out, cache), backward -> grads), "loss" (one function returning
    (loss, dx)) or "two_outputs" (the LSTM step: (next_h, next_c, cache) and
    backward(dnext_h, dnext_c, cache)). call: a key of ``CALLS``. output_names: the course's
    names of the forward's results.
    """

    name: str
    forward: str
    backward: str | None
    spec: str
    input_names: tuple[str, ...]
    call: str = "arrays"
    kind: str = "layer"
    output_names: tuple[str, ...] = ("out",)

    def course_arguments(self, hyper: dict) -> dict:
        """The course's arguments besides the arrays, by name, for an example's hyperparameters."""
        extra = CALLS[self.call].arguments((), hyper)
        return dict(zip(CALLS[self.call].names, extra))

    @property
    def functions(self) -> tuple[str, ...]:
        return (self.forward,) if self.backward is None else (self.forward, self.backward)

    @property
    def catalogue(self) -> str:
        return SPECS[self.spec].catalogue

    @property
    def adapter(self) -> str:
        """How the course's convention is mapped onto the catalogue's, in words."""
        words = [CALLS[self.call].text.format(f=self.forward, args=", ".join(self.input_names))]
        if self.kind == "loss":
            words.append("returns (loss, dx) in one call: checked as a forward that returns the loss (an array of "
                         "x's dtype) and caches dx, and a backward that returns dx * dloss")
        elif self.kind == "two_outputs":
            words.append(f"returns (next_h, next_c, cache); {self.backward}(dnext_h, dnext_c, cache)")
        elif len(self.input_names) == 1:
            words.append(f"{self.backward} returns its one gradient bare")
        return "; ".join(words)

    @property
    def restrictions(self) -> str:
        own = SPECS[self.spec].restrictions
        return f"{own}; {EVERY_SPACE}" if own else EVERY_SPACE


COURSE = (
    Course("affine", "affine_forward", "affine_backward", "affine", ("x", "w", "b")),
    Course("relu", "relu_forward", "relu_backward", "relu", ("x",)),
    Course("batchnorm", "batchnorm_forward", "batchnorm_backward", "batchnorm", ("x", "gamma", "beta"), "bn_param"),
    Course("batchnorm_alt", "batchnorm_forward", "batchnorm_backward_alt", "batchnorm_alt", ("x", "gamma", "beta"),
           "bn_param"),
    Course("layernorm", "layernorm_forward", "layernorm_backward", "layernorm", ("x", "gamma", "beta"), "ln_param"),
    Course("dropout", "dropout_forward", "dropout_backward", "dropout", ("x",), "dropout_param"),
    Course("conv_naive", "conv_forward_naive", "conv_backward_naive", "conv2d", ("x", "w", "b"), "conv_param"),
    Course("conv_fast", "conv_forward_fast", "conv_backward_fast", "conv2d", ("x", "w", "b"), "conv_param"),
    Course("max_pool_naive", "max_pool_forward_naive", "max_pool_backward_naive", "max_pool2d", ("x",), "pool_param"),
    Course("max_pool_fast", "max_pool_forward_fast", "max_pool_backward_fast", "max_pool2d", ("x",), "pool_param"),
    Course("spatial_batchnorm", "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_batchnorm",
           ("x", "gamma", "beta"), "bn_param"),
    Course("spatial_groupnorm", "spatial_groupnorm_forward", "spatial_groupnorm_backward", "groupnorm",
           ("x", "gamma", "beta"), "gn_param"),
    Course("svm_loss", "svm_loss", None, "svm_hinge", ("x",), "labels", kind="loss", output_names=("loss", "dx")),
    Course("softmax_loss", "softmax_loss", None, "softmax_cross_entropy", ("x",), "labels", kind="loss",
           output_names=("loss", "dx")),
    Course("rnn_step", "rnn_step_forward", "rnn_step_backward", "rnn_step", ("x", "prev_h", "Wx", "Wh", "b"),
           output_names=("next_h",)),
    Course("rnn", "rnn_forward", "rnn_backward", "rnn", ("x", "h0", "Wx", "Wh", "b"), output_names=("h",)),
    Course("word_embedding", "word_embedding_forward", "word_embedding_backward", "embedding", ("W",),
           "indices_first"),
    Course("temporal_affine", "temporal_affine_forward", "temporal_affine_backward", "temporal_affine",
           ("x", "w", "b")),
    Course("temporal_softmax_loss", "temporal_softmax_loss", None, "temporal_softmax_loss", ("x",), "labels_mask",
           kind="loss", output_names=("loss", "dx")),
    Course("lstm_step", "lstm_step_forward", "lstm_step_backward", "lstm_step",
           ("x", "prev_h", "prev_c", "Wx", "Wh", "b"), kind="two_outputs", output_names=("next_h", "next_c")),
    Course("lstm", "lstm_forward", "lstm_backward", "lstm", ("x", "h0", "Wx", "Wh", "b"), output_names=("h",)),
)
"""Every function the checker knows, in the order of the assignments."""
BY_NAME = {c.name: c for c in COURSE}


# ----------------------------------------------------------------------------------------
# The adapted layer.

class LossCache(NamedTuple):
    """A course loss computes dx in the forward's call: the adapter caches it for the backward."""

    dx: Any


def _finished(returned, name: str, names) -> None:
    """``Unfinished`` where a course function returned None, or None for one of ``names`` (the
    first entries of the tuple it returns)."""
    if returned is None:
        raise Unfinished(f"{name} returned None")
    if isinstance(returned, (tuple, list)):
        missing = [n for n, value in zip(names, returned) if value is None]
        if missing:
            raise Unfinished(f"{name} returned None for {', '.join(missing)}")


def adapt(course: Course, module, path: str) -> Layer:
    """The ``Layer`` checking ``course``'s functions as ``module`` (loaded from ``path``) defines them.

    Only what the course's convention differs in is converted: the course's arguments built
    from the drawn hyperparameters, a bare gradient taken as a tuple of one, a loss's
    (loss, dx) split in two, the LSTM step's three results. Whatever the student returns is
    otherwise handed on as it is: a (1, D) gradient stays (1, D), a float64 gradient of a
    float32 input stays float64.
    """
    spec = SPECS[course.spec]
    forward_fn = getattr(module, course.forward, None)
    backward_fn = getattr(module, course.backward, None) if course.backward else None
    missing = [n for n, f in zip(course.functions, (forward_fn, backward_fn)) if not callable(f)]
    if missing:
        raise LocatorError(f"{path} has no function {' or '.join(missing)}")
    arguments = CALLS[course.call].arguments
    grad_names = tuple(f"d{n}" for n in course.input_names)

    def gradients(returned):
        _finished(returned, course.backward, grad_names)
        return (returned,) if len(grad_names) == 1 and not isinstance(returned, (tuple, list)) else returned

    if course.kind == "loss":
        def forward(x, **hyper):
            returned = forward_fn(*arguments((x,), hyper))
            _finished(returned, course.forward, course.output_names)
            loss, dx = returned
            return np.asarray(loss, dtype=x.dtype), LossCache(dx)

        def backward(dout, cache):
            return (cache.dx * dout,)
    elif course.kind == "two_outputs":
        def forward(*arrays_, **hyper):
            returned = forward_fn(*arguments(arrays_, hyper))
            _finished(returned, course.forward, course.output_names)
            next_h, next_c, cache = returned
            return (next_h, next_c), cache

        def backward(dout, cache):
            dnext_h, dnext_c = dout
            return gradients(backward_fn(dnext_h, dnext_c, cache))
    else:
        def forward(*arrays_, **hyper):
            returned = forward_fn(*arguments(arrays_, hyper))
            _finished(returned, course.forward, course.output_names)
            return returned

        def backward(dout, cache):
            return gradients(backward_fn(dout, cache))

    jax_forward, magnitude, hints = spec.oracle
    outputs = course.output_names if course.kind == "two_outputs" else ("out",)
    return Layer(course.name, forward, backward, jax_forward, spec.space, magnitude=magnitude, hints=hints,
                 input_names=course.input_names, output_names=outputs, locator=f"cs231n:{path}:{course.name}")


# ----------------------------------------------------------------------------------------
# Loading a course file, and the locator cs231n:FILE.py:NAME.

_modules: dict[str, Any] = {}


def import_file(path) -> Any:
    """The module a course file defines (imported once per process), or ``CourseFileError``."""
    resolved = str(Path(path).resolve())
    if resolved in _modules:
        return _modules[resolved]
    source = Path(resolved)
    if not source.is_file():
        raise CourseFileError(f"{path}: no such file")
    try:
        code = compile(source.read_bytes(), resolved, "exec")
    except SyntaxError as error:
        raise CourseFileError(f"{path}: line {error.lineno}: SyntaxError: {error.msg}") from None
    except ValueError as error:  # null bytes
        raise CourseFileError(f"{path}: cannot be read as Python: {error}") from None
    name = f"_cs231n_{abs(hash(resolved))}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(source.parent))  # its own sibling imports
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, module.__dict__)
    except Exception as error:
        raise CourseFileError(f"{path}: importing it raised {type(error).__name__}: {error}") from None
    finally:
        sys.path.remove(str(source.parent))
    _modules[resolved] = module
    return module


def load(rest: str) -> list[Layer]:
    """``verification.locate``'s ``cs231n:`` locators: ``rest`` is ``/abs/path/layers.py:NAME``."""
    path, sep, name = rest.rpartition(":")
    if not sep or name not in BY_NAME:
        raise LocatorError(f"cs231n:{rest}: expected cs231n:FILE.py:NAME with NAME one of {', '.join(BY_NAME)}")
    try:
        module = import_file(path)
    except CourseFileError as error:
        raise LocatorError(str(error)) from None
    return [adapt(BY_NAME[name], module, path)]


# ----------------------------------------------------------------------------------------
# Finding the functions, and stubs.

@dataclass
class Row:
    """One function of one file: its verdict once checked."""

    course: Course
    path: str
    unfinished: str | None = None  # why it is not implemented
    report: LayerReport | None = None

    @property
    def locator(self) -> str:
        return f"cs231n:{self.path}:{self.course.name}"

    @property
    def verdict(self) -> str:
        if self.unfinished is not None:
            return NOT_IMPLEMENTED
        return self.report.verdict if self.report is not None else "pending"

    @property
    def headline(self):
        """The report's most severe failure, or None."""
        if self.report is None or not self.report.failures:
            return None
        return max(self.report.failures, key=lambda f: SEVERITY.index(f.tier))


def find_functions(paths, only=()) -> tuple[list[Row], list[str]]:
    """Rows for every course function defined in the files (forward or backward present), and the
    names of the course's functions found in none. ``only``: row or function names."""
    rows, seen = [], set()
    for path in paths:
        module = import_file(path)
        resolved = str(Path(path).resolve())
        for course in COURSE:
            present = [n for n in course.functions if callable(getattr(module, n, None))]
            if not present:
                continue
            seen.add(course.name)
            if only and not ({course.name, *course.functions} & set(only)):
                continue
            row = Row(course, resolved)
            absent = [n for n in course.functions if n not in present]
            if absent:
                row.unfinished = f"{' and '.join(absent)} not found in {Path(path).name}"
            rows.append(row)
    return rows, [c.name for c in COURSE if c.name not in seen]


def probe(row: Row) -> str | None:
    """Why the row's functions are not implemented (a stub), or None: one call of the forward and
    the backward on the space's first edge."""
    layer = load(f"{row.path}:{row.course.name}")[0]
    arrays_, hyper = probe_example(row.course.spec)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            out, cache = layer.forward(*(a.copy() for a in arrays_), **hyper)
            rng = np.random.default_rng(0)
            outs = out if isinstance(out, tuple) else (out,)
            douts = tuple(rng.standard_normal(np.shape(o)) for o in outs)
            layer.backward(douts if isinstance(out, tuple) else douts[0], cache)
        except NotImplementedError as error:
            where = _function_of(error, row.course.functions)
            return f"{where} raises NotImplementedError" + (f": {error}" if str(error) else "")
        except Unfinished as error:
            return f"{error} (an unfinished stub)"
        except Exception:  # implemented and raising: the verifier reports it, with its example
            return None
    return None


def _function_of(error: BaseException, names) -> str:
    """The course function a raise came from, read from its traceback."""
    tb, found = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name in names:
            found = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return found or " or ".join(names)


_probes: dict[str, tuple] = {}


def probe_example(spec: str) -> tuple:
    """The simplest example of the spec's first edge configuration (hypothesis's minimal draw)."""
    if spec not in _probes:
        space = SPECS[spec].space
        _probes[spec] = find(space.values(space.edges[0]), lambda _: True, settings=Settings(
            database=None, derandomize=True, max_examples=10, deadline=None, phases=(Phase.generate,),
            suppress_health_check=list(HealthCheck)))
    return _probes[spec]


# ----------------------------------------------------------------------------------------
# Checking, and the report.

@dataclass
class CourseReport:
    """Every row of a run (in the files' and the course's order), the course's functions found in
    none of the files, the settings."""

    rows: list[Row]
    absent: list[str]
    settings: dict
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Every implemented function passes."""
        return all(r.verdict in ("pass", NOT_IMPLEMENTED) for r in self.rows)

    def verdicts(self) -> dict[str, str]:
        """Row name (with the file's name where names repeat) -> verdict."""
        return {self.label(r): r.verdict for r in self.rows}

    def label(self, row: Row) -> str:
        repeated = sum(r.course.name == row.course.name for r in self.rows) > 1
        return f"{Path(row.path).name}:{row.course.name}" if repeated else row.course.name

    def to_dict(self) -> dict:
        return {"passed": self.passed, "seconds": round(self.seconds, 2), "settings": self.settings,
                "functions": [_row_dict(self.label(r), r) for r in self.rows], "absent": self.absent}


def check_files(paths, *, max_examples=DEFAULT_EXAMPLES, seed=0, dtypes=DTYPES, only=(), jobs=1, shrink=True,
                progress=sys.stderr) -> CourseReport:
    """Find, probe and check every course function in ``paths`` (``CourseFileError`` for a file
    that is not Python); ``only``: the rows of these names or course function names. With
    ``jobs`` > 1 the functions are checked in worker processes (each rebuilding its layer from
    the locator), which always shrink; ``shrink=False`` applies in this process (``jobs`` = 1)."""
    started = time.perf_counter()
    rows, absent = find_functions(paths, only)
    for row in rows:
        if row.unfinished is None:
            row.unfinished = probe(row)
    todo = [r for r in rows if r.unfinished is None]
    if progress is not None:
        print(f"CS231n checker: {len(rows)} function(s) in {len(paths)} file(s), {len(todo)} implemented; "
              f"{max_examples} examples each in {' and '.join(dtypes)}, seed {seed}, {jobs} job(s)",
              file=progress, flush=True)
    if jobs > 1 and len(todo) > 1:
        from .cli import run_tasks

        with contextlib.nullcontext(progress) if progress is not None else open(os.devnull, "w") as out:
            reports = run_tasks([(r.locator, r.course.name, seed) for r in todo], max_examples=max_examples,
                                dtypes=dtypes, jobs=jobs, out=out)
        for row, report in zip(todo, reports):
            row.report = report
    else:
        for row in todo:
            (layer,) = load(f"{row.path}:{row.course.name}")
            row.report = check_layer(layer, max_examples=max_examples, seed=seed, dtypes=dtypes, shrink=shrink)
            if progress is not None:
                print(f"  {row.course.name:<24} {row.verdict:<11} {row.report.seconds:5.1f} s", file=progress,
                      flush=True)
    settings = {"max_examples": max_examples, "seed": seed, "dtypes": list(dtypes), "jobs": jobs,
                "only": list(only), "files": [str(Path(p).resolve()) for p in paths]}
    return CourseReport(rows, absent, settings, time.perf_counter() - started)


FORWARD_SUSPECT = (
    "right at this example but not near it: finite differences of the course forward disagree with the "
    "derivatives of the catalogue's specification, which passes the catalogue's own proof, so the forward is "
    "the suspect (a formula that agrees with the right one only at special values, such as gamma = 0)")


def presented(failure):
    """A failure as the checker shows it. The verifier blames its specification where the routes
    disagree; where the disagreeing route is the finite differences of the course's forward
    (whose specification is the catalogue's, proven), the course forward is wrong near the
    example: shown as wrong, with that said."""
    if failure is None or failure.tier != "spec" or "finite differences" not in failure.message:
        return failure
    return dataclasses.replace(failure, tier="wrong", bug="formula", diagnosis=FORWARD_SUSPECT)


def _example_text(row: Row) -> str:
    failure = row.headline
    if failure is None:
        return "-"
    shapes = ", ".join(f"{name} {tuple(shape)}" for name, shape in zip(row.course.input_names, failure.shapes))
    arguments = ", ".join(f"{k}={_short(v)}" for k, v in row.course.course_arguments(failure.hyper).items())
    return shapes + (f"; {arguments}" if arguments else "") + f" [{failure.dtype}]"


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, np.ndarray):
        if value.size <= 8:
            return np.array2string(value, separator=",", precision=4).replace("\n", "").replace(" ", "")
        return f"<{value.dtype.name} {value.shape}>"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return repr(value)


def _likely(row: Row, width: int | None = 90) -> str:
    if row.unfinished is not None:
        return row.unfinished
    failure = presented(row.headline)
    if failure is None:
        return "-"
    text = f"{failure.bug}: {failure.diagnosis}" if failure.bug else failure.diagnosis
    return text if width is None or len(text) <= width else text[:width - 3] + "..."


def _row_dict(label: str, row: Row) -> dict:
    failure = presented(row.headline)
    return {
        "function": label, "file": row.path, "functions": list(row.course.functions),
        "catalogue": row.course.catalogue, "verdict": row.verdict,
        "not_implemented": row.unfinished, "adapter": row.course.adapter, "restrictions": row.course.restrictions,
        "example": None if failure is None else {
            "shapes": {n: list(s) for n, s in zip(row.course.input_names, failure.shapes)},
            "arguments": _jsonable(row.course.course_arguments(failure.hyper)),
            "hyper": failure.to_dict()["hyper"], "dtype": failure.dtype},
        "bug": None if failure is None else failure.bug,
        "likely_bug": row.unfinished if failure is None else failure.diagnosis,
        "check": None if failure is None else failure.check,
        "reproducer": None if failure is None else failure.reproducer,
        "report": None if row.report is None else row.report.to_dict(),
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def report_text(report: CourseReport) -> str:
    """The table (a row per function), how each was called and drawn, the failures, a last line."""
    from .report import failure_text, table

    several = len({r.path for r in report.rows}) > 1
    header = ("function", *(("file",) if several else ()), "verdict", "shrunk example", "likely bug")
    rows = [(r.course.name, *((Path(r.path).name,) if several else ()), r.verdict, _example_text(r), _likely(r))
            for r in report.rows]
    parts = [table(header, rows)]
    implemented = [r for r in report.rows if r.unfinished is None]
    if implemented:
        lines = [f"  every function: {EVERY_SPACE}"]
        for course in dict((r.course.name, r.course) for r in implemented).values():
            own = SPECS[course.spec].restrictions
            lines.append(f"  {course.name} (catalogue {course.catalogue}): {course.adapter}"
                         + (f"; drawn with {own}" if own else ""))
        parts.append("How each function is called and what is drawn (the space restricted to what the course's "
                     "API expresses):\n" + "\n".join(lines))
    failures = [presented(f) for r in report.rows if r.report is not None for f in r.report.failures]
    if failures:
        parts.append("Failures (minimal examples after shrinking):\n" + "\n\n".join(map(failure_text, failures)))
    if report.absent:
        parts.append(f"Not in these files: {', '.join(report.absent)}")
    passing = sum(r.verdict == "pass" for r in implemented)
    unfinished = len(report.rows) - len(implemented)
    failing = [f"{report.label(r)} ({r.verdict})" for r in implemented if r.verdict != "pass"]
    parts.append(f"{'PASSED' if report.passed else 'FAILED'}: {passing} of {len(implemented)} implemented function(s) "
                 f"pass" + (f", {unfinished} not implemented" if unfinished else "")
                 + (f"; failing: {', '.join(failing)}" if failing else "") + f" ({report.seconds:.1f} s)")
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------
# The command line.

def _parser():
    from .cli import Parser, common_options

    parser = Parser(
        prog="python -m verification cs231n",
        description="Check a CS231n assignment's layers.py, rnn_layers.py (or any file defining the course's "
                    "functions) through the course's own calling conventions: one row per function with its "
                    "verdict (wrong, contract, inaccurate, pass, or not implemented), the shrunk example and the "
                    "likely bug. Exits 0 when every implemented function passes, 1 otherwise.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="course files, e.g. cs231n/layers.py")
    parser.add_argument("--only", action="append", metavar="NAME", default=[],
                        help="check only this function (repeatable): a row name such as conv_naive, or a course "
                             "function's name such as conv_backward_naive")
    common_options(parser, DEFAULT_EXAMPLES)
    return parser


def main(argv) -> int:
    """``python -m verification cs231n PATH...``: the exit status; a ``cli.UsageError`` (one line)
    for a mistake on the command line or a file that is not Python."""
    from .cli import UsageError, json_target

    args = _parser().parse_args(argv)
    prog = "python -m verification cs231n"
    json_target(args.json)
    paths = list(dict.fromkeys(args.paths))
    unknown = sorted(set(args.only) - {n for c in COURSE for n in (c.name, *c.functions)})
    if unknown:
        raise UsageError(f"{prog}: --only {', '.join(unknown)}: no such course function; the checker knows "
                          f"{', '.join(c.name for c in COURSE)} (or their functions' names)")
    try:
        report = check_files(paths, max_examples=args.max_examples, seed=args.seed,
                             dtypes=tuple(dict.fromkeys(args.dtype or DTYPES)), only=tuple(args.only),
                             jobs=args.jobs)
    except CourseFileError as error:
        raise UsageError(f"{prog}: {error}") from None
    if not report.rows:
        raise UsageError(f"{prog}: no CS231n function found in {', '.join(paths)} (looked for "
                          f"{', '.join(c.forward for c in COURSE)})")
    print(report_text(report))
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"JSON report: {args.json}", file=sys.stderr)
    return 0 if report.passed else 1


__all__ = ["COURSE", "Course", "CourseFileError", "CourseReport", "SPECS", "Spec", "VERDICTS", "adapt", "check_files",
           "load", "main", "presented", "report_text"]
