"""JAX specifications of the activations (``reference/activations.py``).

Each forward is JAX's own function (``jax.nn.relu``, ``jax.nn.gelu``, ...), not the NumPy
formula. Where JAX's *default* derivative rule is inaccurate in float64 the spec asks the
lax primitive for its accurate one (``accuracy=HIGHEST``) or uses the definition directly,
so that the oracle, not the layer, is never the inaccurate side. Measured against 80-bit
long-double values with the magnitude below, over |x| <= 40:

* ``jax.nn.sigmoid`` differentiates as s (1 - s), ``jnp.tanh`` as (1 + t)(1 - t),
  ``jnp.expm1`` (inside ``jax.nn.elu``) as expm1(x) + 1: each cancels in saturation, up to
  10^13 tolerance units at |x| = 37 (past half a unit from |x| = 1.8 for tanh, 3.6 for
  sigmoid, 5 for elu). ``lax.logistic``/``lax.tanh``/
  ``lax.expm1`` with ``accuracy=HIGHEST`` differentiate as s(x) s(-x), 4 s(2x) s(-2x) and
  e^x: within 0.2 units everywhere.
* ``jax.nn.softplus`` differentiates as exp(x - softplus(x)), which loses |x| ulp (1 unit
  at x = 30); the definition log1p(exp(x)) differentiates as e^x / (1 + e^x), within 0.15
  units (and does not overflow in float64 for |x| < 709, far beyond the strategy's range).
* ``jax.nn.gelu(approximate=True)`` differentiates tanh the default way (3 units at x = 6)
  and computes 1 + tanh(u), which cancels for x < -2.3 (its float64 *forward* is off by
  10^14 units at x = -7). The spec writes the definition x/2 (1 + tanh u) with the accurate
  tanh, whose forward still cancels there: its inputs stay above -1.5 (0.2 units there,
  0.3 at -2, 3 at -3, before the reference's own error), and the reference's negative
  tail, where it uses x s(2u) instead, is checked against 60-digit decimal arithmetic in
  tests/layers/test_activations.py.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import activations as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.oracles import ELEMENTWISE_LENGTH
from verification.space import Space
from verification.strategies import arrays, draw_shape, floats, signed, values

WIDE = 30.0
"""Half the entries are drawn from [-2, 2], where the curves bend, half from [-30, 30], where
they saturate: s(30) rounds to 1 in float32 (so s (1 - s) would be 0) and e^-30 is far
below float32's eps, so a backward that is not stable there fails."""
KINK_GAP = 0.05
"""relu, leaky_relu and elu entries stay at least this far from the kink at 0 (by
construction: drawn from [-bound, -0.05] or [0.05, bound]). The derivative at 0
is a convention, pinned in the tests rather than proved; the finite-difference check moves
an entry by h |t| <= 2^-12 * 5 ~ 1.2e-3, 40 times less than the gap."""
GELU_TANH_LOW = -1.5
"""gelu_tanh inputs stay above this: see the module docstring."""
HIGHEST = lax.AccuracyMode.HIGHEST


def jax_relu(x):
    return jax.nn.relu(x)


def jax_leaky_relu(x, *, slope):
    return jax.nn.leaky_relu(x, negative_slope=slope)


def jax_elu(x, *, alpha):
    return jnp.where(x > 0, x, alpha * lax.expm1(jnp.minimum(x, 0.0), accuracy=HIGHEST))


def jax_sigmoid(x):
    return lax.logistic(x, accuracy=HIGHEST)


def jax_tanh(x):
    return lax.tanh(x, accuracy=HIGHEST)


def jax_softplus(x):
    return jnp.log1p(jnp.exp(x))


def jax_gelu(x):
    return jax.nn.gelu(x, approximate=False)


def _gelu_tanh_u(x):
    return math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)


def jax_gelu_tanh(x):
    """x (1 + tanh u) / 2 written as x logistic(2u): the two are equal, but 1 + tanh u cancels to 0
    once u < -19 (tanh u rounds to -1) where the true gate, e^(2u), is still ~1e-17 or far above
    the smallest float64 (gpt's MLP drew such pre-activations)."""
    return x * _gelu_tanh_gate(x)


def jax_silu(x):
    return x * lax.logistic(x, accuracy=HIGHEST)


# ----------------------------------------------------------------------------------------
# The error magnitude.
#
# The default scales treat the output and the gradient differently: the output's is
# |y| + |f'(x)| |x|, its own rounding plus x known to relative eps (the condition of f);
# the gradient's is |J|^T |dY| = |f'(x) dY| only. For a linear layer that is enough: J does
# not depend on x. Here it does, and two things escape |f'(x) dY|:
#
# 1. The condition of f'. A backward computes f'(x) through rounded intermediates (x / sqrt 2,
#    2u, e^-|x|, ...), as if evaluating f' at a perturbed x, so the gradient g = f'(x) dY
#    gets the output's treatment: |g| + |dg/dx| |x| = |f'(x) dY| + |f''(x) dY| |x|.
# 2. The product rule. gelu, gelu_tanh and silu are f = x G(x) with a gate G (Phi, s(2u),
#    s), and every derivation (JAX's too) computes f' = G + x G' as a sum of two terms.
#    They cancel where f' crosses 0 (x = -0.75 for gelu, -1.28 for silu) and partly around
#    f's inflexion (x = -1.42 for gelu_tanh, where f'' = 0 and 1. adds nothing); their
#    rounding is a few eps (|G| + |x G'|), not a few eps |f'|. For these three layers
#    |G| + |x G'| stands for |f'| in 1.
#
# With the default scales correct float64 backwards fail (gelu 1.1 units, silu 2.5: there
# even JAX's vjp and jacobian disagree beyond the bound); with 1. alone gelu_tanh reaches
# 0.8 units on a dense grid, with 2. as well 0.5. The Jacobian is diagonal, so every term
# comes from forward mode, one jvp each, at any size.

def _elementwise_magnitude(f, arrays, hyper, dout, *, gate=None):
    (x,) = arrays
    ones = jnp.ones_like(x)
    out, slope = jax.jvp(f, (x,), (ones,))

    def grad(at):
        return jax.vjp(f, at)[1](dout)[0]

    _, grad_slope = jax.jvp(grad, (x,), (jnp.abs(x),))  # f''(x) dY |x|
    if gate is None:
        terms = jnp.abs(slope)
    else:
        g, dg = jax.jvp(gate, (x,), (ones,))
        terms = jnp.abs(g) + jnp.abs(x * dg)
    return jnp.abs(out) + jnp.abs(slope * x), (terms * jnp.abs(dout) + jnp.abs(grad_slope),)


def _gelu_tanh_gate(x):
    return lax.logistic(2.0 * _gelu_tanh_u(x), accuracy=HIGHEST)


_gelu_magnitude = functools.partial(_elementwise_magnitude, gate=jax.scipy.special.ndtr)
_gelu_tanh_magnitude = functools.partial(_elementwise_magnitude, gate=_gelu_tanh_gate)
_silu_magnitude = functools.partial(_elementwise_magnitude, gate=jax_sigmoid)


# ----------------------------------------------------------------------------------------
# The input space.

@st.composite
def elementwise_configs(draw):
    """Any shape of rank 0-4 and at most ELEMENTWISE_LENGTH elements: the oracle evaluates
    each as one zero-padded vector of that length, so all of them share one compiled program."""
    rank = draw(st.integers(0, 4))
    return {"shape": draw_shape(draw, rank, low=0, high=8, max_size=ELEMENTWISE_LENGTH)}


ELEMENTWISE_EDGES = (
    {"shape": ()},                      # a 0-d input stays a 0-d array
    {"shape": (0, 3)},                  # an empty batch
    {"shape": (1, 1)},                  # a single element
    {"shape": (4, 3)},                  # a matrix
    {"shape": (2, 3, 2)},               # rank 3
    {"shape": (ELEMENTWISE_LENGTH,)},   # exactly the oracle's padded length: no padding at all
)

SMOOTH = values() | values(-WIDE, WIDE)
AWAY_FROM_KINK = signed(KINK_GAP) | signed(KINK_GAP, WIDE)
GELU_TANH_RANGE = values() | values(GELU_TANH_LOW, WIDE)


def activation_space(elements, **hyper) -> Space:
    """x of any configuration's shape with the given elements; float hyperparameters (traced: free)."""
    def examples(config):
        return st.tuples(st.tuples(arrays(config["shape"], elements=elements)), st.fixed_dictionaries(hyper))

    return Space(elementwise_configs(), examples, edges=ELEMENTWISE_EDGES)


# Bad calls: every activation refuses what is not a float32/float64 array.
BAD_X = (
    ("a list", [1.0, 2.0], TypeError, "x must be a numpy.ndarray of floats, got list"),
    ("integers", np.array([1, 2]), TypeError, "x has dtype int64 (shape (2,)) but float32 or float64"),
    ("float16", np.ones((2, 3), np.float16), TypeError,
     "x has dtype float16 (shape (2, 3)) but float32 or float64 is expected"),
)


def _errors(*own, **hyper) -> tuple[ErrorCase, ...]:
    """The bad x's (with valid ``hyper``), then the layer's ``own`` bad calls (rows of error_cases)."""
    return ErrorCase.literal_rows(*((f"x is {what}", (x,), hyper, error, message) for what, x, error, message in BAD_X), *own)


def _activation(name, jax_forward, inputs, magnitude=_elementwise_magnitude, errors=_errors(), **bench_hyper):
    def bench(rng):
        """A transformer MLP's hidden layer: x of (256, 4096), N(0, 3^2), across the curve's bend."""
        return BenchCase((3.0 * rng.standard_normal((256, 4096)),), bench_hyper)

    return Layer(name, getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward"), jax_forward,
                 inputs, magnitude=magnitude, hints=Hints(per_example=True, elementwise=True), errors=errors,
                 bench=bench)


relu = _activation("relu", jax_relu, activation_space(AWAY_FROM_KINK))
# slope 0 (relu) and 1 (the identity) are the ends of the range.
leaky_relu = _activation(
    "leaky_relu", jax_leaky_relu, activation_space(AWAY_FROM_KINK, slope=floats(0.0, 1.0)),
    errors=_errors(("slope above 1", (np.ones(2),), {"slope": 1.5}, ValueError,
                    "slope is 1.5 but must lie in [0.0, 1.0]"),
                   ("slope a string", (np.ones(2),), {"slope": "0.1"}, TypeError,
                    "slope must be a real number, got str '0.1'"),
                   ("slope passed by position", (np.ones(2), 0.1), {}, TypeError, "positional argument"),
                   slope=0.1),
    slope=0.01)
elu = _activation(
    "elu", jax_elu, activation_space(AWAY_FROM_KINK, alpha=floats(0.05, 3.0)),
    errors=_errors(("alpha 0", (np.ones(2),), {"alpha": 0.0}, ValueError, "alpha is 0.0 but must lie in (0.0, inf)"),
                   ("alpha infinite", (np.ones(2),), {"alpha": math.inf}, ValueError,
                    "alpha is inf but must lie in (0.0, inf)"),
                   ("alpha NaN", (np.ones(2),), {"alpha": math.nan}, ValueError, "alpha is nan"),
                   alpha=0.5),
    alpha=1.0)
sigmoid = _activation("sigmoid", jax_sigmoid, activation_space(SMOOTH))
tanh = _activation("tanh", jax_tanh, activation_space(SMOOTH))
softplus = _activation("softplus", jax_softplus, activation_space(SMOOTH))
gelu = _activation("gelu", jax_gelu, activation_space(SMOOTH), _gelu_magnitude)
gelu_tanh = _activation("gelu_tanh", jax_gelu_tanh, activation_space(GELU_TANH_RANGE), _gelu_tanh_magnitude)
silu = _activation("silu", jax_silu, activation_space(SMOOTH), _silu_magnitude)


# ----------------------------------------------------------------------------------------
# The reference forwards cache f'(x) and the backwards only multiply dout by it, so most
# variants and mutants below are forwards with the reference output and another f' cached:
# the derivative is computed in the forward, so that is where its bugs live.

def _caching(name, derivative):
    """``name``'s reference forward, with ``derivative(x, **hyper)`` cached as f'(x) in x's dtype."""
    forward = getattr(ref, f"{name}_forward")

    def forward_caching(x, **hyper):
        out, _ = forward(x, **hyper)
        return out, ref.ActivationCache(np.asarray(derivative(x, **hyper)).astype(x.dtype))

    return forward_caching


def _logistic(z):
    return ref.sigmoid_forward(np.asarray(z))[0]  # arithmetic on a 0-d array returns a NumPy scalar


def _logistic_slope(z):
    return _logistic(z) * _logistic(-z)


_erfc = np.vectorize(math.erfc, otypes=[float])  # libm's, entry by entry: not the reference's own erfc


def _normal_cdf(x):
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _normal_pdf(x):
    return np.exp(-0.5 * np.square(x)) / math.sqrt(2.0 * math.pi)


# ----------------------------------------------------------------------------------------
# Correct variants: other ways to write the same derivatives, which the verifier must accept.

def _relu_forward_mask(x):
    """relu' cached as a boolean mask: a byte an entry instead of x's itemsize."""
    return np.asarray(np.maximum(x, 0)), ref.ActivationCache(np.asarray(x > 0))


VARIANTS = (
    Variant("relu", "mask", "the forward caches the boolean mask x > 0, the backward returns dout * mask",
            lambda dout, c: (np.multiply(dout, c.derivative, out=np.empty_like(dout)),),
            forward=_relu_forward_mask),
    Variant("leaky_relu", "where", "f' selected by np.where(x >= 0, 1, slope)",
            forward=_caching("leaky_relu", lambda x, slope: np.where(x >= 0, 1.0, slope))),
    Variant("tanh", "sech", "1 / cosh^2 x instead of 4 s(2x) s(-2x)",
            # cosh is accurate to an ulp and overflows only past |x| = 89 (float32)
            forward=_caching("tanh", lambda x: 1 / np.square(np.cosh(x)))),
    Variant("sigmoid", "product", "s(x) * s(-x) from two stable forwards",
            forward=_caching("sigmoid", _logistic_slope)),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _gelu_tanh_derivative_without_cubic(x):
    """u' taken as sqrt(2/pi), the derivative of the linear part of u only."""
    two_u = 2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return _logistic(two_u) + x * 2 * math.sqrt(2 / math.pi) * _logistic_slope(two_u)


def _relu_backward_in_place(dout, cache):
    """dx computed in the cache's own array: it aliases the cache, and the next backward multiplies by dx."""
    return (np.multiply(cache.derivative, dout, out=cache.derivative),)


MUTANTS = (
    Mutant("relu", "passes_negatives", "dx = dout everywhere: the mask is forgotten",
           lambda dout, c: (dout.copy(),), bug='partial'),
    Mutant("relu", "mask_from_dout", "masks where dout > 0 instead of where x > 0",
           lambda dout, c: (np.where(dout > 0, dout, 0),), bug='formula'),
    Mutant("relu", "product_in_cache", "dx = dout * mask written into the cached mask", _relu_backward_in_place, bug='in_place'),
    Mutant("leaky_relu", "slope_on_wrong_side", "slope applied where x >= 0, 1 where x < 0",
           forward=_caching("leaky_relu", lambda x, slope: np.where(x >= 0, slope, 1.0)), bug='formula'),
    Mutant("leaky_relu", "negatives_dropped", "relu's derivative: 0 where x < 0, slope forgotten",
           forward=_caching("leaky_relu", lambda x, slope: x >= 0), bug='formula'),
    Mutant("elu", "alpha_times_x", "alpha x instead of alpha e^x on the negative side",
           forward=_caching("elu", lambda x, alpha: np.where(x > 0, 1.0, alpha * x)), bug='formula'),
    Mutant("elu", "output_not_plus_alpha", "y instead of y + alpha on the negative side: alpha (e^x - 1) "
           "where alpha e^x was meant",
           forward=_caching("elu", lambda x, alpha: np.where(x > 0, 1.0, alpha * np.expm1(np.minimum(x, 0)))), bug='formula'),
    Mutant("sigmoid", "s_not_s_one_minus_s", "s' = s instead of s (1 - s)", forward=_caching("sigmoid", _logistic), bug='formula'),
    Mutant("sigmoid", "slope_of_output", "s'(y) instead of s'(x): the output taken for x",
           forward=_caching("sigmoid", lambda x: _logistic_slope(_logistic(x))), bug='formula'),
    Mutant("tanh", "one_minus_x_squared", "1 - x^2 instead of 1 - tanh^2 x",
           forward=_caching("tanh", lambda x: 1 - np.square(x)), bug='formula'),
    Mutant("tanh", "square_forgotten", "1 - tanh x instead of 1 - tanh^2 x",
           forward=_caching("tanh", lambda x: 1 - np.tanh(x)), bug='formula'),
    Mutant("softplus", "sigmoid_of_minus_x", "s(-x): the sign inside the exponential flipped",
           forward=_caching("softplus", lambda x: _logistic(-x)), bug='formula'),
    Mutant("softplus", "sigmoid_again", "s'(x) = s(x) s(-x): the derivative of the derivative",
           forward=_caching("softplus", _logistic_slope), bug='formula'),
    Mutant("gelu", "missing_x_pdf", "Phi(x) alone: the product rule's x phi(x) term dropped",
           forward=_caching("gelu", _normal_cdf), bug='formula'),
    Mutant("gelu", "pdf_without_x", "Phi(x) + phi(x): the factor x of the second term dropped",
           forward=_caching("gelu", lambda x: _normal_cdf(x) + _normal_pdf(x)), bug='formula'),
    Mutant("gelu_tanh", "cubic_term_dropped", "u' = sqrt(2/pi): the 0.134145 x^2 of u' forgotten",
           forward=_caching("gelu_tanh", _gelu_tanh_derivative_without_cubic), bug='formula'),
    Mutant("gelu_tanh", "exact_gelu_derivative", "the erf GELU's derivative, off by ~1e-3",
           forward=_caching("gelu_tanh", lambda x: ref.gelu_forward(x)[1].derivative), bug='formula'),
    Mutant("silu", "missing_x_term", "s(x) alone: the product rule's x s'(x) dropped",
           forward=_caching("silu", _logistic), bug='formula'),
    Mutant("silu", "missing_s_term", "x s'(x) alone: the product rule's s(x) dropped",
           forward=_caching("silu", lambda x: x * _logistic_slope(x)), bug='formula'),
)
