"""The reference contract, beyond the mathematics: shapes and dtypes kept, any memory layout
accepted, fresh memory returned, inputs left alone."""
from __future__ import annotations

import copy

import numpy as np

from .. import tolerance
from ..oracles import leaves
from .compare import compare
from .registry import Outcome, check
from .trial import as_tuple, describe, one_in, structured

LAYOUTS = ("fortran", "strided", "reversed", "readonly")


@check("shapes", "contract")
def shapes(trial) -> Outcome:
    """One gradient per input, each an ndarray with its input's shape and dtype; outputs in the input dtype."""
    problems, kinds = [], set()
    if trial.interface_problem:
        problems.append(trial.interface_problem)
        kinds.add("interface")
    for name, out in zip(trial.output_names, leaves(trial.out_raw)):
        if not isinstance(out, np.ndarray):
            problems.append(f"{name} is a {type(out).__name__}, expected numpy.ndarray")
            kinds.add("shape")
        elif out.dtype != trial.dtype:
            problems.append(f"{name} has dtype {out.dtype}, expected {trial.dtype}")
            kinds.add("dtype")
    for name, a, g in zip(trial.names, trial.pristine, trial.returned):
        if not isinstance(g, np.ndarray):
            problems.append(f"{name} is a {type(g).__name__}, expected numpy.ndarray")
            kinds.add("shape")
            continue
        if g.shape != a.shape:
            problems.append(f"{name} has shape {g.shape}, expected {a.shape}")
            kinds.add("shape")
        if g.dtype != a.dtype:
            problems.append(f"{name} has dtype {g.dtype}, expected {a.dtype}")
            kinds.add("dtype")
    if not problems:
        return Outcome("shapes", "pass")
    bug = next(k for k in ("interface", "shape", "dtype") if k in kinds)
    return Outcome("shapes", "fail", message="; ".join(problems), bug=bug, diagnosis=problems[0])


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout (a 0-d array has one layout: a copy)."""
    if a.ndim == 0 and layout != "readonly":
        return a.copy()  # np.asfortranarray would make it 1-d, and a[()] a NumPy scalar
    if layout == "fortran":
        return np.asfortranarray(a.copy())
    if layout == "strided":  # every other element of a larger buffer
        buffer = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        buffer[..., ::2] = a
        return buffer[..., ::2]
    if layout == "reversed":  # negative strides on every axis
        index = (slice(None, None, -1),) * a.ndim
        return a[index].copy()[index]
    if layout == "readonly":
        frozen = a.copy()
        frozen.setflags(write=False)
        return frozen
    raise ValueError(f"unknown layout {layout!r}; the layouts are {', '.join(LAYOUTS)}")


LAYOUTS_EVERY = 4
"""The layouts run on one example in this many (by cotangent seed, so a replay runs them
again): how a layer treats strides depends on the configuration, not on the values, and the
four extra forward and backward passes were a fifth of a run's time."""


@check("layouts", "contract")
def layouts(trial) -> Outcome:
    """Fortran-ordered, strided, negative-stride and read-only inputs (and dY) give the layer's own C-order results."""
    if not one_in(LAYOUTS_EVERY, trial.cotangent_seed):
        return Outcome("layouts", "skip", message=f"runs on one example in {LAYOUTS_EVERY} (by cotangent seed): "
                                                   f"strides depend on the configuration, not the values")
    worst = Outcome("layouts", "pass", units=0.0)
    own = (*trial.outs, *trial.grads)
    # a right layer is within C eps S of the truth in any layout, so within 2 C eps S of itself;
    # one that is off (wrong, or inaccurate: float32 inside) may be off by as much again in
    # another layout, so the bound grows with the layer's own worst error, in tolerance units
    magnitudes = (*trial.scales.outs, *trial.scales.grads)
    factor = 2 * max(1.0, _worst_units(trial, own, (*trial.oracle.outs, *trial.oracle.vjp), magnitudes))
    scales = tuple(tolerance.Scale(factor * np.asarray(s.magnitude)) for s in magnitudes)
    for layout in LAYOUTS:
        inputs = tuple(relayout(a, layout) for a in trial.pristine)
        dout = structured(tuple(relayout(d, layout) for d in trial.draws.douts), trial.several)
        try:
            out, cache = trial.layer.forward(*inputs, **copy.deepcopy(trial.hyper_given))
            grads = as_tuple(trial.layer.backward(dout, cache), len(trial.inputs))
        except Exception as error:
            return Outcome("layouts", "fail", message=f"{layout} inputs: {describe(error)}", bug="layout",
                           diagnosis=f"raises on {layout} arrays")
        names = tuple(f"{n} ({layout})" for n in (*trial.output_names, *trial.names))
        theirs = tuple(_same_non_finite(np.asarray(t), mine) for t, mine in zip((*leaves(out), *grads), own))
        o = compare(trial, "layouts", names, theirs, tuple(np.nan_to_num(np.asarray(m, np.float64)) for m in own),
                    scales, name_bug=False)
        if o.status == "fail":
            o.bug, o.diagnosis = "layout", f"wrong on {layout} arrays: the C-order results differ"
            return o
        if o.units is not None and o.units > (worst.units or 0):
            worst = o
    return worst


def _worst_units(trial, own, expected, scales) -> float:
    """The layer's worst error over its C-order results, in tolerance units (inf for NaN)."""
    worst = 0.0
    for mine, truth, scale in zip(own, expected, scales):
        mine = np.asarray(mine, np.float64)
        if mine.shape == np.shape(truth) and mine.size:
            worst = max(worst, float(np.max(tolerance.units(mine, truth, scale, trial.dtype))))
    return worst


def _same_non_finite(theirs, mine):
    """NaN and inf where the C-order run has the same: the same result, compared as 0."""
    theirs = np.asarray(theirs, np.float64)
    mine = np.asarray(mine, np.float64)
    if theirs.shape != mine.shape:
        return theirs
    same = (np.isnan(theirs) & np.isnan(mine)) | (np.isinf(theirs) & (theirs == mine))
    return np.where(same, 0.0, theirs)


@check("aliasing", "contract")
def aliasing(trial) -> Outcome:
    """No gradient shares memory with an input, dY, the cache or another gradient."""
    held = list(zip(trial.input_names, trial.inputs))
    held += [(f"dout {name}" if trial.several else "dout", d) for name, d in zip(trial.output_names, leaves(trial.dout))]
    cache = trial.cache
    fields = cache._asdict().items() if hasattr(cache, "_asdict") else enumerate(
        cache if isinstance(cache, (tuple, list)) else (cache,))
    held += [(f"cache.{k}", v) for k, v in fields if isinstance(v, np.ndarray)]
    for i, (name, g) in enumerate(zip(trial.names, trial.returned)):
        if not isinstance(g, np.ndarray):
            continue
        others = held + [(other, h) for other, h in zip(trial.names[i + 1:], trial.returned[i + 1:])
                         if isinstance(h, np.ndarray)]
        for other, array in others:
            if np.shares_memory(g, array):
                return Outcome("aliasing", "fail", gradient=name, bug="aliasing", message=(
                    f"{name} shares memory with {other}: writing to one changes the other"),
                    diagnosis="returns a view instead of a new array")
    return Outcome("aliasing", "pass")


@check("unchanged", "contract")
def unchanged(trial) -> Outcome:
    """Inputs, hyperparameters, dY and the cache are bit-for-bit unchanged by the forward and the backward."""
    if not trial.modified:
        return Outcome("unchanged", "pass")
    return Outcome("unchanged", "fail", message="modified in place: " + ", ".join(trial.modified), bug="in_place",
                   diagnosis="an input, a hyperparameter or dout is modified in place")
