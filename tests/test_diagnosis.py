"""The diagnosis names the usual bug shapes."""
import numpy as np
import pytest

from verification.diagnosis import diagnose, swapped

RNG = np.random.default_rng(11)
EXPECTED = RNG.standard_normal((4, 3))
SCALE = np.abs(EXPECTED) + 1.0


@pytest.mark.parametrize("actual, words", [
    (-EXPECTED, "-1 (sign flipped)"),
    (EXPECTED / 4, "1/N (N = 4)"),
    (2 * EXPECTED, "factor of 2"),
    (np.zeros_like(EXPECTED), "all zeros"),
    (EXPECTED.T.copy(), "transposed"),
    (EXPECTED.reshape(12), "not reshaped"),
    (EXPECTED.sum(axis=1), "wrong shape (4,) instead of (4, 3)"),
    (np.where(np.arange(4)[:, None] == 2, 0.0, EXPECTED), "correct except rows [2]"),
    (np.where(np.arange(3)[None, :] == 1, 5.0, EXPECTED), "correct except columns [1]"),
    (EXPECTED.astype(np.float32).astype(np.float64) + 0 * EXPECTED, "float32 inside"),
    (np.where(EXPECTED > 0, np.nan, EXPECTED), "NaN/inf produced"),
])
def test_diagnosis_names_the_bug(actual, words):
    assert words in diagnose("dx", actual, EXPECTED, SCALE, "float64", batch=4)


def test_no_diagnosis_for_a_right_answer():
    assert diagnose("dx", EXPECTED.copy(), EXPECTED, SCALE, "float64", batch=4) == ""


def test_square_transpose_is_named():
    square = RNG.standard_normal((3, 3))
    assert "transposed" in diagnose("dw", square.T.copy(), square, np.abs(square) + 1, "float64")


def test_swapped_outputs_are_named_from_shapes():
    got = (np.zeros((4, 2)), np.zeros((2, 3)))
    want = (np.zeros((2, 3)), np.zeros((4, 2)))
    assert "wrong order" in swapped(("dx", "dw"), got, want)
    assert swapped(("dx", "dw"), want, want) == ""
