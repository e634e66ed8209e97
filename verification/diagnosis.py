"""Name the likely bug behind a wrong result, from the shapes bugs usually take.

Each diagnosis is a bug class (a key of ``verification.layer.BUG_CLASSES``, which also gives
the verdict's tier) and a sentence. The tactics, in turn: gradients in the wrong order; a
wrong shape (not reshaped, transposed, empty, reduced along the wrong axis); NaN or inf;
all zeros; right normwise but not componentwise (the formula is right, digits are lost:
*inaccurate*); float32 rounding inside a float64 run; a transpose; a constant factor, named
(-1, 2, 1/2, N, 1/N, a hyperparameter such as p, or the fitted constant: a literal and N are
told apart, or both named when they coincide); the oracle's gradient of dY with two equal
axes swapped (a reduction along the wrong axis that square shapes hide); the right values
in the wrong places; errors confined to some slices; and otherwise a wrong formula.

Some tactics probe: they run the compiled oracle on another cotangent, never the layer.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from . import tolerance

SPECIFICITY = ("order", "transpose", "sign", "factor", "batch_mixing", "wrong_axis", "missing", "extra_term",
               "partial", "nan", "precision", "instability", "shape", "dtype", "in_place", "aliasing", "layout",
               "interface", "crash", "formula")
"""The bug classes from the most telling to the least: where one example fails several checks,
the headline is the most telling diagnosis among the most severe tier's."""


FEW_DIGITS = 2.0 ** 10
"""An excess below this many tolerance units is a few digits lost, not a wrong formula (which
is off by O(|g|), 10^10 units and more in float64) nor float32 arithmetic (2^29 units)."""


def fits(actual, expected, scale, dtype) -> bool:
    return bool(np.all(tolerance.units(actual, expected, scale, dtype) <= 1))


def order(trial, names, actuals, expecteds, scales, dtype):
    """Gradients of the right values returned in the wrong order: shapes tell, or values do
    where shapes are equal. None when that is not it."""
    got = [np.shape(a) for a in actuals]
    want = [np.shape(e) for e in expecteds]
    if got != want and sorted(got) == sorted(want) and len(set(want)) == len(want):
        shown = [names[want.index(shape)] for shape in got]
        return "order", f"gradients returned in the wrong order: the shapes say ({', '.join(shown)})"
    for k, j in itertools.combinations(range(len(actuals)), 2):
        if got[k] == got[j] == want[k] == want[j] and np.size(actuals[k]) and not fits(
                actuals[k], expecteds[k], scales[k], dtype) and fits(actuals[k], expecteds[j], scales[j], dtype) \
                and fits(actuals[j], expecteds[k], scales[k], dtype):
            return "order", f"{names[k]} and {names[j]} swapped: each holds the other's values"
    return None


def shape_bug(name, actual, expected, scale, dtype):
    got, want = actual.shape, expected.shape
    if actual.size == expected.size:
        if actual.ndim == 2 and got == want[::-1] and fits(actual.T, expected, scale, dtype):
            return "transpose", f"transposed: {name} has shape {got}, its transpose is the right answer"
        if fits(actual.reshape(want), expected, scale, dtype):
            return "shape", f"not reshaped: {name} has the right values in shape {got} instead of {want}"
    if actual.size == 0 and expected.size:
        return "partial", (f"{name} is empty, shape {got} instead of {want}: a slice that empties at a boundary "
                           f"(such as [p:-p] with p = 0)?")
    return "wrong_axis", f"wrong shape {got} instead of {want}: reduced (or indexed) along the wrong axes?"


def diagnose(trial, name, actual, expected, scale, dtype):
    """(bug class, sentence) for a result of the right shape that is off somewhere."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    modified = _right_for_modified_inputs(trial, name, actual, dtype)
    if modified:
        return modified
    if not np.all(np.isfinite(actual)) and np.all(np.isfinite(expected)):
        return _non_finite(trial, name, actual, dtype)
    units = tolerance.units(actual, expected, scale, dtype)
    wrong = units > 1
    if not actual.any() and expected.any():
        return "missing", f"{name} is all zeros: a term is missing or the gradient is never written"
    normwise = tolerance.normwise_units(actual, expected, scale, dtype)
    if normwise <= 1 or float(np.max(units)) < FEW_DIGITS:
        return "instability", _lost_digits(name, units, expected, scale, dtype, normwise)
    if np.dtype(dtype) == np.float64 and fits(actual, expected, scale, np.float32):
        return "precision", "computed in float32 inside a float64 run: the errors are float32 rounding, everywhere"
    if actual.ndim == 2 and actual.shape[0] == actual.shape[1] > 1 and fits(actual.T, expected, scale, dtype):
        return "transpose", f"transposed: {name}.T is the right answer"
    return (_factor(trial, actual, expected, scale, dtype) or _swapped_axes(trial, name, actual, dtype)
            or _misplaced(name, actual, expected, scale, dtype) or _confined(name, wrong)
            or ("formula", f"wrong values in no simpler pattern ({int(wrong.sum())} of {wrong.size} entries "
                           f"of {name} off)"))


def scalar_bug(trial, outcome):
    """A scalar route (jvp, fd) cannot say where the gradient is off: take the ``vjp`` check's
    diagnosis on the same example where that failed."""
    sources = ("forward", "vjp") if outcome.check == "fd" else ("vjp",)  # fd differences the forward
    for source in sources:
        failed = trial.outcomes.get(source)
        if failed is not None and failed.status == "fail":
            return failed.bug, failed.diagnosis
    return "formula", f"<{outcome.gradient}, t> disagrees with the {outcome.check} route"


def _right_for_modified_inputs(trial, name, actual, dtype):
    """A layer that writes into its inputs computes the right gradient of the inputs as it left them."""
    changed = [k for k, (a, p) in enumerate(zip(trial.inputs, trial.pristine)) if not np.array_equal(a, p)]
    if not changed or name not in trial.names or trial.draws is None:
        return None
    at = tuple(np.asarray(a, np.float64) for a in trial.inputs)
    probe = trial.evaluate(trial.draws.douts, trial.draws.douts2, trial.draws.tangents, arrays=at,
                           with_jacobian=trial.probe_jacobian)
    k = trial.names.index(name)
    scale = tolerance.Scale(probe.grad_scales[k]) if probe.grad_scales is not None else tolerance.fallback(probe.vjp[k])
    if fits(actual, probe.vjp[k], scale, dtype):
        shown = ", ".join(trial.input_names[i] for i in changed)
        return "in_place", (f"{name} is right for the inputs as the forward left them: it modifies {shown} in place, "
                            f"so its own gradient is taken at the wrong point")
    return None


def _non_finite(trial, name, actual, dtype):
    where = tuple(int(i) for i in np.argwhere(~np.isfinite(actual))[0])
    largest = max((float(np.max(np.abs(a))) for a in trial.inputs if a.size), default=0.0)
    if largest > -math.log(tolerance.eps(dtype)):  # e^x beyond 1/eps: saturation and overflow territory
        return "instability", (f"{name}{list(where)} = {actual[where]} where the true value is finite, with inputs "
                               f"up to {largest:.4g}: past {-math.log(tolerance.eps(dtype)):.1f}, e^x overflows or "
                               f"1 - e^-x rounds to 0 in {np.dtype(dtype).name} (a formula not shifted or clamped)")
    return "nan", f"NaN/inf produced: {name}{list(where)} = {actual[where]} where the true value is finite"


def _lost_digits(name, units, expected, scale, dtype, normwise):
    i = tuple(int(k) for k in np.unravel_index(int(np.argmax(units)), units.shape))
    value, terms = abs(float(expected[i])), float(np.asarray(scale.magnitude)[i])
    where = ("underflow" if value < 1e3 * tolerance.tiny(dtype)
             else "saturation or cancellation")
    lost = math.log10(max(float(units[i]), 1.0))
    extent = (f"right to rounding normwise ({normwise:.2g} units), not componentwise" if normwise <= 1
              else f"{float(units[i]):.3g} units: a few digits beyond rounding")
    return (f"{extent}: {name}{list(i)} loses about {lost:.0f} more digits than the bound allows, where the true "
            f"value {value:.3g} is computed from terms of size {terms:.3g} ({where}); the formula is right, its "
            f"arithmetic is not stable there")


def _factor(trial, actual, expected, scale, dtype):
    denominator = float(np.sum(expected * expected))
    if denominator == 0:
        return None
    fitted = float(np.sum(actual * expected)) / denominator
    named: dict[float, list[str]] = {}

    def name(value, label):
        if value and np.isfinite(value):
            named.setdefault(float(value), []).append(label)

    for value, label in ((-1.0, "-1 (the sign flipped)"), (2.0, "2"), (0.5, "1/2"), (-2.0, "-2")):
        name(value, label)
    n = trial.batch
    if n and n > 1:
        name(float(n), f"N = {n}")
        name(1.0 / n, f"1/N (N = {n})")
        name(1.0 / (n - 1), f"1/(N-1) (N = {n})")
    for key, value in trial.hyper_given.items():
        if isinstance(value, (float, np.floating)) and value not in (0.0, 1.0):
            name(float(value), f"{key} = {value:.6g}")
            name(1.0 / float(value), f"1/{key} (= {1.0 / float(value):.6g})")
    for value, labels in named.items():
        if _fits_multiple(actual, expected, value, scale, dtype):
            both = " or ".join(labels)
            if len(labels) > 1:
                both += " (they coincide here: an example where they differ tells which)"
            return ("sign" if value == -1.0 else "factor"), f"off by a constant factor of {both}"
    if abs(fitted - 1) > 1e-2 and fitted != 0 and _fits_multiple(actual, expected, fitted, scale, dtype):
        return "factor", f"off by a constant factor of {fitted:.6g}"
    return None


def _fits_multiple(actual, expected, value, scale, dtype) -> bool:
    return fits(actual, value * expected, tolerance.Scale(abs(value) * np.asarray(scale.magnitude)), dtype)


def _swapped_axes(trial, name, actual, dtype):
    """The oracle's gradient of dY with two equal-length axes of dY swapped: a sum along the
    wrong axis, which square shapes hide (db = sum over classes instead of the batch)."""
    k = trial.names.index(name) if name in trial.names else None
    douts = trial.draws.douts if trial.draws is not None else ()
    if k is None or len(douts) != 1:
        return None
    dout = douts[0].astype(np.float64)
    for i, j in itertools.combinations(range(dout.ndim), 2):
        if dout.shape[i] != dout.shape[j] or dout.shape[i] < 2:
            continue
        swapped = np.swapaxes(dout, i, j).copy()
        probe = trial.evaluate((swapped,), (swapped,), trial.draws.tangents, with_jacobian=trial.probe_jacobian)
        scale = tolerance.Scale(probe.grad_scales[k]) if probe.grad_scales is not None else tolerance.fallback(probe.vjp[k])
        if fits(actual, probe.vjp[k], scale, dtype):
            return "wrong_axis", (f"{name} is the right gradient for dout with axes {i} and {j} swapped: summed "
                                  f"(or normalised) along the wrong axis, hidden while those axes have equal length")
    return None


def _misplaced(name, actual, expected, scale, dtype):
    """The right values at the wrong positions (a reshape for a transpose, a swapped index)."""
    if actual.size < 2:
        return None
    order_a, order_e = np.argsort(actual, axis=None), np.argsort(expected, axis=None)
    s = np.asarray(scale.magnitude).ravel()
    if fits(actual.ravel()[order_a], expected.ravel()[order_e], tolerance.Scale(np.maximum(s[order_a], s[order_e])),
            dtype):
        return "transpose", (f"{name} holds the right values at the wrong positions: transposed, reshaped instead "
                             f"of transposed, or an index swapped")
    return None


def _confined(name, wrong):
    """Errors confined to some slices along an axis, the rest exact: an off-by-one, a boundary,
    an overwrite where contributions should add up."""
    if wrong.ndim == 0:
        return None
    for axis in range(wrong.ndim):
        if wrong.shape[axis] < 2:
            continue
        hit = np.flatnonzero(np.moveaxis(wrong, axis, 0).reshape(wrong.shape[axis], -1).any(axis=1))
        if len(hit) < wrong.shape[axis]:  # some slice along this axis is exactly right
            shown = ", ".join(str(int(i)) for i in hit[:8]) + (", ..." if len(hit) > 8 else "")
            return "partial", (f"correct except at indices [{shown}] along axis {axis} of {name}: an off-by-one, "
                               f"a boundary, or an overwrite where contributions should add up")
    return None
