"""The checks run on every example, and ``examine``, which composes them.

Each check is a small registered unit (``registry.check``): a name, a kind, the dtypes it runs
in, and a function of a ``Trial`` (one example in one dtype, run once) returning an
``Outcome``. The modules group them by kind:

* ``trial``      ``runs``: the forward and backward return as the contract says;
* ``routes``     ``forward``, ``vjp``, ``jacobian``, ``jvp``, ``fd``, ``routes``;
* ``properties`` ``linearity``, ``zero``, ``per_example`` (no oracle needed);
* ``contract``   ``shapes``, ``layouts``, ``aliasing``, ``unchanged``.

Every failure carries a bug class (``verification.layer.BUG_CLASSES``) and so a tier:
wrong, contract or inaccurate; a disagreement between the oracles themselves is blamed on
the specification (``routes``), not the layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import oracles
from ..diagnosis import SPECIFICITY
from ..layer import TIERS, Layer, LayerDefinitionError
from . import trial as _trial
from . import routes as _routes  # noqa: F401  (registers the routes)
from . import properties as _properties  # noqa: F401
from . import contract as _contract  # noqa: F401
from .registry import CHECKS, Check, Outcome, check
from .trial import JACOBIAN_SECONDS, OracleError, Trial, describe, on_grid

ORACLE = "oracle"  # the pseudo-check reported when the JAX specification itself raises


@dataclass
class Example:
    """One evaluated example: its inputs and every check's outcome."""

    layer: str
    dtype: str
    arrays: tuple[np.ndarray, ...]  # as drawn (float64), before rounding to dtype
    hyper: dict[str, Any]
    cotangent_seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    trial: Trial | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "fail"]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(np.shape(a) for a in self.arrays)

    @property
    def tier(self) -> str:
        """The most severe tier among the failures ('spec' above all: nothing can be judged)."""
        tiers = {o.tier for o in self.failed}
        return next((t for t in ("spec", *TIERS) if t in tiers), "pass")

    @property
    def headline(self) -> Outcome | None:
        """The failure that names the bug: the most telling diagnosis of the most severe tier."""
        failed = [o for o in self.failed if o.tier == self.tier]
        return min(failed, key=lambda o: SPECIFICITY.index(o.bug) if o.bug in SPECIFICITY else len(SPECIFICITY),
                   default=None)


def examine(layer: Layer, arrays, hyper, *, dtype="float64", cotangent_seed: int = 0,
            jacobian_budget: int = oracles.JACOBIAN_BUDGET_BYTES, jacobian_seconds: float = JACOBIAN_SECONDS,
            checks=None, with_jacobian: bool = True) -> Example:
    """Run ``checks`` (default: all of ``CHECKS``) on one example and return the outcomes.

    The ``jacobian`` check builds the full Jacobian when it fits ``jacobian_budget`` bytes;
    beyond that it streams the contraction a few rows at a time, when that fits
    ``jacobian_seconds``, and is skipped with the sizes and time stated otherwise.
    ``with_jacobian=False`` leaves the explicit Jacobian out (the runner's compile economy;
    the tolerance scale does not change: a layer without a magnitude always gets its Jacobian).
    """
    selected = list(CHECKS) if checks is None else list(checks)
    unknown = set(selected) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; the checks are {', '.join(CHECKS)}")
    dtype = np.dtype(dtype)
    trial = Trial(layer, arrays, hyper, dtype=dtype, cotangent_seed=cotangent_seed, jacobian_budget=jacobian_budget,
                  jacobian_seconds=jacobian_seconds, with_jacobian=with_jacobian)
    example = Example(layer.name, dtype.name, tuple(np.asarray(a) for a in arrays), dict(hyper), cotangent_seed,
                      trial=trial)
    example.outcomes.append(trial.runs)
    trial.outcomes["runs"] = trial.runs
    if trial.runs.status == "fail":
        return example
    try:
        trial.oracle  # noqa: B018  (compiled and run once, before the checks read it)
    except OracleError as error:
        example.outcomes.append(Outcome(ORACLE, "fail", spec=True, message=(
            f"the JAX specification raised {error}: the specification or the harness is suspect, not necessarily "
            f"the layer"), diagnosis="specification or harness suspect"))
    for name, unit in CHECKS.items():
        if name == "runs" or name not in selected:
            continue
        outcome = _run(unit, trial)
        trial.outcomes[name] = outcome
        example.outcomes.append(outcome)
    return example


def _run(unit: Check, trial: Trial) -> Outcome:
    if unit.float64_only and trial.dtype != np.float64:
        return Outcome(unit.name, "skip", message=f"runs in float64 only: it checks the specification, whatever "
                                                   f"the layer's dtype")
    try:
        outcome = unit.run(trial)
    except OracleError:
        return Outcome(unit.name, "skip", message="not run: the specification raised on this example")
    except LayerDefinitionError:
        raise
    except Exception as error:  # malformed results from the layer (a list for an array, ...)
        return Outcome(unit.name, "fail", bug="interface", diagnosis="results that cannot be compared",
                       message=f"the layer's results could not be checked: {describe(error)}")
    if outcome.status == "fail" and unit.kind == "property" and any(m.startswith("cache.") for m in trial.modified):
        outcome.bug, outcome.diagnosis = "in_place", (
            "the first backward wrote into its cache, so later calls see other values: "
            + ", ".join(m for m in trial.modified if m.startswith("cache.")) + " modified")
    return outcome


__all__ = ["CHECKS", "Check", "Example", "ORACLE", "Outcome", "Trial", "check", "examine", "on_grid"]
