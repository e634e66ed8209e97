"""JAX specifications of the recurrent layers (``reference/recurrent.py``): ``rnn_step``, ``rnn``,
``lstm_step``, ``lstm``, ``gru_step`` and ``gru``.

Each cell is written from its textbook (PyTorch's, for the GRU) equations with ``jnp.einsum``,
``jnp.split`` and the accurate ``lax.logistic``/``lax.tanh`` (``accuracy=HIGHEST``, whose
derivatives s(a) s(-a) and 4 s(2a) s(-2a) do not cancel in saturation; see
``verification/specs/activations.py``), and each sequence is ``lax.scan`` of its cell over
the time axis: JAX derives backpropagation through time itself, nothing here follows the
NumPy loop. The GRU's 1 - z is written s(-a_z), the same number, because 1 - s(a_z)
rounds to 0 once z rounds to 1 and the oracle must not be the inaccurate side.

The error magnitude is a running error bound (below): every quantity the reference
computes, forward and backward, carried with a bound on its rounding error.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

from reference import recurrent as ref
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, grow
from verification.strategies import arrays

HIGHEST = lax.AccuracyMode.HIGHEST


def _sigmoid(a):
    return lax.logistic(a, accuracy=HIGHEST)


def _tanh(a):
    return lax.tanh(a, accuracy=HIGHEST)


# ----------------------------------------------------------------------------------------
# Independent forwards.

def jax_rnn_step(x, h_prev, wx, wh, b):
    return _tanh(jnp.einsum("nd,dh->nh", x, wx) + jnp.einsum("nk,kh->nh", h_prev, wh) + b)


def jax_lstm_step(x, h_prev, c_prev, wx, wh, b):
    a = jnp.einsum("nd,dg->ng", x, wx) + jnp.einsum("nk,kg->ng", h_prev, wh) + b
    i, f, o, g = jnp.split(a, 4, axis=-1)
    c = _sigmoid(f) * c_prev + _sigmoid(i) * _tanh(g)
    return _sigmoid(o) * _tanh(c), c


def jax_gru_step(x, h_prev, wx, wh, bx, bh):
    x_r, x_z, x_n = jnp.split(jnp.einsum("nd,dg->ng", x, wx) + bx, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(jnp.einsum("nk,kg->ng", h_prev, wh) + bh, 3, axis=-1)
    r = _sigmoid(x_r + h_r)
    n = _tanh(x_n + r * h_n)
    return _sigmoid(-(x_z + h_z)) * n + _sigmoid(x_z + h_z) * h_prev  # (1 - z) n + z h


def _over_time(step, carry0, x):
    """lax.scan of ``step(carry, x_t) -> (carry, h_t)`` over x's time axis: (N, T, D) -> (N, T, H)."""
    _, hs = lax.scan(step, carry0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def jax_rnn(x, h0, wx, wh, b):
    def step(h, x_t):
        h = jax_rnn_step(x_t, h, wx, wh, b)
        return h, h
    return _over_time(step, h0, x)


def jax_lstm(x, h0, wx, wh, b):
    def step(state, x_t):
        h, c = jax_lstm_step(x_t, *state, wx, wh, b)
        return (h, c), h
    return _over_time(step, (h0, jnp.zeros_like(h0)), x)


def jax_gru(x, h0, wx, wh, bx, bh):
    def step(h, x_t):
        h = jax_gru_step(x_t, h, wx, wh, bx, bh)
        return h, h
    return _over_time(step, h0, x)


# ----------------------------------------------------------------------------------------
# The error magnitude: a running error bound.
#
# The default scale |J|^T |dY| does not bound these layers' rounding errors, for two reasons.
# 1. Cancellation between paths. dh_0 of an RNN is a sum over paths through time of
#    products like tanh'(a_1) wh ... tanh'(a_T) wh: signed terms whose sum, J, can be far
#    smaller than the sum of their absolute values, while each term is rounded.
# 2. The forward's rounding reaches the backward. tanh'(a_t) is evaluated at the computed
#    a_t, which carries the rounding of x_t wx + h_{t-1} wh + b and of every earlier step;
#    tanh' then moves by |tanh''(a_t)| times that error (the activations' condition term,
#    here compounded over steps). In float32 with |a| ~ 10 that alone is ~20 u relative.
#
# So the magnitude follows the reference's own arithmetic, quantity by quantity (a running
# error analysis: Wilkinson; Higham, "Accuracy and Stability of Numerical Algorithms", 3.3).
# Each quantity is a ``Bound`` (v, e): its value and a first-order bound on its rounding
# error, in units of u = eps/2:
#
#     inputs, dout      e = 0 (the oracle evaluates the same rounded inputs)
#     a + b             e = e_a + e_b + |a| + |b|               one rounding, relative to the terms
#     a * b             e = e_a |b| + |a| e_b + |a b|
#     A @ B             e = e_A |B| + |A| e_B + |A| |B|          |A| |B|: the terms of each dot product
#     f(a)              e = |f'(a)| e_a + |f(a)|                 f = s, tanh, s', tanh', s(-.)
#     sum over rows     e = sum (e + |v|)
#
# f(a) is accurate to a few u of its value: the reference evaluates each gate and slope
# from e^-|a| (or e^-2|a|), the exponential of an exact argument, with a few roundings
# after it (reference/activations.py); the error of the computed a enters through f'.
# The forward runs every cell on Bounds, as the reference does (the local derivatives,
# e.g. dc/da_i = g s'(a_i), included); the backward then runs the reference's backward
# recursion on Bounds, from dout with e = 0. The magnitude of each output and gradient is
# its e. For the step layers that is the same computation with T = 1.
#
# What C = 8 (tolerance.C) absorbs: the tolerance is C eps e = 2 C u e, a factor 2 beyond
# e; each rule counts one rounding where the code does a few (s = 1 / (1 + e^-|a|) is
# three); a dot product of K terms errs by about sqrt(K) u sum|terms| for random-sign
# rounding (K <= 28 here: 4 H for dh_prev, N T for the weight gradients), not
# u sum|terms|; in float64 runs the oracle's own rounding, of the same size as the
# reference's except for XLA's float64 tanh, off by up to 6.4 ulp near |a| = 19 (3.2 eps
# of |tanh a|; NumPy's is within 1.1 ulp, both against long double), which is the 0.44
# units of the forward check below. Second-order terms (e_a e_b u^2) are dropped: u e
# stays far below 1 for the drawn weights.
#
# Measured (seed 0, 120 examples per dtype): gradients within 0.07 units, outputs 0.06
# (float32) and 0.44 (float64). With the default scale instead, the same correct layers
# fail: rnn 62 units in float32, lstm 20, gru 18, gru_step 4.3e6 in float64 (where even
# the oracles' vjp and Jacobian disagree beyond it).

def _dtanh(a):
    return 4.0 * jax.nn.sigmoid(2.0 * a) * jax.nn.sigmoid(-2.0 * a)


def _dsigmoid(a):
    return jax.nn.sigmoid(a) * jax.nn.sigmoid(-a)


# (f, f') for each function the cells evaluate
TANH = (jnp.tanh, _dtanh)
TANH_SLOPE = (_dtanh, lambda a: -2.0 * jnp.tanh(a) * _dtanh(a))
SIGMOID = (jax.nn.sigmoid, _dsigmoid)
SIGMOID_SLOPE = (_dsigmoid, lambda a: _dsigmoid(a) * (jax.nn.sigmoid(-a) - jax.nn.sigmoid(a)))
SIGMOID_OF_MINUS = (lambda a: jax.nn.sigmoid(-a), lambda a: -_dsigmoid(a))  # 1 - z = s(-a_z)


@jax.tree_util.register_pytree_node_class
class Bound:
    """A value as the reference computes it, ``v``, and a bound ``e`` on its rounding error in units of u."""

    def __init__(self, v, e=None):
        self.v = v
        self.e = jnp.zeros_like(v) if e is None else e

    def tree_flatten(self):
        return (self.v, self.e), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)

    def __add__(self, other):
        return Bound(self.v + other.v, self.e + other.e + jnp.abs(self.v) + jnp.abs(other.v))

    def __sub__(self, other):
        return Bound(self.v - other.v, self.e + other.e + jnp.abs(self.v) + jnp.abs(other.v))

    def __mul__(self, other):
        v = self.v * other.v
        return Bound(v, self.e * jnp.abs(other.v) + jnp.abs(self.v) * other.e + jnp.abs(v))

    def __matmul__(self, other):
        a, b = jnp.abs(self.v), jnp.abs(other.v)
        return Bound(self.v @ other.v, self.e @ b + a @ other.e + a @ b)

    def map(self, function):
        """The same exact rearrangement (transpose, reshape, slice) of value and bound."""
        return Bound(function(self.v), function(self.e))

    @property
    def T(self):
        return self.map(jnp.transpose)

    def split(self, parts):
        return [Bound(v, e) for v, e in zip(jnp.split(self.v, parts, axis=-1), jnp.split(self.e, parts, axis=-1))]

    def rows(self):
        """(..., K) -> (M, K): the rows of every example and step."""
        return self.map(lambda a: a.reshape(-1, a.shape[-1]))

    def sum_rows(self):
        rows = self.rows()
        return Bound(rows.v.sum(axis=0), (rows.e + jnp.abs(rows.v)).sum(axis=0))


def _apply(function, a: Bound) -> Bound:
    f, slope = function
    value = f(a.v)
    return Bound(value, jnp.abs(slope(a.v)) * a.e + jnp.abs(value))


def _concat(bounds) -> Bound:
    return Bound(jnp.concatenate([b.v for b in bounds], axis=-1), jnp.concatenate([b.e for b in bounds], axis=-1))


# Each cell on Bounds, as the reference computes it: forward(x_t, state, w) -> (state, h_t,
# local) and backward(dstate, local, w) -> (dstate_prev, gradients of the pre-activations),
# where dstate already holds dout_t + the gradient from step t + 1.

def _rnn_forward(x, h_prev, w):
    wx, wh, b = w
    a = x @ wx + h_prev @ wh + b
    h = _apply(TANH, a)
    return h, h, (_apply(TANH_SLOPE, a),)


def _rnn_backward(dh, local, w):
    (dh_da,) = local
    da = dh * dh_da
    return da @ w[1].T, (da,)


def _lstm_forward(x, state, w):
    wx, wh, b = w
    h_prev, c_prev = state
    a_i, a_f, a_o, a_g = (x @ wx + h_prev @ wh + b).split(4)
    i, f, o, g = _apply(SIGMOID, a_i), _apply(SIGMOID, a_f), _apply(SIGMOID, a_o), _apply(TANH, a_g)
    c = f * c_prev + i * g
    tanh_c = _apply(TANH, c)
    h = o * tanh_c
    local = (g * _apply(SIGMOID_SLOPE, a_i), c_prev * _apply(SIGMOID_SLOPE, a_f),
             tanh_c * _apply(SIGMOID_SLOPE, a_o), i * _apply(TANH_SLOPE, a_g), o * _apply(TANH_SLOPE, c), f)
    return (h, c), h, local


def _lstm_backward(dstate, local, w):
    dh, dc = dstate
    dc_dai, dc_daf, dh_dao, dc_dag, dh_dc, f = local
    dc = dc + dh * dh_dc
    da = _concat((dc * dc_dai, dc * dc_daf, dh * dh_dao, dc * dc_dag))
    return (da @ w[1].T, dc * f), (da,)


def _gru_forward(x, h_prev, w):
    wx, wh, bx, bh = w
    gx_r, gx_z, gx_n = (x @ wx + bx).split(3)
    gh_r, gh_z, gh_n = (h_prev @ wh + bh).split(3)
    a_r, a_z = gx_r + gh_r, gx_z + gh_z
    r, z, one_minus_z = _apply(SIGMOID, a_r), _apply(SIGMOID, a_z), _apply(SIGMOID_OF_MINUS, a_z)
    a_n = gx_n + r * gh_n
    n = _apply(TANH, a_n)
    h = one_minus_z * n + z * h_prev
    local = (one_minus_z * _apply(TANH_SLOPE, a_n), (h_prev - n) * _apply(SIGMOID_SLOPE, a_z),
             gh_n * _apply(SIGMOID_SLOPE, a_r), r, z)
    return h, h, local


def _gru_backward(dh, local, w):
    dh_dan, dh_daz, dan_dar, r, z = local
    da_n, da_z = dh * dh_dan, dh * dh_daz
    da_r = da_n * dan_dar
    dgh = _concat((da_r, da_z, da_n * r))
    return dh * z + dgh @ w[1].T, (_concat((da_r, da_z, da_n)), dgh)


def _hidden(state):
    return state[0] if isinstance(state, tuple) else state


def _with_hidden(state, h):
    return (h, *state[1:]) if isinstance(state, tuple) else h


def _through_time(forward, backward, x, state0, w, dout, dstate_last):
    """The cell over x (N, T, D) on Bounds, then back through time from dout (N, T, H).

    -> (h (N, T, H), the last state, the gradient of state0, and time-major x, h_prev and
    the pre-activation gradients, for the weight gradients).
    """
    x = Bound(jnp.swapaxes(x, 0, 1))

    def step_forward(state, x_t):
        new, h_t, local = forward(x_t, state, w)
        return new, (h_t, _hidden(state), local)

    last, (h, h_prev, local) = lax.scan(step_forward, state0, x)

    def step_backward(dstate, inputs):
        dout_t, local_t = inputs
        return backward(_with_hidden(dstate, dout_t + _hidden(dstate)), local_t, w)

    dstate0, dpre = lax.scan(step_backward, dstate_last, (Bound(jnp.swapaxes(dout, 0, 1)), local), reverse=True)
    return h.map(lambda a: jnp.swapaxes(a, 0, 1)), last, dstate0, x, h_prev, dpre


def _input_grads(dpre, x, wx):
    """dx = dpre wx^T (back to (N, T, D)), dwx = x^T dpre and db = sum dpre over every row."""
    dx = (dpre @ wx.T).map(lambda a: jnp.swapaxes(a, 0, 1))
    return dx, x.rows().T @ dpre.rows(), dpre.sum_rows()


def _cell_magnitude(forward, backward, x, state0, w, dout, dstate_last):
    """(h, last state, [dx, dstate0..., dwx, dwh, biases...]) as Bounds, for RNN/LSTM (one dpre) or GRU (two)."""
    h, last, dstate0, xs, h_prev, dpre = _through_time(forward, backward, x, state0, w, dout, dstate_last)
    dx, dwx, dbx = _input_grads(dpre[0], xs, w[0])
    dstate0 = dstate0 if isinstance(dstate0, tuple) else (dstate0,)
    dwh = h_prev.rows().T @ dpre[-1].rows()
    biases = (dbx,) if len(dpre) == 1 else (dbx, dpre[1].sum_rows())
    return h, last, (dx, *dstate0, dwx, dwh, *biases)


def _exact(arrays):
    return [Bound(a) for a in arrays]


def _sequence_magnitude(forward, backward, *, cell_state):
    def magnitude(f, arrays, hyper, dout):
        x, h0, *w = arrays
        w = _exact(w)
        zero = Bound(jnp.zeros_like(h0))
        state0 = (Bound(h0), zero) if cell_state else Bound(h0)
        dlast = (zero, zero) if cell_state else zero
        h, _, grads = _cell_magnitude(forward, backward, x, state0, w, dout, dlast)
        grads = (grads[0], grads[1], *grads[3:]) if cell_state else grads  # c_0 = 0 is no input
        return h.e, tuple(g.e for g in grads)
    return magnitude


def _step_magnitude(forward, backward):
    """A step is the sequence of one step, from the given state, with its outputs' cotangents."""
    def magnitude(f, arrays, hyper, dout):
        x, h_prev, *rest = arrays
        cell_state = isinstance(dout, (tuple, list))
        if cell_state:
            c_prev, *rest = rest
            dh, dc = dout
            state0, dlast = (Bound(h_prev), Bound(c_prev)), (Bound(jnp.zeros_like(dh)), Bound(dc))
        else:
            dh, state0, dlast = dout, Bound(h_prev), Bound(jnp.zeros_like(dout))
        h, last, grads = _cell_magnitude(forward, backward, x[:, None], state0, _exact(rest), dh[:, None], dlast)
        dx = grads[0].map(lambda a: a[:, 0])
        out = (h.e[:, 0], last[1].e) if cell_state else h.e[:, 0]
        return out, (dx.e, *(g.e for g in grads[1:]))
    return magnitude


# ----------------------------------------------------------------------------------------
# Inputs: a configuration is {"N", "D", "H"} for a step, with "T" for a sequence.

WEIGHT_SCALES = (0.25, 1.0, 2.0)
"""Each example's weights and biases are drawn in [-2, 2] times one of these. With x and the
states in [-2, 2] the pre-activations are then typically ~1 (every gate in its bend: the
gradient survives many steps back), ~3 and ~6 (mostly saturated: tanh' and s' down to
e^-12 and far below, where a slope computed as 1 - tanh^2 or s (1 - s) loses every digit
in float32). The smallest comes first: shrinking moves toward it."""


SEQUENCE_DIMS = {"N": (0, 4), "T": (0, 6), "D": (1, 5), "H": (1, 5)}
STEP_DIMS = {"N": (0, 6), "D": (1, 8), "H": (1, 7)}


def _dims(sequence: bool):
    """N from 0 (an empty batch) and D, H from 1; sequences T from 0 (nothing to do) to 6.
    A sequence's dimensions stay smaller (its Jacobian spans every step): 392 configurations
    of a step, 875 of a sequence."""
    return {name: st.integers(*span) for name, span in (SEQUENCE_DIMS if sequence else STEP_DIMS).items()}


def _cell_space(gates: int, biases: int, *, sequence: bool, cell_state: bool = False, edges=()):
    """x, the state(s), wx (D, G H), wh (H, G H) and the biases (G H,), the last three scaled together."""
    def values(config):
        n, d, h = config["N"], config["D"], config["H"]
        x = arrays((n, config["T"], d) if sequence else (n, d))
        states = [arrays((n, h))] * (2 if cell_state else 1)
        weights = [arrays((d, gates * h)), arrays((h, gates * h))] + [arrays((gates * h,))] * biases
        count = 1 + len(states)

        def scaled(drawn):
            scale, *drawn_arrays = drawn
            return (*drawn_arrays[:count], *(scale * w for w in drawn_arrays[count:])), {}

        return st.tuples(st.sampled_from(WEIGHT_SCALES), x, *states, *weights).map(scaled)

    return Space(st.fixed_dictionaries(_dims(sequence)), values, edges=edges)


def _edges(sequence: bool, square_d: int):
    """The configurations every run includes. ``square_d`` = G H for H = 1: D = G H makes wx
    square, where a missing transpose keeps its shape (wh is square for the RNN only)."""
    if not sequence:
        return ({"N": 0, "D": 3, "H": 2},                # an empty batch
                {"N": 1, "D": 1, "H": 1},                # every size 1
                {"N": 3, "D": square_d, "H": 1},         # wx square
                {"N": 2, "D": 3, "H": 3})                # D = H: x and h_prev alike
    return ({"N": 2, "T": 0, "D": 2, "H": 3},            # an empty sequence: dh0 = 0 and zero weight gradients
            {"N": 0, "T": 3, "D": 2, "H": 2},            # an empty batch
            {"N": 2, "T": 1, "D": 3, "H": 2},            # one step: no step t + 1 to take dh from
            {"N": 1, "T": 1, "D": 1, "H": 1},            # every size 1
            {"N": 2, "T": 3, "D": square_d, "H": 1},     # wx square
            {"N": 3, "T": 6, "D": 2, "H": 3})            # the longest sequence: gradients through six steps


def _cell_bench(gates: int, biases: int, *, sequence: bool, cell_state: bool = False, n=64, t=32, d=256, h=256):
    """N = 64 (and T = 32), D = H = 256, the weights scaled by 1/sqrt(fan-in) as initialisers do.

    flops: the backward's matrix products, 2 R G H (D + D + H + H) over R = N T rows
    (dx, dwx, dwh and the recurrent dh_prev = da wh^T)."""
    def bench(rng):
        x = rng.standard_normal((n, t, d) if sequence else (n, d))
        states = tuple(0.5 * rng.standard_normal((n, h)) for _ in range(2 if cell_state else 1))
        weights = (rng.standard_normal((d, gates * h)) / math.sqrt(d),
                   rng.standard_normal((h, gates * h)) / math.sqrt(h),
                   *(0.1 * rng.standard_normal(gates * h) for _ in range(biases)))
        rows = n * (t if sequence else 1)
        return BenchCase((x, *states, *weights), {}, flops=2.0 * rows * gates * h * (2 * d + 2 * h))
    return bench


def _errors(gates: int, biases: tuple[str, ...], *, sequence: bool, cell_state: bool = False):
    """Bad calls: x of the wrong rank, mismatched N, D and G H, a non-square recurrence, mixed
    and half precision. Every call has N = 2, D = 3, H = 4 unless it says otherwise."""
    state = "h0" if sequence else "h_prev"
    width = 4 * gates  # H = 4

    def call(x=None, h=(2, 4), wx=(3, width), wh=(4, width), b=(width,), dtypes=()):
        shapes = [x or ((2, 5, 3) if sequence else (2, 3)), h, *([h] if cell_state else []),
                  wx, wh, *([b] * len(biases))]
        made = [np.ones(s) for s in shapes]
        for index, dtype in dtypes:
            made[index] = made[index].astype(dtype)
        return tuple(made)

    factor = f"{gates} \\* " if gates > 1 else ""
    wh_index = 4 if cell_state else 3
    x_expected = r"\(N, T, D\)" if sequence else r"\(N, D\)"
    d_axis = 2 if sequence else 1
    wider = rf"but {state} has shape \(2, 4\)"  # the start of each width message
    cases = [
        ErrorCase("x of the wrong rank", call(x=(2, 3, 1, 1) if sequence else (2, 3, 1)), {}, ValueError,
                  rf"x has shape \(2, 3, 1(, 1)?\) but a {3 if sequence else 2}-d array {x_expected} is expected"),
        ErrorCase("a state for another batch", call(h=(5, 4)), {}, ValueError,
                  rf"{state} has shape \(5, 4\) but x has shape .*: {state}.shape\[0\] must equal x.shape\[0\] = 2"),
        ErrorCase("wx for another D", call(wx=(7, width)), {}, ValueError,
                  rf"wx has shape \(7, {width}\) but x has shape .*: wx.shape\[0\] must equal x.shape\[{d_axis}\] = 3"),
        ErrorCase("wx without every gate", call(wx=(3, 5)), {}, ValueError,
                  rf"wx has shape \(3, 5\) {wider}: wx.shape\[1\] must equal {factor}{state}.shape\[1\] = {width}"),
        ErrorCase("wh for another H", call(wh=(5, width)), {}, ValueError,
                  rf"wh has shape \(5, {width}\) {wider}: wh.shape\[0\] must equal {state}.shape\[1\] = 4"),
        ErrorCase(f"{biases[0]} of the wrong width", call(b=(width + 1,)), {}, ValueError,
                  rf"{biases[0]} has shape \({width + 1},\) {wider}: {biases[0]}.shape\[0\] must equal "
                  rf"{factor}{state}.shape\[1\] = {width}"),
        ErrorCase("wh in float32 beside float64 x", call(dtypes=[(wh_index, np.float32)]), {}, TypeError,
                  "wh has dtype float32 but x has dtype float64"),
        ErrorCase("float16 x", call(dtypes=[(0, np.float16)]), {}, TypeError,
                  rf"x has dtype float16 \(shape .*\) but float32 or float64 is expected"),
    ]
    if cell_state:
        cases.append(ErrorCase("c_prev unlike h_prev", call()[:2] + (np.ones((2, 5)),) + call()[3:], {}, ValueError,
                               r"c_prev has shape \(2, 5\) but h_prev has shape \(2, 4\): they must have the same "
                               r"shape"))
    return tuple(cases)


# ----------------------------------------------------------------------------------------
# Buckets (Hints.pad): every configuration of a space shares the oracle program of the
# space's largest one, (N, T, D, H) = (4, 6, 5, 5) for a sequence and (N, D, H) = (6, 8, 7)
# for a step, into which the example is embedded exactly: zeros appended to x and the
# states (more examples, later steps, more input features, more hidden units) and to the
# weights and biases. The real outputs and gradients are unchanged:
# * an added example is a row of its own, pulled back from a zero dout;
# * later steps never reach earlier outputs (the recursion runs forward), and from a zero
#   dout they send nothing back;
# * an added input feature is 0 and meets a zero row of wx;
# * an added hidden unit has a zero pre-activation at every gate (zero columns of wx, wh
#   and the biases) and starts at 0, so it stays 0: the RNN's tanh(0) = 0; the LSTM's
#   c = s(0) c_prev + s(0) tanh(0) = 0 and h = s(0) tanh(0) = 0; the GRU's
#   n = tanh(0 + s(0) 0) = 0 and h = s(-0) n + s(0) h_prev = 0. Its zero row of wh keeps it
#   out of every real unit, forward and back. The magnitude's Bounds agree: a padded unit's
#   h and c are exact zeros with e = 0, so every term that reaches a real unit from it is 0
#   with e = 0.
# The oracle cuts each result back to its leading block, so the weights' G gate blocks
# cannot simply widen from H to the bucket's Hb columns each: the real blocks would no
# longer be the leading G H columns. The padded weights hold the real G H columns first,
# as they are, then the padding's, and the hyperparameter ``columns`` (an index array, so
# traced: every H shares the program) says where column (gate q, unit j) of the bucket's
# own layout, q Hb + j, is stored; the specification and the magnitude read wx, wh and the
# biases through it (``_stored``), and the magnitude puts its weights' scales back where
# they are stored. Padded and plain agree (tests/test_catalogue.py on drawn configurations; a
# run where an example fails).

def _gate_columns(gates: int, hidden: int, bucket: int) -> np.ndarray:
    """Where column q Hb + j of the bucket's layout is stored: q H + j for a real unit (j < H),
    after the G H real columns for a padded one."""
    gate, unit = np.divmod(np.arange(gates * bucket), bucket)
    return np.where(unit < hidden, gate * hidden + unit, gates * hidden + gate * (bucket - hidden) + unit - hidden)


def _stored(forward, first_weight: int):
    """``forward`` on weights in the stored layout: with ``columns``, the gate columns of wx, wh and the
    biases (the arrays from ``first_weight`` on) are gathered into the cell's own layout first."""
    def spec(*arrays, columns=None):
        if columns is not None:
            arrays = arrays[:first_weight] + tuple(w[..., columns] for w in arrays[first_weight:])
        return forward(*arrays)
    return spec


def _stored_magnitude(magnitude, forward, first_weight: int):
    """``magnitude`` on weights in the stored layout: computed in the cell's own layout, the
    weights' scales scattered back to where their entries are stored."""
    def scales(f, arrays, hyper, dout):
        columns = hyper.get("columns")
        if columns is None:
            return magnitude(f, arrays, hyper, dout)
        arrays = arrays[:first_weight] + tuple(w[..., columns] for w in arrays[first_weight:])
        out, grads = magnitude(forward, arrays, hyper, dout)
        return out, (*grads[:first_weight],
                     *(jnp.zeros_like(g).at[..., columns].set(g) for g in grads[first_weight:]))
    return scales


def _bucket(gates: int, *, sequence: bool, states: int = 1):
    """The hint pad: every array grown to the bucket, and for G > 1 the gate ``columns``.
    ``states``: the state inputs after x (h_prev and c_prev of an LSTM step: 2)."""
    top = {name: span[1] for name, span in (SEQUENCE_DIMS if sequence else STEP_DIMS).items()}
    n, d, h = top["N"], top["D"], top["H"]

    def pad(arrays, hyper):
        x, *state = arrays[:1 + states]
        wx, wh, *biases = arrays[1 + states:]
        grown = (grow(x, (n, top["T"], d) if sequence else (n, d)), *(grow(s, (n, h)) for s in state),
                 grow(wx, (d, gates * h)), grow(wh, (h, gates * h)), *(grow(b, (gates * h,)) for b in biases))
        if gates > 1:
            hyper = {**hyper, "columns": _gate_columns(gates, wh.shape[0], h)}
        return grown, hyper
    return pad


rnn_step = Layer("rnn_step", ref.rnn_step_forward, ref.rnn_step_backward, jax_rnn_step,
                 _cell_space(1, 1, sequence=False, edges=_edges(False, 1)),
                 magnitude=_step_magnitude(_rnn_forward, _rnn_backward),
                 hints=Hints(per_example=True, pad=_bucket(1, sequence=False)),
                 errors=_errors(1, ("b",), sequence=False), bench=_cell_bench(1, 1, sequence=False))
rnn = Layer("rnn", ref.rnn_forward, ref.rnn_backward, jax_rnn,
            _cell_space(1, 1, sequence=True, edges=_edges(True, 1)),
            magnitude=_sequence_magnitude(_rnn_forward, _rnn_backward, cell_state=False),
            hints=Hints(per_example=True, pad=_bucket(1, sequence=True)), errors=_errors(1, ("b",), sequence=True),
            bench=_cell_bench(1, 1, sequence=True))
# Two outputs: the forward returns ((h, c), cache), the backward takes dout = (dh, dc), the
# specification returns the tuple (h, c), and the magnitude returns a scale per output.
lstm_step = Layer("lstm_step", ref.lstm_step_forward, ref.lstm_step_backward, _stored(jax_lstm_step, 3),
                  _cell_space(4, 1, sequence=False, cell_state=True, edges=_edges(False, 4)),
                  magnitude=_stored_magnitude(_step_magnitude(_lstm_forward, _lstm_backward), jax_lstm_step, 3),
                  hints=Hints(per_example=True, pad=_bucket(4, sequence=False, states=2)),
                  output_names=("h", "c"), errors=_errors(4, ("b",), sequence=False, cell_state=True),
                  bench=_cell_bench(4, 1, sequence=False, cell_state=True))
lstm = Layer("lstm", ref.lstm_forward, ref.lstm_backward, _stored(jax_lstm, 2),
             _cell_space(4, 1, sequence=True, edges=_edges(True, 4)),
             magnitude=_stored_magnitude(_sequence_magnitude(_lstm_forward, _lstm_backward, cell_state=True),
                                         jax_lstm, 2),
             hints=Hints(per_example=True, pad=_bucket(4, sequence=True)), errors=_errors(4, ("b",), sequence=True),
             bench=_cell_bench(4, 1, sequence=True))
gru_step = Layer("gru_step", ref.gru_step_forward, ref.gru_step_backward, _stored(jax_gru_step, 2),
                 _cell_space(3, 2, sequence=False, edges=_edges(False, 3)),
                 magnitude=_stored_magnitude(_step_magnitude(_gru_forward, _gru_backward), jax_gru_step, 2),
                 hints=Hints(per_example=True, pad=_bucket(3, sequence=False)),
                 errors=_errors(3, ("bx", "bh"), sequence=False), bench=_cell_bench(3, 2, sequence=False))
gru = Layer("gru", ref.gru_forward, ref.gru_backward, _stored(jax_gru, 2),
            _cell_space(3, 2, sequence=True, edges=_edges(True, 3)),
            magnitude=_stored_magnitude(_sequence_magnitude(_gru_forward, _gru_backward, cell_state=False),
                                        jax_gru, 2),
            hints=Hints(per_example=True, pad=_bucket(3, sequence=True)),
            errors=_errors(3, ("bx", "bh"), sequence=True),
            bench=_cell_bench(3, 2, sequence=True))


# ----------------------------------------------------------------------------------------
# Correct variants: other ways to write the same derivatives, which the verifier must accept.

def _rnn_step_backward_einsum(dout, cache):
    """Every product as an einsum over named axes, from the cached tanh'(a)."""
    x, h_prev, wx, wh, dh_da = cache
    da = dout * dh_da
    return (np.einsum("nh,dh->nd", da, wx), np.einsum("nh,kh->nk", da, wh), np.einsum("nd,nh->dh", x, da),
            np.einsum("nk,nh->kh", h_prev, da), np.einsum("nh->h", da))


def _by_steps(step_backward, step_cache, *, cell_state=False, biases=1):
    """A sequence's backward as T calls of the step's own backward, from t = T down to 1, each
    given dout_t + the dh_prev (and dc_prev) of the step after it; the weight gradients of the
    steps are summed (no batching over time)."""
    def backward(dout, cache):
        x, h_prev, wx, wh = cache[:4]
        dx = np.zeros(x.shape, x.dtype)
        dh = np.zeros((x.shape[0], wh.shape[0]), x.dtype)
        dc = np.zeros_like(dh)
        sums = [np.zeros(shape, x.dtype) for shape in (wx.shape, wh.shape, *[wh.shape[1:]] * biases)]
        for t in reversed(range(x.shape[1])):
            upstream = dout[:, t] + dh
            grads = step_backward((upstream, dc) if cell_state else upstream, step_cache(cache, t))
            dx[:, t] = grads[0]
            if cell_state:
                dh, dc, *weights = grads[1:]
            else:
                dh, *weights = grads[1:]
            sums = [s + w for s, w in zip(sums, weights)]
        return (dx, dh, *sums)
    return backward


def _rnn_step_cache(cache, t):
    return ref.RnnStepCache(cache.x[:, t], cache.h_prev[:, t], cache.wx, cache.wh, cache.dh_da[:, t])


def _lstm_step_cache(cache, t):
    return ref.LstmStepCache(cache.x[:, t], cache.h_prev[:, t], cache.wx, cache.wh, ref._at(cache.local, t))


def _gru_step_cache(cache, t):
    return ref.GruStepCache(cache.x[:, t], cache.h_prev[:, t], cache.wx, cache.wh, ref._at(cache.local, t))


def _lstm_step_forward_gates(x, h_prev, c_prev, wx, wh, b):
    """Caches the inputs, the pre-activations and c; the backward derives everything else."""
    (h, c), _ = ref.lstm_step_forward(x, h_prev, c_prev, wx, wh, b)
    return (h, c), (x, h_prev, c_prev, wx, wh, x @ wx + h_prev @ wh + b, c)


def _lstm_step_backward_textbook(dout, cache):
    """The chain rule gate by gate from the cached pre-activations, in the order the forward ran."""
    dh, dc = dout
    x, h_prev, c_prev, wx, wh, a, c = cache
    (i, di), (f, df), (o, do), (g, dg) = (ref._sigmoid(part) if k < 3 else ref._tanh(part)
                                          for k, part in enumerate(np.split(a, 4, axis=1)))
    tanh_c, dtanh_c = ref._tanh(c)
    d_o = dh * tanh_c
    dc = dc + dh * o * dtanh_c
    d_i, d_f, d_g = dc * g, dc * c_prev, dc * i
    da = np.hstack((d_i * di, d_f * df, d_o * do, d_g * dg))
    return da @ wx.T, da @ wh.T, dc * f, x.T @ da, h_prev.T @ da, da.sum(axis=0)


def _gru_step_forward_gates(x, h_prev, wx, wh, bx, bh):
    """Caches the inputs and both gate pre-activations; the backward derives everything else."""
    h, _ = ref.gru_step_forward(x, h_prev, wx, wh, bx, bh)
    return h, (x, h_prev, wx, wh, x @ wx + bx, h_prev @ wh + bh)


def _gru_step_backward_textbook(dout, cache):
    """PyTorch's equations differentiated one quantity at a time: dn, dz, dr, then the products."""
    x, h_prev, wx, wh, gx, gh = cache
    gx_r, gx_z, gx_n = np.split(gx, 3, axis=1)
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
    r, dr = ref._sigmoid(gx_r + gh_r)
    z, dz = ref._sigmoid(gx_z + gh_z)
    one_minus_z, _ = ref._sigmoid(-(gx_z + gh_z))
    n, dn = ref._tanh(gx_n + r * gh_n)
    d_n, d_z = dout * one_minus_z, dout * (h_prev - n)
    d_an = d_n * dn
    d_r = d_an * gh_n
    dgx = np.hstack((d_r * dr, d_z * dz, d_an))
    dgh = np.hstack((d_r * dr, d_z * dz, d_an * r))
    return (dgx @ wx.T, dout * z + dgh @ wh.T, x.T @ dgx, h_prev.T @ dgh, dgx.sum(axis=0), dgh.sum(axis=0))


VARIANTS = (
    Variant("rnn_step", "einsum", "every product spelled as an einsum", _rnn_step_backward_einsum),
    Variant("rnn", "by_steps", "backpropagation through time as T calls of rnn_step_backward",
            _by_steps(ref.rnn_step_backward, _rnn_step_cache)),
    Variant("lstm_step", "textbook", "the forward caches the pre-activations, the backward derives each gate's slope",
            _lstm_step_backward_textbook, _lstm_step_forward_gates),
    Variant("lstm", "by_steps", "backpropagation through time as T calls of lstm_step_backward",
            _by_steps(ref.lstm_step_backward, _lstm_step_cache, cell_state=True)),
    Variant("gru_step", "textbook", "the forward caches the pre-activations, the backward derives each gate's slope",
            _gru_step_backward_textbook, _gru_step_forward_gates),
    Variant("gru", "by_steps", "backpropagation through time as T calls of gru_step_backward",
            _by_steps(ref.gru_step_backward, _gru_step_cache, biases=2)),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _rnn_backward_without_next(dout, cache):
    """dh_t = dout_t: the gradient arriving from step t + 1 is never added."""
    x, h_prev, wx, wh, dh_da = cache
    da = dout * dh_da
    dx, dwx, db = ref._input_grads(da, x, wx)
    dh0 = da[:, 0] @ wh.T if x.shape[1] else ref._zero_state(x, wh)
    return dx, dh0, dwx, ref._weight_grad(h_prev, da), db


def _rnn_forward_caching_h(x, h0, wx, wh, b):
    """Caches each step's output h_t where the state it started from, h_{t-1}, belongs: dwh = sum h_t^T da_t."""
    h, cache = ref.rnn_forward(x, h0, wx, wh, b)
    return h, cache._replace(h_prev=h)


def _rnn_backward_in_float32(dout, cache):
    """Rounds the cache and dout to float32 before the recursion, then returns the input's dtype."""
    narrow = type(cache)(*(a.astype(np.float32) for a in cache))
    return tuple(g.astype(dout.dtype) for g in ref.rnn_backward(dout.astype(np.float32), narrow))


def _rnn_step_forward_slope_of_a(x, h_prev, wx, wh, b):
    """tanh' taken as 1 - a^2 of the pre-activation a, where 1 - tanh^2(a) was meant."""
    h, cache = ref.rnn_step_forward(x, h_prev, wx, wh, b)
    a = x @ wx + h_prev @ wh + b
    return h, cache._replace(dh_da=1 - a * a)


def _rnn_step_forward_slope_from_h(x, h_prev, wx, wh, b):
    """tanh' = 1 - h^2: right in exact arithmetic, 0 in float32 once h rounds to +-1 (|a| > 9)."""
    h, cache = ref.rnn_step_forward(x, h_prev, wx, wh, b)
    return h, cache._replace(dh_da=1 - h * h)


def _rnn_step_backward_dwh_transposed(dout, cache):
    dx, dh_prev, dwx, dwh, db = ref.rnn_step_backward(dout, cache)
    return dx, dh_prev, dwx, np.ascontiguousarray(dwh.T), db


def _lstm_backward_with(*, dh0=True, gate_order=(0, 1, 2, 3), forget=True, carry_dc=True):
    """lstm_backward with one thing wrong: dh0 dropped, da's gate slices in another order, dc_prev not
    multiplied by f, or dc from step t + 1 not carried."""
    def backward(dout, cache):
        x, h_prev, wx, wh, local = cache
        n, steps = x.shape[:2]
        hidden = wh.shape[0]
        da = np.empty((n, steps, 4 * hidden), x.dtype)
        dh_next = np.zeros((n, hidden), x.dtype)
        dc_next = np.zeros_like(dh_next)
        for t in reversed(range(steps)):
            step = ref._at(local, t)
            dh = dout[:, t] + dh_next
            dc = (dc_next if carry_dc else 0) + dh * step.dh_dc
            parts = (dc * step.dc_dai, dc * step.dc_daf, dh * step.dh_dao, dc * step.dc_dag)
            da[:, t] = np.concatenate([parts[k] for k in gate_order], axis=1)
            dc_next = dc * step.dc_dcprev if forget else dc
            dh_next = da[:, t] @ wh.T
        dx, dwx, db = ref._input_grads(da, x, wx)
        return dx, dh_next if dh0 else np.zeros_like(dh_next), dwx, ref._weight_grad(h_prev, da), db
    return backward


def _gru_step_backward_with(*, direct=True, reset=True, dbh_from_dgx=False, gate_order=(0, 1, 2)):
    """gru_step_backward with one thing wrong: the direct path z h_prev forgotten in dh_prev, the
    reset gate's factor r missing from dgh_n, dbh summed from dgx, or the gate slices reordered."""
    def backward(dout, cache):
        x, h_prev, wx, wh, local = cache
        da_n = dout * local.dh_dan
        da_z = dout * local.dh_daz
        da_r = da_n * local.dan_dar
        dgx = np.concatenate([(da_r, da_z, da_n)[k] for k in gate_order], axis=1)
        dgh = np.concatenate([(da_r, da_z, da_n * local.dan_dghn if reset else da_n)[k] for k in gate_order], axis=1)
        dh_prev = dgh @ wh.T + (dout * local.dh_dhprev if direct else 0)
        dx, dwx, dbx = ref._input_grads(dgx, x, wx)
        return dx, dh_prev, dwx, h_prev.T @ dgh, dbx, (dgx if dbh_from_dgx else dgh).sum(axis=0)
    return backward


def _gru_backward_peeled(dout, cache):
    """Peels off the last step (it has no step after it), then loops over the others and stacks
    their gradients: np.stack of no arrays raises when T = 1."""
    x, h_prev, wx, wh, local = cache
    steps = x.shape[1]
    if steps == 0:
        return ref.gru_backward(dout, cache)
    dgx_last, dgh_last, dh_next = ref._gru_local_backward(dout[:, -1], ref._at(local, steps - 1))
    dh_next = dh_next + dgh_last @ wh.T
    dgxs, dghs = [], []
    for t in reversed(range(steps - 1)):
        dgx_t, dgh_t, direct = ref._gru_local_backward(dout[:, t] + dh_next, ref._at(local, t))
        dgxs.append(dgx_t)
        dghs.append(dgh_t)
        dh_next = direct + dgh_t @ wh.T
    dgx = np.concatenate((np.stack(dgxs[::-1], axis=1), dgx_last[:, None]), axis=1)
    dgh = np.concatenate((np.stack(dghs[::-1], axis=1), dgh_last[:, None]), axis=1)
    dx, dwx, dbx = ref._input_grads(dgx, x, wx)
    return dx, dh_next, dwx, ref._weight_grad(h_prev, dgh), dbx, ref._rows(dgh).sum(axis=0)


MUTANTS = (
    Mutant("rnn", "dh_from_next_step_not_added", "dh_t = dout_t: the gradient from step t + 1 is dropped",
           _rnn_backward_without_next, bug="partial"),
    Mutant("rnn", "dwh_from_h_t", "dwh = sum_t h_t^T da_t: the state a step produced, not the one it started from",
           forward=_rnn_forward_caching_h, bug="formula"),
    Mutant("rnn", "float32_inside", "the recursion runs in float32 whatever the input's dtype",
           _rnn_backward_in_float32, bug="precision"),
    Mutant("rnn_step", "tanh_slope_of_preactivation", "tanh' taken as 1 - a^2 instead of 1 - tanh^2 a",
           forward=_rnn_step_forward_slope_of_a, bug="formula"),
    Mutant("rnn_step", "slope_from_output", "tanh' = 1 - h^2, which cancels to 0 where h rounds to +-1",
           forward=_rnn_step_forward_slope_from_h, bug="instability"),
    Mutant("rnn_step", "dwh_transposed", "dwh = da^T h_prev: the square (H, H) gradient transposed",
           _rnn_step_backward_dwh_transposed, bug="transpose"),
    Mutant("lstm", "dh0_missing", "dh0 returned as zeros: the gradient never reaches the initial state",
           _lstm_backward_with(dh0=False), bug="missing"),
    Mutant("lstm", "keras_gate_order", "da laid out i, f, g, o (Keras' order), where the weights hold i, f, o, g",
           _lstm_backward_with(gate_order=(0, 1, 3, 2)), bug="transpose"),
    Mutant("lstm", "cell_gradient_skips_forget_gate", "dc_prev = dc: the gradient does not pass through f",
           _lstm_backward_with(forget=False), bug="formula"),
    Mutant("lstm", "cell_gradient_not_carried", "dc_t = dh_t o tanh'(c_t): dc_prev from step t + 1 is dropped",
           _lstm_backward_with(carry_dc=False), bug="partial"),
    Mutant("gru_step", "direct_path_forgotten", "dh_prev = dgh wh^T: the z * h_prev path is left out",
           _gru_step_backward_with(direct=False), bug="formula"),
    Mutant("gru_step", "reset_factor_missing", "dgh_n = da_n: the reset gate's factor r is not applied",
           _gru_step_backward_with(reset=False), bug="formula"),
    Mutant("gru_step", "dbh_from_dgx", "dbh summed from dgx, which differs in the n gate (da_n, not da_n r)",
           _gru_step_backward_with(dbh_from_dgx=True), bug="partial"),
    Mutant("gru_step", "gate_order_zrn", "dgx and dgh laid out z, r, n where the weights hold r, z, n",
           _gru_step_backward_with(gate_order=(1, 0, 2)), bug="transpose"),
    Mutant("gru", "crash_at_one_step", "the last step peeled off the loop, the rest stacked: raises when T = 1",
           _gru_backward_peeled, bug="crash"),
)
