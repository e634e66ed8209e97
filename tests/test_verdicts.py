"""Verdicts people can trust: wrong vs contract vs inaccurate, one tolerance policy, hints and
user mistakes named in one line."""
import ast
import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

from verification import LAYERS, MUTANTS, Hints, Layer, LayerDefinitionError, check_layer, examine
from verification.strategies import arrays_of
from reference.linear import affine_forward, linear_backward, linear_forward

ROOT = Path(__file__).resolve().parents[1]


def mutant(key):
    m = next(m for m in MUTANTS if m.key == key)
    return m.apply(LAYERS[m.layer])


def with_backward(name, backward, **changes):
    return dataclasses.replace(LAYERS[name], name=f"{name}[test]", backward=backward, **changes)


# ---------------------------------------------------------------------------------------
# The four tiers.

def _tanh_forward(x):
    y = np.asarray(np.tanh(x))  # a 0-d x gives a NumPy scalar: the contract wants an array
    return y, (x, y)


def _tanh_textbook_backward(dout, cache):
    _, y = cache
    return (np.asarray(dout * (1 - y * y)),)  # 1 - tanh^2 cancels where |x| is large


def test_one_minus_tanh_squared_is_inaccurate_not_wrong():
    layer = dataclasses.replace(LAYERS["tanh"], name="tanh[textbook]", forward=_tanh_forward,
                                backward=_tanh_textbook_backward)
    report = check_layer(layer, max_examples=60)
    assert report.verdict == "inaccurate", report
    assert report.failures[0].bug == "instability"
    assert "float32 inside" not in report.failures[0].diagnosis
    assert check_layer(layer, max_examples=60, require="math").passed


def test_a_backward_that_returns_float64_for_float32_is_a_contract_break():
    def widened(dout, cache):
        return tuple(g.astype(np.float64) for g in linear_backward(dout, cache))

    report = check_layer(with_backward("linear", widened), max_examples=20)
    assert report.verdict == "contract", report
    assert report.failures[0].bug == "dtype" and report.failures[0].dtype == "float32"
    assert check_layer(with_backward("linear", widened), max_examples=20, require="accuracy").passed


def _affine_backward_reshape_minus_one(dout, cache):
    x, w = cache
    flat = x.reshape(x.shape[0], -1)  # -1 is ambiguous for an empty batch: NumPy raises
    return (dout @ w.T).reshape(x.shape), flat.T @ dout, dout.sum(axis=0)


def test_a_crash_at_an_empty_batch_is_a_contract_break():
    report = check_layer(with_backward("affine", _affine_backward_reshape_minus_one), max_examples=30)
    assert report.verdict == "contract", report
    failure = report.failures[0]
    assert failure.bug == "crash" and failure.check == "runs" and 0 in failure.shapes[0]
    assert check_layer(with_backward("affine", _affine_backward_reshape_minus_one), max_examples=30,
                       require="math").passed


def test_a_missing_transpose_is_wrong():
    report = check_layer(mutant("linear[missing_transpose]"), max_examples=30)
    assert report.verdict == "wrong" and not report.passed
    assert not check_layer(mutant("linear[missing_transpose]"), max_examples=30, require="math").passed


def test_a_right_layer_passes_with_the_verdict_pass():
    report = check_layer(LAYERS["linear"], max_examples=20)
    assert report.verdict == "pass" and report.passed and report.failures == []


# ---------------------------------------------------------------------------------------
# One tolerance policy.

@pytest.mark.parametrize("name", ["mse", "svm_hinge", "softmax", "linear"])
@pytest.mark.parametrize("own_magnitude", [True, False])
def test_the_tolerance_is_the_same_whichever_checks_are_selected(name, own_magnitude):
    layer = LAYERS[name] if own_magnitude else dataclasses.replace(LAYERS[name], magnitude=None)
    (arrays, hyper) = _one_example(layer)
    everything = examine(layer, arrays, hyper).trial.scales
    for checks in (("vjp",), ("jvp",), ("forward", "linearity")):
        alone = examine(layer, arrays, hyper, checks=checks).trial.scales
        assert alone.source == everything.source
        for a, b in zip(alone.grads + alone.outs, everything.grads + everything.outs):
            np.testing.assert_array_equal(a.magnitude, b.magnitude)


def _one_example(layer, index=3):
    from hypothesis import given, settings

    seen = []

    @settings(max_examples=index + 1, database=None, deadline=None, derandomize=True)
    @given(layer.strategy)
    def draw(example):
        seen.append(example)

    draw()
    return max(seen, key=lambda e: sum(np.size(a) for a in e[0]))


def test_the_report_states_the_scale_that_applied():
    arrays, hyper = _one_example(LAYERS["mse"])
    without = dataclasses.replace(LAYERS["mse"], magnitude=None)
    assert examine(without, arrays, hyper).trial.scales.source == "|J|^T |dY|"
    assert examine(LAYERS["softmax"], *_one_example(LAYERS["softmax"])).trial.scales.source == "the layer's magnitude"
    big = (np.ones((2, 3)), np.ones((3, 2)))
    fallback = examine(dataclasses.replace(LAYERS["linear"], magnitude=None), big, {}, jacobian_budget=1)
    assert fallback.trial.scales.source.startswith("normwise fallback: the layer gives no magnitude and its Jacobian")


def test_linearity_judges_a_linear_but_wrong_backward_on_its_own_numbers():
    """dW = X^T dY + X^T 1 (a wrong term, linear in nothing) fails vjp; dW = 2 X^T dY is wrong but
    linear in dY: linearity must pass it, whatever the right gradient's magnitude is."""
    def doubled(dout, cache):
        dx, dw = linear_backward(dout, cache)
        return dx, 2 * dw

    x = np.array([[0.0, 1.0], [0.0, 2.0]])  # column 0 of x is 0: dW's row 0 is 0 in truth, and here
    example = examine(with_backward("linear", doubled), (x, np.ones((2, 3))), {})
    outcomes = {o.check: o for o in example.outcomes}
    assert outcomes["vjp"].status == "fail" and outcomes["linearity"].status == "pass"


# ---------------------------------------------------------------------------------------
# Hints are checked against the specification.

def test_a_wrong_elementwise_hint_is_named():
    layer = dataclasses.replace(LAYERS["softmax"], hints=Hints(elementwise=True, per_example=True))
    with pytest.raises(LayerDefinitionError, match=r"softmax: the hint elementwise=True is wrong"):
        check_layer(layer, max_examples=10)


def test_a_wrong_linear_in_hint_is_named():
    layer = dataclasses.replace(LAYERS["tanh"], hints=Hints(linear_in=(0,), elementwise=True))
    with pytest.raises(LayerDefinitionError, match=r"tanh: the hint linear_in=\(0,\) is wrong: the specification "
                                                   r"is not affine in input 0 \(x\)"):
        check_layer(layer, max_examples=10)


def _softmax_padded_with_zeros_at_rank(rank):
    """softmax's pad, wrong (zeros, which take probability from the real classes) for a rank-``rank`` x."""
    from verification.space import grow
    from verification.specs.softmax import MAX_SIDE

    right = LAYERS["softmax"].hints.pad

    def pad(arrays, hyper):
        if arrays[0].ndim != rank:
            return right(arrays, hyper)
        return (grow(arrays[0], (MAX_SIDE,) * rank, 0.0),), {**hyper, "axis": hyper["axis"] % rank}

    return dataclasses.replace(LAYERS["softmax"], hints=Hints(per_example=LAYERS["softmax"].hints.per_example,
                                                               pad=pad))


@pytest.mark.parametrize("rank, first", [(2, "the first example's bucket"), (3, "a later bucket only")])
def test_a_wrong_pad_hint_is_named_not_blamed_on_the_layer(rank, first):
    """The first edge has rank 2: there the pad is checked up front; a bucket of rank 3 is confirmed
    when its example fails, before the failure would be blamed on the (correct) layer."""
    with pytest.raises(LayerDefinitionError, match=r"softmax: the hint pad is wrong"):
        check_layer(_softmax_padded_with_zeros_at_rank(rank), max_examples=20, dtypes=("float64",))


def test_a_wrong_per_example_hint_is_named():
    layer = dataclasses.replace(LAYERS["batchnorm"], hints=Hints(per_example=True, linear_in=(1, 2)))
    with pytest.raises(LayerDefinitionError, match=r"batchnorm: the hint per_example=True is wrong"):
        check_layer(layer, max_examples=10)


# ---------------------------------------------------------------------------------------
# The user's mistakes, each named in one line.

@st.composite
def _pairs(draw):
    return draw(arrays_of((3, 2), (2, 2))), {}


def _user_layer(**changes):
    fields = dict(name="mine", forward=linear_forward, backward=linear_backward,
                  jax_forward=lambda x, w: jnp.einsum("nd,dm->nm", x, w), inputs=_pairs())
    return Layer(**{**fields, **changes})


@pytest.mark.parametrize("changes, tier, words", [
    (dict(forward=lambda x, w: x @ w), "contract", "forward returned a bare ndarray of shape (3, 2), not (out, cache)"),
    (dict(backward=lambda dout, cache: linear_backward(dout, cache)[:1]), "contract",
     "backward returned 1 gradients, expected a tuple of 2 (dx, dw)"),
])
def test_an_interface_mistake_is_a_contract_break_in_one_line(changes, tier, words):
    report = check_layer(_user_layer(**changes), max_examples=5)
    assert report.verdict == tier and words in report.failures[0].message


def test_a_bare_array_for_one_gradient_is_a_contract_break_and_the_math_is_still_checked():
    layer = dataclasses.replace(LAYERS["relu"], name="relu[bare]",
                                backward=lambda dout, cache: LAYERS["relu"].backward(dout, cache)[0])
    report = check_layer(layer, max_examples=10)
    assert report.verdict == "contract" and "bare ndarray" in report.failures[0].message
    assert report.check("vjp", "float64").status == "pass" and report.check("vjp", "float64").examples > 0


def test_a_strategy_that_does_not_draw_arrays_and_hyper_is_named():
    layer = _user_layer(inputs=arrays_of((3, 2), (2, 2)))
    with pytest.raises(LayerDefinitionError, match=r"mine: its inputs strategy must draw \(arrays, hyper\)"):
        check_layer(layer, max_examples=5)


def test_a_jax_specification_calling_numpy_is_named():
    layer = _user_layer(jax_forward=lambda x, w: jnp.asarray(np.asarray(x) @ np.asarray(w)))
    with pytest.raises(LayerDefinitionError, match=r"mine: jax_forward uses NumPy or Python control flow on a traced"):
        check_layer(layer, max_examples=5)


# ---------------------------------------------------------------------------------------
# The checks are small units.

def test_no_unit_of_the_checks_is_longer_than_80_lines():
    for path in sorted((ROOT / "verification" / "checks").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.name}:{node.name} is {length} lines"


# ---------------------------------------------------------------------------------------
# Underflow inside a formula is part of the rounding analysis.

def _textbook_softmax_loss(x, *, labels):
    """The course's max-shifted softmax loss: p = exp(z - max) / sum, L = -mean log p_y."""
    shifted = x - x.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = np.asarray(-np.log(p[np.arange(n), labels]).sum() / n, dtype=x.dtype)
    dx = p.copy()
    dx[np.arange(n), labels] -= 1
    return loss, (dx / n,)


def _textbook_backward(dloss, cache):
    return (cache[0] * dloss,)


@st.composite
def _gaps_near_94(draw):
    gap = draw(st.floats(88.0, 100.0))
    x = np.array([[0.0, gap, 1.0], [gap, 0.5, 0.0]])
    return (x,), {"labels": np.array([0, 1])}  # each label on a logit ~gap below the row's max


def test_the_textbook_softmax_loss_passes_in_float32_where_its_probability_underflows():
    layer = dataclasses.replace(LAYERS["softmax_cross_entropy"], name="softmax_loss[textbook]",
                                forward=_textbook_softmax_loss, backward=_textbook_backward, inputs=_gaps_near_94())
    report = check_layer(layer, max_examples=30, dtypes=("float32",))
    assert report.passed, report
    worst = report.check("forward", "float32").worst_units
    assert 0 < worst < 1


def test_input_names_must_name_every_array():
    short = dataclasses.replace(LAYERS["affine"], input_names=("x",))
    with pytest.raises(LayerDefinitionError, match=r"affine: 1 input names \(x\) for 3 arrays"):
        check_layer(short, max_examples=3)
