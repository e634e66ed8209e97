"""Layer-specific cases for reference/regularisation.py (dropout): p = 1, an all-zero mask, a 0-d x.

Bad input is declared on the Layer (``verification/specs/regularisation.py``, ``errors=``)."""
import numpy as np

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


def test_dropout_backward_uses_the_mask_of_the_forward_not_the_callers_array():
    x, mask = np.ones(4), np.array([1.0, 0.0, 1.0, 0.0])
    _, cache = dropout_forward(x, mask=mask, p=0.5)
    mask[:] = 1.0  # the caller reuses its buffer for the next step's mask
    np.testing.assert_array_equal(dropout_backward(np.ones(4), cache)[0], [2.0, 0.0, 2.0, 0.0])


def test_dropout_of_a_0d_x_returns_arrays_not_scalars():
    """A ufunc on 0-d arrays returns a NumPy scalar; out, the cached scale and dx stay arrays."""
    out, cache = dropout_forward(np.array(3.0), mask=np.array(1.0), p=0.5)
    (dx,) = dropout_backward(np.array(2.0), cache)
    for result in (out, cache.scale, dx):
        assert isinstance(result, np.ndarray) and result.shape == ()
    assert (out, dx) == (6.0, 4.0)
