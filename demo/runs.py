"""The three training runs: each returns its figures and the curves to plot."""
from __future__ import annotations

import functools
import math
import time

import numpy as np

from reference import models, network

from . import data
from .optim import Adam


def gradient_check(name, arrays, hyper, seed) -> float:
    """The worst error of the whole-network gradient on this batch against JAX's, in tolerance units."""
    from verification import LAYERS, examine

    example = examine(LAYERS[name], arrays, hyper, dtype=arrays[0].dtype, cotangent_seed=seed, checks=("vjp",))
    outcome = next((o for o in example.outcomes if o.check == "vjp"), None)
    if outcome is None or example.failed:
        raise AssertionError(f"{name}: the gradient check failed: {[o.message for o in example.outcomes]}")
    return outcome.units


def relative_error(name, arrays, grads, hyper) -> float:
    """max|reference - JAX| / max|JAX| over the whole gradient (every argument's entries), JAX's in
    float64 at the same (float32) weights: how close the hand-written gradient is, whatever the
    tolerance allows. (Per argument it would divide by gradients that are 0 in exact arithmetic,
    such as attention's dbk: the keys' bias shifts every score of a row alike.)"""
    from verification.oracles import split_hyper

    static, traced = split_hyper(hyper)
    expected = _jax_gradient(name, static)(tuple(np.asarray(a, np.float64) for a in arrays), traced)
    return (max(float(np.max(np.abs(g - np.asarray(e)), initial=0.0)) for g, e in zip(grads, expected))
            / max(float(np.max(np.abs(np.asarray(e)), initial=0.0)) for e in expected))


@functools.lru_cache(maxsize=None)
def _jax_gradient(name, static):
    """The model's gradient by jax.grad of its specification, compiled once per structure."""
    import jax

    from verification import LAYERS

    forward = LAYERS[name].jax_forward
    return jax.jit(lambda arrays, traced: jax.grad(lambda a: forward(*a, **dict(static), **traced))(arrays))


class Log:
    """Progress on the terminal, the curves, and the gradient checks' worst units."""

    def __init__(self, name):
        self.name, self.started = name, time.perf_counter()
        self.steps, self.losses, self.epochs, self.accuracies, self.checks = [], [], [], [], []
        self.relative = []

    def say(self, message):
        print(f"[{self.name:8s} {time.perf_counter() - self.started:6.1f} s] {message}", flush=True)

    @property
    def seconds(self):
        return time.perf_counter() - self.started


def _init(rng, fan_in, *shape, dtype):
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def _batches(rng, n, size):
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n - size + 1, size)]


def _classifier(name, forward, backward, steps_of, params, train, test, *, epochs, batch, lr, hyper_of, check_every,
                seed):
    """Minibatch Adam on (x, y) with a cosine learning rate; test accuracy after every epoch."""
    (x_train, y_train), (x_test, y_test) = train, test
    log, rng = Log(name), np.random.default_rng(seed)
    optimiser = Adam(params, lr=lr)
    total, step = epochs * (len(x_train) // batch), 0
    for epoch in range(epochs):
        for rows in _batches(rng, len(x_train), batch):
            hyper = hyper_of(rng, y_train[rows])
            arrays = (x_train[rows], *params)
            loss, cache = forward(*arrays, **hyper)
            grads = backward(np.ones((), loss.dtype), cache)
            if check_every and step % check_every == 0:
                log.checks.append(gradient_check(name, arrays, hyper, seed=step))
                log.relative.append(relative_error(name, arrays, grads, hyper))
            optimiser.lr = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            optimiser.step(grads[1:])
            log.steps.append(step)
            log.losses.append(float(loss))
            step += 1
        scores, _ = network.network_forward(steps_of(params)[:-1],
                                            models.named_values(forward_names(name), (x_test, *params),
                                                                stacked_of(name)))
        accuracy = float(np.mean(scores.argmax(axis=1) == y_test))
        log.epochs.append(epoch + 1)
        log.accuracies.append(accuracy)
        checked = (f", gradient check {max(log.checks):.3g} units, relative error {max(log.relative):.2g}"
                   if log.checks else "")
        log.say(f"epoch {epoch + 1:2d}/{epochs}  loss {np.mean(log.losses[-len(x_train) // batch:]):.4f}  "
                f"test accuracy {accuracy:.4f}{checked}")
    return log


def forward_names(name):
    return {"fc_net": models.FC_NET_PARAMS, "conv_net": models.CONV_NET_PARAMS, "gpt": models.GPT_PARAMS}[name]


def stacked_of(name):
    return {"fc_net": models.FC_NET_STACKED, "gpt": models.GPT_STACKED}.get(name, frozenset())


def fc_net(*, epochs=40, check_every=100, seed=0, dtype=np.float32):
    """Two hidden layers of 128, layernorm, dropout (keep 0.8), on the digits."""
    x_train, x_test, y_train, y_test = data.digits(dtype)
    rng = np.random.default_rng(seed)
    d, h, layers, c, keep = 64, 128, 2, 10, 0.8
    params = [_init(rng, d, d, h, dtype=dtype), np.zeros(h, dtype), _init(rng, h, layers - 1, h, h, dtype=dtype),
              np.zeros((layers - 1, h), dtype), np.ones((layers, h), dtype), np.zeros((layers, h), dtype),
              _init(rng, h, h, c, dtype=dtype), np.zeros(c, dtype)]

    def hyper_of(rng, labels):
        masks = (rng.random((layers, len(labels), h)) < keep).astype(dtype)
        return {"labels": labels, "norm": "layernorm", "dropout_masks": masks, "p": keep}

    def steps_of(params):  # no dropout at test time: inverted dropout is the identity there
        return models.fc_net_steps(layers, labels=y_test, norm="layernorm")

    log = _classifier("fc_net", models.fc_net_forward, models.fc_net_backward, steps_of, params,
                      (x_train, y_train), (x_test, y_test), epochs=epochs, batch=64, lr=2e-3, hyper_of=hyper_of,
                      check_every=check_every, seed=seed)
    return log, {"test_accuracy": log.accuracies[-1]}


def conv_net(*, epochs=40, check_every=100, seed=0, dtype=np.float32):
    """conv 3x3 x 32 -> relu -> pool 2 -> conv 3x3 x 64 -> relu -> pool 2 -> affine, on the 8x8 digits."""
    x_train, x_test, y_train, y_test = data.digits(dtype)
    x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(seed)
    f1, f2, c = 32, 64, 10
    params = [_init(rng, 9, f1, 1, 3, 3, dtype=dtype), np.zeros(f1, dtype),
              _init(rng, 9 * f1, f2, f1, 3, 3, dtype=dtype), np.zeros(f2, dtype),
              _init(rng, f2 * 4, f2 * 4, c, dtype=dtype), np.zeros(c, dtype)]

    def steps_of(params):
        return models.conv_net_steps(params[0], params[2], labels=y_test)

    log = _classifier("conv_net", models.conv_net_forward, models.conv_net_backward, steps_of, params,
                      (x_train, y_train), (x_test, y_test), epochs=epochs, batch=64, lr=2e-3,
                      hyper_of=lambda rng, labels: {"labels": labels}, check_every=check_every, seed=seed)
    return log, {"test_accuracy": log.accuracies[-1]}


def gpt(*, steps=800, check_every=200, seed=0, dtype=np.float32):
    """A character-level GPT (L = 2, E = 64, 4 heads, T = 64) on the Zen of Python; then greedy
    decoding from the start of text and the first word regenerates the first line.

    The text is preceded by T - 1 start-of-text symbols, so that windows drawn anywhere in it see
    its beginning at every position, as the prompt will, and not only in the one window that
    starts at it."""
    zen = data.zen()
    v, e, heads, layers, t, n = len(set(zen)) + 1, 64, 4, 2, 64, 16
    text = data.BOS * (t - 1) + zen
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    encoded = np.array([index[ch] for ch in text])
    m = 4 * e
    rng = np.random.default_rng(seed)
    small = lambda *shape: (0.02 * rng.standard_normal(shape)).astype(dtype)  # noqa: E731
    zeros = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
    ones = lambda *shape: np.ones(shape, dtype)  # noqa: E731
    params = [small(v, e), small(t, e), ones(layers, e), zeros(layers, e),
              small(layers, e, e), zeros(layers, e), small(layers, e, e), zeros(layers, e),
              small(layers, e, e), zeros(layers, e), small(layers, e, e) / math.sqrt(2 * layers), zeros(layers, e),
              ones(layers, e), zeros(layers, e), small(layers, e, m), zeros(layers, m),
              small(layers, m, e) / math.sqrt(2 * layers), zeros(layers, e), ones(e), zeros(e)]
    optimiser, lr, log = Adam(params, lr=3e-3), 3e-3, Log("gpt")

    def windows(offsets):
        rows = offsets[:, None] + np.arange(t + 1)
        return encoded[rows[:, :-1]], encoded[rows[:, 1:]]

    for step in range(steps):
        tokens, targets = windows(rng.integers(0, len(encoded) - t, n))
        hyper = {"tokens": tokens, "targets": targets, "heads": heads}
        loss, cache = models.gpt_forward(*params, **hyper)
        grads = models.gpt_backward(np.ones((), loss.dtype), cache)
        if check_every and step % check_every == 0:
            log.checks.append(gradient_check("gpt", tuple(params), hyper, seed=step))
            log.relative.append(relative_error("gpt", tuple(params), grads, hyper))
        optimiser.lr = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        optimiser.step(grads)
        log.steps.append(step)
        log.losses.append(float(loss))
        if (step + 1) % 100 == 0:
            checked = (f", gradient check {max(log.checks):.3g} units, relative error {max(log.relative):.2g}"
                       if log.checks else "")
            log.say(f"step {step + 1:4d}/{steps}  loss {np.mean(log.losses[-100:]):.4f} nats/char{checked}")

    # the loss over the text: windows whose targets are its characters, each predicted once (the
    # last window's overlap twice) from the T characters before it
    offsets = np.arange(t - 2, len(encoded) - t - 1, t)
    tokens, targets = windows(np.append(offsets, len(encoded) - t - 1))
    final = float(models.gpt_forward(*params, tokens=tokens, targets=targets, heads=heads)[0])

    first_line = zen.split("\n")[0]
    prompt = data.BOS + first_line.split(" ")[0]
    generated = [index[ch] for ch in prompt]
    while len(generated) < 80 and chars[generated[-1]] != "\n":
        context = np.array([generated[-t:]])
        steps_ = models.gpt_steps(layers, tokens=context, targets=context, heads=heads)
        logits, _ = network.network_forward(steps_[:-1], models.named_values(models.GPT_PARAMS, params,
                                                                              models.GPT_STACKED))
        generated.append(int(logits[-1].argmax()))
    sample = "".join(chars[i] for i in generated[1:]).rstrip("\n")
    log.say(f"final loss over the text {final:.4f} nats/char; from {prompt[1:]!r}: {sample!r}")
    return log, {"final_loss": final, "sample": sample, "first_line": first_line, "regenerated": sample == first_line}
