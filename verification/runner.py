"""``check_layer``: property-based proof of one layer, and the report it returns."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from . import oracles
from .checks import CHECKS, Example, Outcome, examine
from .layer import Layer

SMALL_EXAMPLE = 64  # arrays with at most this many elements are printed in full


@dataclass
class CheckSummary:
    """One check of one layer in one dtype, over every example hypothesis ran."""

    check: str
    dtype: str
    examples: int = 0  # examples on which the check ran
    skipped: int = 0
    worst_units: float | None = None
    status: str = "pass"  # "pass", "fail" or "skip" (skipped on every example)
    note: str = ""

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "skip":
            self.skipped += 1
            self.note = outcome.message
            return
        self.examples += 1
        if outcome.status == "pass" and outcome.message:  # how it ran (e.g. a streamed Jacobian)
            self.note = outcome.message
        if outcome.units is not None and (self.worst_units is None or outcome.units > self.worst_units):
            self.worst_units = outcome.units
        if outcome.status == "fail":
            self.status = "fail"

    def finish(self) -> None:
        if self.examples == 0 and self.status != "fail":
            self.status = "skip"


@dataclass
class Failure:
    """The minimal failing example hypothesis shrank to, and what failed on it."""

    layer: str
    dtype: str
    check: str
    gradient: str | None
    shapes: tuple
    hyper: dict[str, Any]
    index: tuple | None
    expected: float | None
    actual: float | None
    units: float | None
    message: str
    reproducer: str
    diagnosis: str = ""  # the likely bug, named from the usual bug shapes
    arrays: tuple | None = None  # the arrays themselves, when small

    def to_dict(self) -> dict:
        return {
            "layer": self.layer, "dtype": self.dtype, "check": self.check, "gradient": self.gradient,
            "shapes": [list(s) for s in self.shapes], "hyper": _jsonable(self.hyper),
            "index": None if self.index is None else list(self.index),
            "expected": self.expected, "actual": self.actual, "units": _finite_or_str(self.units),
            "message": self.message, "diagnosis": self.diagnosis, "reproducer": self.reproducer,
            "arrays": None if self.arrays is None else [a.tolist() for a in self.arrays],
        }


@dataclass
class LayerReport:
    """Every check of one layer: ``passed`` is False if any check failed in any dtype."""

    name: str
    checks: list[CheckSummary] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks) and not self.failures

    def check(self, name: str, dtype: str) -> CheckSummary:
        return next(c for c in self.checks if c.check == name and c.dtype == dtype)

    def to_dict(self) -> dict:
        return {
            "layer": self.name, "passed": self.passed, "seconds": round(self.seconds, 3),
            "checks": [
                {"check": c.check, "dtype": c.dtype, "examples": c.examples, "skipped": c.skipped,
                 "worst_units": _finite_or_str(c.worst_units), "status": c.status, "note": c.note}
                for c in self.checks
            ],
            "failures": [f.to_dict() for f in self.failures],
        }

    def __str__(self) -> str:
        from .report import layer_table

        return layer_table([self])


class _ExampleFailed(Exception):
    """Raised inside the hypothesis test so that it shrinks the failing example."""


def check_layer(layer: Layer, *, max_examples: int = 50, seed: int = 0,
                dtypes=("float64", "float32"), jacobian_budget: int = oracles.JACOBIAN_BUDGET_BYTES,
                shrink: bool = True, progress: Callable[[str, str, int], None] | None = None) -> LayerReport:
    """Prove ``layer``'s backward on ``max_examples`` hypothesis examples per dtype.

    Returns a ``LayerReport``: per check and dtype the examples run and the worst error
    in tolerance units; for a failure, the minimal example hypothesis shrank to, with
    its shapes, the check, the gradient, the worst index, expected vs actual, and a
    reproducer. ``shrink=False`` reports the first failing example as found (faster, when
    only pass/fail matters). ``progress(layer, dtype, examples_so_far)`` is called as
    examples run.
    """
    report = LayerReport(layer.name)
    started = time.perf_counter()
    for dtype in dtypes:
        dtype = np.dtype(dtype).name
        summaries = {name: CheckSummary(name, dtype) for name in CHECKS}
        failing: list[Example] = []
        count = 0

        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                  report_multiple_bugs=False, verbosity=Verbosity.quiet, print_blob=False,
                  phases=(Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ()),
                  suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example))
        @given(example=layer.strategy, cotangent_seed=st.integers(0, 2**32 - 1))
        def prove(example, cotangent_seed):
            nonlocal count
            arrays, hyper = example
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # a layer's NaN or overflow is judged by the checks
                result = examine(layer, arrays, hyper, dtype=dtype, cotangent_seed=cotangent_seed,
                                 jacobian_budget=jacobian_budget)
            count += 1
            for outcome in result.outcomes:
                summaries.setdefault(outcome.check, CheckSummary(outcome.check, dtype)).add(outcome)
            if progress is not None:
                progress(layer.name, dtype, count)
            if result.failed:
                failing.append(result)  # hypothesis replays the shrunk example last
                raise _ExampleFailed

        try:
            hypothesis_seed(seed)(prove)()
        except _ExampleFailed:
            report.failures.extend(_failures(failing[-1], layer, seed=seed, max_examples=max_examples))
        for summary in summaries.values():
            summary.finish()
            report.checks.append(summary)
    report.seconds = time.perf_counter() - started
    return report


def _failures(example: Example, layer: Layer, *, seed: int, max_examples: int) -> list[Failure]:
    arrays = example.arrays if sum(a.size for a in example.arrays) <= SMALL_EXAMPLE else None
    return [
        Failure(
            layer=layer.name, dtype=example.dtype, check=o.check, gradient=o.gradient,
            shapes=example.shapes, hyper=example.hyper, index=o.index, expected=o.expected,
            actual=o.actual, units=o.units, message=o.message, diagnosis=o.diagnosis, arrays=arrays,
            reproducer=reproducer(example, seed=seed, max_examples=max_examples),
        )
        for o in example.failed
    ]


def reproducer(example: Example, *, seed: int, max_examples: int) -> str:
    """A command that replays the failure: the same search for catalogue layers and their
    mutants and variants (hypothesis is deterministic given the seed), else the example."""
    from .catalogue import LAYERS, MUTANTS, VARIANTS

    replays = f"--dtype {example.dtype} --seed {seed} --max-examples {max_examples}"
    if example.layer in LAYERS:
        return f"python -m verification --layer {example.layer} {replays}"
    if example.layer in {f"{r.layer}[{r.name}]" for r in (*MUTANTS, *VARIANTS)}:
        return f"python -m verification mutants --only '{example.layer}' {replays}"
    arrays = ", ".join(
        f"np.array({a.tolist()!r})" if a.size <= SMALL_EXAMPLE else f"<array of shape {a.shape}>"
        for a in example.arrays
    )
    return (f"verification.examine(layer, ({arrays},), {_jsonable(example.hyper)!r}, "
            f"dtype={example.dtype!r}, cotangent_seed={example.cotangent_seed})")


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _finite_or_str(value):
    if value is None or np.isfinite(value):
        return value
    return str(value)
