"""The layer contract: what the verifier needs to know about a layer to prove its backward.

A ``Layer`` has three groups of fields:

* identity: ``name``, the NumPy ``forward`` and ``backward``, the independent JAX
  ``jax_forward``, and ``inputs`` (a ``Space`` or any hypothesis strategy of examples);
* proof: ``hints`` (structure the checks may rely on, each validated against the
  specification) and ``magnitude`` (the rounding-error scale, see ``verification.tolerance``);
* extras: ``errors`` (bad calls and the messages they must raise, walked by the generic
  contract tests) and ``bench`` (a realistic size for ``make bench``).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
from hypothesis.strategies import SearchStrategy

from .space import Space


class BenchCase(NamedTuple):
    """Inputs of a realistic size for ``make bench`` (float64; the bench casts them)."""

    arrays: tuple[np.ndarray, ...]
    hyper: dict[str, Any]
    flops: float | None = None  # floating-point operations of the backward, for matmul-shaped layers


@dataclass(frozen=True)
class Hints:
    """Structure of the layer that checks and oracles may rely on. Each hint is checked
    against the JAX specification on the first example (the pad: see below); a wrong one stops
    the run with a one-line ``LayerDefinitionError`` naming it.

    per_example: the layer acts on each example separately: axis 0 of the output and of
        the first array is the batch, and row i of the output depends on row i of the first
        array only (linear, activations, layernorm; not batchnorm or a mean loss). The
        verifier then checks that row i of dx depends on row i of dout only.
    linear_in: indices of the arrays the forward is linear (affine) in, holding the others
        fixed: x and w of ``linear``, all three of ``affine``. Finite differences along
        those inputs are exact up to rounding, so they may use a large step.
    elementwise: one input, an output of the input's shape, and out[i] depends on x[i]
        alone (the activations). The oracles then evaluate every small shape as one
        zero-padded vector, so the shapes of a space share one compiled program.
    pad: ``pad(arrays, hyper) -> (arrays, hyper)``: the example embedded, exactly, in a larger
        one (its bucket), so that the configurations of a space share a few compiled programs.
        Every array keeps its rank and grows at the end of its axes (``verification.space.
        grow``), with values that leave the real outputs unchanged (zeros for features and
        hidden units, masked keys, -inf logits ...), and an output of the padded example has the
        real output as its prefix; cotangents and tangents are padded with zeros, so a padded
        output pulls nothing back. Padded and plain must agree: checked in the bucket of any
        failing example before the layer is blamed, and on the first example unless it is the
        catalogue layer's own pad (the test suite proves those, verification.hints).
    """

    per_example: bool | Callable[[tuple, dict], bool] = False
    linear_in: tuple[int, ...] = ()
    elementwise: bool = False
    pad: Callable[[tuple, dict], tuple[tuple, dict]] | None = None


@dataclass(frozen=True)
class ErrorCase:
    """A bad call of the forward and the error it must raise (as PyTorch's OpInfo
    ``error_inputs``): ``forward(*arrays, **hyper)`` raises ``error`` with a message matching
    the regular expression ``match`` (it names the argument, its shape and what was expected)."""

    description: str
    arrays: tuple
    hyper: dict
    error: type[Exception]
    match: str

    @classmethod
    def literal(cls, description, arrays, hyper, error, message) -> "ErrorCase":
        """The case whose message must contain ``message`` as written (not a pattern)."""
        return cls(description, arrays, hyper, error, re.escape(message))

    @classmethod
    def literal_rows(cls, *rows) -> tuple["ErrorCase", ...]:
        """``literal`` cases from rows (description, arrays, hyper, error, message)."""
        return tuple(cls.literal(*row) for row in rows)


@dataclass(frozen=True)
class Layer:
    """One layer of the catalogue (or one of your own), as the verifier sees it.

    name: catalogue name, e.g. ``"linear"``.
    forward: NumPy, ``forward(*arrays, **hyper) -> (out, cache)``; ``out`` is an array, or
        a tuple of arrays for a layer with several outputs (``lstm_step``: ``(h, c)``).
    backward: NumPy, ``backward(dout, cache) -> tuple of grads``, one per array, in order;
        ``dout`` has the structure of ``out`` (a tuple ``(dh, dc)`` for several outputs).
    jax_forward: JAX, ``jax_forward(*arrays, **hyper) -> out`` (the same structure): an
        independent formula of the same function, written with JAX's own primitives; the
        oracles differentiate it. Float and array hyperparameters reach it traced (so new
        values do not recompile): use them in arithmetic, not in Python control flow.
    inputs: a ``Space`` (configurations from ranges and constraints, edge cases, values),
        or any hypothesis strategy drawing ``(arrays, hyper)``: a tuple of float64 arrays
        (the differentiable inputs) and a dict of keyword hyperparameters.
    magnitude: optional JAX function ``magnitude(f, arrays, hyper, dout) -> (out_scale,
        grad_scales)`` (or ``(out_scale, grad_scales, underflow)``) giving, elementwise, the
        sum of absolute values of the terms each result is computed from; see
        ``verification.tolerance``. Without it the scale comes from the Jacobian.
    hints: ``Hints`` (per_example, linear_in, elementwise).
    input_names: names of the arrays, for reports; by default the forward's positional
        parameter names (``x, w, b`` -> gradients ``dx, dw, db``).
    output_names: names of the outputs, for reports: ``("out",)`` by default, ``("h", "c")``
        for an LSTM step.
    errors: ``ErrorCase``s: bad calls and the errors they must raise.
    bench: optional ``bench(rng) -> BenchCase``: inputs at one realistic size.
    locator: where another process can load this layer from (``verification.locate``), for a
        layer built at run time (the CS231n checker's); module-level layers are found without it.
    """

    name: str
    forward: Callable[..., tuple[Any, Any]]
    backward: Callable[..., tuple]
    jax_forward: Callable[..., Any]
    inputs: Space | SearchStrategy
    magnitude: Callable[..., tuple] | None = None
    hints: Hints = Hints()
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] = ("out",)
    errors: tuple[ErrorCase, ...] = ()
    bench: Callable[[np.random.Generator], BenchCase] | None = None
    locator: str | None = None

    def __post_init__(self):
        if self.input_names is None:
            object.__setattr__(self, "input_names", _positional_names(self.forward))
        if not isinstance(self.hints, Hints):
            raise TypeError(f"Layer {self.name!r}: hints must be a verification.Hints, got {type(self.hints).__name__}")

    @property
    def grad_names(self) -> tuple[str, ...]:
        return tuple(f"d{name}" for name in self.input_names)

    @property
    def space(self) -> Space | None:
        return self.inputs if isinstance(self.inputs, Space) else None

    @property
    def strategy(self) -> SearchStrategy:
        """The strategy of whole examples ``(arrays, hyper)``."""
        return self.inputs.strategy() if isinstance(self.inputs, Space) else self.inputs


def _positional_names(function) -> tuple[str, ...]:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds)


BUG_CLASSES = {
    # the derivative is wrong
    "transpose": "a transpose or a flip missing or extra (a weight not transposed, a kernel not flipped), or the "
                 "right values at the wrong positions (a reshape for a transpose, a swapped or mis-strided index)",
    "order": "gradients returned in the wrong order",
    "sign": "the sign flipped",
    "factor": "off by a constant factor (a scale, N, 1/N, the keep probability p)",
    "wrong_axis": "reduced, normalised or indexed along the wrong axis (other than the batch axis)",
    "partial": "right except at some entries: an off-by-one, = instead of +=, a boundary or a step left out",
    "missing": "a gradient never written: all zeros",
    "extra_term": "adds something that does not come from dout",
    "batch_mixing": "examples of the batch leak into each other (a sum, a statistic or an index across the batch)",
    "formula": "a wrong or missing term: wrong values in no simpler pattern",
    "nan": "produces NaN or inf where the derivative is finite",
    # the mathematics is right, the contract is not
    "shape": "right values in the wrong shape (not reshaped, keepdims)",
    "dtype": "the input's dtype is not kept",
    "in_place": "modifies an input, a hyperparameter or dout in place",
    "aliasing": "returns memory shared with an input, dout, the cache or another gradient",
    "layout": "wrong for Fortran-ordered, strided or read-only arrays",
    "crash": "raises on a valid input (an empty batch, a 0-d array, T = 1, ...)",
    "interface": "breaks the forward/backward interface: no cache, a bare array, the wrong number of gradients",
    # the formula is right, the arithmetic loses digits
    "precision": "float32 arithmetic inside a float64 run",
    "instability": "a right formula that loses digits (saturation, cancellation, underflow)",
}
"""The bug classes the diagnosis names, and that each mutant declares as its true class."""

TIERS = ("wrong", "contract", "inaccurate", "pass")
"""Verdicts, most severe first."""

TIER_OF = {
    **{bug: "wrong" for bug in ("transpose", "order", "sign", "factor", "wrong_axis", "partial", "missing",
                                "extra_term", "batch_mixing", "formula", "nan")},
    **{bug: "contract" for bug in ("shape", "dtype", "in_place", "aliasing", "layout", "crash", "interface")},
    **{bug: "inaccurate" for bug in ("precision", "instability")},
}


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
        changes = {"name": self.key}
        if self.backward is not None:
            changes["backward"] = self.backward
        if self.forward is not None:
            changes["forward"] = self.forward
        return dataclasses.replace(layer, **changes)

    @property
    def key(self) -> str:
        return f"{self.layer}[{self.name}]"


@dataclass(frozen=True)
class Mutant(Replacement):
    """A deliberately wrong implementation: the verifier must reject it. ``bug`` is its true
    class (a key of ``BUG_CLASSES``), against which ``make mutants`` scores the diagnosis."""

    bug: str = ""

    def __post_init__(self):
        if self.bug not in BUG_CLASSES:
            raise ValueError(f"Mutant {self.key}: bug must be one of {', '.join(BUG_CLASSES)}, got {self.bug!r}")


class Variant(Replacement):
    """A different but correct implementation (einsum, explicit loops): the verifier must accept it."""


class LayerDefinitionError(ValueError):
    """A ``Layer`` that cannot be checked as defined (a wrong hint, a strategy that does not draw
    ``(arrays, hyper)``, a JAX specification calling NumPy): the message is one line naming it."""
