"""The checks run on every example, and the outcome of each.

One example is (arrays, hyper, dtype, cotangent seed). The layer runs in ``dtype`` on the
arrays rounded to it; the oracles run in float64 on those same rounded values. From the
seed come a cotangent dY (standard normal: never ones, so no error hides in a symmetric
sum), a second cotangent, and a random tangent t_k per input.

Three routes that share no machinery:

* reverse-mode AD   ``vjp``: the backward equals the ``jax.vjp`` pullback of dY;
                    ``jacobian``: ... equals ``jax.jacobian`` contracted with dY (skipped,
                    with the size stated, when the Jacobian exceeds the memory budget);
* forward-mode AD   ``jvp``: the adjoint identity <dY, J_k t_k> = <grad_k, t_k>, with
                    ``jax.jvp`` on each input's random tangent;
* no AD at all      ``fd``: central differences of the NumPy *forward* along t_k,
                    <dY, (f(x + h t) - f(x - h t)) / 2h>, against <grad_k, t_k>;

and ``routes``: the routes agree *with each other* (independently of the layer): when
they do not, the specification or the harness is suspect, not the layer.

Properties that need no oracle: ``linearity`` (the backward is linear in dY), ``zero``
(a zero dY gives exactly zero gradients), ``per_example`` (for layers that declare it,
row i of dx depends on row i of dY only). And the contract: ``runs`` (no exception; one
is a failure carrying its example, never a crash), ``forward`` (equals ``jax_forward``),
``layouts`` (Fortran-ordered, strided, negative-stride and read-only inputs give the
same results), ``aliasing`` (no gradient shares memory with an input, dY, the cache or
another gradient), ``shapes`` (each gradient has its input's shape and dtype) and
``unchanged`` (inputs, hyperparameters and dY bit-for-bit unchanged).
"""
from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import oracles, tolerance
from .diagnosis import diagnose, swapped
from .layer import Layer
from .streamed import StreamedTimeExceeded, streamed_jacobian_contraction

CHECKS = ("runs", "forward", "vjp", "jacobian", "jvp", "fd", "routes", "linearity", "zero",
          "per_example", "layouts", "aliasing", "shapes", "unchanged")
ORACLE = "oracle"  # reported only when the JAX specification itself fails

FD_STEP = 2.0 ** -12
"""Central-difference step along a random tangent t ~ N(0, 1) for inputs the forward is
not linear in. Truncation error is O(h^2 |f'''|); the rounding error of the two forward
evaluations, C eps |f| / h. h = 2^-12 keeps both small in float64 while staying well inside
the strategies' distance from kinks (x +- h t moves each entry by ~1e-3 at most)."""
FD_LINEAR_STEP = 2.0 ** -4
"""Step for inputs the forward is linear in (``Layer.linear_in``): the difference is then
exact up to rounding, so a large step shrinks the rounding error C eps |f| / h; 1/16
keeps x +- h t near x, so the oracle's magnitude of f still bounds that error."""
LAYOUTS = ("fortran", "strided", "reversed", "readonly")
FLOAT64_ONLY = ("fd", "routes")
"""Checks of the specification more than of the layer's arithmetic: finite differences are
always taken in float64, and whether the oracles agree with them does not depend on the
dtype the layer runs in. A float32 run would repeat the float64 run's work (a quarter of
an example's cost) and is skipped, saying so."""
JACOBIAN_SECONDS = 20.0
"""Time allowed for the streamed Jacobian contraction, used when the full Jacobian is over
the memory budget; its first chunk measures whether the whole would fit."""


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
    diagnosis: str = ""  # the likely bug, for a failure


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


GRID_BITS = {"float64": 40, "float32": 23}
"""Significant bits of each input kept relative to its largest entry: the example point is
rounded onto the grid 2^(e - bits), |x| < 2^e, so that it is exact in the run's dtype and,
with tangents on a grid 2^13 times coarser, every x +- h t of the finite-difference route
(h = FD_STEP, FD_STEP/2, FD_LINEAR_STEP) is exact in float64. The differences are then
centred exactly on x: no input rounding shifts the point they differentiate at."""


def on_grid(a: np.ndarray, dtype) -> tuple[np.ndarray, float]:
    """``a`` rounded onto its dyadic grid (see GRID_BITS), in ``dtype``, and the grid's spacing."""
    top = float(np.max(np.abs(a))) if a.size else 0.0
    exponent = int(np.floor(np.log2(top))) + 1 if top > 0 else 0
    spacing = 2.0 ** (exponent - GRID_BITS[np.dtype(dtype).name])
    return np.asarray(np.round(np.asarray(a, np.float64) / spacing) * spacing, dtype=dtype), spacing


class _Draws:
    """Everything random about one example, from its seed."""

    def __init__(self, seed: int, out_shape, inputs, dtype, spacings):
        rng = np.random.default_rng(seed)
        self.dout = np.asarray(rng.standard_normal(out_shape), dtype=dtype)
        self.dout2 = np.asarray(rng.standard_normal(out_shape), dtype=dtype)
        tangent_grids = [2.0 ** 13 * q for q in spacings]  # h/2 * t is a multiple of the input's spacing
        self.tangents = tuple(np.asarray(np.round(rng.standard_normal(a.shape) / g) * g)
                              for a, g in zip(inputs, tangent_grids))
        self.coefficients = tuple(rng.uniform(0.5, 2.0) * rng.choice((-1.0, 1.0)) for _ in range(2))
        self.row = int(rng.integers(inputs[0].shape[0])) if inputs and inputs[0].ndim and inputs[0].shape[0] else 0
        self.row_values = rng.standard_normal(out_shape[1:]) if out_shape else None


def examine(layer: Layer, arrays, hyper, *, dtype="float64", cotangent_seed: int = 0,
            jacobian_budget: int = oracles.JACOBIAN_BUDGET_BYTES, jacobian_seconds: float = JACOBIAN_SECONDS,
            checks=CHECKS) -> Example:
    """Run ``checks`` (default: all of ``CHECKS``) on one example and return the outcomes.

    The ``jacobian`` check builds the full Jacobian when it fits ``jacobian_budget`` bytes;
    beyond that it streams the contraction a few rows at a time, when that fits
    ``jacobian_seconds``, and is skipped with the sizes and time stated otherwise.
    """
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; the checks are {', '.join(CHECKS)}")
    dtype = np.dtype(dtype)
    selected = set(checks) - (set(FLOAT64_ONLY) if dtype != np.float64 else set())
    example = Example(layer.name, dtype.name, tuple(np.asarray(a) for a in arrays), dict(hyper), cotangent_seed)
    add = example.outcomes.append
    gridded = [on_grid(np.array(a, dtype=dtype), dtype) for a in arrays]  # fresh copies, rounded
    inputs = tuple(a for a, _ in gridded)
    pristine = tuple(a.copy() for a in inputs)
    hyper_given = copy.deepcopy(hyper)

    try:
        out, cache = layer.forward(*inputs, **hyper)
    except Exception as error:  # the layer under test failed: a finding, not a crash
        add(Outcome("runs", "fail", message=f"forward raised {_describe(error)}", diagnosis="forward raises"))
        return example
    out = np.asarray(out)
    draws = _Draws(cotangent_seed, out.shape, inputs, dtype, [q for _, q in gridded])
    dout = draws.dout.copy()
    try:
        grads = layer.backward(dout, cache)
    except Exception as error:
        add(Outcome("runs", "fail", message=f"backward raised {_describe(error)}", diagnosis="backward raises"))
        return example
    add(Outcome("runs", "pass"))
    input_names = layer.input_names or tuple(f"x{i}" for i in range(len(inputs)))
    names = tuple(f"d{n}" for n in input_names)
    unchanged = _check_unchanged(input_names, inputs, pristine, hyper, hyper_given, dout, draws.dout)
    grads_ok = isinstance(grads, (tuple, list)) and len(grads) == len(inputs)
    shapes = (_check_shapes(names, pristine, out, grads, dtype) if grads_ok
              else Outcome("shapes", "fail", message=_arity_message(grads, len(inputs)),
                           diagnosis="wrong number of gradients"))
    aliasing = _check_aliasing(names, input_names, inputs, dout, cache, grads) \
        if grads_ok else None

    cost = oracles.jacobian_cost(out.shape, [a.shape for a in inputs], input_names)
    with_jacobian = bool(selected & {"jacobian", "routes"}) and cost.oracle_bytes() <= jacobian_budget
    need_second = "linearity" in selected
    need_tangents = bool(selected & {"jvp", "fd", "routes"})
    arrays64 = tuple(a.astype(np.float64) for a in pristine)
    try:
        oracle = oracles.evaluate(
            layer.jax_forward, arrays64, hyper_given,
            (draws.dout.astype(np.float64),) + ((draws.dout2.astype(np.float64),) if need_second else ()),
            tangents=draws.tangents if need_tangents else None,
            magnitude=layer.magnitude, with_jacobian=with_jacobian, elementwise=layer.hints.elementwise)
    except Exception as error:
        add(Outcome(ORACLE, "fail", message=(
            f"the JAX specification raised {_describe(error)}: the specification or the "
            f"harness is suspect, not necessarily the layer")))
        return example

    scales = oracle.grad_scales or tuple(_normwise(g) for g in oracle.vjp)
    out_scale = oracle.out_scale if oracle.out_scale is not None else _normwise(oracle.out)
    batch = inputs[0].shape[0] if inputs and inputs[0].ndim else None
    study = _Study(layer, dtype, names, input_names, inputs, pristine, arrays64, hyper_given, cache,
                   grads, draws, oracle, scales, out_scale, batch)

    if "forward" in selected:
        add(compare("forward", ("out",), (out,), (oracle.out,), (out_scale,), dtype))
    gradient_checks = [c for c in ("vjp", "jacobian", "jvp", "fd", "linearity", "zero", "per_example",
                                   "layouts") if c in selected]
    for check in gradient_checks:
        if not grads_ok:
            add(Outcome(check, "fail", message=_arity_message(grads, len(inputs)),
                        diagnosis="wrong number of gradients"))
        elif check == "jacobian" and oracle.jacobian is None:
            add(study.streamed_jacobian(
                f"{cost.describe()}; the full check would need {oracles.format_bytes(cost.oracle_bytes())}, "
                f"over the {oracles.format_bytes(jacobian_budget)} budget", jacobian_seconds))
        else:
            add(study.run(check))
    for check in sorted(set(checks) & set(FLOAT64_ONLY) - selected):
        add(Outcome(check, "skip", message=f"skipped in {dtype.name}: it runs in float64, whatever the layer's dtype"))
    if "routes" in selected:
        forward_ok = all(o.status != "fail" for o in example.outcomes if o.check == "forward")
        add(study.routes(with_fd=forward_ok))
    if "aliasing" in selected:
        add(aliasing or Outcome("aliasing", "fail", message=_arity_message(grads, len(inputs))))
    if "shapes" in selected:
        add(shapes)
    if "unchanged" in selected:
        add(unchanged)
    return example


@dataclass
class _Study:
    """The checks that compare one example's gradients with the routes and properties."""

    layer: Layer
    dtype: np.dtype
    names: tuple[str, ...]
    input_names: tuple[str, ...]
    inputs: tuple[np.ndarray, ...]
    pristine: tuple[np.ndarray, ...]
    arrays64: tuple[np.ndarray, ...]
    hyper: dict
    cache: Any
    grads: tuple
    draws: _Draws
    oracle: oracles.OracleResult
    scales: tuple[np.ndarray, ...]
    out_scale: np.ndarray
    batch: int | None

    def run(self, check: str) -> Outcome:
        try:
            return getattr(self, check)()
        except Exception as error:  # malformed results from the layer (a list for an array, ...)
            return Outcome(check, "fail", message=(
                f"the layer's results could not be checked: {_describe(error)}"))

    def vjp(self) -> Outcome:
        return compare("vjp", self.names, self.grads, self.oracle.vjp, self.scales, self.dtype, batch=self.batch)

    def jacobian(self) -> Outcome:
        return compare("jacobian", self.names, self.grads, self.oracle.jacobian, self.scales, self.dtype,
                       batch=self.batch)

    def streamed_jacobian(self, over_budget: str, seconds: float) -> Outcome:
        """The explicit chain rule beyond the memory budget: J formed a few rows at a time."""
        def f(*a):
            return self.layer.jax_forward(*a, **self.hyper)

        try:
            contracted = streamed_jacobian_contraction(f, self.arrays64, self.draws.dout.astype(np.float64),
                                                       time_budget=seconds)
        except StreamedTimeExceeded as error:
            return Outcome("jacobian", "skip", message=f"skipped: {over_budget}; {error}")
        outcome = compare("jacobian", self.names, self.grads, contracted, self.scales, self.dtype, batch=self.batch)
        if outcome.status == "pass":
            outcome.message = f"streamed: {over_budget}"
        return outcome

    def _tangent_terms(self, k):
        """<grad_k, t_k> of the layer and its tolerance scale <S_k, |t_k|> + <|grad_k|, |t_k|>."""
        t = self.draws.tangents[k]
        grad = np.asarray(self.grads[k], dtype=np.float64)
        if grad.shape != t.shape:
            return None, None
        return float(np.sum(grad * t)), float(np.sum(self.scales[k] * np.abs(t)) + np.sum(np.abs(grad * t)))

    def jvp(self) -> Outcome:
        """Adjoint identity per input: <dY, J_k t_k> (forward mode) = <grad_k, t_k>."""
        dout = self.draws.dout.astype(np.float64)
        results = []
        for k, name in enumerate(self.names):
            actual, scale = self._tangent_terms(k)
            expected = float(np.sum(dout * self.oracle.jvp[k]))
            results.append((name, actual, expected, tolerance.C * (tolerance.eps(self.dtype) * (scale or 0.0)
                                                                   + tolerance.tiny(self.dtype))))
        return _scalar_outcome("jvp", results)

    def finite_differences(self, k) -> tuple[float, float]:
        """``_finite_differences(k)``, computed once per input: the fd and routes checks share it."""
        memo = self.__dict__.setdefault("_differences", {})
        if k not in memo:
            memo[k] = self._finite_differences(k)
        return memo[k]

    def _finite_differences(self, k) -> tuple[float, float]:
        """<dY, df/dx_k . t_k> by central differences of the NumPy forward in float64, and its error bound.

        Linear inputs: one difference at FD_LINEAR_STEP, exact up to rounding. Others:
        Richardson extrapolation of steps h and h/2 (error O(h^4)), with |D(h) - D(h/2)|,
        which bounds the error of D(h/2) and so of the extrapolation, in the bound.
        """
        dout = self.draws.dout.astype(np.float64)
        t = self.draws.tangents[k]

        def difference(h):
            """The central difference and the rounding bound of its two forward evaluations."""
            def at(sign):
                arrays = list(self.arrays64)
                arrays[k] = np.asarray(self.arrays64[k] + sign * h * t)  # exact (GRID_BITS); 0-d stays an array
                return np.asarray(self.layer.forward(*arrays, **copy.deepcopy(self.hyper))[0], dtype=np.float64)
            plus, minus = at(1.0), at(-1.0)
            # each evaluation errs by C eps (|f| terms); at x +- h t the magnitude is the oracle's at x
            # or, where f has grown away from x, the values themselves
            scale = np.sum(np.abs(dout) * (2 * self.out_scale + np.abs(plus) + np.abs(minus)))
            return (float(np.sum(dout * (plus - minus))) / (2 * h),
                    tolerance.C * tolerance.eps(np.float64) * float(scale) / (2 * h))

        if k in self.layer.hints.linear_in:
            return difference(FD_LINEAR_STEP)
        (coarse, coarse_rounding), (fine, fine_rounding) = difference(FD_STEP), difference(FD_STEP / 2)
        # Richardson: (4 fine - coarse) / 3 cancels the h^2 term; |coarse - fine| bounds what is left
        return (4 * fine - coarse) / 3, abs(coarse - fine) + (4 * fine_rounding + coarse_rounding) / 3

    def fd(self) -> Outcome:
        results = []
        for k, name in enumerate(self.names):
            actual, scale = self._tangent_terms(k)
            try:
                expected, fd_bound = self.finite_differences(k)
            except Exception as error:
                return Outcome("fd", "fail", gradient=name, message=(
                    f"forward raised {_describe(error)} at x +- h t for {self.input_names[k]}"))
            bound = tolerance.C * (tolerance.eps(self.dtype) * (scale or 0.0) + tolerance.tiny(self.dtype)) + fd_bound
            results.append((name, actual, expected, bound))
        return _scalar_outcome("fd", results)

    def routes(self, *, with_fd: bool) -> Outcome:
        """The oracles against each other, in float64, with the layer's gradients left out."""
        vjp = self.oracle.vjp
        findings = []
        if self.oracle.jacobian is not None:
            o = compare("routes", self.names, vjp, self.oracle.jacobian, self.scales, np.float64)
            if o.status == "fail":
                findings.append(f"vjp vs jacobian on {o.gradient}: {o.units:.3g} units")
        dout = self.draws.dout.astype(np.float64)
        for k, name in enumerate(self.names):
            t = self.draws.tangents[k]
            reverse = float(np.sum(vjp[k] * t))
            scale = float(np.sum(self.scales[k] * np.abs(t)) + np.sum(np.abs(vjp[k] * t)))
            bound = tolerance.C * (tolerance.eps(np.float64) * scale + tolerance.tiny(np.float64))
            if self.oracle.jvp is not None:
                forward = float(np.sum(dout * self.oracle.jvp[k]))
                if abs(reverse - forward) > bound:
                    findings.append(f"vjp vs jvp on {name}: {reverse:.17g} vs {forward:.17g}")
            if with_fd:
                try:
                    numeric, fd_bound = self.finite_differences(k)
                except Exception:
                    continue  # reported by the fd check
                if abs(reverse - numeric) > bound + fd_bound:
                    findings.append(f"vjp vs finite differences on {name}: {reverse:.17g} vs {numeric:.17g}")
        if not findings:
            return Outcome("routes", "pass")
        return Outcome("routes", "fail", message=(
            "the oracles disagree with each other (" + "; ".join(findings) + "): the specification "
            "or the harness is suspect, not necessarily the layer"),
            diagnosis="specification or harness suspect")

    def _backward(self, dout):
        return self.layer.backward(dout, self.cache)

    def linearity(self) -> Outcome:
        """backward(a dY + b dY2) = a backward(dY) + b backward(dY2), each side within rounding."""
        a, b = self.draws.coefficients
        try:
            second = self._backward(self.draws.dout2.copy())
            mixed = self._backward(np.asarray(a * self.draws.dout + b * self.draws.dout2, dtype=self.dtype))
        except Exception as error:
            return Outcome("linearity", "fail", message=f"backward raised {_describe(error)}")
        scales2 = self.oracle.grad_scales2 or tuple(_normwise(g) for g in self.oracle.vjp2)
        combined = tuple(a * np.asarray(g, np.float64) + b * np.asarray(g2, np.float64)
                         for g, g2 in zip(self.grads, second))
        # three backwards, each within C eps S: the sum is within 2 C eps (|a| S1 + |b| S2)
        scale = tuple(2 * (abs(a) * s1 + abs(b) * s2) for s1, s2 in zip(self.scales, scales2))
        return compare("linearity", self.names, mixed, combined, scale, self.dtype)

    def zero(self) -> Outcome:
        try:
            grads = self._backward(np.zeros_like(self.draws.dout))
        except Exception as error:
            return Outcome("zero", "fail", message=f"backward raised {_describe(error)}")
        for name, g in zip(self.names, grads):
            g = np.asarray(g)
            nonzero = np.argwhere(g != 0)
            if len(nonzero):
                index = tuple(int(i) for i in nonzero[0])
                return Outcome("zero", "fail", gradient=name, index=index, expected=0.0, actual=float(g[index]),
                               message=f"a zero dout gives {name}{list(index)} = {g[index]!r}, not 0",
                               diagnosis="the backward adds something that does not come from dout")
        return Outcome("zero", "pass")

    def per_example(self) -> Outcome:
        """Change dY in one row j: row i != j of dx must not move (bit for bit)."""
        if not self.layer.hints.per_example:
            return Outcome("per_example", "skip", message="skipped: the layer does not declare per_example")
        if self.batch is None or self.batch < 2:
            return Outcome("per_example", "skip", message="skipped: needs a batch of at least 2")
        j = self.draws.row
        dout = self.draws.dout.copy()
        dout[j] = self.draws.row_values
        try:
            moved = np.asarray(self._backward(dout)[0])
        except Exception as error:
            return Outcome("per_example", "fail", message=f"backward raised {_describe(error)}")
        before = np.asarray(self.grads[0])
        if moved.shape != before.shape:
            return Outcome("per_example", "fail", message=f"{self.names[0]} changed shape with dout")
        others = np.ones(self.batch, bool)
        others[j] = False
        changed = np.flatnonzero((moved != before).reshape(self.batch, -1).any(axis=1) & others)
        if len(changed):
            return Outcome("per_example", "fail", gradient=self.names[0], message=(
                f"changing row {j} of dout changed rows {changed.tolist()} of {self.names[0]}: "
                f"examples leak into each other"), diagnosis="mixes examples of the batch")
        return Outcome("per_example", "pass")

    def layouts(self) -> Outcome:
        """Fortran-ordered, strided, negative-stride and read-only inputs (and dY) give the same results."""
        worst = Outcome("layouts", "pass", units=0.0)
        for layout in LAYOUTS:
            inputs = tuple(relayout(a, layout) for a in self.pristine)
            dout = relayout(self.draws.dout, layout)
            try:
                out, cache = self.layer.forward(*inputs, **copy.deepcopy(self.hyper))
                grads = self.layer.backward(dout, cache)
            except Exception as error:
                return Outcome("layouts", "fail", message=f"{layout} inputs: {_describe(error)}",
                               diagnosis=f"fails on {layout} arrays")
            names = ("out",) + tuple(f"{n} ({layout})" for n in self.names)
            o = compare("layouts", names, (np.asarray(out), *grads), (self.oracle.out, *self.oracle.vjp),
                        (self.out_scale, *self.scales), self.dtype)
            if o.status == "fail":
                o.diagnosis = o.diagnosis or f"wrong on {layout} arrays"
                return o
            if o.units is not None and o.units > (worst.units or 0):
                worst = o
        return worst


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


def compare(check, names, actuals, expecteds, scales, dtype, *, batch=None) -> Outcome:
    """Worst error over all results, in tolerance units; fails above 1 unit, with a diagnosis."""
    worst = Outcome(check, "pass", units=0.0)
    for name, actual, expected, scale in zip(names, actuals, expecteds, scales):
        actual = np.asarray(actual)
        if actual.shape != expected.shape:
            return Outcome(check, "fail", units=float("inf"), gradient=name, message=(
                f"{name} has shape {actual.shape} but the oracle's has shape {expected.shape}"),
                diagnosis=swapped(names, actuals, expecteds)
                or diagnose(name, actual, expected, scale, dtype, batch=batch))
        if actual.size == 0:
            continue
        if np.shape(scale) != actual.shape:  # a wrongly shaped result has no oracle magnitude
            scale = _normwise(expected)
        units = tolerance.error_units(actual, expected, scale, dtype)
        index = np.unravel_index(int(np.argmax(units)), units.shape)
        if units[index] > worst.units or worst.gradient is None:
            worst = Outcome(check, "pass", float(units[index]), name, tuple(int(i) for i in index),
                            float(expected[index]), float(actual[index]))
            if units[index] > 1.0:
                worst.diagnosis = diagnose(name, actual, expected, scale, dtype, batch=batch)
    if worst.units > 1.0:
        worst.status = "fail"
        worst.message = (
            f"{worst.gradient}{list(worst.index)}: expected {worst.expected:.17g}, got "
            f"{worst.actual:.17g} ({worst.units:.3g} tolerance units)")
    return worst


def _scalar_outcome(check, results) -> Outcome:
    """results: (gradient, actual, expected, bound) per input; fails where |actual - expected| > bound."""
    worst = Outcome(check, "pass", units=0.0)
    for name, actual, expected, bound in results:
        if actual is None:
            return Outcome(check, "fail", units=float("inf"), gradient=name, message=f"{name} has the wrong shape")
        diff = abs(actual - expected)
        units = 0.0 if diff == 0 else (diff / bound if bound > 0 else float("inf"))
        if not np.isfinite(actual):
            units = float("inf")
        if units >= worst.units:
            worst = Outcome(check, "pass", units, name, None, expected, actual)
    if worst.units > 1.0:
        worst.status = "fail"
        worst.message = (f"<{worst.gradient}, t> = {worst.actual:.17g} but the {check} route gives "
                         f"{worst.expected:.17g} ({worst.units:.3g} tolerance units)")
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
    if not problems:
        return Outcome("shapes", "pass")
    kind = "wrong dtype" if all("dtype" in p for p in problems) else "wrong shape"
    return Outcome("shapes", "fail", message="; ".join(problems), diagnosis=kind)


def _check_unchanged(input_names, inputs, pristine, hyper, hyper_given, dout, dout_given) -> Outcome:
    changed = [name for name, a, p in zip(input_names, inputs, pristine) if not _same(a, p)]
    changed += [f"hyperparameter {k!r}" for k in hyper_given if not _same(hyper.get(k), hyper_given[k])]
    if not _same(dout, dout_given):
        changed.append("dout")
    if not changed:
        return Outcome("unchanged", "pass")
    return Outcome("unchanged", "fail", message="modified in place: " + ", ".join(changed),
                   diagnosis="input modified in place")


def _check_aliasing(names, input_names, inputs, dout, cache, grads) -> Outcome:
    held = [(n, a) for n, a in zip(input_names, inputs)] + [("dout", dout)]
    fields = cache._asdict().items() if hasattr(cache, "_asdict") else enumerate(
        cache if isinstance(cache, (tuple, list)) else (cache,))
    held += [(f"cache.{k}", v) for k, v in fields if isinstance(v, np.ndarray)]
    for i, (name, g) in enumerate(zip(names, grads)):
        if not isinstance(g, np.ndarray):
            continue
        others = held + [(other, h) for other, h in zip(names[i + 1:], grads[i + 1:]) if isinstance(h, np.ndarray)]
        for other, array in others:
            if np.shares_memory(g, array):
                return Outcome("aliasing", "fail", gradient=name, message=(
                    f"{name} shares memory with {other}: writing to one changes the other"),
                    diagnosis="returns a view instead of a new array")
    return Outcome("aliasing", "pass")


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
