"""Elementwise activations, y = f(x) entry by entry.   Derivations: docs/derivations/<layer>.md

Each output entry depends on the matching input entry alone, so the Jacobian is diagonal
and the chain rule's sum over outputs keeps a single term:

    dx = dout * f'(x)          x, y, dout, dx: any shape, all the same

with, writing s(z) = 1 / (1 + e^-z) for the logistic function,

    relu        f = max(x, 0)                          f' = 1 if x > 0 else 0          relu.md
    leaky_relu  f = x if x >= 0 else slope x           f' = 1 if x >= 0 else slope     leaky_relu.md
    elu         f = x if x > 0 else alpha (e^x - 1)    f' = 1 if x > 0 else alpha e^x  elu.md
    sigmoid     f = s(x)                               f' = s(x) s(-x)                 sigmoid.md
    tanh        f = tanh x                             f' = 1 - tanh^2 x = 4 s(2x) s(-2x)   tanh.md
    softplus    f = log(1 + e^x)                       f' = s(x)                       softplus.md
    gelu        f = x Phi(x)                           f' = Phi(x) + x phi(x)          gelu.md
                Phi(x) = erfc(-x / sqrt 2) / 2,  phi(x) = e^(-x^2 / 2) / sqrt(2 pi)
    gelu_tanh   f = x/2 (1 + tanh u) = x s(2u)         f' = s(2u) + 2 x u' s(2u) s(-2u)   gelu_tanh.md
                u = sqrt(2/pi) (x + 0.044715 x^3),  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    silu        f = x s(x)                             f' = s(x) + x s(x) s(-x)        silu.md

At the kinks the derivative is a convention, the one JAX uses: relu'(0) = 0,
leaky_relu'(0) = 1, elu'(0) = alpha.

Where the work is done: each forward computes f'(x) beside f(x), from the exponentials
it evaluates anyway, and caches it (``ActivationCache.derivative``, as dropout caches its
scale), so every backward is the one product dout * f'(x), a single pass over memory. The
forward pays for it: a few elementwise passes more and, for tanh, elu and gelu, one more
exponential (f' from tanh x or expm1 x would cancel where |x| is large; erfc does not
yield phi), and the cache owns an array of x's size where it would otherwise refer to x.

Numerics (each page has the reasoning): s(z) and s(z) s(-z) are computed from
e = exp(-|z|), which never overflows, as s = (1 or e) / (1 + e) and s(z) s(-z) = e / (1 + e)^2;
the textbook s (1 - s) loses every digit once s rounds to 1 (z > 17 in float32), and
1 - tanh^2 likewise. erfc, which NumPy lacks, is computed here to a few units in the
last place (see gelu.md). Every result keeps x's dtype. Two-way choices are written as
arithmetic (max(1[z >= 0], e), m + (1 - m) v), each exact, not with np.where, which
branches on every element and costs as much as ten multiplications where signs are mixed.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = [
    "ActivationCache",
    "elu_backward", "elu_forward", "gelu_backward", "gelu_forward",
    "gelu_tanh_backward", "gelu_tanh_forward", "leaky_relu_backward", "leaky_relu_forward",
    "relu_backward", "relu_forward", "sigmoid_backward", "sigmoid_forward",
    "silu_backward", "silu_forward", "softplus_backward", "softplus_forward",
    "tanh_backward", "tanh_forward",
]


class ActivationCache(NamedTuple):
    derivative: np.ndarray  # f'(x): x's shape and dtype, the Jacobian's diagonal, computed by the forward


def _result(y, derivative) -> tuple[np.ndarray, ActivationCache]:
    """(y, cache) as arrays: NumPy's elementwise functions turn a 0-d input into a scalar."""
    return np.asarray(y), ActivationCache(np.asarray(derivative))


def _times_derivative(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = dout * f'(x), into a new array (of dout's shape, 0-d included)."""
    derivative = cache.derivative
    _validate.upstream(dout, derivative.shape, derivative.dtype)
    return (np.multiply(dout, derivative, out=np.empty_like(dout)),)


# ---------------------------------------------------------------------------------------
# The logistic function and its slope, from e = exp(-|z|) in (0, 1].

def _exp_neg_abs(z: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """e^(-scale |z|), in (0, 1] for scale > 0: one new array, scaled and exponentiated in place
    (an explicit out, so that a 0-d z gives an array, not a NumPy scalar that out= refuses)."""
    e = np.abs(z, out=np.empty_like(z))
    e *= -scale
    return np.exp(e, out=e)


def _logistic(z: np.ndarray, e: np.ndarray) -> np.ndarray:
    """s(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0 (multiply 1/(1 + e^-z) by e^z).

    max(1[z >= 0], e) is that numerator, exactly: e <= 1.
    """
    return np.maximum(z >= 0, e) / (1.0 + e)


def _logistic_slope(e: np.ndarray) -> np.ndarray:
    """s(z) s(-z) = e / (1 + e)^2, the same for z and -z; full precision where s(z) rounds to 1."""
    return e / np.square(1.0 + e)


# ---------------------------------------------------------------------------------------
# The piecewise-linear units.

def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = max(x, 0); caches relu'(x) = 1[x > 0] (relu'(0) = 0) in x's dtype.

    x: any shape -> (y: x's shape, ActivationCache).
    """
    _validate.float_array("x", x)
    return _result(np.maximum(x, 0), (x > 0).astype(x.dtype))


def relu_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = dout * 1[x > 0], the mask the forward cached.  dout: x's shape -> (dx: x's shape,)."""
    return _times_derivative(dout, cache)


def leaky_relu_forward(x: np.ndarray, *, slope: float = 0.01) -> tuple[np.ndarray, ActivationCache]:
    """y = x where x >= 0, slope * x elsewhere; slope in [0, 1]. Caches leaky_relu'(x), 1 or slope.

    x: any shape -> (y: x's shape, ActivationCache). max(1[x >= 0], slope) is f' exactly
    (slope <= 1, leaky_relu'(0) = 1), and y = x f'(x): x * 1 is x, slope * x one rounding.
    """
    _validate.float_array("x", x)
    slope = _validate.real_in("slope", slope, 0.0, 1.0)
    derivative = np.maximum(x >= 0, slope, dtype=x.dtype)
    return _result(x * derivative, derivative)


def leaky_relu_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = dout where x >= 0, slope * dout elsewhere: dout times the cached f'.

    dout: x's shape -> (dx: x's shape,).
    """
    return _times_derivative(dout, cache)


def elu_forward(x: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray, ActivationCache]:
    """y = x where x > 0, alpha (e^x - 1) elsewhere; alpha > 0 and finite. Caches elu'(x).

    x: any shape -> (y: x's shape, ActivationCache). expm1 keeps e^x - 1 exact to rounding
    near 0, and min(x, 0) keeps the unused branch from overflowing for large positive x.
    f' = alpha e^x needs its own exponential: y + alpha (= 1 + expm1) cancels to 0 where
    y rounds to -alpha (x < -17 in float32).
    """
    _validate.float_array("x", x)
    alpha = _validate.real_in("alpha", alpha, 0.0, math.inf, low_open=True, high_open=True)
    positive = x > 0
    negative_part = np.minimum(x, 0)
    # f' = 1 where x > 0, alpha e^x elsewhere (elu'(0) = alpha): alpha e^x times 0 or 1, plus 1 or 0
    derivative = alpha * np.exp(negative_part)
    derivative *= ~positive
    derivative += positive
    # y = alpha expm1(min(x, 0)) + max(x, 0): one of the two terms is 0, so the sum is exact
    y = alpha * np.expm1(negative_part)
    y += np.maximum(x, 0)
    return _result(y, derivative)


def elu_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = dout where x > 0, alpha e^x dout elsewhere: dout times the cached f'.

    dout: x's shape -> (dx: x's shape,).
    """
    return _times_derivative(dout, cache)


# ---------------------------------------------------------------------------------------
# The logistic family.

def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = s(x) = 1 / (1 + e^-x); caches s'(x) = s(x) s(-x), both from one e^-|x|.

    x: any shape -> (y: x's shape, ActivationCache).
    """
    _validate.float_array("x", x)
    e = _exp_neg_abs(x)
    return _result(_logistic(x, e), _logistic_slope(e))


def sigmoid_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = s(x) s(-x) dout, the product cached by the forward.  dout: x's shape -> (dx: x's shape,)."""
    return _times_derivative(dout, cache)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = tanh x; caches tanh'(x) = 1 - tanh^2 x, computed as 4 s(2x) s(-2x) from e^(-2|x|).

    x: any shape -> (y: x's shape, ActivationCache).
    """
    _validate.float_array("x", x)
    derivative = _logistic_slope(_exp_neg_abs(x, 2.0))
    derivative *= 4.0
    return _result(np.tanh(x), derivative)


def tanh_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = (1 - tanh^2 x) dout, the factor cached by the forward.  dout: x's shape -> (dx,)."""
    return _times_derivative(dout, cache)


def softplus_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), np.logaddexp(0, x)'s formula: no overflow
    for large x. Caches softplus'(x) = s(x), from the same e^-|x|.

    x: any shape -> (y: x's shape, ActivationCache).
    """
    _validate.float_array("x", x)
    e = _exp_neg_abs(x)
    y = np.log1p(e)
    y += np.maximum(x, 0)
    return _result(y, _logistic(x, e))


def softplus_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = s(x) dout, s(x) cached by the forward.  dout: x's shape -> (dx: x's shape,)."""
    return _times_derivative(dout, cache)


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = x s(x); caches silu'(x) = s(x) + x s(x) s(-x), all from one e^-|x|.

    x: any shape -> (y: x's shape, ActivationCache).
    """
    _validate.float_array("x", x)
    e = _exp_neg_abs(x)
    gate = _logistic(x, e)
    derivative = x * _logistic_slope(e)
    derivative += gate
    return _result(x * gate, derivative)


def silu_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = (s(x) + x s(x) s(-x)) dout, the factor cached by the forward.  dout: x's shape -> (dx,)."""
    return _times_derivative(dout, cache)


_GELU_CUBIC = 0.044715
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_tanh_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = x/2 (1 + tanh u) = x s(2u), u = sqrt(2/pi) (x + 0.044715 x^3); caches
    gelu_tanh'(x) = s(2u) + 2 x u' s(2u) s(-2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).

    x: any shape -> (y: x's shape, ActivationCache). The s(2u) form: 1 + tanh u cancels
    where tanh u rounds to -1 (x < -2.3 in float64 already loses digits). 2u and 2u' come
    from one x^2 (x ** 3 is a slow pow in NumPy), s(2u) and s(2u) s(-2u) from one e^-|2u|.
    """
    _validate.float_array("x", x)
    x2 = np.square(x)
    two_u = (2.0 * _SQRT_2_OVER_PI) * x * (1.0 + _GELU_CUBIC * x2)
    two_du = (2.0 * _SQRT_2_OVER_PI) * (1.0 + (3.0 * _GELU_CUBIC) * x2)
    e = _exp_neg_abs(two_u)
    gate = _logistic(two_u, e)
    derivative = x * two_du * _logistic_slope(e)
    derivative += gate
    return _result(x * gate, derivative)


def gelu_tanh_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = (s(2u) + 2 x u' s(2u) s(-2u)) dout, the factor cached by the forward.

    dout: x's shape -> (dx: x's shape,).
    """
    return _times_derivative(dout, cache)


# ---------------------------------------------------------------------------------------
# GELU with the exact normal distribution function, and erfc.

def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, ActivationCache]:
    """y = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (erfc, not 1 + erf: no cancellation for x < 0);
    caches gelu'(x) = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi), reusing the costly Phi(x).

    x: any shape -> (y: x's shape, ActivationCache).
    """
    _validate.float_array("x", x)
    cdf = 0.5 * _erfc(x * -math.sqrt(0.5))
    pdf = np.exp(-0.5 * np.square(x))
    pdf *= 1.0 / math.sqrt(2.0 * math.pi)
    derivative = x * pdf
    derivative += cdf
    return _result(x * cdf, derivative)


def gelu_backward(dout: np.ndarray, cache: ActivationCache) -> tuple[np.ndarray]:
    """dx = (Phi(x) + x phi(x)) dout, the factor cached by the forward.  dout: x's shape -> (dx,)."""
    return _times_derivative(dout, cache)


_TAYLOR_TERMS = tuple((-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(13))
"""erf(t) = 2/sqrt(pi) sum_n (-1)^n t^(2n+1) / (n! (2n + 1)), n = 0..12: for |t| < 1/2 the
first term left out is below 2^-62 of the sum."""
_STEP = 0.5
_TRAPEZOID_NODES = tuple((math.exp(-(n * _STEP) ** 2), (n * _STEP) ** 2) for n in range(1, 14))
"""(e^(-n^2 h^2), n^2 h^2) for n = 1..13, h = 1/2: the nodes left out add less than e^-49 ~ 2^-70."""
_POLE_LIMIT = math.pi / _STEP


def _exp_neg_square(a: np.ndarray) -> np.ndarray:
    """e^(-a^2) without the rounding of a^2, which would cost relative error a^2 eps (700 eps at a = 26).

    Veltkamp's split a = hi + lo, hi holding the upper half of the p-bit significand (the
    constant is 2^ceil(p/2) + 1: 2^27 + 1 in float64, 2^12 + 1 in float32), makes hi^2
    exact; then e^(-a^2) = e^(-hi^2) e^(-(a - hi)(a + hi)), the second argument tiny.
    """
    split = 2.0 ** ((np.finfo(a.dtype).nmant + 2) // 2) + 1.0
    scaled = a * split
    hi = scaled - (scaled - a)
    return np.exp(-hi * hi) * np.exp(-(a - hi) * (a + hi))


def _erfc(t: np.ndarray) -> np.ndarray:
    """erfc(t) = 2/sqrt(pi) int_t^inf e^(-u^2) du, elementwise, in t's dtype.

    Within 4 ulp of libm's erfc (3.95 the worst of 10^6 random t, float64 and float32).

    |t| < 1/2: 1 - erf(t), erf by its Taylor series (erfc >= 0.47 there: no cancellation).
    |t| >= 1/2: a = |t|, and erfc(a) = (a/pi) e^(-a^2) int e^(-v^2) / (a^2 + v^2) dv over the
    real line, by the trapezoidal rule of step h = 1/2 (Chiarella & Reichel, 1968):
        erfc(a) ~ (2 a h / pi) e^(-a^2) [1/(2 a^2) + sum_n e^(-n^2 h^2) / (n^2 h^2 + a^2)]
                  + 2 / (1 - e^(2 pi a / h))       (the last term only for a < pi / h),
    relative error e^(-pi^2/h^2) = 7e-18; the last term corrects for the integrand's poles
    at v = +-i a. Then erfc(t) = 2 - erfc(a) for t < 0. docs/derivations/gelu.md derives it.
    """
    # Branches are evaluated everywhere (no boolean gathers), each on an argument clamped to
    # its own range, so neither overflows: erfc(30) is 0 in float64 already.
    a = np.clip(np.abs(t), 0.5, 30.0)
    a2 = a * a
    total = np.zeros_like(a)
    for weight, node in reversed(_TRAPEZOID_NODES):  # smallest terms first: less rounding
        total += weight / (node + a2)
    total += 0.5 / a2
    tail = (2.0 * _STEP / math.pi) * a * _exp_neg_square(a) * total
    pole = 2.0 / (1.0 - np.exp(np.minimum((2.0 * math.pi / _STEP) * a, 2.0 * _POLE_LIMIT ** 2)))
    tail = tail + np.where(a < _POLE_LIMIT, pole, 0.0)
    tail = np.where(t < 0, 2.0 - tail, tail)

    near = np.clip(t, -0.5, 0.5)
    near2 = near * near
    series = _TAYLOR_TERMS[-1]
    for coefficient in _TAYLOR_TERMS[-2::-1]:
        series = series * near2 + coefficient
    return np.where(np.abs(t) < 0.5, 1.0 - (2.0 / math.sqrt(math.pi)) * near * series, tail)
