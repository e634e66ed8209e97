"""The checks run on every example, and the outcome of each.

One example is (arrays, hyper, dtype, cotangent seed). The layer runs in ``dtype`` on
the arrays rounded to it; the oracles run in float64 on those same rounded values.

* ``runs``      forward and backward return without raising; an exception is a failure
                that carries its example, never a crash of the run;
* ``forward``   the NumPy forward equals ``jax_forward``;
* ``vjp``       the backward equals the ``jax.vjp`` pullback of a random cotangent;
* ``jacobian``  the backward equals ``jax.jacobian`` contracted with the cotangent
                (skipped, with its size stated, when the Jacobian exceeds the budget);
* ``shapes``    one gradient per array, each with its array's shape and dtype, and an
                output in the input dtype;
* ``unchanged`` arrays, hyperparameters and cotangent are bit-for-bit unchanged after
                forward and backward.
"""
from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import oracles, tolerance
from .layer import Layer

CHECKS = ("runs", "forward", "vjp", "jacobian", "shapes", "unchanged")
ORACLE = "oracle"  # reported only when the JAX specification itself fails


@dataclass
class Outcome:
    """The result of one check on one example."""

    check: str
    status: str  # "pass", "fail" or "skip"
    units: float | None = None  # worst error in tolerance units (1.0 = at the bound)
    gradient: str | None = None  # "out", "dx", ...: where the worst error is
    index: tuple | None = None
    expected: float | None = None
    actual: float | None = None
    message: str = ""


@dataclass
class Example:
    """One evaluated example: its inputs and every check's outcome."""

    layer: str
    dtype: str
    arrays: tuple[np.ndarray, ...]  # as drawn (float64), before rounding to dtype
    hyper: dict[str, Any]
    cotangent_seed: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "fail"]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(a.shape for a in self.arrays)


def cotangent(shape, dtype, seed: int) -> np.ndarray:
    """A standard-normal dL/dY: random, never ones, so no error can hide in a symmetric sum."""
    return np.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def examine(layer: Layer, arrays, hyper, *, dtype="float64", cotangent_seed: int = 0,
            jacobian_budget: int = oracles.JACOBIAN_BUDGET_BYTES) -> Example:
    """Run every check on one example and return the outcomes."""
    dtype = np.dtype(dtype)
    example = Example(layer.name, dtype.name, tuple(np.asarray(a) for a in arrays), dict(hyper), cotangent_seed)
    inputs = tuple(np.array(a, dtype=dtype) for a in arrays)  # fresh copies, rounded to dtype
    pristine = tuple(a.copy() for a in inputs)
    hyper_given = copy.deepcopy(hyper)
    add = example.outcomes.append

    try:
        out, cache = layer.forward(*inputs, **hyper)
    except Exception as error:  # the layer under test failed: a finding, not a crash
        add(Outcome("runs", "fail", message=f"forward raised {_describe(error)}"))
        return example
    out = np.asarray(out)
    dout = cotangent(out.shape, dtype, cotangent_seed)
    dout_given = dout.copy()
    try:
        grads = layer.backward(dout, cache)
    except Exception as error:
        add(Outcome("runs", "fail", message=f"backward raised {_describe(error)}"))
        return example
    add(Outcome("runs", "pass"))

    names = layer.grad_names or tuple(f"d{i}" for i in range(len(inputs)))
    cost = oracles.jacobian_cost(out.shape, [a.shape for a in inputs], layer.input_names or names)
    with_jacobian = cost.oracle_bytes() <= jacobian_budget
    try:
        oracle = oracles.evaluate(
            layer.jax_forward, tuple(a.astype(np.float64) for a in pristine), hyper_given,
            dout_given.astype(np.float64), magnitude=layer.magnitude, with_jacobian=with_jacobian,
        )
    except Exception as error:
        add(Outcome(ORACLE, "fail", message=(
            f"the JAX specification raised {_describe(error)}: the specification or the "
            f"harness is suspect, not necessarily the layer")))
        return example

    grad_scales = oracle.grad_scales or tuple(_normwise(g) for g in oracle.vjp)
    out_scale = oracle.out_scale if oracle.out_scale is not None else _normwise(oracle.out)
    grads_ok = isinstance(grads, (tuple, list)) and len(grads) == len(inputs)
    add(compare("forward", ("out",), (out,), (oracle.out,), (out_scale,), dtype))
    if grads_ok:
        add(compare("vjp", names, grads, oracle.vjp, grad_scales, dtype))
        if oracle.jacobian is not None:
            add(compare("jacobian", names, grads, oracle.jacobian, grad_scales, dtype))
    else:
        add(Outcome("vjp", "fail", message=_arity_message(grads, len(inputs))))
    if oracle.jacobian is None:
        add(Outcome("jacobian", "skip", message=(
            f"skipped: {cost.describe()}; the check would need "
            f"{oracles.format_bytes(cost.oracle_bytes())}, over the "
            f"{oracles.format_bytes(jacobian_budget)} budget")))
    elif not grads_ok:
        add(Outcome("jacobian", "fail", message=_arity_message(grads, len(inputs))))
    add(_check_shapes(names, inputs, out, grads, dtype) if grads_ok
        else Outcome("shapes", "fail", message=_arity_message(grads, len(inputs))))
    add(_check_unchanged(layer.input_names or names, inputs, pristine, hyper, hyper_given, dout, dout_given))
    return example


def compare(check, names, actuals, expecteds, scales, dtype) -> Outcome:
    """Worst error over all results, in tolerance units; fails above 1 unit."""
    worst = Outcome(check, "pass", units=0.0)
    for name, actual, expected, scale in zip(names, actuals, expecteds, scales):
        actual = np.asarray(actual)
        if actual.shape != expected.shape:
            return Outcome(check, "fail", units=float("inf"), gradient=name, message=(
                f"{name} has shape {actual.shape} but the oracle's has shape {expected.shape}"))
        if actual.size == 0:
            continue
        units = tolerance.error_units(actual, expected, scale, dtype)
        index = np.unravel_index(int(np.argmax(units)), units.shape)
        if units[index] > worst.units or worst.gradient is None:
            worst = Outcome(check, "pass", float(units[index]), name, tuple(int(i) for i in index),
                            float(expected[index]), float(actual[index]))
    if worst.units > 1.0:
        worst.status = "fail"
        worst.message = (
            f"{worst.gradient}{list(worst.index)}: expected {worst.expected:.17g}, got "
            f"{worst.actual:.17g} ({worst.units:.3g} tolerance units)")
    return worst


def _normwise(reference) -> np.ndarray:
    """Fallback scale when no magnitude is known: the largest |element| of the oracle's result."""
    reference = np.asarray(reference)
    return np.full(reference.shape, np.max(np.abs(reference)) if reference.size else 0.0)


def _check_shapes(names, inputs, out, grads, dtype) -> Outcome:
    problems = []
    if out.dtype != dtype:
        problems.append(f"out has dtype {out.dtype}, expected {dtype}")
    for name, a, g in zip(names, inputs, grads):
        if not isinstance(g, np.ndarray):
            problems.append(f"{name} is a {type(g).__name__}, expected numpy.ndarray")
            continue
        if g.shape != a.shape:
            problems.append(f"{name} has shape {g.shape}, expected {a.shape}")
        if g.dtype != a.dtype:
            problems.append(f"{name} has dtype {g.dtype}, expected {a.dtype}")
    return Outcome("shapes", "fail" if problems else "pass", message="; ".join(problems))


def _check_unchanged(input_names, inputs, pristine, hyper, hyper_given, dout, dout_given) -> Outcome:
    changed = [name for name, a, p in zip(input_names, inputs, pristine) if not _same(a, p)]
    changed += [f"hyperparameter {k!r}" for k in hyper_given if not _same(hyper.get(k), hyper_given[k])]
    if not _same(dout, dout_given):
        changed.append("dout")
    if not changed:
        return Outcome("unchanged", "pass")
    return Outcome("unchanged", "fail", message="modified in place: " + ", ".join(changed))


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    return type(a) is type(b) and a == b


def _arity_message(grads, expected: int) -> str:
    count = len(grads) if isinstance(grads, (tuple, list)) else "not a tuple"
    return f"backward returned {type(grads).__name__} ({count}), expected a tuple of {expected} gradients"


def _describe(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return f"{type(error).__name__}: {error}{where}"
