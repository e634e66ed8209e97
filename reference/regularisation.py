"""Inverted dropout, deterministic given its mask.   Derivation: docs/derivations/dropout.md

    out = x * mask / p         x, mask: the same shape; mask of 0s and 1s; p in (0, 1]
    dx  = dout * mask / p

p is the keep probability: a unit survives with probability p (mask = 1) and is scaled
by 1/p, so E[out] = x and the layer is the identity at test time. Drawing the mask is
the caller's business (``mask = (rng.random(x.shape) < p).astype(x.dtype)``): the layer
is then a fixed diagonal linear map, diag(mask / p), and the backward applies the same
map to dout. The forward caches that diagonal, so the backward is one multiplication.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate

__all__ = ["DropoutCache", "dropout_backward", "dropout_forward"]


class DropoutCache(NamedTuple):
    scale: np.ndarray  # mask / p: x's shape and dtype, the Jacobian's diagonal


def dropout_forward(x: np.ndarray, *, mask: np.ndarray, p: float) -> tuple[np.ndarray, DropoutCache]:
    """out = x * mask / p.

    x: any shape, e.g. (N, D); mask: x's shape, any floating dtype, entries 0 or 1;
    p: keep probability in (0, 1] -> (out: x's shape and dtype, DropoutCache).
    Even at p = 1 (the identity) out is a new array, never x itself.
    """
    _validate.float_array("x", x)
    _validate.float_array("mask", mask)
    _validate.same_shape("mask", mask, "x", x)
    _zeros_and_ones("mask", mask)
    p = _validate.real_in("p", p, 0.0, 1.0, low_open=True)
    # In x's dtype (mask's 0 and 1 convert exactly), and a new array: reusing the mask's
    # buffer before the backward cannot change the gradient. Each result is written to an
    # array of its own (out=): on 0-d operands a ufunc would return a NumPy scalar instead.
    scale = np.divide(mask, p, out=np.empty(x.shape, x.dtype), dtype=x.dtype)
    return np.multiply(x, scale, out=np.empty_like(scale)), DropoutCache(scale)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> tuple[np.ndarray]:
    """dx = dout * mask / p.

    dout: the output's shape and dtype -> (dx: x's shape,).
    """
    scale = cache.scale
    _validate.upstream(dout, scale.shape, scale.dtype)
    return (np.multiply(dout, scale, out=np.empty_like(scale)),)


def _zeros_and_ones(name, mask) -> None:
    binary = (mask == 0) | (mask == 1)
    if not binary.all():
        bad = mask[~binary].flat[0]
        raise ValueError(f"{name} (shape {mask.shape}) has an entry {bad} that is neither 0 nor 1: "
                         f"a dropout mask keeps (1) or drops (0) each unit")
