"""Layer-specific cases for reference/conv_transpose.py: the derivation page's small cases, the
adjointness with the reference conv2d, PyTorch's output size, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.conv import conv2d_forward
from reference.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from verification import LAYERS
from verification.specs.conv_transpose import (
    EDGES, _configs, jax_conv_transpose2d, naive_conv_transpose2d_backward, naive_conv_transpose2d_forward,
)
from verification.tolerance import C

HYPER = ("stride", "padding", "output_padding", "dilation", "groups")


def _arrays(config, rng, dtype=np.float64):
    x = rng.standard_normal((config["N"], config["C"], config["H"], config["W"])).astype(dtype)
    w = rng.standard_normal((config["C"], config["F"] // config["groups"], config["KH"], config["KW"])).astype(dtype)
    return x, w, rng.standard_normal(config["F"]).astype(dtype)


def test_stride_1_matches_the_small_case_by_hand():
    """docs/derivations/conv_transpose2d.md: x 2x2, w 2x2, stride 1 -> y 3x3, each x_ij stamps x_ij w at (i, j)."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.array([[[[1.0, -1.0], [2.0, 0.5]]]])
    y, cache = conv_transpose2d_forward(x, w, np.array([0.25]))
    np.testing.assert_array_equal(y, [[[[1.25, 1.25, -1.75], [5.25, 5.75, -2.75], [6.25, 9.75, 2.25]]]])
    dy = np.array([[[[1.0, 0.0, -1.0], [2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]]])
    dx, dw, db = conv_transpose2d_backward(dy, cache)
    # dx[i, j] = sum_k w[k] dy[(i, j) + k]: the window of dy that x_ij stamped, dotted with w
    np.testing.assert_array_equal(dx, [[[[5.5, 3.0], [2.5, 7.5]]]])
    # dw[k] = sum_ij x[i, j] dy[(i, j) + k]
    np.testing.assert_array_equal(dw, [[[[11.0, 1.0], [16.0, 14.0]]]])
    np.testing.assert_array_equal(db, [7.0])


def test_stride_2_places_the_stamps_two_apart():
    """One row: x = [1, 10], w = [1, 2, 3], stride 2: the two stamps overlap at one position."""
    x = np.array([[[[1.0, 10.0]]]])
    w = np.array([[[[1.0, 2.0, 3.0]]]])
    y, cache = conv_transpose2d_forward(x, w, np.zeros(1), stride=2)
    np.testing.assert_array_equal(y, [[[[1.0, 2.0, 13.0, 20.0, 30.0]]]])
    dx, dw, _ = conv_transpose2d_backward(np.array([[[[1.0, 0.0, 1.0, 0.0, 2.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[4.0, 7.0]]]])
    np.testing.assert_array_equal(dw, [[[[11.0, 0.0, 21.0]]]])


def test_output_padding_and_padding_as_pytorch_defines_them():
    """padding crops p from every side of the full output; output_padding adds back at the bottom and right."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 3, 3, 3)), np.zeros(3)
    full, _ = conv_transpose2d_forward(x, w, b, stride=2)  # (3 - 1) 2 + 3 = 7
    cropped, _ = conv_transpose2d_forward(x, w, b, stride=2, padding=1, output_padding=1)
    assert full.shape == (1, 3, 7, 7) and cropped.shape == (1, 3, 6, 6)  # 16 -> 32 in the bench, 3 -> 6 here
    np.testing.assert_array_equal(cropped, full[:, :, 1:7, 1:7])


@pytest.mark.parametrize("config", EDGES)
def test_vectorised_agrees_with_naive_loops(config):
    rng = np.random.default_rng(1)
    x, w, b = _arrays(config, rng)
    hyper = {k: config[k] for k in HYPER}
    y, cache = conv_transpose2d_forward(x, w, b, **hyper)
    y_loops, cache_loops = naive_conv_transpose2d_forward(x, w, b, **hyper)
    np.testing.assert_allclose(y, y_loops, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    for grad, grad_loops in zip(conv_transpose2d_backward(dy, cache), naive_conv_transpose2d_backward(dy, cache_loops)):
        np.testing.assert_allclose(grad, grad_loops, rtol=1e-12, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(config=_configs(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose2d_is_the_adjoint_of_conv2d(config, seed):
    """<conv_transpose2d(x, w), y> = <x, conv2d(y, w)> with b = 0: the same w, read by conv2d as
    (F' = C, C'/groups = F/groups, KH, KW), the same stride, padding, dilation and groups. conv2d's
    output has H + output_padding // stride rows (more than x's when output_padding >= stride): the
    extra ones are windows no input position scatters through, so x pairs with the first H x W.
    Both sides add the same terms x[i] w[k] y[i s + k d - p], so they agree within C eps sum |terms|."""
    rng = np.random.default_rng(seed)
    x, w, _ = _arrays(config, rng)
    hyper = {k: config[k] for k in HYPER}
    zeros = np.zeros(config["F"])
    transposed, _ = conv_transpose2d_forward(x, w, zeros, **hyper)
    y = rng.standard_normal(transposed.shape)
    del hyper["output_padding"]
    adjoint, _ = conv2d_forward(y, w, np.zeros(config["C"]), **hyper)
    h, wd = config["H"], config["W"]
    assert adjoint.shape[2:] == (h + config["output_padding"][0] // config["stride"][0],
                                 wd + config["output_padding"][1] // config["stride"][1])
    lhs, rhs = np.sum(transposed * y), np.sum(x * adjoint[:, :, :h, :wd])
    terms = np.sum(conv_transpose2d_forward(np.abs(x), np.abs(w), zeros, stride=config["stride"],
                                            padding=config["padding"], output_padding=config["output_padding"],
                                            dilation=config["dilation"], groups=config["groups"])[0] * np.abs(y))
    assert abs(lhs - rhs) <= C * np.finfo(np.float64).eps * terms


@pytest.mark.parametrize("config", EDGES)
def test_the_spec_is_the_vjp_of_xla_convolution(config):
    """The JAX spec (a convolution over the stride-dilated input) against the definition as an
    adjoint: the pullback of lax.conv_general_dilated, evaluated at x."""
    import jax
    from jax import lax

    rng = np.random.default_rng(2)
    x, w, b = _arrays(config, rng)
    hyper = {k: config[k] for k in HYPER}
    y = np.asarray(jax_conv_transpose2d(x, w, b, **hyper))

    def conv(z):
        return lax.conv_general_dilated(z, w, config["stride"], [(p, p) for p in config["padding"]],
                                        rhs_dilation=config["dilation"], dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                        feature_group_count=config["groups"])

    _, pullback = jax.vjp(conv, np.zeros(y.shape[:1] + (w.shape[1] * config["groups"],) + y.shape[2:]))
    grown = np.zeros(jax.eval_shape(conv, np.zeros(y.shape)).shape)
    grown[:, :, :config["H"], :config["W"]] = x
    (expected,) = pullback(grown)
    np.testing.assert_allclose(y, np.asarray(expected) + b[:, None, None], rtol=1e-12, atol=1e-12)


def test_conv_transpose_keeps_float32():
    x, w, b = np.ones((2, 4, 3, 3), np.float32), np.ones((4, 1, 3, 3), np.float32), np.ones(2, np.float32)
    y, cache = conv_transpose2d_forward(x, w, b, stride=2, padding=1, output_padding=1, groups=2)
    grads = conv_transpose2d_backward(np.ones_like(y), cache)
    assert y.shape == (2, 2, 6, 6) and [a.dtype for a in (y, *grads)] == [np.float32] * 4


def test_empty_batch_gives_zero_weight_gradients():
    x, w, b = np.zeros((0, 2, 3, 3)), np.ones((2, 3, 2, 2)), np.ones(3)
    y, cache = conv_transpose2d_forward(x, w, b, stride=2)
    dx, dw, db = conv_transpose2d_backward(np.zeros(y.shape), cache)
    assert y.shape == (0, 3, 6, 6) and dx.shape == x.shape and not dw.any() and not db.any()


def test_forward_rejects_each_declared_bad_input():
    layer = LAYERS["conv_transpose2d"]
    assert layer.errors
    for case in layer.errors:
        with pytest.raises(case.error, match=case.match):
            layer.forward(*case.arrays, **case.hyper)


def test_backward_rejects_bad_dout():
    _, cache = conv_transpose2d_forward(np.ones((2, 4, 3, 3)), np.ones((4, 2, 3, 3)), np.ones(2))
    expected = r"dout has shape \(2, 2, 3, 3\) but the forward output has shape \(2, 2, 5, 5\)"
    with pytest.raises(ValueError, match=expected):
        conv_transpose2d_backward(np.ones((2, 2, 3, 3)), cache)


def test_every_edge_configuration_is_valid_and_runs():
    """The edge cases are configurations of the space: the same keys, PyTorch's constraint, and they run."""
    space = LAYERS["conv_transpose2d"].space
    for config in EDGES:
        assert all(op < max(s, d) for op, s, d in zip(config["output_padding"], config["stride"], config["dilation"]))

    @settings(max_examples=20, deadline=None, database=None)
    @given(drawn=space.draws(EDGES), config=space.configs)
    def run(drawn, config):
        assert set(drawn[0]) == set(config)
        arrays, hyper = drawn[1]
        out, cache = conv_transpose2d_forward(*arrays, **hyper)
        assert [g.shape for g in conv_transpose2d_backward(np.ones_like(out), cache)] == [a.shape for a in arrays]

    run()
