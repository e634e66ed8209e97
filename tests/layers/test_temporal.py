"""Layer-specific cases for reference/temporal.py: the derivation pages' small cases, the mask
and the divide-by-N convention, extreme scores."""
import math

import numpy as np
import pytest

from reference.linear import affine_forward
from reference.temporal import (
    temporal_affine_backward, temporal_affine_forward, temporal_softmax_loss_backward,
    temporal_softmax_loss_forward,
)


def test_temporal_affine_is_the_affine_layer_at_every_step():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((5, 2)), rng.standard_normal(2)
    out, _ = temporal_affine_forward(x, w, b)
    for t in range(4):
        np.testing.assert_allclose(out[:, t], affine_forward(x[:, t], w, b)[0], rtol=1e-14)


def test_temporal_affine_small_case_by_hand():
    """docs/derivations/temporal_affine.md: N = 1, T = 2, D = 2, M = 1."""
    x = np.array([[[1.0, 2.0], [3.0, -1.0]]])
    out, cache = temporal_affine_forward(x, np.array([[0.5], [-2.0]]), np.array([0.25]))
    np.testing.assert_array_equal(out, [[[-3.25], [3.75]]])
    dx, dw, db = temporal_affine_backward(np.array([[[2.0], [-1.0]]]), cache)
    np.testing.assert_array_equal(dx, [[[1.0, -4.0], [-0.5, 2.0]]])
    np.testing.assert_array_equal(dw, [[2.0 * 1 - 1.0 * 3], [2.0 * 2 - 1.0 * -1]])
    np.testing.assert_array_equal(db, [1.0])


def test_temporal_softmax_loss_small_case_by_hand():
    """docs/derivations/temporal_softmax_loss.md: N = 2, T = 2, V = 3, position (1, 1) masked."""
    x = np.array([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
                  [[2.0, 0.0, 0.0], [5.0, -5.0, 9.0]]])
    labels = np.array([[2, 0], [1, 2]])
    mask = np.array([[True, True], [True, False]])
    loss, cache = temporal_softmax_loss_forward(x, labels=labels, mask=mask)
    lse = lambda row: math.log(sum(math.exp(v) for v in row))  # noqa: E731
    expected = ((lse([1, 2, 3]) - 3) + (lse([0, 0, 0]) - 0) + (lse([2, 0, 0]) - 0)) / 2  # divided by N = 2
    assert float(loss) == pytest.approx(expected, rel=1e-15)
    (dx,) = temporal_softmax_loss_backward(np.array(3.0), cache)
    p = np.exp(x - x.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    onehot = np.eye(3)[labels]
    np.testing.assert_allclose(dx, 3.0 * (p - onehot) * mask[..., None] / 2, rtol=1e-15)
    np.testing.assert_array_equal(dx[1, 1], 0.0)


def test_masked_positions_contribute_exactly_nothing():
    """Whatever a masked position holds (scores of +-1000, any label), L and dx ignore it."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5))
    labels = rng.integers(0, 5, (3, 4))
    mask = rng.random((3, 4)) < 0.5
    mask[1] = False  # a whole sequence masked
    wild = x.copy()
    wild[~mask] = 1000.0 * rng.choice([-1.0, 1.0], size=(int((~mask).sum()), 5))
    loss, cache = temporal_softmax_loss_forward(x, labels=labels, mask=mask)
    wild_loss, wild_cache = temporal_softmax_loss_forward(wild, labels=(labels + 1) % 5 * ~mask + labels * mask,
                                                          mask=mask)
    assert float(loss) == float(wild_loss)
    (dx,), (wild_dx,) = (temporal_softmax_loss_backward(np.array(1.0), c) for c in (cache, wild_cache))
    np.testing.assert_array_equal(dx, wild_dx)
    assert not dx[~mask].any()


def test_the_sum_is_divided_by_n_not_by_the_positions_counted():
    x = np.zeros((4, 3, 2))  # every position's loss is log 2
    mask = np.zeros((4, 3), bool)
    mask[0, 0] = True
    loss, _ = temporal_softmax_loss_forward(x, labels=np.zeros((4, 3), np.int64), mask=mask)
    assert float(loss) == pytest.approx(math.log(2) / 4, rel=1e-15)


def test_everything_masked_gives_zero_loss_and_gradient():
    x = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    loss, cache = temporal_softmax_loss_forward(x, labels=np.ones((2, 3), np.int64), mask=np.zeros((2, 3), bool))
    (dx,) = temporal_softmax_loss_backward(np.float32(1.0), cache)
    assert loss.dtype == np.float32 and float(loss) == 0.0
    assert dx.dtype == np.float32 and not dx.any()


def test_extreme_scores_stay_finite_in_float32():
    """Scores of +-1000 overflow exp in float32 without the max shift; with it, p is exact."""
    x = np.array([[[1000.0, -1000.0], [-1000.0, 1000.0]]], np.float32)
    loss, cache = temporal_softmax_loss_forward(x, labels=np.array([[1, 1]]), mask=np.array([[True, True]]))
    assert float(loss) == 2000.0
    (dx,) = temporal_softmax_loss_backward(np.float32(1.0), cache)
    np.testing.assert_array_equal(dx, [[[1.0, -1.0], [0.0, 0.0]]])
