"""An assignment-2 layers.py with the course's classic bugs, written for these tests.

Each function says in its docstring what is wrong with it and the verdict the CS231n checker
must give (tests/test_cs231n.py holds the same list); the others are correct.
"""
from builtins import range

import numpy as np


def affine_forward(x, w, b):
    """Correct: pass."""
    out = x.reshape(x.shape[0], -1).dot(w) + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    """Correct: pass."""
    x, w, b = cache
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(dout)
    db = np.sum(dout, axis=0)
    return dx, dw, db


def relu_forward(x):
    """Correct."""
    out = np.maximum(x, 0)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    """dx = dout, then zeroed where x <= 0: the caller's dout is zeroed with it (contract)."""
    x = cache
    dx = dout
    dx[x <= 0] = 0
    return dx


def svm_loss(x, y):
    """Correct: pass."""
    N = x.shape[0]
    correct = x[np.arange(N), y][:, None]
    margins = np.maximum(0, x - correct + 1)
    margins[np.arange(N), y] = 0
    loss = np.sum(margins) / N
    active = (margins > 0).astype(x.dtype)
    active[np.arange(N), y] = -np.sum(active, axis=1)
    return loss, active / N


def softmax_loss(x, y):
    """The loss is averaged over the batch, its gradient is not: dx misses 1/N (wrong)."""
    N = x.shape[0]
    shifted = x - np.max(x, axis=1, keepdims=True)
    exp_scores = np.exp(shifted)
    sums = np.sum(exp_scores, axis=1, keepdims=True)
    loss = np.sum(np.log(sums[:, 0]) - shifted[np.arange(N), y]) / N
    dx = exp_scores / sums
    dx[np.arange(N), y] -= 1
    return loss, dx


def batchnorm_forward(x, gamma, beta, bn_param):
    """Correct (train mode)."""
    eps = bn_param.get("eps", 1e-5)
    mu = x.mean(axis=0)
    xmu = x - mu
    std = np.sqrt(np.mean(xmu ** 2, axis=0) + eps)
    xhat = xmu / std
    out = gamma * xhat + beta
    return out, (xhat, std, gamma)


def batchnorm_backward(dout, cache):
    """Right values, but dgamma and dbeta keep the summed axis: shape (1, D), not (D,) (contract)."""
    xhat, std, gamma = cache
    dbeta = np.sum(dout, axis=0, keepdims=True)
    dgamma = np.sum(dout * xhat, axis=0, keepdims=True)
    g = dout * gamma
    dx = (g - g.mean(axis=0) - xhat * np.mean(g * xhat, axis=0)) / std
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Correct: pass."""
    xhat, std, gamma = cache
    g = dout * gamma
    dx = (g - g.mean(axis=0) - xhat * np.mean(g * xhat, axis=0)) / std
    return dx, np.sum(dout * xhat, axis=0), dout.sum(axis=0)


def layernorm_forward(x, gamma, beta, ln_param):
    """Correct."""
    eps = ln_param.get("eps", 1e-5)
    xmu = x - x.mean(axis=1, keepdims=True)
    std = np.sqrt(np.mean(xmu ** 2, axis=1, keepdims=True) + eps)
    xhat = xmu / std
    return gamma * xhat + beta, (xhat, std, gamma)


def layernorm_backward(dout, cache):
    """The means of the backward taken over the batch axis, as batchnorm's (wrong)."""
    xhat, std, gamma = cache
    g = dout * gamma
    dx = (g - g.mean(axis=0, keepdims=True) - xhat * np.mean(g * xhat, axis=0, keepdims=True)) / std
    return dx, np.sum(dout * xhat, axis=0), dout.sum(axis=0)


def dropout_forward(x, dropout_param):
    """Keeps units with probability p but never divides by p (wrong)."""
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = (np.random.rand(*x.shape) < p).astype(x.dtype)
    out = x * mask if mode == "train" else x.copy()
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    """Consistent with its forward: dout * mask."""
    dropout_param, mask = cache
    return dout * mask


def conv_forward_naive(x, w, b, conv_param):
    """Correct."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    out = np.zeros((N, F, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            window = x_pad[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    """Crops the padding off dx_pad with [:, :, pad:-pad, pad:-pad]: empty when pad = 0 (wrong)."""
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for i in range(H_out):
        for j in range(W_out):
            rows = slice(i * stride, i * stride + HH)
            cols = slice(j * stride, j * stride + WW)
            dw += np.tensordot(dout[:, :, i, j], x_pad[:, :, rows, cols], axes=([0], [0]))
            dx_pad[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    dx = dx_pad[:, :, pad:-pad, pad:-pad]
    return dx, dw, np.sum(dout, axis=(0, 2, 3))


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
    """Writes dx at each window's maximum with = instead of +=: where windows overlap, an entry
    that is the maximum of two windows keeps only the last one's gradient (wrong)."""
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    r, s = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * stride + r, j * stride + s] = dout[n, c, i, j]
    return dx


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Reshapes (N, C, H, W) to (N*H*W, C) without moving C last first: rows mix channels (wrong)."""
    N, C, H, W = x.shape
    out, cache = batchnorm_forward(x.reshape(-1, C), gamma, beta, bn_param)
    return out.reshape(N, C, H, W), cache


def spatial_batchnorm_backward(dout, cache):
    """The same reshape."""
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = batchnorm_backward_alt(dout.reshape(-1, C), cache)
    return dx.reshape(N, C, H, W), dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Adds eps outside the square root: (x - mu) / (sqrt(var) + eps) (wrong)."""
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    grouped = x.reshape(N, G, -1)
    xmu = grouped - grouped.mean(axis=2, keepdims=True)
    std = np.sqrt(np.mean(xmu ** 2, axis=2, keepdims=True)) + eps
    xhat = (xmu / std).reshape(x.shape)
    return gamma * xhat + beta, (xhat, std, gamma, G)


def spatial_groupnorm_backward(dout, cache):
    """The backward of the right forward."""
    xhat, std, gamma, G = cache
    N = dout.shape[0]
    g = (dout * gamma).reshape(N, G, -1)
    xhat_g = xhat.reshape(N, G, -1)
    dx = (g - g.mean(axis=2, keepdims=True) - xhat_g * np.mean(g * xhat_g, axis=2, keepdims=True)) / std
    return (dx.reshape(dout.shape), np.sum(dout * xhat, axis=(0, 2, 3), keepdims=True),
            np.sum(dout, axis=(0, 2, 3), keepdims=True))
