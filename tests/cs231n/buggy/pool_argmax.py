"""Another student's max pooling, written for these tests: the argmax of each window is
unravelled with the pool's height as the window's width, right only for square pools (wrong)."""
from builtins import range

import numpy as np


def max_pool_forward_naive(x, pool_param):
    """Correct."""
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out = 1 + (H - ph) // stride
    W_out = 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """idx // ph, idx % ph: the flat argmax read as if each row of the window held ph entries."""
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    idx = np.argmax(window)
                    r, s = idx // ph, idx % ph
                    dx[n, c, i * stride + r, j * stride + s] += dout[n, c, i, j]
    return dx
