"""Layer-specific cases for reference/regularisation.py (dropout): p = 1, an all-zero mask, bad input."""
import numpy as np
import pytest

from reference.regularisation import dropout_backward, dropout_forward


def test_dropout_small_case():
    x = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    mask = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    out, cache = dropout_forward(x, mask=mask, p=0.5)
    np.testing.assert_array_equal(out, [[2.0, 0.0, 6.0], [0.0, 10.0, -12.0]])
    (dx,) = dropout_backward(np.full((2, 3), 3.0), cache)
    np.testing.assert_array_equal(dx, [[6.0, 0.0, 6.0], [0.0, 6.0, 6.0]])  # dout * mask / p


def test_dropout_with_p_1_and_a_full_mask_is_the_identity_on_new_arrays():
    x, dout = np.arange(6.0).reshape(2, 3), np.arange(6.0, 12.0).reshape(2, 3)
    out, cache = dropout_forward(x, mask=np.ones_like(x), p=1)
    (dx,) = dropout_backward(dout, cache)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dx, dout)
    assert not np.shares_memory(out, x) and not np.shares_memory(dx, dout)


def test_dropout_with_an_all_zero_mask_passes_nothing():
    x = np.arange(1.0, 7.0).reshape(3, 2)
    out, cache = dropout_forward(x, mask=np.zeros_like(x), p=0.3)
    (dx,) = dropout_backward(np.ones_like(x), cache)
    assert not out.any() and not dx.any()


def test_dropout_keeps_float32_with_a_float64_mask():
    x = np.ones((2, 2), np.float32)
    out, cache = dropout_forward(x, mask=np.array([[1.0, 0.0], [1.0, 1.0]]), p=0.25)
    (dx,) = dropout_backward(np.ones_like(out), cache)
    assert out.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(dx, np.array([[4, 0], [4, 4]], np.float32))


def test_dropout_backward_uses_the_mask_of_the_forward_not_the_callers_array():
    x, mask = np.ones(4), np.array([1.0, 0.0, 1.0, 0.0])
    _, cache = dropout_forward(x, mask=mask, p=0.5)
    mask[:] = 1.0  # the caller reuses its buffer for the next step's mask
    np.testing.assert_array_equal(dropout_backward(np.ones(4), cache)[0], [2.0, 0.0, 2.0, 0.0])


@pytest.mark.parametrize("mask, p, error, message", [
    (np.array([1.0, 0.5]), 0.5, ValueError,
     "mask (shape (2,)) has an entry 0.5 that is neither 0 nor 1: a dropout mask keeps (1) or drops (0)"),
    (np.array([1.0, np.nan]), 0.5, ValueError, "has an entry nan that is neither 0 nor 1"),
    (np.ones(3), 0.5, ValueError, "mask has shape (3,) but x has shape (2,): they must have the same shape"),
    (np.array([True, False]), 0.5, TypeError, "mask has dtype bool (shape (2,)) but float32 or float64"),
    (np.ones(2), 0.0, ValueError, "p is 0.0 but must lie in (0.0, 1.0]"),
    (np.ones(2), 1.5, ValueError, "p is 1.5 but must lie in (0.0, 1.0]"),
    (np.ones(2), "0.5", TypeError, "p must be a real number, got str '0.5'"),
])
def test_dropout_rejects_bad_input(mask, p, error, message):
    with pytest.raises(error) as raised:
        dropout_forward(np.ones(2), mask=mask, p=p)
    assert message in str(raised.value)


def test_dropout_backward_rejects_dout_of_another_shape():
    _, cache = dropout_forward(np.ones((2, 3)), mask=np.ones((2, 3)), p=0.5)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2\) but the forward output has shape \(2, 3\)"):
        dropout_backward(np.ones((3, 2)), cache)
