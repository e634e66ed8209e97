"""Layer-specific cases for reference/linear.py: the seed's small case, edge shapes, no Jacobian.

Bad input is declared on the Layers (``verification/specs/linear.py``, ``errors=``)."""
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
