"""Sliding windows over the spatial axes, shared by convolution and pooling (private).

Arrays are channel-first, (N, C, *S) with S the spatial sizes ((L,) or (H, W)). Per
spatial axis, a window of K taps with stride s and dilation d over an input padded by p
zeros on each side reads, at output position o, the padded positions

    o*s + k*d,   k = 0 .. K-1,      a span of d*(K - 1) + 1 positions,

and fits at

    O = 1 + (S + 2*p - d*(K - 1) - 1) // s     output positions per axis.

The floor drops the trailing input positions no window reaches when the stride does not
divide evenly; they get a zero gradient.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _validate

_PER_AXIS = {1: "(l,)", 2: "(h, w)"}


def per_axis(name: str, value, nd: int, minimum: int) -> tuple[int, ...]:
    """A hyperparameter given as one int for every spatial axis or as ``nd`` ints, each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != nd:
            raise ValueError(
                f"{name} is {value!r} but an int or a sequence of {nd} ints {_PER_AXIS[nd]} is expected"
            )
        return tuple(_validate.positive_int(f"{name}[{k}]", v, minimum) for k, v in enumerate(value))
    return (_validate.positive_int(name, value, minimum),) * nd


def output_shape(x: np.ndarray, kernel, stride, padding, dilation, kernel_is: str) -> tuple[int, ...]:
    """O per spatial axis of x (N, C, *S); ValueError when the window does not fit in the padded input.

    ``kernel_is`` says where the kernel comes from, for the message ("w has shape (...)").
    """
    spatial = x.shape[2:]
    padded = tuple(n + 2 * p for n, p in zip(spatial, padding))
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(s > n for s, n in zip(span, padded)):
        window = f"the window {tuple(kernel)}"
        if any(d != 1 for d in dilation):
            window += f" with dilation {tuple(dilation)} spans {span} and"
        room = f"the input's spatial size {spatial}"
        if any(padding):
            room += f" padded by {tuple(padding)} on each side, {padded}"
        raise ValueError(f"x has shape {x.shape} but {kernel_is}: {window} does not fit in {room}")
    return tuple(1 + (n - s) // st for n, s, st in zip(padded, span, stride))


def windows(xp: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """The read-only view (N, C, *O, *K) of the windows of xp (N, C, *S): [n, c, o, k] = xp[n, c, o*s + k*d].

    No copy: the view's strides step by s over outputs and by d over taps.
    """
    nd = len(kernel)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    view = sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    return view[(slice(None),) * 2 + tuple(slice(None, None, s) for s in stride)
                + tuple(slice(None, None, d) for d in dilation)]
