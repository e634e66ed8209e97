"""Optimisers in NumPy: each updates a list of parameter arrays in place from their gradients.

SGD with momentum (Polyak's heavy ball, as PyTorch writes it):
    v <- mu v + g,        theta <- theta - lr v

Adam (Kingma & Ba, 2015), with the bias of the zero-initialised moments corrected:
    m <- b1 m + (1 - b1) g,           v <- b2 v + (1 - b2) g^2
    m^ = m / (1 - b1^t),              v^ = v / (1 - b2^t)
    theta <- theta - lr m^ / (sqrt(v^) + eps)

Both keep their state (v, or m and v) as arrays shaped like the parameters.
"""
from __future__ import annotations

import numpy as np


class SGD:
    """SGD with momentum mu (0: plain gradient descent)."""

    def __init__(self, params, lr: float, momentum: float = 0.9):
        self.params, self.lr, self.momentum = params, lr, momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, grads) -> None:
        for p, v, g in zip(self.params, self.velocity, grads):
            v *= self.momentum
            v += g
            p -= self.lr * v


class Adam:
    """Adam with bias correction; lr may be changed between steps (a schedule)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, (self.b1, self.b2), self.eps = params, lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads) -> None:
        self.t += 1
        correction1, correction2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, m, v, g in zip(self.params, self.m, self.v, grads):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * np.square(g)
            p -= (self.lr / correction1) * m / (np.sqrt(v / correction2) + self.eps)
