"""Layer-specific cases for reference/pooling.py: small cases by hand, overlaps, ties, gaps.

Bad input is declared on the Layers (``verification/specs/pooling.py``, ``errors=``)."""
import jax
import numpy as np
import pytest

from reference.pooling import (
    avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
    max_pool2d_backward, max_pool2d_forward,
)
from verification.specs.pooling import jax_max_pool2d


def _plane(rows):
    return np.array(rows, dtype=np.float64)[None, None]


def test_max_pool2d_stride_2_routes_dy_to_each_argmax():
    """docs/derivations/max_pool2d.md: a 4x4 plane, 2x2 windows, stride 2 (the default)."""
    x = _plane([[1, 5, 2, 0], [3, 4, 8, 7], [0, 2, 1, 1], [6, 1, 3, 9]])
    y, cache = max_pool2d_forward(x, kernel=2)
    np.testing.assert_array_equal(y, _plane([[5, 8], [6, 9]]))
    (dx,) = max_pool2d_backward(_plane([[1, 2], [3, 4]]), cache)
    np.testing.assert_array_equal(dx, _plane([[0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0], [3, 0, 0, 4]]))


def test_max_pool2d_overlapping_windows_accumulate():
    """3x3 plane, 2x2 windows, stride 1: the centre is the maximum of all four windows."""
    x = _plane([[1, 2, 3], [4, 9, 5], [6, 7, 8]])
    _, cache = max_pool2d_forward(x, kernel=2, stride=1)
    (dx,) = max_pool2d_backward(_plane([[1, 10], [100, 1000]]), cache)
    np.testing.assert_array_equal(dx, _plane([[0, 0, 0], [0, 1111, 0], [0, 0, 0]]))


TIES = [
    # every entry tied: each window's first entry (row-major) takes its dy
    (np.ones((3, 3)), (2, 2), (1, 1), [[1, 10], [100, 1000]], [[1, 10, 0], [100, 1000, 0], [0, 0, 0]]),
    # ties along a row and down a column, in overlapping windows
    ([[0, 5, 5], [5, 1, 5], [5, 5, 0]], (2, 2), (1, 1), [[1, 10], [100, 1000]],
     [[0, 11, 0], [100, 0, 1000], [0, 0, 0]]),
    # a 2x3 window tied between its first and last entries
    ([[7, 0, 1], [2, 3, 7]], (2, 3), (1, 1), [[5]], [[5, 0, 0], [0, 0, 0]]),
]


@pytest.mark.parametrize("x, kernel, stride, dy, expected", TIES, ids=range(len(TIES)))
def test_max_pool2d_tie_goes_to_the_first_maximum_in_row_major_order(x, kernel, stride, dy, expected):
    """The documented choice at a tie, where the max has no derivative; it is also jax.vjp's on CPU."""
    x, dy = _plane(x), _plane(dy)
    _, cache = max_pool2d_forward(x, kernel=kernel, stride=stride)
    (dx,) = max_pool2d_backward(dy, cache)
    np.testing.assert_array_equal(dx, _plane(expected))
    _, pullback = jax.vjp(lambda a: jax_max_pool2d(a, kernel=kernel, stride=stride), x)
    np.testing.assert_array_equal(np.asarray(pullback(dy)[0]), dx)


def test_avg_pool2d_stride_2_spreads_a_quarter_of_dy_over_each_window():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, cache = avg_pool2d_forward(x, kernel=(2, 2), stride=(2, 2))
    np.testing.assert_array_equal(y, _plane([[2.5, 4.5], [10.5, 12.5]]))
    (dx,) = avg_pool2d_backward(_plane([[4, 8], [-4, 0]]), cache)
    np.testing.assert_array_equal(dx, _plane([[1, 1, 2, 2], [1, 1, 2, 2], [-1, -1, 0, 0], [-1, -1, 0, 0]]))


def test_avg_pool2d_overlapping_windows_accumulate():
    """docs/derivations/avg_pool2d.md: 3x3 plane, 2x2 windows, stride 1."""
    _, cache = avg_pool2d_forward(np.zeros((1, 1, 3, 3)), kernel=2, stride=1)
    (dx,) = avg_pool2d_backward(_plane([[1, 2], [3, 4]]), cache)
    np.testing.assert_array_equal(dx, _plane([[0.25, 0.75, 0.5], [1, 2.5, 1.5], [0.75, 1.75, 1]]))


def test_avg_pool2d_rows_outside_every_window_get_zero():
    """H = 5, KH = 2, stride 2: row 4 is in no window."""
    _, cache = avg_pool2d_forward(np.ones((2, 3, 5, 4)), kernel=2)
    (dx,) = avg_pool2d_backward(np.ones((2, 3, 2, 2)), cache)
    assert not dx[:, :, 4].any() and np.all(dx[:, :, :4] == 0.25)


def test_global_avg_pool_spreads_dy_over_the_plane():
    x = np.arange(12.0).reshape(1, 2, 2, 3)
    y, cache = global_avg_pool_forward(x)
    np.testing.assert_array_equal(y, [[2.5, 8.5]])
    (dx,) = global_avg_pool_backward(np.array([[6.0, -12.0]]), cache)
    np.testing.assert_array_equal(dx, np.stack([np.full((2, 3), 1.0), np.full((2, 3), -2.0)])[None])
    assert dx.flags.writeable


@pytest.mark.parametrize("forward", [max_pool2d_forward, avg_pool2d_forward])
def test_pooling_empty_batch(forward):
    y, cache = forward(np.zeros((0, 2, 4, 4)), kernel=2)
    backward = max_pool2d_backward if forward is max_pool2d_forward else avg_pool2d_backward
    (dx,) = backward(np.zeros(y.shape), cache)
    assert y.shape == (0, 2, 2, 2) and dx.shape == (0, 2, 4, 4)
