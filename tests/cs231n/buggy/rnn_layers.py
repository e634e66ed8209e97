"""An assignment-3 rnn_layers.py with the course's classic bugs, written for these tests.

Each function says in its docstring what is wrong with it and the verdict the CS231n checker
must give (tests/test_cs231n.py holds the same list); the others are correct.
"""
from builtins import range

import numpy as np


def sigmoid(x):
    """A numerically stable logistic function."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """Correct."""
    next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """tanh' as 1 - next_h ** 2: right in exact arithmetic, but it cancels to 0 in float32 once
    next_h rounds to +-1 (|a| > 9), where the true slope is still e^-2|a| (inaccurate)."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    return da.dot(Wx.T), da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    """Correct."""
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    caches, prev_h = [], h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, caches


def rnn_backward(dh, cache):
    """Takes the last step apart (nothing comes from a step after it), loops over the others
    and stacks what they return: np.stack of no arrays raises when T = 1 (contract)."""
    T = dh.shape[1]
    dx_last, dprev_h, dWx, dWh, db = rnn_step_backward(dh[:, T - 1, :], cache[T - 1])
    dxs = []
    for t in reversed(range(T - 1)):
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])
        dxs.append(dx_t)
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    dx = np.concatenate((np.stack(dxs[::-1], axis=1), dx_last[:, None, :]), axis=1)
    return dx, dprev_h, dWx, dWh, db


def word_embedding_forward(x, W):
    """Correct."""
    return W[x], (x, W)


def word_embedding_backward(dout, cache):
    """dW[x] += dout: fancy indexing adds each repeated word once, not once per occurrence (wrong)."""
    x, W = cache
    dW = np.zeros_like(W)
    dW[x] += dout
    return dW


def temporal_affine_forward(x, w, b):
    """Correct: pass."""
    N, T, D = x.shape
    out = x.reshape(N * T, D).dot(w).reshape(N, T, -1) + b
    return out, (x, w, b)


def temporal_affine_backward(dout, cache):
    """Correct: pass."""
    x, w, b = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T.dot(dout.reshape(N * T, M))
    return dx, dw, dout.sum(axis=(0, 1))


def temporal_softmax_loss(x, y, mask, verbose=False):
    """The loss leaves the masked positions out, the gradient does not (wrong)."""
    N, T, V = x.shape
    x_flat, y_flat, mask_flat = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    shifted = x_flat - np.max(x_flat, axis=1, keepdims=True)
    exp_scores = np.exp(shifted)
    sums = np.sum(exp_scores, axis=1, keepdims=True)
    loss = -np.sum(mask_flat * (shifted[np.arange(N * T), y_flat] - np.log(sums[:, 0]))) / N
    dx_flat = exp_scores / sums
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat /= N
    return loss, dx_flat.reshape(N, T, V)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """Correct: pass."""
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, a, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Correct: pass (every slope from the pre-activations, none as s * (1 - s))."""
    x, prev_h, prev_c, Wx, Wh, a, next_c = cache
    H = prev_h.shape[1]
    a_i, a_f, a_o, a_g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    with np.errstate(over="ignore"):
        dtanh_c, dtanh_g = 1 / np.cosh(next_c) ** 2, 1 / np.cosh(a_g) ** 2
    dc = dnext_c + dnext_h * sigmoid(a_o) * dtanh_c
    da = np.hstack((dc * np.tanh(a_g) * sigmoid(a_i) * sigmoid(-a_i),
                    dc * prev_c * sigmoid(a_f) * sigmoid(-a_f),
                    dnext_h * np.tanh(next_c) * sigmoid(a_o) * sigmoid(-a_o),
                    dc * sigmoid(a_i) * dtanh_g))
    return da.dot(Wx.T), da.dot(Wh.T), dc * sigmoid(a_f), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b):
    """Correct."""
    N, T, D = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    prev_h, prev_c, caches = h0, np.zeros_like(h0), []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, caches


def lstm_backward(dh, cache):
    """Hands every step a zero dnext_c: the cell state's gradient from step t + 1 is dropped (wrong)."""
    N, T, H = dh.shape
    dx = np.zeros((N, T, cache[0][0].shape[1]), dtype=dh.dtype)
    dWx, dWh = np.zeros_like(cache[0][3]), np.zeros_like(cache[0][4])
    db = np.zeros(4 * H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t, :], dprev_h, _, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t, :] + dprev_h,
                                                                         np.zeros_like(dprev_h), cache[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev_h, dWx, dWh, db
