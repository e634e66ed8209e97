"""Networks assembled from the reference layers: the chain rule, written once.
Derivation: docs/derivations/network.md

A network is a list of steps. Each step applies one layer (an ``Op``: a forward and its
backward) to named values and names its output:

    values[step.output], caches[i] = op.forward(*values[step.inputs], **step.hyper)

The names are the graph: a name read by two steps is a value used twice (a residual
connection reads h twice; a tied embedding reads its table twice), and the chain rule
then sums the gradients of its uses. The backward walks the steps in reverse, hands each
layer the gradient of its output and adds what its backward returns to its inputs':

    grads[v] = sum over the steps s that read v of  (s's backward)(grads[s.output])[v's slot]

When the walk reaches a step, every reader of its output came later in the forward, so
has been walked: its output's gradient is complete. Every given value (data and
parameters) gets a gradient, zero where the output does not depend on it.

Three glue ops join the layers: ``ADD`` (a residual connection, y = a + b), ``RESHAPE``
and ``TRANSPOSE`` (the tied unembedding reads the (V, E) token table as (E, V)).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from . import _validate

__all__ = ["ADD", "RESHAPE", "TRANSPOSE", "Op", "Step", "Tape", "network_backward", "network_forward"]


class Op(NamedTuple):
    """A layer as the network sees it: ``forward(*arrays, **hyper) -> (out, cache)`` and
    ``backward(dout, cache) -> one gradient per array``."""

    forward: Callable[..., tuple[Any, Any]]
    backward: Callable[..., tuple]


class Step(NamedTuple):
    """``values[output] = op.forward(*(values[name] for name in inputs), **hyper)``."""

    op: Op
    inputs: tuple[str, ...]
    output: str
    hyper: dict = {}


class Tape(NamedTuple):
    """What the forward recorded for the backward: the steps, each one's cache, and the given values' shapes."""

    steps: tuple[Step, ...]
    caches: tuple
    given: dict  # name -> (shape, dtype) of every given value
    output: str


def network_forward(steps, values: dict) -> tuple[np.ndarray, Tape]:
    """Run ``steps`` in order on the given ``values`` (name -> array); the last step's output is the result.

    Each output name must be new (neither given nor written before), and each input name
    given or written by an earlier step. -> (the last output, Tape).
    """
    steps = tuple(steps)
    if not steps:
        raise ValueError("steps is empty: a network needs at least one step")
    env = dict(values)
    caches = []
    for i, step in enumerate(steps):
        missing = [name for name in step.inputs if name not in env]
        if missing:
            raise ValueError(f"step {i} ({step.output!r}) reads {missing}, which no given value or earlier step names")
        if step.output in env:
            raise ValueError(f"step {i} writes {step.output!r}, which already names a value: each name is written once")
        env[step.output], cache = step.op.forward(*(env[name] for name in step.inputs), **step.hyper)
        caches.append(cache)
    given = {name: (np.shape(a), np.asarray(a).dtype) for name, a in values.items()}
    return env[steps[-1].output], Tape(steps, tuple(caches), given, steps[-1].output)


def network_backward(dout, tape: Tape) -> dict:
    """The gradient of every given value: the steps' backwards in reverse, summed over each value's uses.

    dout: the output's shape and dtype -> {name: gradient, with that value's shape and dtype}.
    """
    grads = {tape.output: dout}
    for step, cache in zip(reversed(tape.steps), reversed(tape.caches)):
        if step.output not in grads:  # nothing downstream depends on this step
            continue
        for name, grad in zip(step.inputs, step.op.backward(grads.pop(step.output), cache)):
            # a value read by several steps: its gradient is the sum over its uses (a new array, never in place)
            grads[name] = grad if name not in grads else grads[name] + grad
    return {name: grads[name] if name in grads else np.zeros(shape, dtype)
            for name, (shape, dtype) in tape.given.items()}


# ---------------------------------------------------------------------------------------
# Glue: residual additions and exact rearrangements. Their backwards return new arrays,
# so that a network's gradients never share memory with dout or with each other.

class AddCache(NamedTuple):
    shape: tuple


def add_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, AddCache]:
    """y = a + b (a residual connection). a, b: one shape and floating dtype -> (y, AddCache)."""
    _validate.float_array("a", a)
    _validate.float_array("b", b)
    _validate.same_shape("b", b, "a", a)
    _validate.same_dtype("b", b, "a", a)
    return a + b, AddCache(a.shape)


def add_backward(dout: np.ndarray, cache: AddCache) -> tuple[np.ndarray, np.ndarray]:
    """da = db = dout: both paths receive the whole gradient."""
    return dout.copy(), dout.copy()


class ReshapeCache(NamedTuple):
    shape: tuple  # the input's


def reshape_forward(x: np.ndarray, *, shape) -> tuple[np.ndarray, ReshapeCache]:
    """y = x viewed with ``shape`` (same number of elements)."""
    return x.reshape(shape), ReshapeCache(x.shape)


def reshape_backward(dout: np.ndarray, cache: ReshapeCache) -> tuple[np.ndarray]:
    """dx = dout viewed with x's shape (a copy)."""
    return (dout.reshape(cache.shape).copy(),)


class TransposeCache(NamedTuple):
    pass


def transpose_forward(x: np.ndarray) -> tuple[np.ndarray, TransposeCache]:
    """y = x^T of a matrix: (A, B) -> (B, A), a view."""
    _validate.ndim("x", x, 2, "(A, B)")
    return x.T, TransposeCache()


def transpose_backward(dout: np.ndarray, cache: TransposeCache) -> tuple[np.ndarray]:
    """dx = dout^T (a copy in C order)."""
    return (np.ascontiguousarray(dout.T),)


ADD = Op(add_forward, add_backward)
RESHAPE = Op(reshape_forward, reshape_backward)
TRANSPOSE = Op(transpose_forward, transpose_backward)
