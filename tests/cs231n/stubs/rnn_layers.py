"""An assignment-3 rnn_layers.py as a student starts it, written for these tests in the shape of
the course's stubs: every function still returns the Nones it starts with. The CS231n checker
must say 'not implemented' for each, and never crash.
"""
from builtins import range

import numpy as np


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h, cache = None, None
    pass
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    dx, dprev_h, dWx, dWh, db = None, None, None, None, None
    pass
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    h, cache = None, None
    pass
    return h, cache


def rnn_backward(dh, cache):
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    pass
    return dx, dh0, dWx, dWh, db


def word_embedding_forward(x, W):
    out, cache = None, None
    pass
    return out, cache


def word_embedding_backward(dout, cache):
    dW = None
    pass
    return dW


def temporal_affine_forward(x, w, b):
    out, cache = None, None
    pass
    return out, cache


def temporal_affine_backward(dout, cache):
    dx, dw, db = None, None, None
    pass
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    loss, dx = None, None
    pass
    return loss, dx


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, cache = None, None, None
    pass
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    dx, dprev_h, dprev_c, dWx, dWh, db = None, None, None, None, None, None
    pass
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    h, cache = None, None
    pass
    return h, cache


def lstm_backward(dh, cache):
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    pass
    return dx, dh0, dWx, dWh, db
