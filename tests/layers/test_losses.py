"""Layer-specific cases for reference/losses.py: extreme logits, the hinge's kink, 0-d losses.

Bad input: each layer's ``errors`` in verification/specs/losses.py."""
import jax
import numpy as np
import pytest

from reference.losses import (
    bce_with_logits_backward, bce_with_logits_forward, mse_backward, mse_forward,
    softmax_cross_entropy_backward, softmax_cross_entropy_forward, svm_hinge_backward, svm_hinge_forward,
)
from verification import LAYERS
from verification.checks.trial import Trial
from verification.specs.losses import jax_svm_hinge

LABELS = np.array([0, 2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_cross_entropy_is_finite_and_exact_at_logits_of_1000(dtype):
    """exp(1000) overflows even float64; after the max-shift nothing does."""
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]], dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # exp(-2000) -> 0 is right
        loss, cache = softmax_cross_entropy_forward(x, labels=np.array([0, 0]))
        (dx,) = softmax_cross_entropy_backward(np.array(1.0, dtype), cache)
    # row 0: label is the max, loss 0; row 1: loss = 1000 - (-1000) = 2000
    assert loss == 1000.0
    np.testing.assert_array_equal(dx, np.array([[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]], dtype))


def test_softmax_cross_entropy_small_case():
    """N = 1, C = 2: p = softmax(x), dx = (p - onehot) dL / N."""
    x = np.array([[0.0, np.log(3.0)]])  # p = (1/4, 3/4)
    loss, cache = softmax_cross_entropy_forward(x, labels=np.array([1]))
    (dx,) = softmax_cross_entropy_backward(np.array(2.0), cache)
    assert loss == pytest.approx(np.log(4.0 / 3.0))
    np.testing.assert_allclose(dx, [[2 * 0.25, 2 * (0.75 - 1)]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_with_logits_is_finite_and_exact_at_logits_of_1000(dtype):
    x = np.array([1000.0, -1000.0, 1000.0, -1000.0], dtype)
    targets = np.array([1.0, 0.0, 0.0, 1.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss, cache = bce_with_logits_forward(x, targets=targets)
        (dx,) = bce_with_logits_backward(np.array(1.0, dtype), cache)
    # right with confidence: loss 0; wrong with confidence: loss 1000, slope +-1
    assert loss == (0 + 0 + 1000 + 1000) / 4
    np.testing.assert_array_equal(dx, np.array([0.0, 0.0, 0.25, -0.25], dtype))


def test_bce_with_logits_at_zero_logit_and_soft_target():
    loss, cache = bce_with_logits_forward(np.array([0.0]), targets=np.array([0.25]))
    (dx,) = bce_with_logits_backward(np.array(1.0), cache)
    assert loss == pytest.approx(np.log(2.0))  # softplus(0) - 0.25 * 0
    assert dx[0] == pytest.approx(0.5 - 0.25)


def test_svm_hinge_at_the_kink_takes_jaxs_half_slope():
    """Margin exactly 0: x_0 - x_1 + 1 = 0 - 1 + 1. jnp.maximum's derivative at a tie is 1/2."""
    x, labels, dloss = np.array([[0.0, 1.0, -5.0]]), np.array([1]), np.array(3.0)
    loss, cache = svm_hinge_forward(x, labels=labels)
    (dx,) = svm_hinge_backward(dloss, cache)
    assert loss == 0.0
    np.testing.assert_array_equal(dx, [[1.5, -1.5, 0.0]])  # dL * (1/2, -1/2, 0)
    jax_dx = jax.grad(lambda a: jax_svm_hinge(a, labels=labels))(x) * dloss
    np.testing.assert_array_equal(dx, jax_dx)


def test_svm_hinge_counts_active_margins_per_row():
    """Row 0: both competitors beat the margin (count 2); row 1: neither does (count 0)."""
    x = np.array([[0.0, 0.5, 2.0], [5.0, 0.0, 1.0]])
    loss, cache = svm_hinge_forward(x, labels=np.array([0, 0]))
    (dx,) = svm_hinge_backward(np.array(1.0), cache)
    assert loss == pytest.approx((1.5 + 3.0) / 2)
    np.testing.assert_array_equal(dx, [[-1.0, 0.5, 0.5], [0.0, 0.0, 0.0]])


def test_mse_gradients_are_opposite_and_vanish_at_the_target():
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [3.0, 5.0]])
    loss, cache = mse_forward(x, y)
    dx, dy = mse_backward(np.array(1.0), cache)
    assert loss == (0 + 4 + 0 + 1) / 4
    np.testing.assert_array_equal(dx, [[0.0, 1.0], [0.0, -0.5]])  # 2 (x - y) / 4
    np.testing.assert_array_equal(dy, -dx)
    assert not np.shares_memory(dx, dy)


FORWARDS = {  # name: forward, backward, a valid call's (arrays, hyper)
    "softmax_cross_entropy": (softmax_cross_entropy_forward, softmax_cross_entropy_backward,
                              ((np.ones((2, 3)),), {"labels": LABELS})),
    "svm_hinge": (svm_hinge_forward, svm_hinge_backward, ((np.ones((2, 3)),), {"labels": LABELS})),
    "mse": (mse_forward, mse_backward, ((np.ones((2, 3)), np.zeros((2, 3))), {})),
    "bce_with_logits": (bce_with_logits_forward, bce_with_logits_backward,
                        ((np.ones((2, 3)),), {"targets": np.full((2, 3), 0.5)})),
}


@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_loss_is_a_0d_array(name):
    """A 0-d array, not the NumPy scalar a reduction returns."""
    forward, _, (arrays, hyper) = FORWARDS[name]
    loss, _ = forward(*arrays, **hyper)
    assert isinstance(loss, np.ndarray) and loss.shape == ()


@pytest.mark.parametrize("name", sorted(FORWARDS))
def test_loss_backward_takes_the_numpy_scalar_that_0d_arithmetic_returns(name):
    forward, backward, (arrays, hyper) = FORWARDS[name]
    loss, cache = forward(*arrays, **hyper)
    dloss = loss * 0 + 1  # NumPy returns np.float64, not a 0-d array
    assert isinstance(dloss, np.float64)
    from_scalar = backward(dloss, cache)
    for g, h in zip(from_scalar, backward(np.array(1.0), cache)):
        np.testing.assert_array_equal(g, h)


def test_loss_backward_refuses_a_python_float():
    """It takes the NumPy scalar that 0-d arithmetic returns (above), not a Python float."""
    _, cache = softmax_cross_entropy_forward(np.ones((2, 3)), labels=LABELS)
    with pytest.raises(TypeError, match="dout must be a numpy.ndarray of floats, got float"):
        softmax_cross_entropy_backward(1.0, cache)


@pytest.mark.parametrize("name", ["svm_hinge", "mse"])
def test_written_out_magnitude_is_the_jacobians(name):
    """These two give the default scale's own terms without building the Jacobian."""
    import dataclasses

    layer = LAYERS[name]
    plain = dataclasses.replace(layer, magnitude=None)
    rng = np.random.default_rng(4)
    for n, c in ((3, 4), (1, 1), (5, 2)):
        x = rng.standard_normal((n, c))
        arrays, hyper = ((x,), {"labels": rng.integers(0, c, n)}) if name == "svm_hinge" else ((x, x + rng.standard_normal((n, c))), {})
        written, derived = (Trial(lay, arrays, hyper).scales for lay in (layer, plain))
        for a, b in zip(written.outs + written.grads, derived.outs + derived.grads):
            np.testing.assert_allclose(a.magnitude, b.magnitude, rtol=1e-12, atol=1e-300)


