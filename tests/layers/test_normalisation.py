"""Layer-specific cases for reference/normalisation.py: the derivations' small cases, the
relations between the layers, degenerate and offset inputs.

Bad input is each layer's ``errors`` in verification/specs/normalisation.py; the space
there draws eps as a NumPy float64, which must not promote float32 arithmetic."""
import numpy as np
import pytest

from reference.normalisation import (
    batchnorm_alt_backward, batchnorm_alt_forward, batchnorm_backward, batchnorm_forward,
    groupnorm_backward, groupnorm_forward, layernorm_backward, layernorm_forward,
    rmsnorm_backward, rmsnorm_forward, spatial_batchnorm_backward, spatial_batchnorm_forward,
)

RNG = np.random.default_rng(12)

# name -> (forward, backward, x shape, hyperparameters, has beta)
LAYERS = {
    "batchnorm": (batchnorm_forward, batchnorm_backward, (5, 3), {}, True),
    "batchnorm_alt": (batchnorm_alt_forward, batchnorm_alt_backward, (5, 3), {}, True),
    "spatial_batchnorm": (spatial_batchnorm_forward, spatial_batchnorm_backward, (2, 3, 2, 2), {}, True),
    "layernorm": (layernorm_forward, layernorm_backward, (4, 5), {}, True),
    "groupnorm": (groupnorm_forward, groupnorm_backward, (2, 4, 2, 3), {"groups": 2}, True),
    "rmsnorm": (rmsnorm_forward, rmsnorm_backward, (4, 5), {}, False),
}


def _inputs(shape, with_beta=True):
    c = shape[1]
    return [RNG.standard_normal(shape), RNG.standard_normal(c)] + ([RNG.standard_normal(c)] if with_beta else [])


def _run(name, arrays, dout=None, **hyper):
    forward, backward, _, default_hyper, _ = LAYERS[name]
    out, cache = forward(*arrays, **{**default_hyper, **hyper})
    dout = RNG.standard_normal(out.shape).astype(out.dtype) if dout is None else dout
    return out, backward(dout, cache), dout


# --- the derivations' small cases -------------------------------------------------------

@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_alt"])
def test_batchnorm_two_examples_match_the_closed_form_of_the_note(name):
    """N = 2, one feature: dx1 = -dx2 = gamma eps (dy1 - dy2) / (2 sigma^3) (batchnorm.md)."""
    x, gamma, beta, eps = np.array([[0.3], [-1.1]]), np.array([1.7]), np.array([0.2]), 0.05
    dy = np.array([[0.8], [-0.4]])
    _, (dx, dgamma, dbeta), _ = _run(name, (x, gamma, beta), dy, eps=eps)
    sigma = np.sqrt(((x[0, 0] - x[1, 0]) / 2) ** 2 + eps)
    expected = gamma[0] * eps * (dy[0, 0] - dy[1, 0]) / (2 * sigma ** 3)
    np.testing.assert_allclose(dx[:, 0], [expected, -expected], rtol=1e-12)
    xhat = (x[:, 0] - x.mean()) / sigma
    np.testing.assert_allclose(dgamma, [dy[:, 0] @ xhat], rtol=1e-12)
    np.testing.assert_allclose(dbeta, [dy.sum()], rtol=1e-12)


def test_rmsnorm_matches_the_numbers_of_the_note():
    """x = (3, 4), eps -> 0, gamma = 1, dy = (1, 0): dx = (0.181, -0.136) and x . dx = 0 (rmsnorm.md)."""
    x = np.array([[3.0, 4.0]])
    _, (dx, dgamma), _ = _run("rmsnorm", (x, np.ones(2)), np.array([[1.0, 0.0]]), eps=1e-300)
    r = np.sqrt(12.5)
    np.testing.assert_allclose(dx, [[(1 - 4.5 / 12.5) / r, -(6.0 / 12.5) / r]], rtol=1e-12)
    assert abs(float(x[0] @ dx[0])) < 1e-15
    np.testing.assert_allclose(dgamma, [3 / r, 0.0])


# --- relations between the layers --------------------------------------------------------

def test_batchnorm_and_batchnorm_alt_give_the_same_gradients():
    arrays = _inputs((7, 4))
    dout = RNG.standard_normal((7, 4))
    out, staged, _ = _run("batchnorm", arrays, dout)
    out_alt, closed, _ = _run("batchnorm_alt", arrays, dout)
    np.testing.assert_array_equal(out, out_alt)  # one forward
    for g, g_alt in zip(staged, closed):
        np.testing.assert_allclose(g, g_alt, rtol=1e-10, atol=1e-13)


def test_spatial_batchnorm_is_batchnorm_of_the_pixels_by_channels_matrix():
    x, gamma, beta = _inputs((3, 4, 2, 5))
    dout = RNG.standard_normal(x.shape)
    rows = lambda t: t.transpose(0, 2, 3, 1).reshape(-1, 4)  # noqa: E731  (N*H*W, C)
    out, (dx, dgamma, dbeta), _ = _run("spatial_batchnorm", (x, gamma, beta), dout)
    out_bn, (dx_bn, dgamma_bn, dbeta_bn), _ = _run("batchnorm", (rows(x), gamma, beta), rows(dout))
    np.testing.assert_allclose(rows(out), out_bn, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rows(dx), dx_bn, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dgamma, dgamma_bn, rtol=1e-12)
    np.testing.assert_allclose(dbeta, dbeta_bn, rtol=1e-12)


def test_groupnorm_with_one_group_is_layernorm_of_the_flattened_example():
    """G = 1: layernorm over (C, H, W), with gamma repeated over each channel's pixels;
    dgamma is then layernorm's dgamma summed over each channel's pixels."""
    n, c, h, w = 3, 4, 2, 3
    x, gamma, beta = _inputs((n, c, h, w))
    dout = RNG.standard_normal(x.shape)
    out, (dx, dgamma, dbeta), _ = _run("groupnorm", (x, gamma, beta), dout, groups=1)
    flat_params = (np.repeat(gamma, h * w), np.repeat(beta, h * w))
    out_ln, (dx_ln, dgamma_ln, dbeta_ln), _ = _run("layernorm", (x.reshape(n, -1), *flat_params),
                                                   dout.reshape(n, -1))
    np.testing.assert_allclose(out.reshape(n, -1), out_ln, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx.reshape(n, -1), dx_ln, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dgamma, dgamma_ln.reshape(c, h * w).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(dbeta, dbeta_ln.reshape(c, h * w).sum(axis=1), rtol=1e-12)


def test_groupnorm_with_one_channel_per_group_normalises_each_channel_over_its_pixels():
    x, gamma, beta = _inputs((2, 3, 2, 2))
    out, _, _ = _run("groupnorm", (x, gamma, beta), groups=3)
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


# --- degenerate and offset inputs --------------------------------------------------------

@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_alt"])
def test_batchnorm_of_one_example_outputs_beta_and_has_zero_input_gradient(name):
    """N = 1: the mean is the example itself, so var = 0, xhat = 0, y = beta for any x; dx = 0
    exactly, dgamma = 0, dbeta = dout (batchnorm.md, edge cases)."""
    x, gamma, beta = _inputs((1, 4))
    out, (dx, dgamma, dbeta), dout = _run(name, (x, gamma, beta))
    np.testing.assert_array_equal(out, beta[None, :])
    assert not dx.any() and not dgamma.any()
    np.testing.assert_array_equal(dbeta, dout[0])


@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_alt"])
def test_batchnorm_is_shift_invariant_at_a_large_offset(name):
    """x = 1e4 + noise in float64: the two-pass variance keeps every digit the shift allows
    (a one-pass mean(x^2) - mean^2 would lose about 8 of the 16)."""
    noise = np.round(RNG.standard_normal((6, 3)) * 2**20) / 2**20  # 1e4 + noise is exact
    gamma, beta, dout = RNG.standard_normal(3), RNG.standard_normal(3), RNG.standard_normal((6, 3))
    out, grads, _ = _run(name, (noise, gamma, beta), dout)
    out_far, grads_far, _ = _run(name, (1e4 + noise, gamma, beta), dout)
    # the shift's own rounding: the mean of 1e4 + noise is off by ~1e4 * 2^-52 ~ 2e-12
    np.testing.assert_allclose(out_far, out, rtol=0, atol=1e-10)
    for g_far, g in zip(grads_far, grads):
        np.testing.assert_allclose(g_far, g, rtol=0, atol=1e-10 * np.abs(g).max())


def test_batchnorm_at_a_large_offset_passes_every_check():
    from verification import LAYERS, examine

    x = 1e4 + RNG.standard_normal((4, 2))
    example = examine(LAYERS["batchnorm"], (x, RNG.standard_normal(2), RNG.standard_normal(2)),
                      {"eps": 1e-5}, dtype="float64")
    assert not example.failed, example.failed


def test_layernorm_of_one_feature_outputs_beta():
    x, gamma, beta = _inputs((3, 1))
    out, (dx, dgamma, dbeta), dout = _run("layernorm", (x, gamma, beta))
    np.testing.assert_array_equal(out, np.broadcast_to(beta, (3, 1)))
    assert not dx.any() and not dgamma.any()


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm", "groupnorm"])
def test_empty_batch_gives_empty_dx_and_zero_parameter_gradients(name):
    _, _, shape, _, with_beta = LAYERS[name]
    arrays = _inputs((0, *shape[1:]), with_beta=with_beta)
    out, grads, _ = _run(name, arrays)
    assert out.shape == arrays[0].shape and grads[0].shape == arrays[0].shape
    assert all(g.shape == a.shape and not g.any() for g, a in zip(grads[1:], arrays[1:]))
