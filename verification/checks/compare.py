"""Comparing a layer's arrays (or scalars) with the oracle's, in tolerance units, and naming the bug."""
from __future__ import annotations

import numpy as np

from .. import diagnosis, tolerance
from .registry import Outcome


def compare(trial, check: str, names, actuals, expecteds, scales, *, dtype=None, name_bug=True) -> Outcome:
    """Worst error over all results, in tolerance units; fails above 1 unit, with the bug named
    (unless ``name_bug`` is False: the caller names it).

    ``scales``: one ``tolerance.Scale`` per result. A result whose shape differs from the
    oracle's fails at once (inf units)."""
    dtype = trial.dtype if dtype is None else dtype

    def order():  # read only where something fails: it compares every pair of equal shapes
        return diagnosis.order(trial, names, actuals, expecteds, scales, dtype) if name_bug else None

    worst = Outcome(check, "pass", units=0.0)
    for name, actual, expected, scale in zip(names, actuals, expecteds, scales):
        actual = np.asarray(actual)
        if actual.shape != expected.shape:
            bug, text = order() or diagnosis.shape_bug(name, actual, expected, scale, dtype)
            return Outcome(check, "fail", units=float("inf"), gradient=name, bug=bug, diagnosis=text, message=(
                f"{name} has shape {actual.shape} but the oracle's has shape {expected.shape}"))
        if actual.size == 0:
            continue
        units = tolerance.units(actual, expected, scale, dtype)
        index = np.unravel_index(int(np.argmax(units)), units.shape)
        if units[index] > worst.units or worst.gradient is None:
            worst = Outcome(check, "pass", float(units[index]), name, tuple(int(i) for i in index),
                            float(expected[index]), float(actual[index]))
            if units[index] > 1.0 and name_bug:
                worst.bug, worst.diagnosis = order() or diagnosis.diagnose(trial, name, actual, expected, scale,
                                                                           dtype)
    if worst.units > 1.0:
        worst.status = "fail"
        worst.message = (
            f"{worst.gradient}{list(worst.index)}: expected {worst.expected:.17g}, got "
            f"{worst.actual:.17g} ({worst.units:.3g} tolerance units)")
    return worst


def compare_scalars(trial, check: str, results, *, route: str) -> Outcome:
    """results: (gradient, actual, expected, bound) per input; fails where |actual - expected| > bound.
    A scalar cannot say where a gradient is wrong: its bug is the ``vjp`` check's on the same
    example where that failed, else read from how far off it is."""
    worst = Outcome(check, "pass", units=0.0)
    for name, actual, expected, bound in results:
        if actual is None:
            return Outcome(check, "fail", units=float("inf"), gradient=name, bug="shape",
                           diagnosis=f"{name} has the wrong shape", message=f"{name} has the wrong shape")
        diff = abs(actual - expected)
        units = 0.0 if diff == 0 else (diff / bound if bound > 0 else float("inf"))
        if not np.isfinite(actual):
            units = float("inf")
        if units >= worst.units:
            worst = Outcome(check, "pass", units, name, None, expected, actual)
    if worst.units > 1.0:
        worst.status = "fail"
        worst.message = (f"<{worst.gradient}, t> = {worst.actual:.17g} but the {route} gives "
                         f"{worst.expected:.17g} ({worst.units:.3g} tolerance units)")
        worst.bug, worst.diagnosis = diagnosis.scalar_bug(trial, worst)
    return worst
