"""The tolerance policy: how far a correct result may be from the float64 oracle.

A plain relative tolerance does not work: cancellation gives correct float32 linear
backwards elementwise relative errors up to 0.6 (../shared/MEASUREMENTS.md). We use
instead the componentwise forward-error bound of floating-point summation. A result
computed as a sum of terms t_1 ... t_K has, in working precision u = eps / 2,

    |computed - exact| <= gamma_K * sum_k |t_k|,        gamma_K = K u / (1 - K u)

in the worst case, and about lambda * sqrt(K) * u * ||t||_2 <= lambda * u * sum_k |t_k|
with high probability for rounding errors of random sign (Higham & Mary, 2019). So the
scale of the error of each element is the *magnitude* S = sum_k |t_k|, and we allow

    |actual - expected| <= C * (eps(dtype) * S + tiny(dtype)),      C = 8,

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
"""
from __future__ import annotations

import numpy as np

C = 8.0
"""Headroom over the rounding-error scale; see the module docstring for its derivation."""


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def tiny(dtype) -> float:
    """The smallest normal number: below it precision is absolute (see the module docstring)."""
    return float(np.finfo(np.dtype(dtype)).tiny)


def error_units(actual, expected, scale, dtype) -> np.ndarray:
    """Elementwise |actual - expected| / (C * (eps(dtype) * scale + tiny(dtype))), in float64.

    0 where both agree exactly; inf where ``actual`` is NaN or infinite while
    ``expected`` is finite.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    bound = C * (eps(dtype) * np.asarray(scale, dtype=np.float64) + tiny(dtype))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(actual - expected)
        units = np.where(diff == 0, 0.0, diff / bound)
    return np.where(np.isnan(units), np.inf, units)


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
    return out, pullback(jnp.abs(dout))
