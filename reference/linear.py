"""Linear and affine layers.   Derivation: docs/derivations/linear.md

Linear:  Y = X W                      X: (N, D), W: (D, M), Y: (N, M)
    dX = dY W^T      (N, D) = (N, M) (M, D)
    dW = X^T dY      (D, M) = (D, N) (N, M)

Affine:  Y = flat(X) W + b            X: (N, d1, ..., dk), D = d1 * ... * dk, b: (M,)
    dX = unflat(dY W^T)               reshaped back to X's shape
    dW = flat(X)^T dY
    db = sum_i dY[i, :]               (M,)

Neither backward forms a Jacobian: dY/dX alone has N*M*N*D entries
(68,719,476,736 for N = 64, D = M = 4096), while these products cost 2*N*D*M
multiply-adds each.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = [
    "AffineCache", "LinearCache",
    "affine_backward", "affine_forward", "linear_backward", "linear_forward",
]


class LinearCache(NamedTuple):
    x: np.ndarray  # (N, D)
    w: np.ndarray  # (D, M)


class AffineCache(NamedTuple):
    x: np.ndarray  # (N, d1, ..., dk), kept in its own shape to restore dX's
    w: np.ndarray  # (D, M)


def linear_forward(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, LinearCache]:
    """Y = X W.

    x: (N, D), w: (D, M), same floating dtype -> (y: (N, M), LinearCache).
    """
    _validate.float_array("x", x)
    _validate.float_array("w", w)
    _validate.ndim("x", x, 2, "(N, D)")
    _validate.ndim("w", w, 2, "(D, M)")
    _validate.same_dtype("w", w, "x", x)
    _validate.dim_equals("w", w, 0, "x", x, 1)
    return x @ w, LinearCache(x, w)


def linear_backward(dout: np.ndarray, cache: LinearCache) -> tuple[np.ndarray, np.ndarray]:
    """dX = dY W^T, dW = X^T dY.

    dout: (N, M) -> (dx: (N, D), dw: (D, M)), in the forward's dtype.
    The transposes are views: BLAS reads them in place. dX is computed as its transpose,
    W dY^T (D, N), then copied to C order: with a small batch OpenBLAS runs that operand
    order about twice as fast as dY W^T (N = 64, D = M = 4096 on the 2-core machine,
    float32 and float64), and the copy moves N*D entries against 2*N*D*M flops.
    """
    x, w = cache
    _validate.upstream(dout, (x.shape[0], w.shape[1]), x.dtype)
    return np.ascontiguousarray((w @ dout.T).T), x.T @ dout


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, AffineCache]:
    """Y = flat(X) W + b, flat(X) the (N, D) view of X with D = d1 * ... * dk.

    x: (N, d1, ..., dk), w: (D, M), b: (M,) -> (y: (N, M), AffineCache).
    """
    _validate.float_array("x", x)
    _validate.float_array("w", w)
    _validate.float_array("b", b)
    _validate.min_ndim("x", x, 2, "(N, d1, ..., dk)")
    _validate.ndim("w", w, 2, "(D, M)")
    _validate.ndim("b", b, 1, "(M,)")
    _validate.same_dtype("w", w, "x", x)
    _validate.same_dtype("b", b, "x", x)
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # also right for N = 0
    if w.shape[0] != flat.shape[1]:
        raise ValueError(
            f"w has shape {w.shape} but x has shape {x.shape}: w.shape[0] must equal "
            f"the product of x.shape[1:] = {flat.shape[1]}"
        )
    _validate.dim_equals("b", b, 0, "w", w, 1)
    return flat @ w + b, AffineCache(x, w)


def affine_backward(dout: np.ndarray, cache: AffineCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dX = unflat(dY W^T), dW = flat(X)^T dY, db = sum over the batch of dY.

    dout: (N, M) -> (dx: x's shape, dw: (D, M), db: (M,)), in the forward's dtype.
    dX is computed as the linear layer's is (see ``linear_backward``).
    """
    x, w = cache
    _validate.upstream(dout, (x.shape[0], w.shape[1]), x.dtype)
    dflat, dw = linear_backward(dout, LinearCache(x.reshape(x.shape[0], w.shape[0]), w))
    return dflat.reshape(x.shape), dw, dout.sum(axis=0)
