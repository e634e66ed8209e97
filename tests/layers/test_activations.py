"""Layer-specific cases for reference/activations.py: kink conventions, tails, erfc.

Bad input: each layer's ``errors`` in verification/specs/activations.py."""
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

import verification  # noqa: F401  (jax_enable_x64 before this module touches JAX)
import jax
from reference import activations as act

NAMES = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu", "gelu_tanh", "silu")
HYPER = {"leaky_relu": {"slope": 0.1}, "elu": {"alpha": 0.5}}


def _run(name, x, dout=None):
    out, cache = getattr(act, f"{name}_forward")(x, **HYPER.get(name, {}))
    grads = getattr(act, f"{name}_backward")(np.ones_like(out) if dout is None else dout, cache)
    return out, grads


# ----------------------------------------------------------------------------------------
# The kinks: a convention, the one JAX uses.

@pytest.mark.parametrize("zero", [0.0, -0.0], ids=["+0", "-0"])
@pytest.mark.parametrize("name, jax_function, expected", [
    ("relu", jax.nn.relu, 0.0),
    ("leaky_relu", lambda x: jax.nn.leaky_relu(x, negative_slope=0.1), 1.0),
    ("elu", lambda x: jax.nn.elu(x, alpha=0.5), 0.5),
])
def test_derivative_at_the_kink_is_jaxs(name, jax_function, expected, zero):
    """relu'(0) = 0, leaky_relu'(0) = 1, elu'(0) = alpha: the side JAX's comparisons pick."""
    _, (dx,) = _run(name, np.array([zero]))
    assert dx[0] == expected == float(jax.grad(jax_function)(zero))


# ----------------------------------------------------------------------------------------
# Far tails: exact limits, no overflow warnings, in both dtypes.

BIG = 1000.0
LIMITS = {  # name: (f(-BIG), f'(-BIG), f(+BIG), f'(+BIG))
    "relu": (0.0, 0.0, BIG, 1.0),
    "leaky_relu": (-0.1 * BIG, 0.1, BIG, 1.0),
    "elu": (-0.5, 0.0, BIG, 1.0),
    "sigmoid": (0.0, 0.0, 1.0, 0.0),
    "tanh": (-1.0, 0.0, 1.0, 0.0),
    "softplus": (0.0, 0.0, BIG, 1.0),
    "gelu": (0.0, 0.0, BIG, 1.0),
    "gelu_tanh": (0.0, 0.0, BIG, 1.0),
    "silu": (0.0, 0.0, BIG, 1.0),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_far_tails_are_exact_limits_without_warnings(name, dtype):
    x = np.array([-BIG, BIG], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, (dx,) = _run(name, x)
    low, low_slope, high, high_slope = LIMITS[name]
    np.testing.assert_array_equal(out, np.array([low, high], dtype))
    np.testing.assert_array_equal(dx, np.array([low_slope, high_slope], dtype))


# ----------------------------------------------------------------------------------------
# Tails against 60-digit decimal arithmetic: where the verifier does not draw (|x| > 30,
# and gelu_tanh below -1.5, where its JAX spec cancels), with the verifier's own error scale.

_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def _s(z):
    return 1 / (1 + (-z).exp())


def _decimal_activation(name, z):
    """(f, f') at the Decimal z, from the definitions (no cancelling differences)."""
    if name == "elu":
        return (z, Decimal(1)) if z > 0 else (Decimal("0.5") * (z.exp() - 1), Decimal("0.5") * z.exp())
    if name == "sigmoid":
        return _s(z), _s(z) * _s(-z)
    if name == "tanh":
        return 2 * _s(2 * z) - 1, 4 * _s(2 * z) * _s(-2 * z)
    if name == "softplus":
        return (1 + z.exp()).ln(), _s(z)
    if name == "silu":
        return z * _s(z), _s(z) + z * _s(z) * _s(-z)
    if name == "gelu_tanh":
        k, c = (2 / _PI).sqrt(), Decimal(0.044715)
        two_u, two_du = 2 * k * (z + c * z ** 3), 2 * k * (1 + 3 * c * z ** 2)
        return z * _s(two_u), _s(two_u) + z * two_du * _s(two_u) * _s(-two_u)
    raise ValueError(name)


def _decimal_truth(name, x):
    """f, f' and the scales C-eps bounds are taken of: |f| + |f' x| and |f'| + |f'' x|."""
    with localcontext() as context:
        context.prec = 60
        z, h = Decimal(float(x)), Decimal("1e-20")
        f, df = _decimal_activation(name, z)
        d2f = (_decimal_activation(name, z + h)[1] - _decimal_activation(name, z - h)[1]) / (2 * h)
        return float(f), float(df), float(abs(f) + abs(df * z)), float(abs(df) + abs(d2f * z))


TAIL_POINTS = (-60.0, -35.0, -20.0, -12.0, -8.0, -5.0, -3.0, 35.0, 60.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["elu", "sigmoid", "tanh", "softplus", "silu", "gelu_tanh"])
def test_tails_match_high_precision(name, dtype):
    """Within C (eps S + tiny), the verifier's bound, where S is the verifier's scale."""
    x = np.array(TAIL_POINTS, dtype)
    out, (dx,) = _run(name, x)
    info = np.finfo(dtype)
    for i, point in enumerate(x):
        f, df, out_scale, grad_scale = _decimal_truth(name, point)
        assert abs(float(out[i]) - f) <= 8 * (info.eps * out_scale + info.tiny), (point, out[i], f)
        assert abs(float(dx[i]) - df) <= 8 * (info.eps * grad_scale + info.tiny), (point, dx[i], df)


# ----------------------------------------------------------------------------------------
# erfc, which NumPy lacks, against libm.

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erfc_is_within_four_ulp_of_libm(dtype):
    t = np.concatenate([np.linspace(-6.0, 6.0, 4801), np.geomspace(1e-8, 26.0, 2000)]).astype(dtype)
    t = np.concatenate([t, -t])
    expected = np.array([math.erfc(float(v)) for v in t])
    normal = expected >= np.finfo(dtype).tiny  # below, precision is absolute
    got = act._erfc(t)
    assert got.dtype == dtype
    ulps = np.abs(got.astype(np.float64) - expected)[normal] / (expected[normal] * np.finfo(dtype).eps)
    assert ulps.max() <= 4.0


def test_gelu_matches_the_libm_erfc_formula_to_full_precision():
    """y = x erfc(-x / sqrt 2) / 2 with math.erfc on the same rounded argument, to 5 eps."""
    x = np.array([-5.0, -3.0, -1.0, -0.752, -0.1, 0.3, 1.0, 2.5, 6.0])
    out, _ = act.gelu_forward(x)
    for value, got in zip(x, out):
        expected = float(value) * 0.5 * math.erfc(float(value) * -math.sqrt(0.5))
        assert abs(got - expected) <= 5 * np.finfo(np.float64).eps * abs(expected), value


def test_gelu_caches_its_derivative_for_the_backward():
    """gelu'(x) = Phi(x) + x phi(x), here from libm's erfc and exp."""
    x = np.array([-2.0, 0.0, 2.0])
    _, cache = act.gelu_forward(x)
    expected = [0.5 * math.erfc(-v / math.sqrt(2)) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in x]
    np.testing.assert_allclose(cache.derivative, expected, rtol=1e-13)
