"""Every catalogued layer passes every check, in float64 and float32 (generic over LAYERS)."""
import pytest

from conftest import TEST_EXAMPLES
from verification import CHECKS, LAYERS, check_layer
from verification.checks import FLOAT64_ONLY


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_passes_every_check(name, dtype):
    report = check_layer(LAYERS[name], max_examples=TEST_EXAMPLES, seed=0, dtypes=(dtype,))
    assert report.passed, f"\n{report}"
    layer = LAYERS[name]
    for check in CHECKS:
        if check == "per_example" and not layer.per_example:
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
