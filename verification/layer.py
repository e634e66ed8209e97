"""The layer contract: what the verifier needs to know about a layer to prove its backward."""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
from hypothesis.strategies import SearchStrategy


class BenchCase(NamedTuple):
    """Inputs of a realistic size for ``make bench`` (float64; the bench casts them)."""

    arrays: tuple[np.ndarray, ...]
    hyper: dict[str, Any]
    flops: float | None = None  # floating-point operations of the backward, for matmul-shaped layers


@dataclass(frozen=True)
class Layer:
    """One layer of the catalogue (or one of your own), as the verifier sees it.

    name: catalogue name, e.g. ``"linear"``.
    forward: NumPy, ``forward(*arrays, **hyper) -> (out, cache)``.
    backward: NumPy, ``backward(dout, cache) -> tuple of grads``, one per array, in order.
    jax_forward: JAX, ``jax_forward(*arrays, **hyper) -> out``: an independent formula of
        the same function, written with JAX's own primitives; the oracles differentiate it.
        Float and array hyperparameters reach it traced (so new values do not recompile):
        use them in arithmetic, not in Python control flow.
    inputs: hypothesis strategy drawing ``(arrays, hyper)``: a tuple of float64 arrays (the
        differentiable inputs) and a dict of keyword hyperparameters passed to both forwards.
    magnitude: optional JAX function ``magnitude(f, arrays, hyper, dout) -> (out_scale,
        grad_scales)`` giving, elementwise, the sum of absolute values of the terms each
        result is computed from; the tolerance is a multiple of eps times it (see
        ``verification.tolerance``). Without it the scale comes from the Jacobian:
        ``|J|^T |dout|`` for gradients, ``|out| + sum_k |J_k| |a_k|`` for the output.
    input_names: names of the arrays, for reports; by default the forward's positional
        parameter names (``x, w, b`` -> gradients ``dx, dw, db``).
    per_example: True when the layer acts on each example separately: axis 0 of the
        output and of the first array is the batch, and row i of the output depends on row
        i of the first array only (linear, activations, layernorm; not batchnorm or a
        mean loss). The verifier then checks that row i of dx depends on row i of dout only.
    linear_in: indices of the arrays the forward is linear (affine) in, holding the others
        fixed: x and w of ``linear``, all three of ``affine``. Finite differences along
        those inputs are exact up to rounding, so they may use a large step.
    elementwise: True when the layer has one input, its output has the input's shape and
        out[i] depends on x[i] alone (the activations). A hint that saves compiles: the
        oracles then evaluate every small shape as one zero-padded vector, so the shapes
        of a menu share one compiled program (shapes and results are unchanged).
    bench: optional ``bench(rng) -> BenchCase``: inputs at one realistic size (e.g. conv2d
        with N=32, C=64, 32x32, F=64, 3x3), for the speed comparison in ``make bench``.
    """

    name: str
    forward: Callable[..., tuple[Any, Any]]
    backward: Callable[..., tuple]
    jax_forward: Callable[..., Any]
    inputs: SearchStrategy
    magnitude: Callable[..., tuple] | None = None
    input_names: tuple[str, ...] | None = None
    per_example: bool = False
    linear_in: tuple[int, ...] = ()
    elementwise: bool = False
    bench: Callable[[np.random.Generator], BenchCase] | None = None

    def __post_init__(self):
        if self.input_names is None:
            object.__setattr__(self, "input_names", _positional_names(self.forward))

    @property
    def grad_names(self) -> tuple[str, ...]:
        return tuple(f"d{name}" for name in self.input_names)


def _positional_names(function) -> tuple[str, ...]:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


@dataclass(frozen=True)
class Replacement:
    """A catalogue layer with its backward (and optionally its forward) swapped out."""

    layer: str
    name: str
    description: str
    backward: Callable[..., tuple] | None = None
    forward: Callable[..., tuple[Any, Any]] | None = None

    def apply(self, layer: Layer) -> Layer:
        if layer.name != self.layer:
            raise ValueError(f"{type(self).__name__} {self.name!r} is for layer {self.layer!r}, not {layer.name!r}")
        changes = {"name": f"{layer.name}[{self.name}]"}
        if self.backward is not None:
            changes["backward"] = self.backward
        if self.forward is not None:
            changes["forward"] = self.forward
        return dataclasses.replace(layer, **changes)


class Mutant(Replacement):
    """A deliberately wrong implementation: the verifier must reject it."""


class Variant(Replacement):
    """A different but correct implementation (einsum, explicit loops): the verifier must accept it."""
