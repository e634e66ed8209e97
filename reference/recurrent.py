"""Recurrent layers: the vanilla RNN, the LSTM and the GRU, one step and a whole sequence.
Derivations: docs/derivations/{rnn_step,rnn,lstm_step,lstm,gru_step,gru}.md

One step maps x (N, D) and the state h_prev (N, H) to the new state h (N, H). A cell of G
gates stacks them along the last axis of wx (D, G H), wh (H, G H) and b (G H,); s is the
logistic function, s' = s(a) s(-a) and tanh' = 4 s(2a) s(-2a) its and tanh's derivatives.

RNN (G = 1)        a = x wx + h_prev wh + b,   h = tanh a
    da = dh * tanh'(a)
    dx = da wx^T,  dh_prev = da wh^T,  dwx = x^T da,  dwh = h_prev^T da,  db = sum_n da

LSTM (G = 4, gates i, f, o, g in that order)   a = x wx + h_prev wh + b = [a_i, a_f, a_o, a_g]
    i, f, o = s(a_i), s(a_f), s(a_o),  g = tanh(a_g),  c = f * c_prev + i * g,  h = o * tanh(c)
    from (dh, dc):  dc~ = dc + dh * o * tanh'(c)             (c reaches the loss through h too)
    da = [dc~ * g * s'(a_i), dc~ * c_prev * s'(a_f), dh * tanh(c) * s'(a_o), dc~ * i * tanh'(a_g)]
    dc_prev = dc~ * f,   and dx, dh_prev, dwx, dwh, db from da as for the RNN

GRU (G = 3, gates r, z, n: PyTorch's equations, two biases)
    gx = x wx + bx = [gx_r, gx_z, gx_n],   gh = h_prev wh + bh = [gh_r, gh_z, gh_n]
    r = s(gx_r + gh_r),  z = s(gx_z + gh_z),  n = tanh(a_n),  a_n = gx_n + r * gh_n
    h = (1 - z) * n + z * h_prev
    from dh:  da_n = dh * (1 - z) * tanh'(a_n),  da_z = dh * (h_prev - n) * s'(a_z),
              da_r = da_n * gh_n * s'(a_r)
    dgx = [da_r, da_z, da_n],   dgh = [da_r, da_z, da_n * r]
    dx = dgx wx^T,  dwx = x^T dgx,  dbx = sum_n dgx;
    dh_prev = dh * z + dgh wh^T,  dwh = h_prev^T dgh,  dbh = sum_n dgh

Sequences (rnn, lstm, gru): x (N, T, D), h_0 (N, H) (and c_0 = 0 for the LSTM); step t maps
x_t and h_{t-1} to h_t, and the output is every h_t, (N, T, H). Backpropagation through time:
h_t feeds the output at t and step t + 1, so its gradient is the sum of both,

    dh_t = dout_t + dh_prev(step t + 1)       (dc_t = dc_prev(step t + 1) for the LSTM),

taken from t = T down to 1 (the one loop over time); dh_0 = dh_prev(step 1). Each weight
is used at every step, so its gradient is the sum over steps: dwx = sum_t x_t^T da_t, one
matrix product over all N T rows after the loop, and likewise dwh, db and dx.

Where the work is done: each forward computes every local partial derivative of the cell
beside its value (the gates' slopes from the exponentials it evaluates anyway, through
``reference.activations``) and caches it, so a backward step is a few products and one
matrix product by wh^T. Numerics: s', tanh' and 1 - z = s(-a_z) come from e^-|a|, not as
s (1 - s), 1 - tanh^2 or 1 - z, which cancel to 0 once s, tanh or z round to +-1.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _validate
from .activations import sigmoid_forward, tanh_forward

__all__ = [
    "GruCache", "GruLocal", "GruStepCache", "LstmCache", "LstmLocal", "LstmStepCache", "RnnCache",
    "RnnStepCache",
    "gru_backward", "gru_forward", "gru_step_backward", "gru_step_forward",
    "lstm_backward", "lstm_forward", "lstm_step_backward", "lstm_step_forward",
    "rnn_backward", "rnn_forward", "rnn_step_backward", "rnn_step_forward",
]


# ---------------------------------------------------------------------------------------
# Caches. A step's cache holds (N, ...) arrays; a sequence's the same quantities for every
# step, (N, T, ...), with h_prev the state each step started from: h_0, h_1, ..., h_{T-1}.

class LstmLocal(NamedTuple):
    """The LSTM cell's local partial derivatives, each (N, H) (or (N, T, H) over a sequence)."""

    dc_dai: np.ndarray  # g * s'(a_i)
    dc_daf: np.ndarray  # c_prev * s'(a_f)
    dh_dao: np.ndarray  # tanh(c) * s'(a_o)
    dc_dag: np.ndarray  # i * tanh'(a_g)
    dh_dc: np.ndarray  # o * tanh'(c)
    dc_dcprev: np.ndarray  # f


class GruLocal(NamedTuple):
    """The GRU cell's local partial derivatives, each (N, H) (or (N, T, H) over a sequence)."""

    dh_dan: np.ndarray  # (1 - z) * tanh'(a_n)
    dh_daz: np.ndarray  # (h_prev - n) * s'(a_z)
    dan_dar: np.ndarray  # gh_n * s'(a_r)
    dan_dghn: np.ndarray  # r
    dh_dhprev: np.ndarray  # z, the direct path h_prev -> h


class RnnStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    h_prev: np.ndarray  # (N, H)
    wx: np.ndarray  # (D, H)
    wh: np.ndarray  # (H, H)
    dh_da: np.ndarray  # (N, H), tanh'(a)


class RnnCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    h_prev: np.ndarray  # (N, T, H)
    wx: np.ndarray  # (D, H)
    wh: np.ndarray  # (H, H)
    dh_da: np.ndarray  # (N, T, H)


class LstmStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    h_prev: np.ndarray  # (N, H)
    wx: np.ndarray  # (D, 4H)
    wh: np.ndarray  # (H, 4H)
    local: LstmLocal  # (N, H) each


class LstmCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    h_prev: np.ndarray  # (N, T, H)
    wx: np.ndarray  # (D, 4H)
    wh: np.ndarray  # (H, 4H)
    local: LstmLocal  # (N, T, H) each


class GruStepCache(NamedTuple):
    x: np.ndarray  # (N, D)
    h_prev: np.ndarray  # (N, H)
    wx: np.ndarray  # (D, 3H)
    wh: np.ndarray  # (H, 3H)
    local: GruLocal  # (N, H) each


class GruCache(NamedTuple):
    x: np.ndarray  # (N, T, D)
    h_prev: np.ndarray  # (N, T, H)
    wx: np.ndarray  # (D, 3H)
    wh: np.ndarray  # (H, 3H)
    local: GruLocal  # (N, T, H) each


# ---------------------------------------------------------------------------------------
# The vanilla RNN.

def rnn_step_forward(x: np.ndarray, h_prev: np.ndarray, wx: np.ndarray, wh: np.ndarray,
                     b: np.ndarray) -> tuple[np.ndarray, RnnStepCache]:
    """h = tanh(x wx + h_prev wh + b).

    x: (N, D), h_prev: (N, H), wx: (D, H), wh: (H, H), b: (H,), one floating dtype
    -> (h: (N, H), RnnStepCache).
    """
    _check(x, ("h_prev", h_prev), wx, wh, (("b", b),), gates=1)
    h, dh_da = _tanh(x @ wx + h_prev @ wh + b)
    return h, RnnStepCache(x, h_prev, wx, wh, dh_da)


def rnn_step_backward(dout: np.ndarray, cache: RnnStepCache) -> tuple[np.ndarray, ...]:
    """da = dh * tanh'(a); dx = da wx^T, dh_prev = da wh^T, dwx = x^T da, dwh = h_prev^T da, db = sum_n da.

    dout: dh (N, H) -> (dx: (N, D), dh_prev: (N, H), dwx: (D, H), dwh: (H, H), db: (H,)).
    """
    x, h_prev, wx, wh, dh_da = cache
    _validate.upstream(dout, dh_da.shape, dh_da.dtype)
    # h = tanh a
    da = dout * dh_da
    # a = x wx + h_prev wh + b
    dx, dwx, db = _input_grads(da, x, wx)
    return dx, da @ wh.T, dwx, _weight_grad(h_prev, da), db


def rnn_forward(x: np.ndarray, h0: np.ndarray, wx: np.ndarray, wh: np.ndarray,
                b: np.ndarray) -> tuple[np.ndarray, RnnCache]:
    """h_t = tanh(x_t wx + h_{t-1} wh + b) for t = 1 .. T, from h_0 = h0.

    x: (N, T, D), h0: (N, H), wx: (D, H), wh: (H, H), b: (H,), one floating dtype; T >= 0
    -> (h: (N, T, H), every step's state, RnnCache).
    """
    _check(x, ("h0", h0), wx, wh, (("b", b),), gates=1)
    ax = x @ wx + b  # every step's input part at once: one matrix product, not T
    h, h_prev, dh_da = _sequence_arrays(x, h0, 3)
    state = h0
    for t in range(x.shape[1]):
        h_prev[:, t] = state
        state, dh_da[:, t] = _tanh(ax[:, t] + state @ wh)
        h[:, t] = state
    return h, RnnCache(x, h_prev, wx, wh, dh_da)


def rnn_backward(dout: np.ndarray, cache: RnnCache) -> tuple[np.ndarray, ...]:
    """Backpropagation through time: da_t = (dout_t + da_{t+1} wh^T) * tanh'(a_t), t = T .. 1.

    dout: (N, T, H) -> (dx: (N, T, D), dh0: (N, H), dwx: (D, H), dwh: (H, H), db: (H,)),
    with dh0 = da_1 wh^T and dwx = sum_t x_t^T da_t (likewise dwh, with h_{t-1}; db; dx = da wx^T).
    """
    x, h_prev, wx, wh, dh_da = cache
    _validate.upstream(dout, dh_da.shape, dh_da.dtype)
    da = np.empty_like(dh_da)
    dh_next = _zero_state(x, wh)
    for t in reversed(range(x.shape[1])):
        # h_t feeds the output at t and step t + 1
        dh = dout[:, t] + dh_next
        # h_t = tanh a_t
        np.multiply(dh, dh_da[:, t], out=da[:, t])
        # a_t = x_t wx + h_{t-1} wh + b
        dh_next = da[:, t] @ wh.T
    dx, dwx, db = _input_grads(da, x, wx)
    return dx, dh_next, dwx, _weight_grad(h_prev, da), db


# ---------------------------------------------------------------------------------------
# The LSTM.

def lstm_step_forward(x: np.ndarray, h_prev: np.ndarray, c_prev: np.ndarray, wx: np.ndarray, wh: np.ndarray,
                      b: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], LstmStepCache]:
    """a = x wx + h_prev wh + b = [a_i, a_f, a_o, a_g]; c = s(a_f) c_prev + s(a_i) tanh(a_g), h = s(a_o) tanh(c).

    x: (N, D), h_prev and c_prev: (N, H), wx: (D, 4H), wh: (H, 4H), b: (4H,), one floating dtype
    -> ((h: (N, H), c: (N, H)), LstmStepCache). Two outputs: the backward takes (dh, dc).
    """
    _check(x, ("h_prev", h_prev), wx, wh, (("b", b),), gates=4, c_prev=c_prev)
    h, c, local = _lstm_cell(x @ wx + h_prev @ wh + b, c_prev)
    return (h, c), LstmStepCache(x, h_prev, wx, wh, local)


def lstm_step_backward(dout: tuple[np.ndarray, np.ndarray], cache: LstmStepCache) -> tuple[np.ndarray, ...]:
    """dc~ = dc + dh o tanh'(c); da = [dc~ g s'(a_i), dc~ c_prev s'(a_f), dh tanh(c) s'(a_o), dc~ i tanh'(a_g)].

    dout: (dh, dc), each (N, H)
    -> (dx: (N, D), dh_prev: (N, H), dc_prev: (N, H), dwx: (D, 4H), dwh: (H, 4H), db: (4H,)),
    with dc_prev = dc~ f and the rest from da as for the RNN.
    """
    x, h_prev, wx, wh, local = cache
    dh, dc = _upstream_pair(dout, ("dh", "dc"), local.dh_dc)
    da, dc_prev = _lstm_local_backward(dh, dc, local)
    # a = x wx + h_prev wh + b
    dx, dwx, db = _input_grads(da, x, wx)
    return dx, da @ wh.T, dc_prev, dwx, _weight_grad(h_prev, da), db


def lstm_forward(x: np.ndarray, h0: np.ndarray, wx: np.ndarray, wh: np.ndarray,
                 b: np.ndarray) -> tuple[np.ndarray, LstmCache]:
    """(h_t, c_t) = lstm_step(x_t, h_{t-1}, c_{t-1}) for t = 1 .. T, from h_0 = h0 and c_0 = 0.

    x: (N, T, D), h0: (N, H), wx: (D, 4H), wh: (H, 4H), b: (4H,), one floating dtype; T >= 0
    -> (h: (N, T, H), every step's hidden state, LstmCache). The cell states stay inside.
    """
    _check(x, ("h0", h0), wx, wh, (("b", b),), gates=4)
    ax = x @ wx + b
    h, h_prev, *local = _sequence_arrays(x, h0, 2 + len(LstmLocal._fields))
    state, cell = h0, np.zeros_like(h0)
    for t in range(x.shape[1]):
        h_prev[:, t] = state
        state, cell, step = _lstm_cell(ax[:, t] + state @ wh, cell)
        h[:, t] = state
        for field, value in zip(local, step):
            field[:, t] = value
    return h, LstmCache(x, h_prev, wx, wh, LstmLocal(*local))


def lstm_backward(dout: np.ndarray, cache: LstmCache) -> tuple[np.ndarray, ...]:
    """Backpropagation through time: lstm_step_backward's local part at t = T .. 1, with
    dh_t = dout_t + da_{t+1} wh^T and dc_t = dc_prev from step t + 1 (dc_T = 0: c_T is no output).

    dout: (N, T, H) -> (dx: (N, T, D), dh0: (N, H), dwx: (D, 4H), dwh: (H, 4H), db: (4H,)).
    c_0 = 0 is a constant, not an input: its gradient is dropped.
    """
    x, h_prev, wx, wh, local = cache
    _validate.upstream(dout, h_prev.shape, h_prev.dtype)
    da = np.empty(x.shape[:2] + (wh.shape[1],), x.dtype)
    dh_next, dc_next = _zero_state(x, wh), _zero_state(x, wh)
    for t in reversed(range(x.shape[1])):
        # h_t feeds the output at t and step t + 1; c_t feeds step t + 1 only
        dh = dout[:, t] + dh_next
        da[:, t], dc_next = _lstm_local_backward(dh, dc_next, _at(local, t))
        # a_t = x_t wx + h_{t-1} wh + b
        dh_next = da[:, t] @ wh.T
    dx, dwx, db = _input_grads(da, x, wx)
    return dx, dh_next, dwx, _weight_grad(h_prev, da), db


def _lstm_cell(a, c_prev):
    """The gates from a = [a_i, a_f, a_o, a_g] (N, 4H): (h, c, LstmLocal), every array (N, H)."""
    a_i, a_f, a_o, a_g = np.split(a, 4, axis=1)
    i, di = _sigmoid(a_i)
    f, df = _sigmoid(a_f)
    o, do = _sigmoid(a_o)
    g, dg = _tanh(a_g)
    c = f * c_prev + i * g
    tanh_c, dtanh_c = _tanh(c)
    return o * tanh_c, c, LstmLocal(g * di, c_prev * df, tanh_c * do, i * dg, o * dtanh_c, f)


def _lstm_local_backward(dh, dc, local: LstmLocal):
    """(dh, dc) at a step's outputs -> (da (N, 4H), dc_prev (N, H))."""
    # h = o tanh(c): c reaches the loss through h as well as directly
    dc = dc + dh * local.dh_dc
    # c = f c_prev + i g and h = o tanh(c), each gate a function of its own slice of a
    da = np.concatenate((dc * local.dc_dai, dc * local.dc_daf, dh * local.dh_dao, dc * local.dc_dag), axis=1)
    return da, dc * local.dc_dcprev


# ---------------------------------------------------------------------------------------
# The GRU.

def gru_step_forward(x: np.ndarray, h_prev: np.ndarray, wx: np.ndarray, wh: np.ndarray, bx: np.ndarray,
                     bh: np.ndarray) -> tuple[np.ndarray, GruStepCache]:
    """r = s(gx_r + gh_r), z = s(gx_z + gh_z), n = tanh(gx_n + r gh_n), h = (1 - z) n + z h_prev,
    with gx = x wx + bx and gh = h_prev wh + bh split into the r, z, n gates (PyTorch's GRU).

    x: (N, D), h_prev: (N, H), wx: (D, 3H), wh: (H, 3H), bx and bh: (3H,), one floating dtype
    -> (h: (N, H), GruStepCache).
    """
    _check(x, ("h_prev", h_prev), wx, wh, (("bx", bx), ("bh", bh)), gates=3)
    h, local = _gru_cell(x @ wx + bx, h_prev @ wh + bh, h_prev)
    return h, GruStepCache(x, h_prev, wx, wh, local)


def gru_step_backward(dout: np.ndarray, cache: GruStepCache) -> tuple[np.ndarray, ...]:
    """da_n = dh (1 - z) tanh'(a_n), da_z = dh (h_prev - n) s'(a_z), da_r = da_n gh_n s'(a_r);
    dgx = [da_r, da_z, da_n], dgh = [da_r, da_z, da_n r].

    dout: dh (N, H) -> (dx: (N, D), dh_prev: (N, H), dwx: (D, 3H), dwh: (H, 3H), dbx: (3H,), dbh: (3H,)),
    with dx = dgx wx^T, dwx = x^T dgx, dbx = sum_n dgx, dh_prev = dh z + dgh wh^T,
    dwh = h_prev^T dgh, dbh = sum_n dgh.
    """
    x, h_prev, wx, wh, local = cache
    _validate.upstream(dout, local.dh_dan.shape, local.dh_dan.dtype)
    dgx, dgh, dh_prev = _gru_local_backward(dout, local)
    # gx = x wx + bx,  gh = h_prev wh + bh
    dx, dwx, dbx = _input_grads(dgx, x, wx)
    dh_prev += dgh @ wh.T
    return dx, dh_prev, dwx, _weight_grad(h_prev, dgh), dbx, dgh.sum(axis=0)


def gru_forward(x: np.ndarray, h0: np.ndarray, wx: np.ndarray, wh: np.ndarray, bx: np.ndarray,
                bh: np.ndarray) -> tuple[np.ndarray, GruCache]:
    """h_t = gru_step(x_t, h_{t-1}) for t = 1 .. T, from h_0 = h0.

    x: (N, T, D), h0: (N, H), wx: (D, 3H), wh: (H, 3H), bx and bh: (3H,), one floating dtype;
    T >= 0 -> (h: (N, T, H), every step's state, GruCache).
    """
    _check(x, ("h0", h0), wx, wh, (("bx", bx), ("bh", bh)), gates=3)
    gx = x @ wx + bx
    h, h_prev, *local = _sequence_arrays(x, h0, 2 + len(GruLocal._fields))
    state = h0
    for t in range(x.shape[1]):
        h_prev[:, t] = state
        state, step = _gru_cell(gx[:, t], state @ wh + bh, state)
        h[:, t] = state
        for field, value in zip(local, step):
            field[:, t] = value
    return h, GruCache(x, h_prev, wx, wh, GruLocal(*local))


def gru_backward(dout: np.ndarray, cache: GruCache) -> tuple[np.ndarray, ...]:
    """Backpropagation through time: gru_step_backward's local part at t = T .. 1, with
    dh_t = dout_t + dh_prev from step t + 1.

    dout: (N, T, H) -> (dx: (N, T, D), dh0: (N, H), dwx: (D, 3H), dwh: (H, 3H), dbx: (3H,), dbh: (3H,)).
    """
    x, h_prev, wx, wh, local = cache
    _validate.upstream(dout, h_prev.shape, h_prev.dtype)
    dgx = np.empty(x.shape[:2] + (wh.shape[1],), x.dtype)
    dgh = np.empty_like(dgx)
    dh_next = _zero_state(x, wh)
    for t in reversed(range(x.shape[1])):
        # h_t feeds the output at t and step t + 1
        dh = dout[:, t] + dh_next
        dgx[:, t], dgh[:, t], dh_next = _gru_local_backward(dh, _at(local, t))
        # gh_t = h_{t-1} wh + bh
        dh_next += dgh[:, t] @ wh.T
    dx, dwx, dbx = _input_grads(dgx, x, wx)
    return dx, dh_next, dwx, _weight_grad(h_prev, dgh), dbx, _rows(dgh).sum(axis=0)


def _gru_cell(gx, gh, h_prev):
    """The gates from gx = x wx + bx and gh = h_prev wh + bh (N, 3H): (h, GruLocal), every array (N, H)."""
    gx_r, gx_z, gx_n = np.split(gx, 3, axis=1)
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
    r, dr = _sigmoid(gx_r + gh_r)
    a_z = gx_z + gh_z
    z, dz = _sigmoid(a_z)
    one_minus_z, _ = _sigmoid(-a_z)  # 1 - z = s(-a_z): no cancellation where z rounds to 1
    n, dn = _tanh(gx_n + r * gh_n)
    h = one_minus_z * n + z * h_prev
    return h, GruLocal(one_minus_z * dn, (h_prev - n) * dz, gh_n * dr, r, z)


def _gru_local_backward(dh, local: GruLocal):
    """dh at a step's output -> (dgx (N, 3H), dgh (N, 3H), the direct part of dh_prev (N, H))."""
    # h = (1 - z) n + z h_prev, with n = tanh(a_n) and z = s(a_z)
    da_n = dh * local.dh_dan
    da_z = dh * local.dh_daz
    # a_n = gx_n + r gh_n, r = s(a_r)
    da_r = da_n * local.dan_dar
    dgx = np.concatenate((da_r, da_z, da_n), axis=1)
    dgh = np.concatenate((da_r, da_z, da_n * local.dan_dghn), axis=1)
    return dgx, dgh, dh * local.dh_dhprev


# ---------------------------------------------------------------------------------------
# Shared by the three cells.

def _sigmoid(a):
    """s(a) and s'(a) = s(a) s(-a), both from one e^-|a| (the catalogue's sigmoid)."""
    s, cache = sigmoid_forward(a)
    return s, cache.derivative


def _tanh(a):
    """tanh a and tanh'(a) = 4 s(2a) s(-2a), from one e^-2|a| (the catalogue's tanh)."""
    t, cache = tanh_forward(a)
    return t, cache.derivative


def _input_grads(da, x, wx):
    """The gradients of a = x wx + b (+ ...) for da (..., G H): dx = da wx^T, dwx = x^T da, db = sum da.

    Over a sequence every row (n, t) is one more term of each sum: dwx = sum_{n,t} x_nt^T da_nt
    is one matrix product of (D, N T) by (N T, G H), not T small ones.
    """
    dx = (_rows(da) @ wx.T).reshape(da.shape[:-1] + (wx.shape[0],))
    return dx, _weight_grad(x, da), _rows(da).sum(axis=0)


def _weight_grad(inputs, da):
    """sum over every example (and step) of inputs^T da: (..., K), (..., G H) -> (K, G H)."""
    return _rows(inputs).T @ _rows(da)


def _rows(a):
    """(..., K) -> (M, K), one row per example (and step); a view of a C-contiguous array."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _at(local, t):
    """Step t of a sequence's local derivatives: each (N, T, H) field's (N, H) slice."""
    return type(local)(*(field[:, t] for field in local))


def _zero_state(x, wh):
    """A zero (N, H) state gradient in x's dtype: the gradient past the last step, or dh_0 when T = 0."""
    return np.zeros((x.shape[0], wh.shape[0]), x.dtype)


def _sequence_arrays(x, h0, count):
    """``count`` new (N, T, H) arrays, C-contiguous, in x's dtype: what a forward fills step by step."""
    return [np.empty(x.shape[:2] + h0.shape[1:], x.dtype) for _ in range(count)]


_GATE_NAMES = {1: "", 4: " (the i, f, o, g gates)", 3: " (the r, z, n gates)"}


def _check(x, state, wx, wh, biases, *, gates, c_prev=None):
    """Validate a cell's arguments: x (N, D) for a step or (N, T, D) for a sequence (whose
    state is named h0), the state ``(name, array)`` (N, H), wx (D, G H), wh (H, G H), each
    bias ``(name, array)`` (G H,), one floating dtype."""
    state_name, h = state
    steps = state_name == "h0"
    named = [("x", x), state, *([("c_prev", c_prev)] if c_prev is not None else []), ("wx", wx), ("wh", wh),
             *biases]
    for name, value in named:
        _validate.float_array(name, value)
    for name, value in named[1:]:
        _validate.same_dtype(name, value, "x", x)
    width = "H" if gates == 1 else f"{gates}H"
    if steps:
        _validate.ndim("x", x, 3, "(N, T, D)")
    else:
        _validate.ndim("x", x, 2, "(N, D)")
    _validate.ndim(state_name, h, 2, "(N, H)")
    _validate.ndim("wx", wx, 2, f"(D, {width})")
    _validate.ndim("wh", wh, 2, f"(H, {width})")
    for name, value in biases:
        _validate.ndim(name, value, 1, f"({width},)")
    _validate.dim_equals(state_name, h, 0, "x", x, 0)
    if c_prev is not None:
        _validate.same_shape("c_prev", c_prev, state_name, h)
    _validate.dim_equals("wx", wx, 0, "x", x, x.ndim - 1)
    _validate.dim_equals("wh", wh, 0, state_name, h, 1)
    hidden = h.shape[1]
    for name, value, axis in (("wx", wx, 1), ("wh", wh, 1), *((name, value, 0) for name, value in biases)):
        if value.shape[axis] != gates * hidden:
            factor = f"{gates} * " if gates > 1 else ""
            raise ValueError(
                f"{name} has shape {value.shape} but {state_name} has shape {h.shape}: {name}.shape[{axis}] "
                f"must equal {factor}{state_name}.shape[1] = {gates * hidden}{_GATE_NAMES[gates]}"
            )


def _upstream_pair(dout, names, like):
    """The backward's (dh, dc), each checked against the forward's outputs (shape and dtype of ``like``)."""
    if not isinstance(dout, (tuple, list)) or len(dout) != 2:
        got = f"{type(dout).__name__} of length {len(dout)}" if isinstance(dout, (tuple, list)) else \
            type(dout).__name__
        raise TypeError(f"dout must be the pair ({', '.join(names)}), one per output of the forward, got {got}")
    for name, value in zip(names, dout):
        _validate.float_array(name, value)
        if value.shape != like.shape:
            raise ValueError(f"{name} has shape {value.shape} but the forward's output has shape {like.shape}: "
                             f"{name} must have the output's shape")
        if value.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but the forward ran in {like.dtype}: "
                            f"{name} must have the output's dtype")
    return tuple(dout)
