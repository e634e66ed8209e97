"""The registry of checks: each is a small unit with a name, a kind, the dtypes it runs in and
whether it needs the explicit Jacobian; ``examine`` composes whichever are selected.

Registration order is the order of the report's columns: ``runs`` (the trial itself),
then the routes, the oracle-free properties and the contract (``verification/checks/__init__``
imports the modules in that order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..layer import TIER_OF


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
    bug: str = ""  # the bug class (a key of BUG_CLASSES), for a failure
    diagnosis: str = ""  # the likely bug, in words
    spec: bool = False  # a failure blamed on the specification or the harness, not the layer

    @property
    def tier(self) -> str:
        """'wrong', 'contract', 'inaccurate', 'spec' for a failure; 'pass' otherwise."""
        if self.status != "fail":
            return "pass"
        return "spec" if self.spec else TIER_OF.get(self.bug, "wrong")


@dataclass(frozen=True)
class Check:
    """One registered check. ``run(trial) -> Outcome``."""

    name: str
    kind: str  # "trial", "route", "property" or "contract"
    run: Callable[[Any], Outcome]
    doc: str
    float64_only: bool = False  # checks of the specification more than of the layer's arithmetic
    needs_jacobian: bool = False


CHECKS: dict[str, Check] = {}
"""Every check, by name, in report order."""


def check(name: str, kind: str, *, float64_only: bool = False, needs_jacobian: bool = False):
    """Register ``run(trial) -> Outcome`` as the check ``name``; its docstring's first line is its doc."""
    def register(run):
        if name in CHECKS:
            raise ValueError(f"check {name!r} is registered twice")
        CHECKS[name] = Check(name, kind, run, (run.__doc__ or "").strip().splitlines()[0],
                             float64_only, needs_jacobian)
        return run
    return register
