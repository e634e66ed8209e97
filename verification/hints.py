"""The hints a layer declares (``Hints``), checked against its JAX specification.

A hint changes what the verifier does (the elementwise hint pads every shape into one
program, ``linear_in`` takes a large finite-difference step, ``per_example`` adds a check),
so a wrong hint would be blamed on the layer. Each is checked once per run, on the first
example where it can be, with the compiled oracle; a wrong one raises a one-line
``LayerDefinitionError`` naming the hint.

The pad is checked by ``confirm_bucket`` in the bucket of any failing example, before the
failure is blamed on the layer, and up front, on the first example, unless it is the pad of
the catalogue's layer of that name: the test suite proves those on examples drawn from their
whole spaces (tests/test_catalogue.py), and the check compiles the example as it is, a
program the run needs nowhere else (for the models, seconds each).
"""
from __future__ import annotations

import numpy as np

from . import oracles, tolerance
from .layer import LayerDefinitionError
from .checks.properties import per_example
from .checks.trial import OracleError


def declared(layer) -> set[str]:
    """The hints a run checks up front."""
    hints = layer.hints
    names = {name for name in ("elementwise", "linear_in", "per_example", "pad") if getattr(hints, name)}
    return names - {"pad"} if _proven_pad(layer) else names


def _proven_pad(layer) -> bool:
    from .catalogue import LAYERS

    own = LAYERS.get(layer.name)
    return own is not None and layer.hints.pad is own.hints.pad


def check_hints(trial, pending: set[str], buckets: set) -> set[str]:
    """Check the hints in ``pending`` that this example can test; return those checked
    (``buckets``: those whose padding is confirmed, updated)."""
    if trial.runs.status != "pass" or any(a.size == 0 for a in trial.arrays64):
        return set()
    done = set()
    for hint, testable, test in (("elementwise", _elementwise_testable, _elementwise),
                                 ("linear_in", lambda t: True, _linear_in),
                                 ("per_example", _per_example_testable, _per_example),
                                 ("pad", lambda t: True, _pad)):
        if hint in pending and testable(trial):
            try:
                problem = test(trial)
            except OracleError:  # the specification raised: examine reports it; the hint waits
                continue
            if problem:
                raise LayerDefinitionError(f"{trial.layer.name}: the hint {problem}")
            if problem is not None:  # None: the example could not tell
                done.add(hint)
    if "pad" in done:
        buckets.add(trial.bucket)
    return done


def confirm_bucket(trial, buckets: set) -> None:
    """Before a failure of this example is blamed on the layer: the pad check in its bucket, once
    per bucket (``buckets``, updated); raises ``LayerDefinitionError`` if the padding changes the oracles."""
    if trial.layer.hints.pad is not None and trial.runs.status == "pass" and trial.bucket not in buckets:
        check_hints(trial, {"pad"}, buckets)


def _elementwise_testable(trial) -> bool:
    return len(trial.arrays64) == 1 and trial.arrays64[0].size <= oracles.ELEMENTWISE_LENGTH


def _elementwise(trial):
    x = trial.arrays64[0]
    if len(trial.outs) != 1 or trial.oracle.outs[0].shape != x.shape:
        return "elementwise=True is wrong: the output does not have the input's shape"
    alone = trial.evaluate(trial.draws.douts, trial.draws.douts2, trial.draws.tangents, share_shapes=False)
    shared = trial.oracle
    for got, want in ((shared.outs[0], alone.outs[0]), (shared.vjp[0], alone.vjp[0])):
        if not np.allclose(got, want, rtol=1e-10, atol=1e-300):
            return ("elementwise=True is wrong: evaluated as one padded vector the specification gives other values "
                    "(out[i] must depend on x[i] alone)")
    return ""


def _pad(trial):
    """Padded into its bucket and evaluated as it is, the example gives the same oracles."""
    plain = trial.evaluate(trial.draws.douts, trial.draws.douts2, trial.draws.tangents, share_shapes=False)
    padded = trial.oracle
    pairs = [*zip(plain.outs, padded.outs), *zip(plain.vjp, padded.vjp)]
    for scales in ("grad_scales", "out_scales"):
        if getattr(plain, scales) is not None and getattr(padded, scales) is not None:
            pairs += list(zip(getattr(plain, scales), getattr(padded, scales)))
    for want, got in pairs:
        if np.shape(want) != np.shape(got) or not np.allclose(got, want, rtol=1e-9, atol=1e-12 * max(
                1.0, float(np.max(np.abs(want), initial=0.0)))):
            return ("pad is wrong: evaluated in its bucket the specification gives other values (the padding must "
                    "leave the real outputs, gradients and magnitudes unchanged)")
    if not np.isclose(plain.jvp, padded.jvp, rtol=1e-9, atol=1e-12):
        return "pad is wrong: the forward-mode route changes when the example is padded"
    return ""


def _linear_in(trial):
    """<dY, f(a + t e_k) - f(a)> must equal <dY, J_k t_k> for an input the forward is affine in."""
    base = trial.oracle
    douts = tuple(d.astype(np.float64) for d in trial.draws.douts)
    for k in trial.layer.hints.linear_in:
        if not 0 <= k < len(trial.arrays64):
            return f"linear_in={trial.layer.hints.linear_in} is wrong: there is no input {k}"
        along_k = tuple(t if i == k else np.zeros_like(t) for i, t in enumerate(trial.draws.tangents))
        slope = trial.evaluate(trial.draws.douts, trial.draws.douts2, along_k, with_jacobian=trial.probe_jacobian).jvp
        shifted = trial.arrays64[:k] + (trial.arrays64[k] + trial.draws.tangents[k],) + trial.arrays64[k + 1:]
        moved = trial.evaluate(trial.draws.douts, trial.draws.douts2, trial.draws.tangents, arrays=shifted,
                               with_jacobian=trial.probe_jacobian)
        step = sum(float(np.sum(d * (m - o))) for d, m, o in zip(douts, moved.outs, base.outs))
        rounding = sum(float(np.sum(np.abs(d) * (np.abs(m) + np.abs(o) + np.asarray(s.magnitude))))
                       for d, m, o, s in zip(douts, moved.outs, base.outs, trial.scales.outs))
        bound = 2 * tolerance.C * tolerance.eps(np.float64) * rounding + tolerance.scalar_bound(
            trial.scales.grads[k], trial.draws.tangents[k], base.vjp[k], np.float64)
        if abs(step - slope) > bound:
            return (f"linear_in={trial.layer.hints.linear_in} is wrong: the specification is not affine in input {k} "
                    f"({trial.input_names[k]}): a step t changes <dY, f> by {step:.6g}, its derivative says "
                    f"{slope:.6g}")
    return ""


def _per_example_testable(trial) -> bool:
    return per_example(trial.layer, trial.arrays64, trial.hyper_given) and (trial.batch or 0) >= 2


def _per_example(trial):
    """A tangent in row j of the first input moves no other row of any output (exactly, in AD).
    Informative only where it moves row j itself (batchnorm of two examples moves nothing):
    otherwise the hint stays pending for a later example."""
    n, j = trial.batch, trial.draws.row
    if any(o.ndim == 0 or o.shape[0] != n for o in trial.oracle.outs):
        return "per_example=True is wrong: an output has no batch axis of the first input's length"
    tangents = [np.zeros_like(t) for t in trial.draws.tangents]
    tangents[0][j] = 1.0
    others = [d.astype(np.float64).copy() for d in trial.draws.douts]
    own = [np.zeros_like(d) for d in others]
    for d, mine in zip(others, own):
        mine[j], d[j] = d[j], 0.0
    leak = trial.evaluate(others, others, tuple(tangents), with_jacobian=trial.probe_jacobian).jvp
    if abs(leak) > tolerance.tiny(np.float64):
        return (f"per_example=True is wrong: row {j} of {trial.input_names[0]} moves other rows of the output "
                f"(<dY without row {j}, J t> = {leak:.3g}, not 0)")
    if trial.evaluate(own, own, tuple(tangents), with_jacobian=trial.probe_jacobian).jvp == 0:
        return None  # not informative here
    return ""
