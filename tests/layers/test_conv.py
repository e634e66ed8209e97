"""Layer-specific cases for reference/conv.py: the derivation pages' small cases and edge cases.

Bad input is declared on the Layers (``verification/specs/conv.py``, ``errors=``) and walked
by the generic contract tests."""
import numpy as np
import pytest

from reference.conv import conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward
from verification.specs.conv import CONV1D_EDGES, CONV2D_EDGES, conv_case, naive_conv_backward, naive_conv_forward


def test_conv2d_zero_padding_matches_the_small_case_by_hand():
    """docs/derivations/conv2d.md: one channel, 3x3 input, 2x2 kernel, stride 1, padding 0."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y, cache = conv2d_forward(x, w, np.array([0.5]), padding=0)
    np.testing.assert_array_equal(y, [[[[37.5, 47.5], [67.5, 77.5]]]])
    dx, dw, db = conv2d_backward(np.array([[[[1.0, -1.0], [2.0, 3.0]]]]), cache)
    # dx: the full correlation of dy with the flipped kernel; dw: x correlated with dy
    np.testing.assert_array_equal(dx, [[[[1, 1, -2], [5, 8, 2], [6, 17, 12]]]])
    np.testing.assert_array_equal(dw, [[[[22, 27], [37, 42]]]])
    np.testing.assert_array_equal(db, [5])


def test_conv1d_stride_2_matches_the_small_case_by_hand():
    """docs/derivations/conv1d.md: L = 5, K = 2, stride 2; x5 is read by no window."""
    y, cache = conv1d_forward(np.array([[[1.0, 2, 3, 4, 5]]]), np.array([[[2.0, -1]]]), np.zeros(1), stride=2)
    np.testing.assert_array_equal(y, [[[0, 2]]])
    dx, dw, db = conv1d_backward(np.array([[[3.0, -2]]]), cache)
    np.testing.assert_array_equal(dx, [[[6, -3, -4, 2, 0]]])
    np.testing.assert_array_equal(dw, [[[-3, -2]]])
    np.testing.assert_array_equal(db, [1])


def test_conv1d_padding_1_matches_the_small_case_by_hand():
    """docs/derivations/conv1d.md: L = 2, K = 2, padding 1; dx is dxp cropped to x."""
    y, cache = conv1d_forward(np.array([[[1.0, 2]]]), np.array([[[3.0, 4]]]), np.zeros(1), padding=1)
    np.testing.assert_array_equal(y, [[[4, 11, 6]]])
    dx, dw, _ = conv1d_backward(np.array([[[1.0, 2, 3]]]), cache)
    np.testing.assert_array_equal(dx, [[[10, 17]]])
    np.testing.assert_array_equal(dw, [[[8, 5]]])


def test_conv2d_stride_2_puts_each_window_its_dy_times_the_kernel():
    """Non-overlapping 2x2 windows at stride 2: dx = kron(dy, w); the 5th row and column get 0."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 1, 5, 5)), rng.standard_normal((1, 1, 2, 2))
    _, cache = conv2d_forward(x, w, np.zeros(1), stride=2)
    dy = rng.standard_normal((1, 1, 2, 2))
    dx, _, _ = conv2d_backward(dy, cache)
    np.testing.assert_array_equal(dx[0, 0, :4, :4], np.kron(dy[0, 0], w[0, 0]))
    assert not dx[0, 0, 4].any() and not dx[0, 0, :, 4].any()


def test_padding_is_the_same_as_convolving_the_padded_input():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 2, 4, 3)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    y, cache = conv2d_forward(x, w, b, padding=(2, 1))
    y_pad, cache_pad = conv2d_forward(np.pad(x, ((0, 0), (0, 0), (2, 2), (1, 1))), w, b)
    np.testing.assert_allclose(y, y_pad, rtol=1e-13)
    dy = rng.standard_normal(y.shape)
    (dx, dw, db), (dx_pad, dw_pad, db_pad) = conv2d_backward(dy, cache), conv2d_backward(dy, cache_pad)
    np.testing.assert_allclose(dx, dx_pad[:, :, 2:-2, 1:-1], rtol=1e-13)
    np.testing.assert_allclose(dw, dw_pad, rtol=1e-13)
    np.testing.assert_allclose(db, db_pad, rtol=1e-13)


EXTRA_CASES = [
    ((2, 4, 5, 6), (6, 2, 3, 2), {"stride": (2, 3), "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
    ((1, 3, 7, 4), (3, 1, 3, 3), {"stride": 3, "padding": 2, "dilation": (1, 2), "groups": 3}),
    ((2, 2, 9), (4, 1, 3), {"stride": 2, "padding": 3, "dilation": 3, "groups": 2}),
]


@pytest.mark.parametrize("x_shape, w_shape, hyper",
                         [*map(conv_case, CONV2D_EDGES), *map(conv_case, CONV1D_EDGES), *EXTRA_CASES])
def test_vectorised_conv_agrees_with_naive_loops(x_shape, w_shape, hyper):
    """The im2col forward and transposed-convolution backward against one-term-at-a-time loops."""
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    forward, backward = (conv2d_forward, conv2d_backward) if len(x_shape) == 4 else (conv1d_forward, conv1d_backward)
    y, cache = forward(x, w, b, **hyper)
    y_loops, cache_loops = naive_conv_forward(x, w, b, **hyper)
    np.testing.assert_allclose(y, y_loops, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    for grad, grad_loops in zip(backward(dy, cache), naive_conv_backward(dy, cache_loops)):
        np.testing.assert_allclose(grad, grad_loops, rtol=1e-12, atol=1e-12)


def test_groups_keep_channels_apart():
    """Depthwise (groups = C = F): dy on filter 0 only reaches channel 0 of dx."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 1, 2, 2))
    y, cache = conv2d_forward(x, w, np.zeros(3), groups=3)
    dy = np.zeros(y.shape)
    dy[:, 0] = rng.standard_normal(y[:, 0].shape)
    dx, dw, _ = conv2d_backward(dy, cache)
    assert dx[:, 0].any() and not dx[:, 1:].any()
    assert dw[0].any() and not dw[1:].any()


def test_empty_batch_gives_zero_weight_gradients():
    x, w, b = np.zeros((0, 2, 4, 4)), np.ones((3, 2, 3, 3)), np.ones(3)
    y, cache = conv2d_forward(x, w, b, padding=1)
    dx, dw, db = conv2d_backward(np.zeros((0, 3, 4, 4)), cache)
    assert y.shape == (0, 3, 4, 4) and dx.shape == x.shape
    assert dw.shape == w.shape and db.shape == b.shape and not dw.any() and not db.any()
