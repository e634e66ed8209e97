"""Layer-specific cases for reference/recurrent.py: the derivation pages' small cases, the gate
conventions, saturation, empty sequences, and lstm_step proven directly against JAX (its two
outputs are beyond what check_layer handles today)."""
import math

import jax
import numpy as np
import pytest

from reference.recurrent import (
    gru_backward, gru_forward, gru_step_backward, gru_step_forward, lstm_backward, lstm_forward,
    lstm_step_backward, lstm_step_forward, rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward,
)
from verification import LAYERS, VARIANTS
from verification.specs import recurrent as spec
from verification.tolerance import error_units


def test_rnn_two_steps_match_the_small_case_by_hand():
    """docs/derivations/rnn.md: N = D = H = 1, T = 2; dh_1 collects dout_1 and da_2 wh."""
    x, h0, wx, wh, b = np.array([[[0.5], [-1.0]]]), np.array([[0.25]]), np.array([[0.8]]), np.array([[-0.6]]), \
        np.array([0.1])
    h, cache = rnn_forward(x, h0, wx, wh, b)
    h1 = math.tanh(0.5 * 0.8 + 0.25 * -0.6 + 0.1)
    h2 = math.tanh(-1.0 * 0.8 + h1 * -0.6 + 0.1)
    np.testing.assert_allclose(h[0, :, 0], [h1, h2], rtol=1e-15)
    dy1, dy2 = 1.5, -2.0
    grads = rnn_backward(np.array([[[dy1], [dy2]]]), cache)
    da2 = dy2 * (1 - h2 ** 2)
    dh1 = dy1 + da2 * -0.6  # dout at t = 1 plus what step 2 sends back
    da1 = dh1 * (1 - h1 ** 2)
    expected = ([da1 * 0.8, da2 * 0.8], da1 * -0.6, 0.5 * da1 + -1.0 * da2, 0.25 * da1 + h1 * da2, da1 + da2)
    for grad, value in zip(grads, expected):
        np.testing.assert_allclose(grad.ravel(), np.ravel(value), rtol=1e-13)


def test_rnn_step_is_one_step_of_the_sequence():
    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((3, 1, 4)), rng.standard_normal((3, 2))
    wx, wh, b = rng.standard_normal((4, 2)), rng.standard_normal((2, 2)), rng.standard_normal(2)
    h, cache = rnn_forward(x, h0, wx, wh, b)
    h_step, step_cache = rnn_step_forward(x[:, 0], h0, wx, wh, b)
    np.testing.assert_array_equal(h[:, 0], h_step)
    dout = rng.standard_normal(h.shape)
    for seq, step in zip(rnn_backward(dout, cache), rnn_step_backward(dout[:, 0], step_cache)):
        np.testing.assert_allclose(np.reshape(seq, step.shape), step, rtol=1e-14, atol=1e-15)


def _weights(rng, d, h, gates, biases=1):
    return (rng.standard_normal((d, gates * h)), rng.standard_normal((h, gates * h)),
            *(rng.standard_normal(gates * h) for _ in range(biases)))


@pytest.mark.parametrize("forward, backward, gates, biases", [
    (rnn_forward, rnn_backward, 1, 1), (lstm_forward, lstm_backward, 4, 1), (gru_forward, gru_backward, 3, 2)])
def test_an_empty_sequence_sends_nothing_back(forward, backward, gates, biases):
    rng = np.random.default_rng(1)
    x, h0 = np.zeros((2, 0, 3)), rng.standard_normal((2, 4))
    h, cache = forward(x, h0, *_weights(rng, 3, 4, gates, biases))
    assert h.shape == (2, 0, 4)
    dx, dh0, *weights = backward(np.zeros((2, 0, 4)), cache)
    assert dx.shape == (2, 0, 3) and dh0.shape == (2, 4)
    assert not dh0.any() and not any(w.any() for w in weights)


def test_lstm_gates_are_i_f_o_g_in_that_order():
    """With wx = wh = 0, a = b: c = s(b_f) c_prev + s(b_i) tanh(b_g), h = s(b_o) tanh(c)."""
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    b = np.array([0.3, -1.2, 2.0, 0.7])
    (h, c), _ = lstm_step_forward(np.ones((1, 2)), np.ones((1, 1)), np.array([[1.5]]), np.zeros((2, 4)),
                                  np.zeros((1, 4)), b)
    c_expected = s(-1.2) * 1.5 + s(0.3) * math.tanh(0.7)
    np.testing.assert_allclose(c, [[c_expected]], rtol=1e-15)
    np.testing.assert_allclose(h, [[s(2.0) * math.tanh(c_expected)]], rtol=1e-15)


def test_gru_follows_pytorch_equations():
    """r, z, n in PyTorch's order; the reset gate multiplies (h wh_n + bh_n), after the product."""
    rng = np.random.default_rng(2)
    x, h = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    wx, wh, bx, bh = _weights(rng, 4, 2, 3, 2)
    s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    gx, gh = x @ wx + bx, h @ wh + bh
    r, z = s(gx[:, :2] + gh[:, :2]), s(gx[:, 2:4] + gh[:, 2:4])
    n = np.tanh(gx[:, 4:] + r * gh[:, 4:])
    out, _ = gru_step_forward(x, h, wx, wh, bx, bh)
    np.testing.assert_allclose(out, (1 - z) * n + z * h, rtol=1e-13)


def test_saturated_slopes_keep_their_digits_in_float32():
    """At a = 12, tanh'(a) = 4 e^-24 (1 + ...) ~ 1.5e-10 while 1 - tanh^2 rounds to 0 in float32;
    at a_z = 40 the GRU's 1 - z = e^-40 while 1 - s(40) rounds to 0."""
    one = np.ones((1, 1), np.float32)
    _, cache = rnn_step_forward(one, np.zeros((1, 1), np.float32), 12 * one, one, np.zeros(1, np.float32))
    assert cache.dh_da[0, 0] == pytest.approx(1 / math.cosh(12) ** 2, rel=1e-6)
    wx = np.zeros((1, 3), np.float32)
    wx[0, 1] = 40  # a_z = 40, r and n at a = 0
    _, cache = gru_step_forward(one, one, wx, np.zeros((1, 3), np.float32), np.zeros(3, np.float32),
                                np.zeros(3, np.float32))
    # dh/da_n = (1 - z) tanh'(0) = e^-40 / (1 + e^-40)
    assert cache.local.dh_dan[0, 0] == pytest.approx(math.exp(-40), rel=1e-6)


@pytest.mark.parametrize("forward, backward, step_backward, gates, biases, step_cache", [
    (rnn_forward, rnn_backward, rnn_step_backward, 1, 1, spec._rnn_step_cache),
    (lstm_forward, lstm_backward, lstm_step_backward, 4, 1, spec._lstm_step_cache),
    (gru_forward, gru_backward, gru_step_backward, 3, 2, spec._gru_step_cache),
])
def test_the_sequence_backward_is_the_step_backward_repeated(forward, backward, step_backward, gates, biases,
                                                             step_cache):
    """Batching the weight gradients over time after the loop changes nothing but rounding."""
    rng = np.random.default_rng(3)
    x, h0 = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 2))
    h, cache = forward(x, h0, *_weights(rng, 4, 2, gates, biases))
    dout = rng.standard_normal(h.shape)
    by_steps = spec._by_steps(step_backward, step_cache, cell_state=gates == 4, biases=biases)
    for batched, stepped in zip(backward(dout, cache), by_steps(dout, cache)):
        np.testing.assert_allclose(batched, stepped, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------------------
# lstm_step, proven directly: the forward's (h, c) against the specification, the backward
# against jax.vjp of it pulled back from a random (dh, dc), and against the Jacobians
# contracted with (dh, dc); each within the tolerance of verification/tolerance.py, with
# the spec's running-error magnitude as the scale.

LSTM_STEP_SHAPES = [(2, 3, 2), (1, 1, 1), (0, 2, 3), (4, 4, 1), (3, 5, 4)]  # (N, D, H); D = 4H: wx square


def _lstm_step_example(rng, n, d, h, scale=1.0):
    return (rng.uniform(-2, 2, (n, d)), rng.uniform(-2, 2, (n, h)), rng.uniform(-2, 2, (n, h)),
            scale * rng.uniform(-2, 2, (d, 4 * h)), scale * rng.uniform(-2, 2, (h, 4 * h)),
            scale * rng.uniform(-2, 2, 4 * h))


def _arrays_in(cache):
    """Every array a cache holds, however nested in tuples."""
    if isinstance(cache, np.ndarray):
        return [cache]
    return [a for item in cache for a in _arrays_in(item)] if isinstance(cache, tuple) else []


def _lstm_step_units(forward, backward, arrays, dtype, seed):
    """Worst tolerance units of h, c and the six gradients, and of the Jacobian route (float64 only)."""
    rng = np.random.default_rng(seed)
    inputs = tuple(a.astype(dtype) for a in arrays)
    arrays64 = tuple(a.astype(np.float64) for a in inputs)
    (h, c), cache = forward(*inputs)
    dh, dc = (rng.standard_normal(h.shape).astype(dtype) for _ in range(2))
    pristine = [a.copy() for a in inputs]
    grads = backward((dh, dc), cache)
    assert all(np.array_equal(a, p) for a, p in zip(inputs, pristine)), "an input was modified"
    assert [(g.shape, g.dtype) for g in grads] == [(a.shape, a.dtype) for a in inputs]
    for i, g in enumerate(grads):
        others = [*inputs, dh, dc, *grads[:i], *grads[i + 1:], *_arrays_in(cache)]
        assert not any(np.shares_memory(g, o) for o in others), f"gradient {i} shares memory"
    cotangent = (dh.astype(np.float64), dc.astype(np.float64))
    (h64, c64), pullback = jax.vjp(spec.jax_lstm_step, *arrays64)
    expected = pullback(cotangent)
    (h_scale, c_scale), scales = spec._step_magnitude(spec._lstm_forward, spec._lstm_backward)(
        None, arrays64, {}, cotangent)
    units = [error_units(h, h64, h_scale, dtype), error_units(c, c64, c_scale, dtype)]
    units += [error_units(g, e, s, dtype) for g, e, s in zip(grads, expected, scales)]
    if dtype == np.float64:
        jacobians = jax.jacobian(spec.jax_lstm_step, argnums=tuple(range(6)))(*arrays64)
        for k, (g, s) in enumerate(zip(grads, scales)):
            contracted = sum(np.tensordot(d, j[k], axes=d.ndim) for d, j in zip(cotangent, jacobians))
            units.append(error_units(g, contracted, s, dtype))
    return max((float(u.max()) for u in units if u.size), default=0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", LSTM_STEP_SHAPES, ids=str)
@pytest.mark.parametrize("scale", [0.25, 1.0, 2.0])
def test_lstm_step_matches_jax(shape, scale, dtype):
    rng = np.random.default_rng(hash((shape, scale)) % 2**32)
    arrays = _lstm_step_example(rng, *shape, scale=scale)
    for seed in range(3):
        units = _lstm_step_units(lstm_step_forward, lstm_step_backward, arrays, dtype, seed)
        assert units <= 1.0, f"{units:.3g} tolerance units"


def test_lstm_step_textbook_variant_matches_jax():
    variant = next(v for v in VARIANTS if v.key == "lstm_step[textbook]")
    rng = np.random.default_rng(5)
    for shape in LSTM_STEP_SHAPES:
        assert _lstm_step_units(variant.forward, variant.backward, _lstm_step_example(rng, *shape), np.float64, 0) <= 1


@pytest.mark.parametrize("wrong", ["forget", "through_h", "order"])
def test_lstm_step_comparison_rejects_a_wrong_backward(wrong):
    """The direct proof above is not vacuous: a wrong backward is off by many tolerance units."""
    def backward(dout, cache):
        local = cache.local
        if wrong == "forget":  # dc_prev = dc~: f forgotten
            local = local._replace(dc_dcprev=np.ones_like(local.dc_dcprev))
        elif wrong == "through_h":  # dc~ = dc: c's path through h forgotten
            local = local._replace(dh_dc=np.zeros_like(local.dh_dc))
        else:  # i and f slices swapped
            local = local._replace(dc_dai=local.dc_daf, dc_daf=local.dc_dai)
        return lstm_step_backward(dout, cache._replace(local=local))

    rng = np.random.default_rng(6)
    assert _lstm_step_units(lstm_step_forward, backward, _lstm_step_example(rng, 3, 2, 2), np.float64, 0) > 1e3


def test_lstm_step_spec_is_registered_with_two_outputs():
    layer = LAYERS["lstm_step"]
    assert layer.output_names == ("h", "c")
    assert layer.grad_names == ("dx", "dh_prev", "dc_prev", "dwx", "dwh", "db")


@pytest.mark.parametrize("dout, error, message", [
    (np.ones((2, 4)), TypeError, "dout must be the pair (dh, dc), one per output of the forward, got ndarray"),
    ((np.ones((2, 4)),), TypeError, "got tuple of length 1"),
    ((np.ones((2, 4)), np.ones((2, 5))), ValueError,
     "dc has shape (2, 5) but the forward's output has shape (2, 4): dc must have the output's shape"),
    ((np.ones((2, 4), np.float32), np.ones((2, 4))), TypeError,
     "dh has dtype float32 but the forward ran in float64"),
])
def test_lstm_step_backward_rejects_a_bad_dout(dout, error, message):
    rng = np.random.default_rng(7)
    _, cache = lstm_step_forward(*_lstm_step_example(rng, 2, 3, 4))
    with pytest.raises(error) as raised:
        lstm_step_backward(dout, cache)
    assert message in str(raised.value)
