"""Layer-specific cases for reference/attention.py: the derivation pages' small cases, masking,
edge cases, self-attention's two paths, bad input."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.attention import (
    multi_head_attention_backward, multi_head_attention_forward, multi_head_self_attention_backward,
    multi_head_self_attention_forward, scaled_dot_product_attention_backward, scaled_dot_product_attention_forward,
)
from verification import LAYERS, oracles
from verification.specs.attention import (
    _mha_backward_per_head, _mha_forward_per_head, _sdpa_backward_row_jacobians, jax_scaled_dot_product_attention,
)

SDPA = (scaled_dot_product_attention_forward, scaled_dot_product_attention_backward)


def _mha_inputs(rng, n=2, tq=3, tk=4, e=6, dtype=np.float64):
    x_q, x_kv = rng.standard_normal((n, tq, e)), rng.standard_normal((n, tk, e))
    params = [rng.standard_normal((e, e) if i % 2 == 0 else (e,)) / (math.sqrt(e) if i % 2 == 0 else 1)
              for i in range(8)]
    return [a.astype(dtype) for a in (x_q, x_kv, *params)]


def test_one_query_two_keys_matches_the_small_case_by_hand():
    """docs/derivations/scaled_dot_product_attention.md: q = [1, 0], k = [[2, 0], [0, 0]], scale 1/2
    -> scores [1, 0], weights [e, 1] / (e + 1)."""
    q, k, v = np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]]), np.array([[1.0], [3.0]])
    out, cache = scaled_dot_product_attention_forward(q, k, v, scale=0.5)
    p1 = math.e / (math.e + 1)
    p2 = 1 - p1
    np.testing.assert_allclose(cache.weights, [[p1, p2]], rtol=1e-15)
    np.testing.assert_allclose(out, [[p1 + 3 * p2]], rtol=1e-15)
    dq, dk, dv = scaled_dot_product_attention_backward(np.array([[1.0]]), cache)
    # dP = dout v^T = [1, 3]; rowsum(dP P) = p1 + 3 p2; dS = P (dP - that) = [-2 p1 p2, 2 p1 p2]
    ds = np.array([-2 * p1 * p2, 2 * p1 * p2])
    np.testing.assert_allclose(dv, [[p1], [p2]], rtol=1e-15)
    np.testing.assert_allclose(dq, [0.5 * ds @ k], rtol=1e-15)
    np.testing.assert_allclose(dk, 0.5 * np.outer(ds, q[0]), rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bound", [2.0, 1000.0])
def test_a_fully_masked_row_gives_zero_output_and_gradients_never_nan(dtype, bound):
    rng = np.random.default_rng(0)
    q, k, v = (bound * rng.uniform(-1, 1, (2, 3, 4, 5)).astype(dtype) for _ in range(3))
    mask = rng.random((2, 3, 4, 4)) < 0.6
    mask[:, :, 1] = False  # query row 1 attends to nothing
    mask[1] = False  # the second example attends to nothing at all
    out, cache = scaled_dot_product_attention_forward(q, k, v, mask=mask, causal=True)
    grads = scaled_dot_product_attention_backward(rng.standard_normal(out.shape).astype(dtype), cache)
    assert all(np.isfinite(a).all() for a in (out, *grads))
    assert not out[:, :, 1].any() and not out[1].any()
    dq, dk, dv = grads
    assert not dq[:, :, 1].any() and not dq[1].any() and not dk[1].any() and not dv[1].any()


def test_no_keys_at_all_is_every_row_fully_masked():
    q, k, v = np.ones((2, 3, 2)), np.ones((2, 0, 2)), np.ones((2, 0, 4))
    out, cache = scaled_dot_product_attention_forward(q, k, v)
    dq, dk, dv = scaled_dot_product_attention_backward(np.ones(out.shape), cache)
    assert out.shape == (2, 3, 4) and not out.any() and not dq.any() and dk.shape == k.shape and dv.shape == v.shape


def test_the_spec_agrees_on_fully_masked_rows_without_nan():
    """The JAX spec's double where: output 0 and a NaN-free pullback on a fully masked row."""
    import jax

    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((3, 2)) for _ in range(3))
    mask = np.array([[True, False, True], [False, False, False], [True, True, True]])
    out, pullback = jax.vjp(lambda *a: jax_scaled_dot_product_attention(*a, mask=mask), q, k, v)
    grads = pullback(np.ones((3, 2)))
    assert not np.asarray(out)[1].any() and all(np.isfinite(np.asarray(g)).all() for g in grads)
    expected, cache = scaled_dot_product_attention_forward(q, k, v, mask=mask)
    np.testing.assert_allclose(out, expected, rtol=1e-14)
    for g, ours in zip(grads, scaled_dot_product_attention_backward(np.ones((3, 2)), cache)):
        np.testing.assert_allclose(g, ours, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_of_thousands_stay_finite(dtype):
    """Scores of +-2000: e^S overflows even float64; the max shift keeps every exponential <= 1."""
    rng = np.random.default_rng(2)
    q, k, v = (rng.uniform(-30, 30, (2, 5, 4)).astype(dtype) for _ in range(3))
    out, cache = scaled_dot_product_attention_forward(q, k, v)
    assert np.abs(q[0] @ k[0].T).max() / 2 > 500
    grads = scaled_dot_product_attention_backward(rng.standard_normal(out.shape).astype(dtype), cache)
    assert all(np.isfinite(a).all() and a.dtype == dtype for a in (out, *grads))


def test_causal_is_the_lower_triangular_mask():
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 4, 3)) for _ in range(3))
    causal, cache = scaled_dot_product_attention_forward(q, k, v, causal=True)
    masked, cache_masked = scaled_dot_product_attention_forward(q, k, v, mask=np.tril(np.ones((4, 4), bool)))
    np.testing.assert_array_equal(causal, masked)
    assert not np.triu(cache.weights[0], 1).any()
    np.testing.assert_allclose(cache.weights[:, 0, 0], 1.0)  # the first query sees only the first key
    dout = rng.standard_normal(causal.shape)
    for a, b in zip(scaled_dot_product_attention_backward(dout, cache),
                    scaled_dot_product_attention_backward(dout, cache_masked)):
        np.testing.assert_array_equal(a, b)


def test_default_scale_is_one_over_root_d():
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((3, 5)), rng.standard_normal((2, 5)), rng.standard_normal((2, 1))
    default, _ = scaled_dot_product_attention_forward(q, k, v)
    given, _ = scaled_dot_product_attention_forward(q, k, v, scale=1 / math.sqrt(5))
    np.testing.assert_array_equal(default, given)


def test_dropout_keeping_everything_scales_by_one_over_p():
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 3, 2)) for _ in range(3))
    plain, cache = scaled_dot_product_attention_forward(q, k, v)
    kept, cache_kept = scaled_dot_product_attention_forward(q, k, v, dropout_mask=np.ones((2, 3, 3)), p=0.8)
    np.testing.assert_allclose(kept, plain / 0.8, rtol=1e-13, atol=1e-15)
    dout = rng.standard_normal(plain.shape)
    for a, b in zip(scaled_dot_product_attention_backward(dout, cache_kept),
                    scaled_dot_product_attention_backward(dout / 0.8, cache)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_key_padding_mask_broadcasts_over_queries_and_heads():
    rng = np.random.default_rng(6)
    q, k, v = rng.standard_normal((2, 3, 4, 2)), rng.standard_normal((2, 3, 5, 2)), rng.standard_normal((2, 3, 5, 3))
    keys = np.array([[True, True, False, True, False], [True, False, False, False, False]])
    out, cache = scaled_dot_product_attention_forward(q, k, v, mask=keys[:, None, None, :])
    assert not cache.weights[0, :, :, [2, 4]].any() and not cache.weights[1, :, :, 1:].any()
    trimmed, _ = scaled_dot_product_attention_forward(q[1], k[1, :, :1], v[1, :, :1])
    np.testing.assert_allclose(out[1], trimmed, rtol=1e-14)


@pytest.mark.parametrize("hyper", [{}, {"causal": True, "mask": np.eye(4, dtype=bool) | (np.arange(4) == 0)},
                                   {"scale": 0.3, "dropout_mask": "drawn", "p": 0.7}])
def test_vectorised_attention_agrees_with_row_by_row_jacobians(hyper):
    rng = np.random.default_rng(7)
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 2))
    if hyper.get("dropout_mask") == "drawn":
        hyper = {**hyper, "dropout_mask": (rng.random((2, 4, 4)) < 0.7).astype(float)}
    out, cache = scaled_dot_product_attention_forward(q, k, v, **hyper)
    dout = rng.standard_normal(out.shape)
    for a, b in zip(scaled_dot_product_attention_backward(dout, cache), _sdpa_backward_row_jacobians(dout, cache)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_attention_keeps_float32():
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3))
    out, cache = scaled_dot_product_attention_forward(q, k, v, causal=True, dropout_mask=np.ones((2, 3, 3)), p=0.5)
    grads = scaled_dot_product_attention_backward(np.ones_like(out), cache)
    assert [a.dtype for a in (out, *grads)] == [np.float32] * 4


def test_mha_with_one_head_is_attention_on_the_projections():
    rng = np.random.default_rng(9)
    x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo = _mha_inputs(rng)
    out, _ = multi_head_attention_forward(x_q, x_kv, wq, bq, wk, bk, wv, bv, wo, bo, heads=1)
    attended, _ = scaled_dot_product_attention_forward(x_q @ wq + bq, x_kv @ wk + bk, x_kv @ wv + bv)
    np.testing.assert_allclose(out, attended @ wo + bo, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("heads", [1, 2, 3, 6])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_agrees_with_a_loop_over_heads(heads, causal):
    rng = np.random.default_rng(10)
    inputs = _mha_inputs(rng, tk=3)
    mask = rng.random((2, 1, 3)) < 0.7
    out, cache = multi_head_attention_forward(*inputs, heads=heads, causal=causal, mask=mask)
    out_loop, cache_loop = _mha_forward_per_head(*inputs, heads=heads, causal=causal, mask=mask)
    np.testing.assert_allclose(out, out_loop, rtol=1e-12, atol=1e-13)
    dout = rng.standard_normal(out.shape)
    for a, b in zip(multi_head_attention_backward(dout, cache), _mha_backward_per_head(dout, cache_loop)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_self_attention_gradient_is_the_sum_of_both_paths():
    """x feeds the queries and the keys and values: dx = dx_q + dx_kv, and each path alone is not it."""
    rng = np.random.default_rng(11)
    x, _, *params = _mha_inputs(rng, tq=4, tk=4)
    out, cache = multi_head_self_attention_forward(x, *params, heads=2, causal=True)
    pristine = x.copy()
    dout = rng.standard_normal(out.shape)
    cross, cache_cross = multi_head_attention_forward(x, x, *params, heads=2, causal=True)
    np.testing.assert_array_equal(out, cross)
    dx, *dparams = multi_head_self_attention_backward(dout, cache)
    dx_q, dx_kv, *dparams_cross = multi_head_attention_backward(dout, cache_cross)
    np.testing.assert_array_equal(x, pristine)
    np.testing.assert_allclose(dx, dx_q + dx_kv, rtol=1e-15)
    for a, b in zip(dparams, dparams_cross):
        np.testing.assert_array_equal(a, b)
    # the total against central differences of the forward along a random direction
    t, h = rng.standard_normal(x.shape), 1e-5
    plus, _ = multi_head_self_attention_forward(x + h * t, *params, heads=2, causal=True)
    minus, _ = multi_head_self_attention_forward(x - h * t, *params, heads=2, causal=True)
    numeric = np.sum(dout * (plus - minus)) / (2 * h)
    assert abs(np.sum(dx * t) - numeric) < 1e-6 * (1 + abs(numeric))
    assert abs(np.sum(dx_q * t) - numeric) > 1e-3 and abs(np.sum(dx_kv * t) - numeric) > 1e-3


def test_mha_shares_the_mask_across_heads_and_keeps_float32():
    rng = np.random.default_rng(12)
    inputs = _mha_inputs(rng, dtype=np.float32)
    out, cache = multi_head_attention_forward(*inputs, heads=3, mask=np.array([True, False, True, True]))
    assert not cache.attention.weights[..., 1].any()
    grads = multi_head_attention_backward(np.ones_like(out), cache)
    assert [g.dtype for g in (out, *grads)] == [np.float32] * 11
    assert [g.shape for g in grads] == [a.shape for a in inputs]


@pytest.mark.parametrize("name", ["scaled_dot_product_attention", "multi_head_attention", "multi_head_self_attention"])
def test_forward_rejects_each_declared_bad_input(name):
    layer = LAYERS[name]
    assert layer.errors
    for case in layer.errors:
        with pytest.raises(case.error, match=case.match):
            layer.forward(*case.arrays, **case.hyper)


@pytest.mark.parametrize("forward, backward, arrays, hyper", [
    (*SDPA, (np.ones((2, 3, 4)),) * 3, {}),
    (multi_head_attention_forward, multi_head_attention_backward, tuple(_mha_inputs(np.random.default_rng(0))),
     {"heads": 2}),
])
def test_backward_rejects_bad_dout(forward, backward, arrays, hyper):
    out, cache = forward(*arrays, **hyper)
    with pytest.raises(ValueError, match=f"dout has shape \\(1, 2\\) but the forward output has shape"):
        backward(np.ones((1, 2)), cache)
    with pytest.raises(TypeError, match="dout has dtype float32 but the forward ran in float64"):
        backward(np.ones(out.shape, np.float32), cache)


@pytest.mark.parametrize("name", ["scaled_dot_product_attention", "multi_head_attention", "multi_head_self_attention"])
def test_every_edge_configuration_is_valid_and_runs(name):
    """The guaranteed edge cases are configurations of the space (the same keys as drawn ones);
    the forward and backward run on them without NaN, fully masked rows included."""
    space = LAYERS[name].space
    keys = {frozenset(c) for c in space.edges}

    @settings(max_examples=30, deadline=None, database=None)
    @given(drawn=space.draws(space.edges), config=space.configs)
    def run(drawn, config):
        assert keys == {frozenset(config)}
        (arrays, hyper) = drawn[1]
        out, cache = LAYERS[name].forward(*arrays, **hyper)
        grads = LAYERS[name].backward(np.ones_like(out), cache)
        assert all(np.isfinite(a).all() for a in (out, *grads))

    run()


@pytest.mark.parametrize("name", ["scaled_dot_product_attention", "multi_head_attention", "multi_head_self_attention"])
def test_every_edge_gives_the_same_oracles_in_its_bucket(name):
    """Hints.pad rewrites the hyperparameters (the mask made full and and-ed with the causal
    triangle, the default scale made explicit, a dropout mask of ones added): on every edge
    configuration, causal and masked ones included, the bucket's oracles equal the plain ones
    (a run checks only the buckets of failing examples)."""
    layer = LAYERS[name]
    space = layer.space

    @settings(max_examples=1, deadline=None, database=None)
    @given(data=st.data())
    def run(data):
        rng = np.random.default_rng(0)
        for edge in space.edges:
            arrays, hyper = data.draw(space.values(edge))
            out, _ = layer.forward(*arrays, **hyper)
            douts, tangents = (rng.standard_normal(out.shape),), tuple(rng.standard_normal(a.shape) for a in arrays)
            plain, padded = (oracles.evaluate(layer, arrays, hyper, douts, douts, tangents, with_jacobian=False,
                                              share_shapes=share) for share in (False, True))
            for want, got in zip((*plain.outs, *plain.vjp, *plain.out_scales, *plain.grad_scales),
                                 (*padded.outs, *padded.vjp, *padded.out_scales, *padded.grad_scales)):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * max(1.0, np.abs(want).max(initial=0)))
            assert padded.jvp == pytest.approx(plain.jvp, rel=1e-12, abs=1e-14)

    run()
