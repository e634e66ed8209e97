"""Argument checks shared by the reference layers.

Every check raises a ``TypeError`` or ``ValueError`` whose message names the
argument, what it is, and what was expected, so that bad input fails at the
layer's boundary rather than deep inside NumPy (or, worse, broadcasts silently).
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes the layers compute in and the verifier proves. float16, bfloat16 and long
double are refused: their rounding is not what the tolerances were derived for, and a
dtype that runs but is never proven would be a promise the project does not keep."""


def float_array(name: str, value) -> np.ndarray:
    """Return ``value`` if it is a NumPy array of a floating dtype, else raise TypeError."""
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of floats, got {type(value).__name__}"
        )
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {value.dtype} (shape {value.shape}) but float32 or float64 "
            f"is expected"
        )
    return value


def same_dtype(name: str, value: np.ndarray, like_name: str, like: np.ndarray) -> None:
    """Refuse mixed precision: gradients keep their input's dtype, so inputs must agree."""
    if value.dtype != like.dtype:
        raise TypeError(
            f"{name} has dtype {value.dtype} but {like_name} has dtype {like.dtype}: "
            f"both must have the same floating dtype"
        )


def ndim(name: str, value: np.ndarray, expected: int, symbols: str) -> None:
    """Require ``value.ndim == expected``; ``symbols`` spells the expected shape, e.g. '(N, D)'."""
    if value.ndim != expected:
        raise ValueError(
            f"{name} has shape {value.shape} but a {expected}-d array {symbols} is expected"
        )


def min_ndim(name: str, value: np.ndarray, expected: int, symbols: str) -> None:
    """Require ``value.ndim >= expected``."""
    if value.ndim < expected:
        raise ValueError(
            f"{name} has shape {value.shape} but an array of at least {expected} "
            f"dimensions {symbols} is expected"
        )


def dim_equals(name: str, value: np.ndarray, axis: int, other_name: str,
               other: np.ndarray, other_axis: int) -> None:
    """Require ``value.shape[axis] == other.shape[other_axis]`` (inner dimensions that must agree)."""
    if value.shape[axis] != other.shape[other_axis]:
        raise ValueError(
            f"{name} has shape {value.shape} but {other_name} has shape {other.shape}: "
            f"{name}.shape[{axis}] must equal {other_name}.shape[{other_axis}] = "
            f"{other.shape[other_axis]}"
        )


def upstream(dout, expected_shape: tuple, expected_dtype: np.dtype) -> np.ndarray:
    """Check the upstream gradient against the output the forward produced."""
    float_array("dout", dout)
    if dout.shape != tuple(expected_shape):
        raise ValueError(
            f"dout has shape {dout.shape} but the forward output has shape "
            f"{tuple(expected_shape)}: dout must have the output's shape"
        )
    if dout.dtype != expected_dtype:
        raise TypeError(
            f"dout has dtype {dout.dtype} but the forward ran in {expected_dtype}: "
            f"dout must have the output's dtype"
        )
    return dout


def int_array(name: str, value, shape: tuple | None = None) -> np.ndarray:
    """Integer arrays (labels, indices); ``shape``, if given, is the required shape."""
    if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.integer):
        got = f"dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        raise TypeError(f"{name} must be a numpy.ndarray of integers, got {got}")
    if shape is not None and value.shape != tuple(shape):
        raise ValueError(f"{name} has shape {value.shape} but shape {tuple(shape)} is expected")
    return value


def index_range(name: str, value: np.ndarray, stop: int, what: str) -> None:
    """Require every entry of an integer array in [0, stop); ``what`` names the range."""
    if value.size and (value.min() < 0 or value.max() >= stop):
        raise ValueError(
            f"{name} has entries in [{value.min()}, {value.max()}] but they must lie in "
            f"[0, {stop}) ({what})"
        )


def positive_int(name: str, value, minimum: int = 1) -> int:
    """An int hyperparameter (stride, kernel size, groups) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} is {value} but must be at least {minimum}")
    return int(value)


def real_in(name: str, value, low: float, high: float, *, low_open: bool = False,
            high_open: bool = False) -> float:
    """A float hyperparameter (eps, slope, keep probability) within [low, high] (open ends as asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high or value != value:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} is {value} but must lie in {interval}")
    return float(value)


def same_shape(name: str, value: np.ndarray, like_name: str, like: np.ndarray) -> None:
    """Require equal shapes (elementwise pairs such as predictions and targets, x and mask)."""
    if value.shape != like.shape:
        raise ValueError(
            f"{name} has shape {value.shape} but {like_name} has shape {like.shape}: "
            f"they must have the same shape"
        )
