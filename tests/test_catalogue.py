"""Every catalogued layer passes every check, in float64 and float32 (generic over LAYERS)."""
import dataclasses

import numpy as np
import pytest

from conftest import TEST_EXAMPLES
from verification import CHECKS, LAYERS, Hints, check_layer, oracles
from verification.checks import FLOAT64_ONLY


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_passes_every_check(name, dtype):
    report = check_layer(LAYERS[name], max_examples=TEST_EXAMPLES, seed=0, dtypes=(dtype,))
    assert report.passed, f"\n{report}"
    layer = LAYERS[name]
    for check in CHECKS:
        if check == "per_example" and not layer.hints.per_example:
            continue  # only layers that act per example declare (and are checked for) it
        if check in FLOAT64_ONLY and dtype != "float64":
            assert report.check(check, dtype).status == "skip"
            continue
        summary = report.check(check, dtype)
        assert summary.examples > 0, f"{check} never ran: {summary.note}"


def test_catalogue_holds_the_foundation_layers():
    assert {"linear", "affine"} <= set(LAYERS)


def test_catalogue_is_read_only():
    with pytest.raises(TypeError):
        LAYERS["mine"] = LAYERS["linear"]  # type: ignore[index]


ELEMENTWISE = sorted(name for name, layer in LAYERS.items() if layer.hints.elementwise)


def _oracles_both_ways(layer, shape, seed=0):
    rng = np.random.default_rng(seed)
    x, dout, dout2, tangent = (rng.uniform(-2.0, 2.0, shape) for _ in range(4))
    hyper = layer.bench(rng).hyper  # slope, alpha, axis: the values of a realistic case
    return [oracles.evaluate(layer.jax_forward, (x,), hyper, (dout, dout2), tangents=(tangent,),
                             magnitude=layer.magnitude, elementwise=elementwise)
            for elementwise in (False, True)]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_an_elementwise_declaration_leaves_the_oracles_unchanged(name):
    """The padded vector the oracles use for an elementwise layer gives the shaped results."""
    assert len(ELEMENTWISE) >= 9  # the activations
    for shape in [(4, 3), (2, 3, 2), (), (0, 3), (oracles.ELEMENTWISE_LENGTH,)]:
        shaped, padded = _oracles_both_ways(LAYERS[name], shape)
        for field, expected, actual in zip(oracles.OracleResult._fields, shaped, padded):
            for e, a in zip(*(v if isinstance(v, tuple) else (v,) for v in (expected, actual))):
                assert a.shape == e.shape, (field, shape)
                np.testing.assert_allclose(a, e, rtol=1e-12, atol=0, err_msg=f"{field} at {shape}")


def test_a_wrong_elementwise_declaration_changes_the_oracles():
    """softmax mixes its row: declared elementwise, its padded oracle is wrong, which the
    test above would catch."""
    layer = dataclasses.replace(LAYERS["softmax"], hints=Hints(elementwise=True))
    shaped, padded = _oracles_both_ways(layer, (2, 3))
    assert not np.allclose(shaped.out, padded.out)
