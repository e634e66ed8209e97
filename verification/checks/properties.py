"""Properties of a backward that need no oracle: linear in dY, zero for a zero dY, and (for
layers that act on each example separately) row i of dx depends on row i of dY only."""
from __future__ import annotations

import numpy as np

from .. import tolerance
from .compare import compare
from .registry import Outcome, check
from .trial import describe, structured


def per_example(layer, arrays, hyper) -> bool:
    """The ``per_example`` hint, resolved for one example."""
    hint = layer.hints.per_example
    return bool(hint(arrays, hyper) if callable(hint) else hint)


@check("linearity", "property")
def linearity(trial) -> Outcome:
    """backward(a dY + b dY2) = a backward(dY) + b backward(dY2), each side within rounding."""
    a, b = trial.draws.coefficients
    douts, douts2 = trial.draws.douts, trial.draws.douts2
    try:
        second = trial.backward(structured(tuple(d.copy() for d in douts2), trial.several))
        mixed = trial.backward(structured(tuple(np.asarray(a * d + b * d2, dtype=trial.dtype)
                                                for d, d2 in zip(douts, douts2)), trial.several))
    except Exception as error:
        return Outcome("linearity", "fail", message=f"backward raised {describe(error)}", bug="crash",
                       diagnosis="the backward raises on another dout")
    combined = tuple(a * np.asarray(g, np.float64) + b * np.asarray(g2, np.float64)
                     for g, g2 in zip(trial.grads, second))
    scales = tuple(tolerance.linearity_scale(a, b, s1, s2, g1, g2)
                   for s1, s2, g1, g2 in zip(trial.scales.grads, trial.scales.grads2, trial.grads, second))
    outcome = compare(trial, "linearity", trial.names, mixed, combined, scales, name_bug=False)
    if outcome.status == "fail":
        outcome.bug, outcome.diagnosis = _nonlinearity(trial, outcome)
    return outcome


def _nonlinearity(trial, outcome):
    """Why a backward is not linear in dY: state kept between calls, float32 rounding, or the
    same wrong formula the vjp check found; else dY enters nonlinearly."""
    again = trial.backward(structured(tuple(d.copy() for d in trial.draws.douts), trial.several))
    if any(not np.array_equal(np.asarray(g), np.asarray(h), equal_nan=True) for g, h in zip(trial.grads, again)):
        return "in_place", ("the same dout gives other gradients on a second call: the backward changes its cache "
                            "(or keeps state) between calls")
    vjp = trial.outcomes.get("vjp")
    if vjp is not None and vjp.status == "fail":
        return vjp.bug, vjp.diagnosis
    if trial.dtype == np.float64 and outcome.units is not None and outcome.units * tolerance.eps(np.float64) \
            <= tolerance.eps(np.float32):
        return "precision", "not linear to float64 rounding but to float32's: computed in float32 inside"
    return "formula", "the backward is not linear in dout: dout enters nonlinearly (squared, through a max, a clip)"


@check("zero", "property")
def zero(trial) -> Outcome:
    """A zero dY gives exactly zero gradients."""
    try:
        grads = trial.backward(structured(tuple(np.zeros_like(d) for d in trial.draws.douts), trial.several))
    except Exception as error:
        return Outcome("zero", "fail", message=f"backward raised {describe(error)}", bug="crash",
                       diagnosis="the backward raises on a zero dout")
    for name, g in zip(trial.names, grads):
        g = np.asarray(g)
        nonzero = np.argwhere(g != 0)
        if len(nonzero):
            index = tuple(int(i) for i in nonzero[0])
            bug, why = "extra_term", "the backward adds something that does not come from dout"
            vjp = trial.outcomes.get("vjp")
            if not np.isfinite(g[index]):  # 0 * inf: the NaN or overflow the vjp check names
                bug, why = (vjp.bug, vjp.diagnosis) if vjp is not None and vjp.status == "fail" else (
                    "nan", "NaN/inf from a zero dout: a product with a non-finite factor")
            return Outcome("zero", "fail", gradient=name, index=index, expected=0.0, actual=float(g[index]),
                           message=f"a zero dout gives {name}{list(index)} = {g[index]!r}, not 0", bug=bug,
                           diagnosis=why)
    return Outcome("zero", "pass")


@check("per_example", "property")
def per_example_rows(trial) -> Outcome:
    """For layers that act per example: row i of dx depends on row i of dY only (bit for bit)."""
    if not per_example(trial.layer, trial.arrays64, trial.hyper_given):
        return Outcome("per_example", "skip", message="skipped: the layer does not act per example here")
    if trial.batch is None or trial.batch < 2:
        return Outcome("per_example", "skip", message="skipped: needs a batch of at least 2")
    j = trial.draws.row
    douts = [d.copy() for d in trial.draws.douts]
    for d, values in zip(douts, trial.draws.row_values):
        if d.ndim and d.shape[0] == trial.batch:
            d[j] = values
    try:
        moved = np.asarray(trial.backward(structured(tuple(douts), trial.several))[0])
    except Exception as error:
        return Outcome("per_example", "fail", message=f"backward raised {describe(error)}", bug="crash",
                       diagnosis="the backward raises on another dout")
    before = np.asarray(trial.grads[0])
    if moved.shape != before.shape:
        return Outcome("per_example", "fail", message=f"{trial.names[0]} changed shape with dout", bug="shape",
                       diagnosis="the gradient's shape depends on dout")
    others = np.ones(trial.batch, bool)
    others[j] = False
    differs = (moved != before) & ~(np.isnan(moved) & np.isnan(before))
    changed = np.flatnonzero(differs.reshape(trial.batch, -1).any(axis=1) & others)
    if len(changed):
        return Outcome("per_example", "fail", gradient=trial.names[0], bug="batch_mixing", message=(
            f"changing row {j} of dout changed rows {changed.tolist()} of {trial.names[0]}"),
            diagnosis="examples of the batch leak into each other")
    return Outcome("per_example", "pass")
