"""Layer-specific cases for reference/softmax.py: the small case, large logits, axes.

Every axis of rank 1-4 arrays is in the verifier's space (verification/specs/softmax.py),
and so is bad input (each layer's ``errors``)."""
import math

import numpy as np
import pytest

from reference.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

LAYER_FUNCTIONS = {
    "softmax": (softmax_forward, softmax_backward),
    "log_softmax": (log_softmax_forward, log_softmax_backward),
}


def test_softmax_backward_matches_the_small_case_element_by_element():
    """C = 3: dL/dx_i = sum_j dy_j dy_j/dx_i with dy_j/dx_i = y_j (delta_ij - y_i) (softmax.md)."""
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    y, cache = softmax_forward(x)
    (dx,) = softmax_backward(dy, cache)
    for i in range(3):
        expected = sum(dy[0, j] * y[0, j] * ((i == j) - y[0, i]) for j in range(3))
        assert dx[0, i] == pytest.approx(expected, rel=1e-14)


def test_log_softmax_backward_matches_the_small_case_element_by_element():
    """C = 3: dy_j/dx_i = delta_ij - p_i with p = softmax(x) (log_softmax.md)."""
    rng = np.random.default_rng(6)
    x, dy = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    y, cache = log_softmax_forward(x)
    p = np.exp(x) / np.exp(x).sum()
    (dx,) = log_softmax_backward(dy, cache)
    for i in range(3):
        expected = sum(dy[0, j] * ((i == j) - p[0, i]) for j in range(3))
        assert dx[0, i] == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(np.exp(y), p, rtol=1e-15)


def test_uniform_logits_give_the_documented_example():
    """x = (0, 0, 0), dY = (1, 0, 0): softmax dx = (2/9, -1/9, -1/9), log_softmax (2/3, -1/3, -1/3)."""
    x, dy = np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(softmax_backward(dy, softmax_forward(x)[1])[0], [[2 / 9, -1 / 9, -1 / 9]])
    np.testing.assert_allclose(log_softmax_backward(dy, log_softmax_forward(x)[1])[0], [[2 / 3, -1 / 3, -1 / 3]])


# ----------------------------------------------------------------------------------------
# Large logits: e^1000 overflows float64, e^-1000 underflows.

LARGE = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, -1000.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_of_logits_near_1000_is_finite_and_exact(dtype):
    z = 1 / (1 + math.exp(-1))  # e^0 / (e^0 + e^-1)
    expected = [[z, 0.0, 1 - z], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]]
    dy = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0], [1.0, -1.0, 3.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = softmax_forward(LARGE.astype(dtype))
        (dx,) = softmax_backward(dy, cache)
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(y, expected, rtol=rtol)
    expected_dx = np.asarray(expected) * (dy - np.sum(dy * np.asarray(expected), axis=1, keepdims=True))
    np.testing.assert_allclose(dx, expected_dx, rtol=rtol, atol=rtol)
    assert y.dtype == dx.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_softmax_of_logits_near_1000_is_finite_and_exact(dtype):
    lse = math.log1p(math.exp(-1))  # log(e^0 + e^-1) after the shift by 1000
    expected = [[-lse, -2000 - lse, -1 - lse], [-math.log(3)] * 3, [-math.log(2), -math.log(2), -2000 - math.log(2)]]
    dy = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0], [1.0, -1.0, 3.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, cache = log_softmax_forward(LARGE.astype(dtype))
        (dx,) = log_softmax_backward(dy, cache)
    np.testing.assert_allclose(y, expected, rtol=4 * np.finfo(dtype).eps)
    p = np.exp(np.asarray(expected))
    np.testing.assert_allclose(dx, dy - p * dy.sum(axis=1, keepdims=True), rtol=8 * np.finfo(dtype).eps)
    assert y.dtype == dx.dtype == dtype


def test_single_class_gives_probability_one_and_zero_gradient():
    x, dy = np.array([[3.0], [-700.0]]), np.array([[1.5], [-2.0]])
    y, cache = softmax_forward(x)
    assert (y == 1).all() and (softmax_backward(dy, cache)[0] == 0).all()
    y, cache = log_softmax_forward(x)
    assert (y == 0).all() and (log_softmax_backward(dy, cache)[0] == 0).all()


@pytest.mark.parametrize("name", sorted(LAYER_FUNCTIONS))
def test_empty_batch_gives_empty_results(name):
    forward, backward = LAYER_FUNCTIONS[name]
    y, cache = forward(np.zeros((0, 4)))
    (dx,) = backward(np.zeros((0, 4)), cache)
    assert y.shape == dx.shape == (0, 4)


# ----------------------------------------------------------------------------------------
# Axes: every sum runs along the axis asked for.

def test_axis_sums_run_along_the_axis():
    x = np.random.default_rng(4).standard_normal((2, 3, 4))
    for axis in range(3):
        y, _ = softmax_forward(x, axis=axis)
        np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-15)
        np.testing.assert_allclose(log_softmax_forward(x, axis=axis)[0], np.log(y), rtol=1e-14)


