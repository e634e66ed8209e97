"""The diagnosis names the usual bug shapes, on real examples of real layers."""
import dataclasses

import numpy as np
import pytest

from verification import LAYERS, examine
from reference.linear import affine_backward, linear_backward

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
