"""Vectorised convolution and max pooling under the course's fast_layers.py names, written for
these tests: windows as strided views (no im2col extension needed), correct in every dtype.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x, height, width, stride):
    """(N, C, H', W', height, width): every window of x, as a view."""
    return sliding_window_view(x, (height, width), axis=(2, 3))[:, :, ::stride, ::stride]


def conv_forward_fast(x, w, b, conv_param):
    """
    A fast implementation of the forward pass for a convolutional layer.

    Inputs and outputs as conv_forward_naive's: x (N, C, H, W), w (F, C, HH, WW), b (F,),
    conv_param {'stride', 'pad'} -> out (N, F, H', W'), cache.
    """
    stride, pad = conv_param["stride"], conv_param["pad"]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    windows = _windows(x_pad, w.shape[2], w.shape[3], stride)
    out = np.einsum("nchwij,fcij->nfhw", windows, w) + b[None, :, None, None]
    return out, (x, w, b, conv_param)


def conv_backward_fast(dout, cache):
    """
    A fast implementation of the backward pass for a convolutional layer: dw from the windows,
    dx one kernel tap at a time (within one tap, distinct windows touch distinct entries).
    """
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dw = np.einsum("nchwij,nfhw->fcij", _windows(x_pad, HH, WW, stride), dout)
    dx_pad = np.zeros_like(x_pad)
    for i in range(HH):
        for j in range(WW):
            dx_pad[:, :, i:i + stride * H_out:stride, j:j + stride * W_out:stride] += np.einsum(
                "nfhw,fc->nchw", dout, w[:, :, i, j])
    dx = dx_pad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def max_pool_forward_fast(x, pool_param):
    """
    A fast implementation of the forward pass for a max pooling layer: x (N, C, H, W),
    pool_param {'pool_height', 'pool_width', 'stride'} -> out (N, C, H', W'), cache.
    """
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    out = _windows(x, ph, pw, stride).max(axis=(4, 5))
    return out, (x, pool_param)


def max_pool_backward_fast(dout, cache):
    """
    A fast implementation of the backward pass for a max pooling layer: each window's dout
    added at its maximum (np.add.at, as overlapping windows may share one).
    """
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    flat = _windows(x, ph, pw, stride).reshape(N, C, H_out, W_out, ph * pw)
    r, s = np.divmod(np.argmax(flat, axis=-1), pw)
    n, c, i, j = np.indices((N, C, H_out, W_out))
    dx = np.zeros_like(x)
    np.add.at(dx, (n, c, i * stride + r, j * stride + s), dout)
    return dx
