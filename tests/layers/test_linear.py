"""Layer-specific cases for reference/linear.py: the seed's small case, edge shapes, bad input."""
import tracemalloc

import numpy as np
import pytest

from reference.linear import affine_backward, affine_forward, linear_backward, linear_forward


def test_linear_backward_matches_the_seed_notes_small_case():
    """N = 2, D = 2, M = 3, element by element, as in equations (11)-(24) of the note."""
    rng = np.random.default_rng(7)
    x, w, dy = rng.standard_normal((2, 2)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    _, cache = linear_forward(x, w)
    dx, dw = linear_backward(dy, cache)
    for i in range(2):
        for k in range(2):  # dL/dx_ik = sum_j dL/dy_ij w_kj
            assert dx[i, k] == pytest.approx(sum(dy[i, j] * w[k, j] for j in range(3)))
    for k in range(2):
        for j in range(3):  # dL/dw_kj = sum_i x_ik dL/dy_ij
            assert dw[k, j] == pytest.approx(sum(x[i, k] * dy[i, j] for i in range(2)))


def test_linear_keeps_float32():
    x, w = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    y, cache = linear_forward(x, w)
    dx, dw = linear_backward(np.ones_like(y), cache)
    assert (y.dtype, dx.dtype, dw.dtype) == (np.float32,) * 3


def test_affine_empty_batch_gives_zero_weight_gradients():
    x, w, b = np.zeros((0, 2, 3)), np.ones((6, 4)), np.ones(4)
    y, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(np.zeros((0, 4)), cache)
    assert y.shape == (0, 4) and dx.shape == (0, 2, 3)
    assert not dw.any() and not db.any() and dw.shape == (6, 4) and db.shape == (4,)


def test_affine_flattens_and_restores_x():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((12, 5)), rng.standard_normal(5)
    y, cache = affine_forward(x, w, b)
    np.testing.assert_allclose(y, x.reshape(2, 12) @ w + b)
    dx, _, _ = affine_backward(np.ones((2, 5)), cache)
    assert dx.shape == x.shape


def test_linear_backward_never_forms_a_jacobian():
    """At the seed's N = 64, D = M = 4096 the backward allocates its two results and no more.

    dY/dX alone would be 256 GiB in float32; the backward's peak is dX + dW (65 MiB).
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4096), dtype=np.float32)
    w = rng.standard_normal((4096, 4096), dtype=np.float32)
    dy = rng.standard_normal((64, 4096), dtype=np.float32)
    _, cache = linear_forward(x, w)
    tracemalloc.start()
    dx, dw = linear_backward(dy, cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 1.05 * (dx.nbytes + dw.nbytes)


BAD_LINEAR = [
    ((np.ones((3, 4)), np.ones((5, 2))), ValueError,
     "w has shape (5, 2) but x has shape (3, 4): w.shape[0] must equal x.shape[1] = 4"),
    ((np.ones(4), np.ones((4, 2))), ValueError, "x has shape (4,) but a 2-d array (N, D) is expected"),
    ((np.ones((3, 4)), np.ones((4, 2, 1))), ValueError, "w has shape (4, 2, 1) but a 2-d array (D, M)"),
    ((np.ones((3, 4), int), np.ones((4, 2))), TypeError, "x has dtype int64 (shape (3, 4)) but float32 or float64"),
    (([[1.0, 2.0]], np.ones((2, 2))), TypeError, "x must be a numpy.ndarray of floats, got list"),
    ((np.ones((3, 4), np.float32), np.ones((4, 2))), TypeError, "w has dtype float64 but x has dtype float32"),
]


@pytest.mark.parametrize("args, error, message", BAD_LINEAR, ids=range(len(BAD_LINEAR)))
def test_linear_forward_rejects_bad_input(args, error, message):
    with pytest.raises(error) as raised:
        linear_forward(*args)
    assert message in str(raised.value)


BAD_AFFINE = [
    ((np.ones((2, 3, 4)), np.ones((7, 5)), np.ones(5)), ValueError,
     "w has shape (7, 5) but x has shape (2, 3, 4): w.shape[0] must equal the product of x.shape[1:] = 12"),
    ((np.ones((2, 3)), np.ones((3, 5)), np.ones(4)), ValueError,
     "b has shape (4,) but w has shape (3, 5): b.shape[0] must equal w.shape[1] = 5"),
    ((np.ones((2, 3)), np.ones((3, 5)), np.ones((1, 5))), ValueError, "b has shape (1, 5) but a 1-d array (M,)"),
    ((np.ones(3), np.ones((3, 5)), np.ones(5)), ValueError, "x has shape (3,) but an array of at least 2"),
]


@pytest.mark.parametrize("args, error, message", BAD_AFFINE, ids=range(len(BAD_AFFINE)))
def test_affine_forward_rejects_bad_input(args, error, message):
    with pytest.raises(error) as raised:
        affine_forward(*args)
    assert message in str(raised.value)


@pytest.mark.parametrize("dout, error, message", [
    (np.ones((3, 5)), ValueError, "dout has shape (3, 5) but the forward output has shape (3, 2)"),
    (np.ones((3, 2), np.float32), TypeError, "dout has dtype float32 but the forward ran in float64"),
    (np.ones((3, 2), int), TypeError, "dout has dtype int64"),
])
def test_backward_rejects_bad_dout(dout, error, message):
    _, cache = linear_forward(np.ones((3, 4)), np.ones((4, 2)))
    with pytest.raises(error) as raised:
        linear_backward(dout, cache)
    assert message in str(raised.value)
