"""Name the likely bug behind a wrong result, from the shapes bugs usually take.

Each diagnosis is a bug class (a key of ``verification.layer.BUG_CLASSES``, which also gives
the verdict's tier) and a sentence. The tactics, in turn: gradients in the wrong order; a
wrong shape (not reshaped, transposed, empty, reduced along the wrong axis); NaN or inf;
all zeros; right normwise but not componentwise (the formula is right, digits are lost:
*inaccurate*); float32 rounding inside a float64 run; a transpose; a constant factor, named
(-1, 2, 1/2, N, 1/N, a hyperparameter such as p, or the fitted constant: a literal and N are
told apart, or both named when they coincide); the oracle's gradient of dY with two equal
axes swapped (a reduction along the wrong axis that square shapes hide; dY read transposed
where every wrong gradient is that); the right values in the wrong places; errors only at
entries whose gradient is zero (a mask not applied); errors confined to some slices; and
otherwise a wrong formula. A wrong shape whose axes, reordered, are right is a transpose.

Some tactics probe: they run the compiled oracle on another cotangent, never the layer.
``explain`` looks again at the examples a failure is named on (``runner.name_bug``): the
gradient may be the oracle's of a transformed example (an operand flipped, transposed or
regrouped; a flag or mask left out; another axis, grouping, stride, dilation or padding).
"""
from __future__ import annotations

import copy
import itertools
import math

import numpy as np

from . import oracles, tolerance

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
        permuted = _permuted(actual, expected, scale, dtype)
        if permuted is not None:
            return "transpose", (f"axes in the wrong order: {name} has shape {got}, and its axes taken in the "
                                 f"order {permuted} are the right answer")
    if actual.size == 0 and expected.size:
        return "partial", (f"{name} is empty, shape {got} instead of {want}: a slice that empties at a boundary "
                           f"(such as [p:-p] with p = 0)?")
    return "wrong_axis", f"wrong shape {got} instead of {want}: reduced (or indexed) along the wrong axes?"


def _permuted(actual, expected, scale, dtype):
    """The order of ``actual``'s axes in which it is the right answer, or None."""
    if actual.ndim > 6:
        return None
    for axes in itertools.permutations(range(actual.ndim)):
        if tuple(actual.shape[a] for a in axes) == expected.shape and fits(actual.transpose(axes), expected, scale,
                                                                           dtype):
            return axes
    return None


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
            or _misplaced(name, actual, expected, scale, dtype) or _unmasked(name, expected, scale, dtype, wrong)
            or _confined(name, wrong)
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
    if fits(actual, probe.vjp[k], _probe_scale(probe, k), dtype):
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
        if fits(actual, probe.vjp[k], _probe_scale(probe, k), dtype):
            if any(_swapped_too(trial, probe, g) for g in range(len(trial.names)) if g != k):
                return "transpose", (f"{name} and the other wrong gradients are right for dout with axes {i} and "
                                     f"{j} swapped: dout read transposed, hidden while those axes have equal length")
            return "wrong_axis", (f"{name} is the right gradient for dout with axes {i} and {j} swapped: summed "
                                  f"(or normalised) along the wrong axis, hidden while those axes have equal length")
    return None


def _swapped_too(trial, probe, g) -> bool:
    """Whether another gradient is wrong and right for the swapped dout as well."""
    actual = trial.grads[g] if trial.grads is not None else None
    if not isinstance(actual, np.ndarray) or actual.shape != probe.vjp[g].shape or not actual.size:
        return False
    return (not fits(actual, trial.oracle.vjp[g], trial.scales.grads[g], trial.dtype)
            and fits(actual, probe.vjp[g], _probe_scale(probe, g), trial.dtype))


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


def _unmasked(name, expected, scale, dtype, wrong):
    """Every wrong entry is one whose true gradient is zero (a ReLU's negative side, a masked
    position, a dropped unit) and every other entry is right: a mask not applied."""
    if not wrong.any() or wrong.all():
        return None
    zero = tolerance.units(np.zeros_like(expected), expected, scale, dtype) <= 1
    if np.all(zero[wrong]) and not np.all(zero[~wrong]):
        return "partial", (f"right except at {int(wrong.sum())} of {wrong.size} entries of {name}, each of which "
                           f"should be zero: a mask (or a step's condition) not applied to them")
    return None


DEEPER = ("formula", "partial", "transpose", "wrong_axis", "batch_mixing")
"""The classes ``explain`` looks behind: the ones a gradient of a transformed example can take."""
AXIS_LIKE = ("axis", "axes", "dim", "groups")
"""Integer hyperparameters that choose what is reduced over: another valid value is another axis."""
ALTERNATIVES = 48
COUPLING = "coupling"
"""The tactic ``_coupled`` as ``explain``'s ``known``: no transformed example, the layer's reach."""
"""At most this many transformed examples are evaluated for one failure."""


def explain(trial, outcome, known=None):
    """A second look at a failure of a derivative on an example the bug is named on (not on
    every failing example a search meets: it evaluates the oracle on other examples). The
    gradient may be the oracle's of a transformed example: an operand flipped, two of its
    axes swapped or regrouped by a reshape (a kernel not flipped, a weight not transposed:
    *transpose*), another value of an axis-like hyperparameter (*wrong_axis*), a flag or a
    mask left out, another stride, dilation or padding (*formula*; a pair reversed:
    *wrong_axis*; a setting that cuts the output short: *partial*).
    ``known``: the transform that explained another probe of the same example, tried alone.
    Returns (bug, sentence, transform), or None where no transform explains it."""
    name = outcome.gradient
    if outcome.bug not in DEEPER or trial is None or trial.grads is None or name not in trial.names:
        return None
    k = trial.names.index(name)
    actual, expected = np.asarray(trial.grads[k]), trial.oracle.vjp[k]
    if actual.shape != expected.shape or not actual.size:
        return None
    transforms = ([] if known is COUPLING else [known] if known is not None
                  else [*_hyper_alternatives(trial), *_operand_transforms(trial)])
    for transform in transforms[:ALTERNATIVES]:
        bug, text, make = transform
        try:
            arrays, hyper, douts = make(trial)
            probe = oracles.evaluate(trial.layer, arrays, hyper, douts, douts, trial.draws.tangents,
                                     with_jacobian=False)
        except Exception:  # an alternative the specification does not accept is not one
            continue
        if probe.vjp[k].shape == actual.shape and fits(actual, probe.vjp[k], _probe_scale(probe, k), trial.dtype):
            if _boundary_cut(trial, probe, douts):
                bug, text = "partial", (f"{text}, whose output is this one's cut short: dout's last rows or columns "
                                        f"left out")
            return bug, f"{name} is the right gradient {text}", transform
    return _coupled(trial, k) if known in (None, COUPLING) and outcome.bug == "formula" else None


def _coupled(trial, k):
    """The axes along which one entry of dY reaches the gradient, the layer's against the
    oracle's (for a gradient of dY's shape, named no more than a wrong formula: a weight's
    transpose whose shape is dY's by coincidence keeps its name): a reduction over other axes
    than the true one (*wrong_axis*; the batch axis is the per-example check's, and a layer
    that couples nothing has lost a term, not moved it). Returns (bug, sentence, COUPLING) or None."""
    douts = trial.draws.douts
    if len(douts) != 1 or douts[0].shape != np.shape(trial.grads[k]) or douts[0].size < 2 or trial.several:
        return None
    where = tuple(int(i) for i in np.unravel_index(douts[0].size // 2, douts[0].shape))
    delta = np.zeros(douts[0].shape)
    delta[where] = 1.0
    rng = np.random.default_rng(0)  # at moderate values: saturation hides no coupling
    point = tuple(rng.standard_normal(a.shape) for a in trial.arrays64)
    try:
        _, cache = trial.layer.forward(*(a.astype(trial.dtype) for a in point), **copy.deepcopy(trial.hyper_given))
        grads = trial.layer.backward(delta.astype(trial.dtype), cache)
        ours = np.asarray(grads if isinstance(grads, np.ndarray) else grads[k], np.float64)
        theirs = oracles.evaluate(trial.layer, point, trial.hyper_given, (delta,), (delta,), trial.draws.tangents,
                                  with_jacobian=False).vjp[k]
    except Exception:  # a backward that raises on another dY is another check's finding
        return None
    got, want = _reach(ours, where), _reach(theirs, where)
    if got and got != want and 0 not in got - want:
        return "wrong_axis", (f"{trial.names[k]} gathers dout along axes {sorted(got)}, the true gradient along "
                              f"{sorted(want)}: reduced (or normalised) over the wrong axes"), COUPLING
    return None


def _reach(gradient, where) -> set:
    """The axes along which ``gradient`` (of one entry of dY, at ``where``) is nonzero off ``where``."""
    if not np.all(np.isfinite(gradient)):
        return set()
    support = np.argwhere(np.abs(gradient) > 1e-9 * float(np.max(np.abs(gradient), initial=0.0)))
    return {axis for axis in range(gradient.ndim) if np.any(support[:, axis] != where[axis])}


def _boundary_cut(trial, probe, douts) -> bool:
    """Whether the other setting's output is this one's with its last rows or columns cut off
    (the same values where both are defined, dout cut to it): a boundary left out, not another
    formula (another stride, whose outputs differ)."""
    if not any(n < m for d, o in zip(douts, trial.draws.douts) for n, m in zip(d.shape, o.shape)):
        return False
    for cut, whole in zip(probe.outs, trial.oracle.outs):
        common = tuple(slice(0, n) for n in cut.shape)
        if cut.shape != whole[common].shape or not whole[common].any() or not fits(
                cut, whole[common], tolerance.fallback(whole[common]), np.float64):
            return False  # outputs of zeros alone say nothing of where they agree
    return True


def _probe_scale(probe, k):
    return tolerance.Scale(probe.grad_scales[k]) if probe.grad_scales is not None else tolerance.fallback(probe.vjp[k])


def _operand_transforms(trial):
    """(bug, words, make) per operand flipped along one or two axes, or with two axes of equal
    length swapped: the oracle of that example is what a backward computes that forgets to
    flip a kernel or to transpose a weight (vectors and one-entry axes left out); then per
    operand regrouped by a reshape where a transpose was meant (``_regrid``)."""
    simple, regrouped = [], []
    for i, (a, named) in enumerate(zip(trial.arrays64, trial.input_names)):
        axes = [d for d in range(a.ndim) if a.shape[d] > 1] if a.ndim >= 2 else []
        pairs = list(itertools.combinations(axes, 2))
        for flip in [(d,) for d in axes] + pairs:
            simple.append(("transpose", f"for {named} flipped along axes {flip}: a flip (of a kernel, a sequence) "
                                        f"missing or extra", _with_operand(i, lambda x, f=flip: np.flip(x, f))))
        for d, e in pairs:
            if a.shape[d] == a.shape[e]:
                simple.append(("transpose", f"for {named} with axes {d} and {e} swapped: a transpose missing or "
                                            f"extra", _with_operand(i, lambda x, d=d, e=e: np.swapaxes(x, d, e))))
        for blocks, pair, inverse in _grids(a.shape) if axes else ():
            regrouped.append(("transpose", f"for {named} regrouped: its first two axes, as ({blocks}, "
                                           f"{a.shape[0] // blocks}, {a.shape[1]}), have axes {pair} reshaped where "
                                           f"a transpose was meant", _with_operand(i, _regrid(blocks, pair, inverse))))
    return simple + regrouped


def _grids(shape):
    """(blocks, pair, inverse) for the non-trivial regroupings of an operand of ``shape``."""
    for blocks in (g for g in range(1, shape[0] + 1) if shape[0] % g == 0):
        sizes = (blocks, shape[0] // blocks, shape[1])
        for pair in ((1, 2), (0, 2), (0, 1)):
            if sizes[pair[0]] > 1 and sizes[pair[1]] > 1:
                yield from ((blocks, pair, False), (blocks, pair, True))


def _regrid(blocks, pair, inverse):
    """The operand viewed as (blocks, rows, columns, ...), whose 2-D grid along the view's axes
    ``pair`` is read through a reshape where a transpose was meant (``inverse``: the other way)."""
    def change(x):
        view = x.reshape(blocks, x.shape[0] // blocks, *x.shape[1:])
        moved = np.moveaxis(view, pair, (-2, -1))
        m, n = moved.shape[-2:]
        regridded = (moved.reshape(*moved.shape[:-2], n, m).swapaxes(-1, -2) if inverse
                     else moved.swapaxes(-1, -2).reshape(moved.shape))
        return np.moveaxis(regridded, (-2, -1), pair).reshape(x.shape)
    return change


def _with_operand(i, change):
    def make(trial):
        arrays = list(trial.arrays64)
        arrays[i] = np.ascontiguousarray(change(arrays[i]))
        return tuple(arrays), trial.hyper_given, trial.draws.douts
    return make


def _hyper_alternatives(trial):
    """(bug, words, make) per other value of a hyperparameter: an axis-like integer set to each
    other axis (or, for groups, each divisor of an axis' length) is *wrong_axis*; a flag
    flipped or an array (a mask) left out, alone or all together, is a term forgotten."""
    hyper, found, dropped = trial.hyper_given, [], {}
    ndim = max((a.ndim for a in trial.arrays64), default=0)
    sizes = {d for a in trial.arrays64 for n in a.shape for d in range(1, n + 1) if n % d == 0}
    for key, value in hyper.items():
        if not any(word in key.lower() for word in AXIS_LIKE):
            found += _other_settings(key, value)
        if isinstance(value, (bool, np.bool_)):
            if value:
                dropped[key] = False
            found.append(("formula", f"as if {key} were {not value}: the backward ignores it",
                          _with_hyper({key: not value})))
        elif isinstance(value, np.ndarray):
            dropped[key] = _ABSENT
            found.append(("formula", f"without {key}: the backward ignores it", _with_hyper({key: _ABSENT})))
        elif isinstance(value, (int, np.integer)) and any(word in key.lower() for word in AXIS_LIKE):
            grouping = "group" in key.lower()
            for other in sorted(sizes) if grouping else range(ndim):
                if other != (value if grouping else value % ndim):
                    found.append(("wrong_axis", f"for {key} = {other}, not {value}: reduced (or normalised) over "
                                                f"the wrong axes", _with_hyper({key: other})))
    if len(dropped) > 1:
        found.append(("formula", f"without {', '.join(dropped)}: the backward ignores them", _with_hyper(dropped)))
    return found


_ABSENT = object()


def _other_settings(key, value):
    """(bug, words, make) for a backward that uses another stride, dilation or padding than its
    forward: an integer set to 0, 1 or one less (*formula*), a per-axis pair reversed
    (*wrong_axis*). dY is embedded at the start of the other setting's output, or cut to it
    (``explain`` names a cut dY *partial*: its last rows or columns left out)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1:
        return [("formula", f"for {key} = {other}, not {value}: the backward uses another {key} than the forward",
                 _with_hyper({key: other}, embed=True)) for other in sorted({0, 1, int(value) - 1} - {value})]
    if not (isinstance(value, tuple) and value and all(isinstance(v, (int, np.integer)) for v in value)):
        return []
    found = []
    if len(set(value)) > 1:
        found.append(("wrong_axis", f"for {key} = {value[::-1]}, not {value}: each axis takes the other's {key}",
                      _with_hyper({key: value[::-1]}, embed=True)))
    for other in sorted({tuple(0 for _ in value), tuple(1 for _ in value), tuple(max(0, v - 1) for v in value)}
                        - {value}):
        found.append(("formula", f"for {key} = {other}, not {value}: the backward uses another {key} than the "
                                 f"forward", _with_hyper({key: other}, embed=True)))
    return found


def _with_hyper(changes, embed=False):
    def make(trial):
        hyper = {**trial.hyper_given, **changes}
        hyper = {key: value for key, value in hyper.items() if value is not _ABSENT}
        douts = trial.draws.douts
        if embed:
            shapes = oracles.output_shapes(trial.layer.jax_forward, tuple(a.shape for a in trial.arrays64), hyper)
            douts = tuple(_embedded(d, s) for d, s in zip(douts, shapes))
        return trial.arrays64, hyper, douts
    return make


def _embedded(dout, shape):
    """``dout`` at the start of zeros of ``shape``, cut where ``shape`` is shorter."""
    if len(shape) != dout.ndim:
        raise ValueError("the other setting's output has another rank")
    out, common = np.zeros(shape), tuple(slice(0, min(n, m)) for n, m in zip(shape, dout.shape))
    out[common] = dout[common]
    return out
