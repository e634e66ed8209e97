"""The tolerance policy: how far a correct result may be from the float64 oracle. Every
check asks this module for its bound; nothing else computes one.

A plain relative tolerance does not work: cancellation gives correct float32 linear
backwards elementwise relative errors up to 0.6 (../shared/MEASUREMENTS.md). We use
instead the componentwise forward-error bound of floating-point summation. A result
computed as a sum of terms t_1 ... t_K has, in working precision u = eps / 2,

    |computed - exact| <= gamma_K * sum_k |t_k|,        gamma_K = K u / (1 - K u)

in the worst case, and about lambda * sqrt(K) * u * ||t||_2 <= lambda * u * sum_k |t_k|
with high probability for rounding errors of random sign (Higham & Mary, 2019). So the
scale of the error of each element is the *magnitude* S = sum_k |t_k|, and we allow

    |actual - expected| <= C * (eps(dtype) * S + tiny(dtype) + eps(dtype) * tiny(dtype) * U),   C = 8,

measured in *tolerance units* (1.0 = at the bound). For a backward dX = J^T dY the terms
are J_ki dY_k, so S = |J|^T |dY|; for the linear layer that is |dY| |W|^T, and there the
bound never failed a correct implementation over contraction lengths 1 ... 262144 in
float32 and float64 (worst seen 2.3 units, so C = 8 leaves 3.5x headroom), while a
wrong formula is off by O(|g|) >> eps * S. The same C covers float64 runs, where the
reference and JAX both round (each within ~C/2), and float32 runs, compared with a
float64 oracle evaluated on the same float32-rounded inputs (so input rounding, which
is not the layer's error, is excluded). Layers whose formulas cancel inside J (say
normalisation) give their own magnitude: the sum of |terms| their formula adds up.

The ``tiny`` term (the smallest normal number of the dtype) is the absolute error of
results below the normal range, where precision is absolute, not relative: a float32
product of small values underflows, and XLA flushes subnormals to zero, so JAX and
NumPy may differ there by up to ``tiny`` whatever eps says.

The ``U`` term is underflow *inside* a formula. An intermediate v below the normal range
is held with absolute error up to its subnormal spacing, eps * tiny, not eps |v|; a later
step that divides by it or takes its logarithm amplifies that by |d result / d v|, which
the magnitude S (built from exact values) knows nothing of. A layer's ``magnitude`` may
return U = sum over such intermediates of |d result / d v|: for the textbook softmax loss,
-log p_y with p_y = exp(z_y - max z) / sum, the loss carries 1 / (N p_y) for each example.
For a normal v the term adds at most C eps |d result / d v| tiny <= C eps of the result's
own size: nothing; for p_y = e^-94 in float32 (a subnormal) it is what lets the correct
formula pass, while float64, whose subnormals start at 1e-308, is unaffected.

Which scale applied is part of every report: the layer's ``magnitude``, the Jacobian's
|J|^T |dY|, or, when neither is available (no magnitude and a Jacobian over the memory
budget), the normwise fallback max |expected|, with the reason. The scale is the same
whichever checks are selected.

Verdicts. A result beyond the componentwise bound but within the *normwise* one,

    max |actual - expected| <= C * (eps * max S + tiny + eps * tiny * max U),

has the right formula and loses digits where the true value is small against the terms
it is computed from (saturation, cancellation, underflow): *inaccurate*, not wrong.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

C = 8.0
"""Headroom over the rounding-error scale; see the module docstring for its derivation."""


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def tiny(dtype) -> float:
    """The smallest normal number: below it precision is absolute (see the module docstring)."""
    return float(np.finfo(np.dtype(dtype)).tiny)


class Scale(NamedTuple):
    """The error scale of one result array: S elementwise and, optionally, U (see above)."""

    magnitude: np.ndarray
    underflow: np.ndarray | None = None


def bound(scale: Scale, dtype) -> np.ndarray:
    """C (eps S + tiny + eps tiny U), elementwise, in float64."""
    e, t = eps(dtype), tiny(dtype)
    result = e * np.asarray(scale.magnitude, dtype=np.float64) + t
    if scale.underflow is not None:
        result = result + e * t * np.asarray(scale.underflow, dtype=np.float64)
    return C * result


def units(actual, expected, scale: Scale, dtype) -> np.ndarray:
    """Elementwise |actual - expected| / bound, in float64: 0 where both agree exactly; inf
    where ``actual`` is NaN or infinite while ``expected`` is finite."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(actual - expected)
        result = np.where(diff == 0, 0.0, diff / bound(scale, dtype))
    return np.where(np.isnan(result), np.inf, result)


def error_units(actual, expected, magnitude, dtype) -> np.ndarray:
    """``units`` for a plain magnitude S (no underflow term)."""
    return units(actual, expected, Scale(magnitude), dtype)


def normwise_units(actual, expected, scale: Scale, dtype) -> float:
    """max |actual - expected| against the bound at the array's largest scale (see above)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = float(np.max(np.abs(actual - expected)))
    if not np.isfinite(diff):
        return float("inf")
    widest = Scale(np.max(scale.magnitude, initial=0.0),
                   None if scale.underflow is None else np.max(scale.underflow, initial=0.0))
    return 0.0 if diff == 0 else diff / float(bound(widest, dtype))


def fallback(expected) -> Scale:
    """The normwise scale when no magnitude is known: the largest |element| of the oracle's result."""
    expected = np.asarray(expected)
    return Scale(np.full(expected.shape, np.max(np.abs(expected)) if expected.size else 0.0))


class Scales(NamedTuple):
    """The scales of one example: per output, per gradient (for dY and dY2), and their source."""

    outs: tuple[Scale, ...]
    grads: tuple[Scale, ...]
    grads2: tuple[Scale, ...]
    source: str  # how the scale was obtained, for the report


def scales(oracle, budget_note: str = "") -> Scales:
    """The policy: the layer's magnitude, else |J|^T |dY| (and |out| + sum_k |J_k| |a_k|),
    else the normwise fallback, with the reason (``budget_note``: why the Jacobian is absent)."""
    if oracle.grad_scales is not None:
        out_u = oracle.out_underflow or (None,) * len(oracle.outs)
        grad_u = oracle.grad_underflow or (None,) * len(oracle.vjp)
        return Scales(tuple(Scale(s, u) for s, u in zip(oracle.out_scales, out_u)),
                      tuple(Scale(s, u) for s, u in zip(oracle.grad_scales, grad_u)),
                      tuple(Scale(s, u) for s, u in zip(oracle.grad_scales2, grad_u)),
                      "the layer's magnitude" if oracle.scale_source == "magnitude" else "|J|^T |dY|")
    reason = budget_note or "the layer gives no magnitude and the Jacobian was not computed"
    return Scales(tuple(fallback(o) for o in oracle.outs), tuple(fallback(g) for g in oracle.vjp),
                  tuple(fallback(g) for g in oracle.vjp2), f"normwise fallback: {reason}")


def scalar_bound(scale: Scale, tangent, grad, dtype) -> float:
    """Bound on <grad, t> - <dY, J t>: each gradient entry within C eps S, weighted by |t|,
    plus the rounding of the dot product itself (<|grad|, |t|>)."""
    weight = np.abs(np.asarray(tangent, dtype=np.float64))
    terms = Scale(np.sum(np.asarray(scale.magnitude) * weight) + np.sum(np.abs(np.asarray(grad, np.float64)) * weight),
                  None if scale.underflow is None else np.sum(np.asarray(scale.underflow) * weight))
    return float(bound(terms, dtype))


def linearity_scale(a: float, b: float, first: Scale, second: Scale, g1, g2) -> Scale:
    """backward(a dY + b dY2) against a backward(dY) + b backward(dY2): three backwards, each
    within C eps S, so 2 (|a| S1 + |b| S2); and the layer's own values |a g1| + |b g2|, so that a
    backward that is linear in dY but wrong (its S is not the oracle's) is judged on its own
    numbers rather than on the right gradient's magnitude, which may be 0 where its value is not."""
    magnitude = (2 * (abs(a) * np.asarray(first.magnitude) + abs(b) * np.asarray(second.magnitude))
                 + abs(a) * np.abs(np.asarray(g1, np.float64)) + abs(b) * np.abs(np.asarray(g2, np.float64)))
    underflow = None if first.underflow is None else 2 * (abs(a) + abs(b)) * np.asarray(first.underflow)
    return Scale(magnitude, underflow)


def multilinear_magnitude(f, arrays, hyper, dout):
    """The exact magnitude for a forward that is linear in each input separately.

    For such a layer (linear, affine, convolution, average pooling) every term is a
    product of input entries, so evaluating the forward and its pullback on absolute
    values, |f|(|a|) and |J|^T |dY|, sums exactly the |terms|; it needs no Jacobian,
    so it works at any size (the seed's N = 64, D = M = 4096 case included).
    """
    import jax
    import jax.numpy as jnp

    abs_arrays = tuple(jnp.abs(a) for a in arrays)
    out, pullback = jax.vjp(f, *abs_arrays)
    return out, pullback(jax.tree_util.tree_map(jnp.abs, dout))


def nonnegative_magnitude(f, arrays, hyper, dout):
    """The exact magnitude for a forward whose Jacobian has no negative entry (max pooling,
    dropout, an embedding lookup): the pullback of |dY| at x is then |J|^T |dY| itself, and
    |out| + J |x| (one jvp) is the output's |out| + sum_k |J_k| |a_k|. No Jacobian is built,
    so it costs one light program at any size."""
    import jax
    import jax.numpy as jnp

    out, pullback = jax.vjp(f, *arrays)
    _, moved = jax.jvp(f, tuple(arrays), tuple(jnp.abs(a) for a in arrays))
    out_scale = jax.tree_util.tree_map(lambda o, m: jnp.abs(o) + jnp.abs(m), out, moved)
    return out_scale, pullback(jax.tree_util.tree_map(jnp.abs, dout))
