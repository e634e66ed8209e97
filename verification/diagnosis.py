"""Name the likely bug behind a wrong gradient, from the usual shapes bugs take.

Given what the layer returned and what the oracle expects, try in turn: gradients in
the wrong order, a wrong shape (a missing reshape, a transpose, a reduction over the
wrong axis), NaN or inf produced, all zeros, a transpose of a square result, float32
arithmetic inside a float64 run, a constant factor (and which: -1, 2, 1/2, N, 1/N ...),
and errors confined to some rows or columns. The first that fits is named.
"""
from __future__ import annotations

import numpy as np

from . import tolerance


def swapped(names, actuals, expecteds) -> str:
    """Gradients of the right shapes in the wrong order (shapes alone tell)."""
    got = [np.shape(a) for a in actuals]
    want = [np.shape(e) for e in expecteds]
    if got != want and sorted(got) == sorted(want):
        order = [names[want.index(shape)] for shape in got]
        return f"gradients returned in the wrong order: the shapes say ({', '.join(order)})"
    return ""


def diagnose(name: str, actual, expected, scale, dtype, *, batch: int | None = None) -> str:
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return _shape_bug(name, actual, expected, scale, dtype)
    if actual.size == 0:
        return ""
    if not np.all(np.isfinite(actual)) and np.all(np.isfinite(expected)):
        where = np.argwhere(~np.isfinite(actual))[0]
        return f"NaN/inf produced: {name}{list(where)} = {actual[tuple(where)]}"
    wrong = tolerance.error_units(actual, expected, scale, dtype) > 1
    if not wrong.any():
        return ""
    if not actual.any() and expected.any():
        return f"{name} is all zeros: a term is missing or the gradient is never written"
    if actual.ndim == 2 and actual.shape[0] == actual.shape[1] > 1 and _fits(actual.T, expected, scale, dtype):
        return f"transposed: {name}.T is the right answer"
    lower = _lower_precision(actual, expected, scale, dtype)
    if lower:
        return lower
    factor = _constant_factor(actual, expected, scale, dtype, batch)
    if factor:
        return factor
    return _confined(name, wrong)


def _fits(actual, expected, scale, dtype) -> bool:
    return bool(np.all(tolerance.error_units(actual, expected, scale, dtype) <= 1))


def _lower_precision(actual, expected, scale, dtype) -> str:
    """Errors too big for float64 but within float32 rounding: float32 arithmetic inside."""
    if np.dtype(dtype) == np.float64 and _fits(actual, expected, scale, np.float32):
        return "computed in float32 inside a float64 run: the errors are float32 rounding"
    return ""


def _shape_bug(name, actual, expected, scale, dtype) -> str:
    got, want = actual.shape, expected.shape
    if actual.size == expected.size:
        if actual.ndim == 2 and got == want[::-1] and _fits(actual.T, expected, scale, dtype):
            return f"transposed: {name} has shape {got}, its transpose is the right answer"
        if _fits(actual.reshape(want), expected, scale, dtype):
            return f"not reshaped: {name} has the right values in shape {got} instead of {want}"
    if actual.ndim == expected.ndim and actual.ndim >= 1 and sorted(got) != sorted(want):
        return f"wrong shape {got} instead of {want}: summed (or indexed) over the wrong axis?"
    return f"wrong shape {got} instead of {want}"


def _constant_factor(actual, expected, scale, dtype, batch) -> str:
    denominator = float(np.sum(expected * expected))
    if denominator == 0:
        return ""
    c = float(np.sum(actual * expected)) / denominator
    named = {-1.0: "-1 (sign flipped)", 2.0: "2", 0.5: "1/2", -2.0: "-2"}
    if batch and batch > 1:
        named.update({float(batch): f"N = {batch}", 1.0 / batch: f"1/N (N = {batch})",
                      1.0 / (batch - 1): f"1/(N-1) (N = {batch})"})
    for value, label in named.items():
        if _fits(actual, value * expected, abs(value) * np.asarray(scale), dtype):
            return f"off by a constant factor of {label}"
    if abs(c - 1) > 1e-2 and c != 0 and _fits(actual, c * expected, abs(c) * np.asarray(scale), dtype):
        return f"off by a constant factor of {c:.6g}"
    return ""


def _confined(name, wrong) -> str:
    total = wrong.size
    count = int(wrong.sum())
    if wrong.ndim >= 1 and wrong.shape[0] > 1:
        rows = np.flatnonzero(wrong.reshape(wrong.shape[0], -1).any(axis=1))
        if len(rows) < wrong.shape[0]:
            return f"correct except rows {_listing(rows)} (axis 0) of {name}"
    if wrong.ndim >= 2 and wrong.shape[-1] > 1:
        columns = np.flatnonzero(wrong.reshape(-1, wrong.shape[-1]).any(axis=0))
        if len(columns) < wrong.shape[-1]:
            return f"correct except columns {_listing(columns)} (last axis) of {name}"
    return f"wrong values with no simple pattern ({count} of {total} entries of {name} off)"


def _listing(indices) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:8])
    return f"[{shown}{', ...' if len(indices) > 8 else ''}]"
