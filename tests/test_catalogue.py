"""Every catalogued layer passes every check, in float64 and float32 (generic over LAYERS)."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

from verification import CHECKS, LAYERS, Hints, oracles
from verification.checks.trial import Trial
from verification.hints import check_hints
from verification.space import freeze


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_passes_every_check(name, catalogue_reports):
    layer, report = LAYERS[name], catalogue_reports[name]
    assert report.passed, f"\n{report}"
    for dtype in ("float64", "float32"):
        for check in CHECKS:
            summary = report.check(check, dtype)
            if check == "per_example" and not layer.hints.per_example:
                continue  # only layers that act per example declare (and are checked for) it
            if CHECKS[check].float64_only and dtype != "float64":
                assert summary.status == "skip"
                continue
            assert summary.examples > 0, f"{check} never ran in {dtype}: {dict(summary.notes)}"
    if layer.space is not None:  # every edge configuration ran
        seen = {freeze(c) for c in report.configurations}
        assert {freeze(e) for e in layer.space.edges} <= seen


PADDED = sorted(name for name, layer in LAYERS.items() if layer.hints.pad is not None)


@pytest.mark.parametrize("name", PADDED)
def test_drawn_configurations_give_the_same_oracles_in_their_buckets(name):
    """A run checks a catalogue layer's pad only in the bucket of a failing example
    (verification.hints): here, on configurations drawn from the whole space, the hint's own check
    finds the padded and the plain oracles equal, outputs, gradients and magnitudes (each spec
    module says what its padding leaves out: rows weighted 0, masked features, absent classes...);
    an empty input is evaluated as it is."""
    assert len(PADDED) >= 25
    layer = LAYERS[name]

    @settings(max_examples=2, deadline=None, database=None)
    @given(drawn=layer.space.draws())
    def run(drawn):
        arrays, hyper = drawn[1]
        trial, buckets = Trial(layer, arrays, hyper, with_jacobian=False), set()
        check_hints(trial, {"pad"}, buckets)  # raises if padded and plain disagree
        assert buckets == ({trial.bucket} if all(a.size for a in arrays) else set())

    run()


def test_catalogue_holds_the_foundation_layers():
    assert {"linear", "affine"} <= set(LAYERS)


def test_catalogue_is_read_only():
    with pytest.raises(TypeError):
        LAYERS["mine"] = LAYERS["linear"]  # type: ignore[index]


ELEMENTWISE = sorted(name for name, layer in LAYERS.items() if layer.hints.elementwise)


def _oracles_both_ways(layer, shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, shape)
    hyper = layer.bench(rng).hyper  # slope, alpha, axis: the values of a realistic case
    trial = Trial(layer, (x,), hyper)
    return [trial.evaluate(trial.draws.douts, trial.draws.douts2, trial.draws.tangents, with_jacobian=True,
                           share_shapes=share) for share in (False, True)]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_an_elementwise_declaration_leaves_the_oracles_unchanged(name):
    """The padded vector the oracles use for an elementwise layer gives the shaped results."""
    assert len(ELEMENTWISE) >= 9  # the activations
    for shape in [(4, 3), (2, 3, 2), (), (0, 3), (oracles.ELEMENTWISE_LENGTH,)]:
        shaped, padded = _oracles_both_ways(LAYERS[name], shape)
        for field, expected, actual in zip(oracles.OracleResult._fields, shaped, padded):
            if isinstance(expected, str) or expected is None:
                assert actual == expected, field
                continue
            for e, a in zip(*(v if isinstance(v, tuple) else (v,) for v in (expected, actual))):
                assert np.shape(a) == np.shape(e), (field, shape)
                np.testing.assert_allclose(a, e, rtol=1e-12, atol=0, err_msg=f"{field} at {shape}")


def test_a_wrong_elementwise_declaration_changes_the_oracles():
    """softmax mixes its row: declared elementwise, its padded oracle is wrong, which the
    hint check and the test above catch."""
    layer = dataclasses.replace(LAYERS["softmax"], hints=Hints(elementwise=True))
    shaped, padded = _oracles_both_ways(layer, (2, 3))
    assert not np.allclose(shaped.outs[0], padded.outs[0])
