"""The diagnosis names the usual bug shapes, on real examples of real layers."""
import dataclasses

import numpy as np
import pytest

from verification import LAYERS, MUTANTS, examine, tolerance
from verification.diagnosis import explain, shape_bug
from reference.linear import affine_backward, linear_backward
from reference import conv
from reference.conv import conv2d_backward
from reference.normalisation import batchnorm_backward

RNG = np.random.default_rng(11)
X, W = RNG.standard_normal((4, 3)), RNG.standard_normal((3, 5))
XA, WA, BA = RNG.standard_normal((4, 2, 3)), RNG.standard_normal((6, 5)), RNG.standard_normal(5)


def headline(name, backward, arrays, hyper=None, dtype="float64"):
    layer = dataclasses.replace(LAYERS[name], name=f"{name}[planted]", backward=backward)
    example = examine(layer, arrays, hyper or {}, dtype=dtype)
    head = example.headline
    assert head is not None, "the planted bug was not caught"
    return head.bug, head.diagnosis


def scaled(factor, which=0):
    def backward(dout, cache):
        grads = list(linear_backward(dout, cache))
        grads[which] = factor * grads[which]
        return tuple(grads)
    return backward


@pytest.mark.parametrize("backward, bug, words", [
    (scaled(-1.0), "sign", "-1 (the sign flipped)"),
    (scaled(2.0), "factor", "factor of 2"),
    (scaled(0.25, which=1), "factor", "1/N (N = 4)"),
    (lambda dout, c: (dout @ c.w.T, np.zeros_like(c.w)), "missing", "dw is all zeros"),
    (lambda dout, c: linear_backward(dout, c)[::-1], "order", "wrong order"),
    (lambda dout, c: (dout @ c.w.T, (c.x.T @ dout).reshape(-1)), "shape", "not reshaped"),
    (lambda dout, c: (np.where(np.arange(4)[:, None] == 3, 0.0, dout @ c.w.T), c.x.T @ dout), "partial",
     "correct except at indices [3] along axis 0"),
    (lambda dout, c: tuple(g.astype(np.float32).astype(np.float64)
                           for g in linear_backward(dout.astype(np.float32), c._replace(
                               x=c.x.astype(np.float32), w=c.w.astype(np.float32)))), "precision", "float32"),
    (lambda dout, c: (np.where(dout @ c.w.T > 0, np.nan, dout @ c.w.T), c.x.T @ dout), "nan", "NaN/inf produced"),
])
def test_diagnosis_names_the_bug(backward, bug, words):
    named, text = headline("linear", backward, (X, W))
    assert named == bug and words in text, text


def test_a_literal_two_and_n_equal_to_two_are_both_named():
    bug, text = headline("linear", scaled(2.0), (X[:2], W))
    assert bug == "factor" and "2 or N = 2" in text and "coincide" in text


def test_a_hyperparameter_factor_is_named():
    mask = (RNG.random((4, 3)) < 0.7).astype(float)
    bug, text = headline("dropout", lambda dout, c: (dout * (c.scale != 0),), (X,), {"mask": mask, "p": 0.7})
    assert bug == "factor" and "p = 0.7" in text and "1/N" not in text


def test_a_bias_summed_along_the_wrong_axis_is_named_for_square_shapes():
    def db_over_classes(dout, cache):
        dx, dw, _ = affine_backward(dout, cache)
        return dx, dw, dout.sum(axis=1)

    square = (RNG.standard_normal((5, 2, 3)), RNG.standard_normal((6, 5)), RNG.standard_normal(5))  # N = M = 5
    bug, text = headline("affine", db_over_classes, square)
    assert bug == "wrong_axis" and "axes 0 and 1 swapped" in text
    bug, text = headline("affine", db_over_classes, (XA, WA, BA))  # N = 4, M = 5: the shape tells
    assert bug == "wrong_axis" and "wrong axes" in text


def test_a_square_transpose_is_named():
    square = RNG.standard_normal((3, 3))
    bug, text = headline("linear", lambda dout, c: (dout @ c.w.T, (c.x.T @ dout).T.copy()), (X[:3], square))
    assert bug == "transpose" and "dw.T is the right answer" in text


def test_a_gradient_of_the_inputs_as_the_forward_left_them_is_named_in_place():
    def forward(x, w):
        out, cache = LAYERS["linear"].forward(x, w)
        x *= 2.0
        return out, cache

    layer = dataclasses.replace(LAYERS["linear"], name="linear[planted]", forward=forward)
    head = examine(layer, (X, W), {}).headline
    assert head.bug == "in_place" and "modifies x in place" in head.diagnosis


def explained(name, backward, arrays, hyper=None, layer=None):
    """The second look (``diagnosis.explain``) at a planted bug's headline: (bug, sentence) or None."""
    layer = layer or dataclasses.replace(LAYERS[name], name=f"{name}[planted]", backward=backward)
    example = examine(layer, arrays, hyper or {})
    found = explain(example.trial, example.headline)
    return None if found is None else found[:2]


def test_a_mask_not_applied_is_partial_and_a_term_dropped_where_it_is_not_zero_is_not():
    x = RNG.standard_normal((6, 5))
    bug, text = headline("relu", lambda dout, c: (dout.copy(),), (x,))  # relu's mask forgotten: x < 0 gets dout
    assert bug == "partial" and "should be zero" in text, text
    bug, text = headline("leaky_relu", lambda dout, c: (dout * (c.derivative == 1),), (x,), {"slope": 0.1})
    assert bug == "formula", text  # the negative side zeroed: its true gradient slope * dout is not zero


def test_a_weight_used_untransposed_is_the_gradient_of_the_transposed_weight():
    square = RNG.standard_normal((3, 3))
    bug, text = explained("linear", lambda dout, c: (dout @ c.w, c.x.T @ dout), (X, square))
    assert bug == "transpose" and "w with axes 0 and 1 swapped" in text, text


def test_a_weight_reshaped_where_a_transpose_was_meant_is_named():
    bug, text = explained("linear", lambda dout, c: (dout @ c.w.reshape(c.w.shape[::-1]), c.x.T @ dout), (X, W))
    assert bug == "transpose" and "reshaped where a transpose was meant" in text and "regrouped" in text, text


def test_a_wrong_formula_is_no_transformed_example():
    noise = RNG.standard_normal((4, 3))
    assert explained("linear", lambda dout, c: (dout @ c.w.T + 0.1 * noise, c.x.T @ dout), (X, W)) is None


def test_a_mask_used_only_by_the_forward_is_named():
    q, k, v = (RNG.standard_normal((2, 1, 4, 3)) for _ in range(3))
    mask = np.tril(np.ones((4, 4), bool))[None, None]
    layer = mutant_layer("scaled_dot_product_attention[mask_only_in_forward]")
    bug, text = explained("", None, (q, k, v), {"mask": mask}, layer=layer)
    assert bug == "formula" and "without mask" in text, text


def test_axes_in_the_wrong_order_are_a_transpose_and_a_plain_reshape_is_not():
    expected = RNG.standard_normal((2, 3, 4))
    scale = tolerance.fallback(expected)
    bug, text = shape_bug("dx", expected.transpose(1, 2, 0).copy(), expected, scale, np.float64)
    assert bug == "transpose" and "(2, 0, 1)" in text, text
    bug, _ = shape_bug("dx", expected.reshape(3, 4, 2), expected, scale, np.float64)
    assert bug == "shape"


def test_dout_read_transposed_by_every_gradient_is_a_transpose():
    x, gamma, beta = RNG.standard_normal((4, 4)), RNG.standard_normal(4), RNG.standard_normal(4)  # N = D
    bug, text = headline("batchnorm", lambda dout, c: batchnorm_backward(dout.T.copy(), c), (x, gamma, beta),
                         {"eps": 1e-5})
    assert bug == "transpose" and "dout read transposed" in text, text


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_a_softmax_taken_along_another_axis_in_the_backward_is_the_wrong_axis():
    def forward(x, *, axis):
        return _softmax(x, axis), x.copy()

    def along_rows(dout, x):
        y = _softmax(x, 0)  # the backward recomputes the probabilities along axis 0, not the class axis
        return (y * (dout - (dout * y).sum(axis=0, keepdims=True)),)

    layer = dataclasses.replace(LAYERS["softmax"], name="softmax[planted]", forward=forward, backward=along_rows)
    bug, text = explained("", None, (RNG.standard_normal((4, 3)),), {"axis": 1}, layer=layer)
    assert bug == "wrong_axis" and "axis = 0, not 1" in text, text
    diagonal = dataclasses.replace(layer, backward=lambda dout, x: (dout * _softmax(x, 1),))  # no sum term
    assert explained("", None, (RNG.standard_normal((4, 3)),), {"axis": 1}, layer=diagonal) is None


def dx_spread_at(stride=None, dilation=None):
    """conv2d's backward whose dx spreads dy at another stride, or with another dilation."""
    def backward(dout, c):
        _, dw, db = conv2d_backward(dout, c)
        step, gap = stride or c.stride, dilation or c.dilation
        padded = tuple(n + 2 * p for n, p in zip(c.x.shape[2:], c.padding))
        spread = conv._spread(dout, padded, c.w.shape[2:], step, gap)
        dxp = conv._correlate(spread, conv._flip(c.w, c.groups), (1, 1), gap, c.groups)
        return dxp[conv._interior(c.padding, c.x.shape[2:])], dw, db
    return backward


@pytest.mark.parametrize("backward, bug, words", [
    (dx_spread_at(stride=(2, 2)), "formula", "stride = 2, not 3"),
    (dx_spread_at(dilation=(2, 1)), "wrong_axis", "each axis takes the other's dilation"),
])
def test_a_backward_with_another_stride_or_its_axes_swapped_is_named(backward, bug, words):
    x, w, b = RNG.standard_normal((2, 2, 9, 9)), RNG.standard_normal((3, 2, 2, 2)), RNG.standard_normal(3)
    named, text = explained("conv2d", backward, (x, w, b), {"stride": 3, "dilation": (1, 2)})
    assert named == bug and words in text, text


def mutant_layer(key):
    mutant = next(m for m in MUTANTS if m.key == key)
    return mutant.apply(LAYERS[mutant.layer])


@pytest.mark.parametrize("key, bug, words", [
    ("conv_transpose2d[output_padding_ignored]", "partial", "output_padding = (0, 0), not (1, 1)"),  # its output cut
    ("conv_transpose2d[stride_ignored]", "formula", "stride = (1, 1), not (2, 2)"),  # another output, not a cut
])
def test_a_backward_whose_setting_cuts_the_output_short_leaves_a_boundary_out(key, bug, words):
    x, w, b = RNG.standard_normal((2, 2, 3, 3)), RNG.standard_normal((2, 3, 3, 3)), RNG.standard_normal(3)
    hyper = {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1)}  # p > 0: the last rows are read
    named, text = explained("", None, (x, w, b), hyper, layer=mutant_layer(key))
    assert named == bug and words in text, text


def softmax_backward_summing_along(axis):
    def backward(dout, cache):
        y = cache.y
        return (y * (dout - (dout * y).sum(axis=axis, keepdims=True)),)
    return backward


@pytest.mark.parametrize("backward, expected", [
    (softmax_backward_summing_along(1), ("wrong_axis", "gathers dout along axes [1], the true gradient along [2]")),
    (softmax_backward_summing_along(0), None),  # across the batch: the per-example check's batch_mixing
    (lambda dout, cache: (cache.y * dout,), None),  # no sum at all: a term lost, not moved
])
def test_a_sum_along_another_axis_than_the_true_gradient_s_is_the_wrong_axis(backward, expected):
    found = explained("softmax", backward, (RNG.standard_normal((2, 3, 4)),), {"axis": 2})
    if expected is None:
        assert found is None or found[0] != "wrong_axis", found
    else:
        assert found[0] == expected[0] and expected[1] in found[1], found


def test_a_transposed_weight_gradient_of_dout_s_shape_keeps_its_name():
    square = RNG.standard_normal((3, 3))  # dw and dout both (3, 3): the reach of dout means nothing for dw
    bug, _ = headline("linear", lambda dout, c: (dout @ c.w.T, (c.x.T @ dout).T.copy()), (X[:3], square))
    found = explained("linear", lambda dout, c: (dout @ c.w.T, (c.x.T @ dout).T.copy()), (X[:3], square))
    assert bug == "transpose" and (found is None or found[0] == "transpose"), found
