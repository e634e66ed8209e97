"""Meta-tests: the verifier rejects wrong backwards and accepts right ones.

A verifier that passes everything is worthless, so every mutant in the self-proof
library (``MUTANTS``, gathered from the spec modules) must be rejected, and every
correct variant (``VARIANTS``: einsum spellings, explicit loops) accepted.
"""
import subprocess
import sys

import numpy as np
import pytest

from verification import LAYERS, MUTANTS, VARIANTS, Mutant, check_layer, examine
from verification import tolerance
from verification.oracles import jacobian_cost


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.key)
def test_verifier_rejects_mutant(mutant, mutant_reports):
    report = mutant_reports[mutant.key]
    assert not report.passed, f"mutant survived ({mutant.description}):\n{report}"
    for failure in report.failures:
        assert failure.reproducer and failure.message and failure.shapes


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.layer}-{v.name}")
def test_verifier_accepts_correct_variant(variant, variant_reports):
    report = variant_reports[variant.key]
    assert report.passed, f"\n{report}"


def test_failure_names_gradient_index_and_values():
    sign_flip = next(m for m in MUTANTS if (m.layer, m.name) == ("linear", "sign_flip"))
    report = check_layer(sign_flip.apply(LAYERS["linear"]), max_examples=20, dtypes=("float64",))
    failure = next(f for f in report.failures if f.check == "vjp")
    assert failure.gradient == "dx"
    assert failure.expected == pytest.approx(-failure.actual)
    assert failure.units > 1
    assert failure.arrays is not None  # shrunk to a small example, printed in full
    assert "linear[sign_flip]" in str(report)


def test_exception_inside_layer_is_a_failure_not_a_crash():
    def backward_that_raises(dout, cache):
        raise FloatingPointError("boom")

    broken = Mutant("linear", "raises", "backward raises", backward_that_raises, bug="crash").apply(LAYERS["linear"])
    report = check_layer(broken, max_examples=10, dtypes=("float64",))
    assert not report.passed
    failure = report.failures[0]
    assert failure.check == "runs" and "FloatingPointError: boom" in failure.message


def test_jacobian_check_states_its_size_when_neither_form_fits():
    example = examine(LAYERS["linear"], (np.ones((2, 3)), np.ones((3, 4))), {}, jacobian_budget=1,
                      jacobian_seconds=0)
    skipped = next(o for o in example.outcomes if o.check == "jacobian")
    if skipped.status == "pass":  # a one-chunk contraction finishes before its time is measured
        assert skipped.message.startswith("streamed")
    else:
        assert skipped.status == "skip" and "dY/dx has 48 entries" in skipped.message


def test_jacobian_cost_is_estimated_from_shapes_alone():
    cost = jacobian_cost((64, 4096), [(64, 4096), (4096, 4096)], ("x", "w"))
    assert cost.entries == (68_719_476_736, 4_398_046_511_104)
    assert "256 GiB in float32" in cost.describe()


def test_float32_run_rounds_inputs_and_expects_float32_gradients():
    x, w = np.full((2, 3), 0.1), np.full((3, 2), 0.3)
    example = examine(LAYERS["linear"], (x, w), {}, dtype="float32")
    assert not example.failed
    widened = Mutant("linear", "widens", "returns float64",
                     lambda dout, c: tuple(g.astype(np.float64) for g in LAYERS["linear"].backward(dout, c)),
                     bug="dtype")
    failed = {o.check for o in examine(widened.apply(LAYERS["linear"]), (x, w), {}, dtype="float32").failed}
    assert failed == {"shapes"}


def test_error_units_scale_with_eps_and_magnitude():
    assert tolerance.error_units(1.0, 1.0, 1.0, "float64") == 0
    at_bound = 1.0 + tolerance.C * np.finfo(np.float64).eps * 4.0
    assert tolerance.error_units(at_bound, 1.0, 4.0, "float64") == pytest.approx(1.0, rel=1e-3)
    assert tolerance.error_units(np.nan, 1.0, 1.0, "float32") == np.inf
    # float32 allows 2**29 times more than float64 at the same magnitude
    ratio = tolerance.error_units(1.001, 1.0, 1.0, "float64") / tolerance.error_units(1.001, 1.0, 1.0, "float32")
    assert ratio == pytest.approx(2.0 ** 29)


def test_reference_imports_with_numpy_alone():
    code = ("import sys; sys.modules['jax'] = None; sys.modules['hypothesis'] = None; "
            "import reference; assert 'jax' not in sys.modules or sys.modules['jax'] is None; "
            "print(len(reference.__all__))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_jacobian_check_streams_beyond_the_memory_budget():
    example = examine(LAYERS["linear"], (np.ones((3, 4)), np.arange(8.0).reshape(4, 2)), {}, jacobian_budget=1)
    outcome = next(o for o in example.outcomes if o.check == "jacobian")
    assert outcome.status == "pass" and outcome.message.startswith("streamed")


def test_streamed_jacobian_is_skipped_when_it_would_exceed_its_time():
    x, w = np.ones((64, 32)), np.ones((32, 64))
    example = examine(LAYERS["linear"], (x, w), {}, jacobian_budget=1, jacobian_seconds=1e-9, checks=("jacobian",))
    outcome = next(o for o in example.outcomes if o.check == "jacobian")
    assert outcome.status == "skip" and "would take about" in outcome.message


def test_streamed_jacobian_rejects_a_wrong_backward():
    sign_flip = next(m for m in MUTANTS if (m.layer, m.name) == ("linear", "sign_flip"))
    example = examine(sign_flip.apply(LAYERS["linear"]), (np.ones((3, 4)), np.ones((4, 2))), {},
                      jacobian_budget=1, checks=("jacobian",))
    assert [o.check for o in example.failed] == ["jacobian"]
