"""Argument checks shared by the reference layers.

Every check raises a ``TypeError`` or ``ValueError`` whose message names the
argument, what it is, and what was expected, so that bad input fails at the
layer's boundary rather than deep inside NumPy (or, worse, broadcasts silently).
"""
from __future__ import annotations

import numpy as np


def float_array(name: str, value) -> np.ndarray:
    """Return ``value`` if it is a NumPy array of a floating dtype, else raise TypeError."""
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of floats, got {type(value).__name__}"
        )
    if not np.issubdtype(value.dtype, np.floating):
        raise TypeError(
            f"{name} has dtype {value.dtype} (shape {value.shape}) but a floating "
            f"dtype (float32 or float64) is expected"
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
