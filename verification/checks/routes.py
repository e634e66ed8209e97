"""The routes: three ways to know the gradient that share no machinery.

* reverse-mode AD   ``vjp``: the backward equals the ``jax.vjp`` pullback of dY;
                    ``jacobian``: ... equals ``jax.jacobian`` contracted with dY (streamed a
                    few rows at a time beyond the memory budget, skipped with the size and time
                    stated when even that would take too long);
* forward-mode AD   ``jvp``: the adjoint identity <dY, J_k t_k> = <grad_k, t_k>, with
                    ``jax.jvp`` on each input's random tangent;
* no AD at all      ``fd``: central differences of the NumPy *forward* along every t_k at once,
                    <dY, (f(x + h t) - f(x - h t)) / 2h>, against sum_k <grad_k, t_k>;

plus ``forward`` (the NumPy forward equals ``jax_forward``) and ``routes`` (the specification's
routes agree *with each other*, the layer left out: its vjp, jacobian and jvp, and finite
differences of the JAX forward itself; when they do not, the specification or the harness is
suspect, not the layer).
"""
from __future__ import annotations

import numpy as np

from .. import tolerance
from ..oracles import format_bytes, leaves
from .compare import compare, compare_scalars
from .registry import Outcome, check
from .trial import describe, one_in

FD_STEP = 2.0 ** -12
"""Central-difference step along a random tangent t ~ N(0, 1) for inputs the forward is
not linear in. Truncation error is O(h^2 |f'''|); the rounding error of the two forward
evaluations, C eps |f| / h. h = 2^-12 keeps both small in float64 while staying well inside
the strategies' distance from kinks (x +- h t moves each entry by ~1e-3 at most)."""
FD_LINEAR_STEP = 2.0 ** -4
"""Step for a forward linear (affine) in each of its inputs (``Hints.linear_in``): along t it
is then a polynomial, on which Richardson's difference is exact up to rounding, so a large
step shrinks the rounding error C eps |f| / h; 1/16 keeps x +- h t near x, so the oracle's
magnitude of f still bounds that error."""


@check("forward", "route")
def forward(trial) -> Outcome:
    """The NumPy forward equals ``jax_forward``."""
    return compare(trial, "forward", trial.output_names, trial.outs, trial.oracle.outs, trial.scales.outs)


@check("vjp", "route")
def vjp(trial) -> Outcome:
    """Reverse-mode AD: the backward equals the ``jax.vjp`` pullback of a random (never all-ones) dY."""
    return compare(trial, "vjp", trial.names, trial.grads, trial.oracle.vjp, trial.scales.grads)


@check("jacobian", "route", needs_jacobian=True)
def jacobian(trial) -> Outcome:
    """The backward equals ``jax.jacobian(jax_forward)`` contracted with dY: the explicit chain rule."""
    if trial.oracle.jacobian is not None:
        return compare(trial, "jacobian", trial.names, trial.grads, trial.oracle.jacobian, trial.scales.grads)
    if trial.jacobian_fits:
        return Outcome("jacobian", "skip", message=(
            "not on this configuration: the explicit Jacobian is compiled for a bounded set of configurations "
            "(the edges and the first ones explored), the other routes run on every one"))
    return _streamed(trial)


def _streamed(trial) -> Outcome:
    """The explicit chain rule beyond the memory budget: J formed a few rows at a time."""
    from ..streamed import StreamedTimeExceeded, streamed_jacobian_contraction

    over = (f"{trial.cost.describe()}; the full check would need {format_bytes(trial.cost.oracle_bytes())}, "
            f"over the {format_bytes(trial.jacobian_budget)} budget")
    hyper = trial.hyper_given

    def flat(*a):
        import jax.numpy as jnp
        return jnp.concatenate([jnp.ravel(o) for o in leaves(trial.layer.jax_forward(*a, **hyper))])

    dout = np.concatenate([np.ravel(d).astype(np.float64) for d in trial.draws.douts])
    try:
        contracted = streamed_jacobian_contraction(flat, trial.arrays64, dout, time_budget=trial.jacobian_seconds)
    except StreamedTimeExceeded as error:
        return Outcome("jacobian", "skip", message=f"skipped: {over}; {error}")
    outcome = compare(trial, "jacobian", trial.names, trial.grads, contracted, trial.scales.grads)
    if outcome.status == "pass":
        outcome.message = f"streamed: {over}"
    return outcome


def _tangent_product(trial, k) -> float | None:
    grad = np.asarray(trial.grads[k], dtype=np.float64)
    tangent = trial.draws.tangents[k]
    return None if grad.shape != tangent.shape else float(np.sum(grad * tangent))


@check("jvp", "route")
def jvp(trial) -> Outcome:
    """Forward-mode AD: the adjoint identity <dY, J t> = sum_k <grad_k, t_k>, one ``jax.jvp`` along a random t_k of every input."""
    products = [_tangent_product(trial, k) for k in range(len(trial.names))]
    wrong_shape = next((name for name, p in zip(trial.names, products) if p is None), None)
    if wrong_shape is not None:
        return compare_scalars(trial, "jvp", [(wrong_shape, None, 0.0, 0.0)], route="forward-mode route (jax.jvp)")
    bound = sum(tolerance.scalar_bound(trial.scales.grads[k], trial.draws.tangents[k], trial.grads[k], trial.dtype)
                for k in range(len(trial.names)))
    return compare_scalars(trial, "jvp", [(", ".join(trial.names), sum(products), trial.oracle.jvp, bound)],
                           route="forward-mode route (jax.jvp)")


FD_REFINEMENTS = 3
"""Step sizes tried, each 16 times smaller than the last (the grid keeps x +- h t exact down to
2^-22), until the differences are in their asymptotic regime."""
UNRESOLVED = ("skipped: finite differences do not resolve f here (its curvature has a scale below the "
              "smallest step: a normalisation of nearly equal features, a saturating gate)")


def central_difference(trial, outputs_at, step: float) -> tuple[float, float] | None:
    """<dY, (f(x + h t) - f(x - h t)) / 2h> along every input's tangent at once, Richardson at
    h = step and step / 2, and its error bound, in float64; None where no step resolves f.
    ``outputs_at(arrays)`` evaluates f."""
    douts = [d.astype(np.float64) for d in trial.draws.douts]
    out_scales = [np.asarray(s.magnitude) for s in trial.scales.outs]

    def difference(h):
        def at(sign):
            return outputs_at(tuple(np.asarray(a + sign * h * t) for a, t in zip(trial.arrays64, trial.draws.tangents)))
        plus, minus = at(1.0), at(-1.0)
        # each evaluation errs by C eps (|f| terms); at x +- h t the magnitude is the oracle's at x
        # or, where f has grown away from x, the values themselves
        value = sum(float(np.sum(d * (p - m))) for d, p, m in zip(douts, plus, minus)) / (2 * h)
        scale = sum(float(np.sum(np.abs(d) * (2 * s + np.abs(p) + np.abs(m))))
                    for d, s, p, m in zip(douts, out_scales, plus, minus))
        return value, tolerance.C * tolerance.eps(np.float64) * scale / (2 * h)

    for refinement in range(FD_REFINEMENTS):
        h = step / 16 ** refinement
        (coarse, coarse_rounding), (fine, fine_rounding), (finest, finest_rounding) = (
            difference(h), difference(h / 2), difference(h / 4))
        rounding = coarse_rounding + 2 * fine_rounding + finest_rounding
        # the h^2 term shrinks 4-fold a halving (16-fold where it vanishes and h^4 leads): a step that
        # does not resolve f's curvature shows another ratio, and its extrapolation is not to be trusted
        first, second = coarse - fine, fine - finest
        if min(abs(first), abs(second)) <= rounding or 2 <= first / second <= 32:
            # Richardson: (4 fine - coarse) / 3 cancels the h^2 term; |coarse - fine| bounds what is
            # left, and the move of the extrapolation one level finer covers an h^4 term
            richardson, finer = (4 * fine - coarse) / 3, (4 * finest - fine) / 3
            return richardson, abs(first) + abs(richardson - finer) + (4 * fine_rounding + coarse_rounding) / 3
    return None


def _numpy_outputs(trial):
    def outputs_at(arrays):
        out, _ = trial.layer.forward(*arrays, **trial.hyper_given)  # fresh arrays: writing into them harms no one
        return [np.asarray(o, dtype=np.float64) for o in leaves(out)]
    return outputs_at


@check("fd", "route", float64_only=True)
def fd(trial) -> Outcome:
    """No AD at all: central differences of the NumPy forward along every t_k at once against sum_k <grad_k, t_k>."""
    products = [_tangent_product(trial, k) for k in range(len(trial.names))]
    wrong_shape = next((name for name, p in zip(trial.names, products) if p is None), None)
    if wrong_shape is not None:
        return compare_scalars(trial, "fd", [(wrong_shape, None, 0.0, 0.0)], route="finite differences of the forward")
    # a forward affine in each input is a polynomial along t: a large step is exact up to rounding
    linear = set(trial.layer.hints.linear_in) >= set(range(len(trial.names)))
    try:
        differences = central_difference(trial, _numpy_outputs(trial), FD_LINEAR_STEP if linear else FD_STEP)
    except Exception as error:
        return Outcome("fd", "fail", bug="crash", diagnosis="the forward raises near x", message=(
            f"forward raised {describe(error)} at x +- h t"))
    if differences is None:
        return Outcome("fd", "skip", message=UNRESOLVED)
    expected, fd_bound = differences
    bound = sum(tolerance.scalar_bound(trial.scales.grads[k], trial.draws.tangents[k], trial.grads[k], trial.dtype)
                for k in range(len(trial.names)))
    return compare_scalars(trial, "fd", [(", ".join(trial.names), sum(products), expected, bound + fd_bound)],
                           route="finite differences of the forward")


SPEC_DIFFERENCES_EVERY = 8
"""The spec's own finite differences (six more oracle calls, or more where a step is refined)
run on one example in this many (by cotangent seed, so a replay runs them again): a
specification whose derivative rule is wrong is wrong at every point, and at one in four they
were a tenth of a whole catalogue run (measured), the layer's own checks included."""


@check("routes", "route", float64_only=True)
def routes(trial) -> Outcome:
    """The specification's routes agree with each other, the layer left out (its AD, and finite differences of the JAX forward itself): if not, the specification or the harness is suspect."""
    oracle, scales = trial.oracle, trial.scales
    findings = []
    if oracle.jacobian is not None:
        o = compare(trial, "routes", trial.names, oracle.vjp, oracle.jacobian, scales.grads, dtype=np.float64,
                    name_bug=False)
        if o.status == "fail":
            findings.append(f"vjp vs jacobian on {o.gradient}: {o.units:.3g} units")
    bound = sum(tolerance.scalar_bound(scales.grads[k], t, oracle.vjp[k], np.float64)
                for k, t in enumerate(trial.draws.tangents))
    reverse = sum(float(np.sum(oracle.vjp[k] * t)) for k, t in enumerate(trial.draws.tangents))
    if abs(reverse - oracle.jvp) > bound:
        findings.append(f"vjp vs jvp: {reverse:.17g} vs {oracle.jvp:.17g}")
    differences = _spec_differences(trial) if one_in(SPEC_DIFFERENCES_EVERY, trial.cotangent_seed) else None
    if differences is not None:  # (unresolved differences say nothing)
        numeric, fd_bound = differences
        if abs(reverse - numeric) > bound + fd_bound:
            findings.append(f"vjp vs finite differences of jax_forward: {reverse:.17g} vs {numeric:.17g}")
    if not findings:
        return Outcome("routes", "pass")
    return Outcome("routes", "fail", spec=True, diagnosis="the specification or the harness is suspect", message=(
        "the specification's routes disagree with each other (" + "; ".join(findings) + "): the specification "
        "or the harness is suspect, not necessarily the layer"))


def _spec_differences(trial) -> tuple[float, float] | None:
    """``central_difference`` of the JAX forward itself (the compiled program at x +- h t)."""
    def outputs_at(arrays):
        return trial.evaluate(trial.draws.douts, trial.draws.douts, trial.draws.tangents, arrays=arrays,
                              with_jacobian=trial.probe_jacobian).outs
    return central_difference(trial, outputs_at, FD_STEP)
