"""Section ``peers``: verifying the linear layer with our checks vs torch's gradcheck and JAX's check_grads.

Every tool checks the *same* NumPy backward (``reference.linear``): torch through a
``torch.autograd.Function`` and JAX through a ``jax.custom_vjp`` whose forward and backward
call it. Float64, (N, D, M) = (64, 256, 256); the runs are interleaved round by round and
each tool's speed is the median over rounds of (its time / our time in the same round).

torch's slow gradcheck forms the whole Jacobian three times (numerically once, and
analytically twice to test reentrancy): 3 x 8 x 81,920 x 16,384 bytes = 32 GB here, more
than the machine has. It is measured at (16, 64, 64) instead, and its time at the full
size computed: the calls it cannot avoid (two forward evaluations per input entry, two
backwards per output entry), timed at that size, are a lower bound; adding its own
per-entry overhead, measured at (16, 64, 64), gives the estimate.

A planted bug, dX scaled by (1 + 1e-6), shows how strict each tool is in practice.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
import warnings

import numpy as np

from verification import CHECKS, LAYERS, examine
from verification.report import table
from verification.tolerance import C

from .common import Goal, Options, Section, seconds

SHAPE = (64, 256, 256)
SMALL = (16, 64, 64)  # where torch's slow gradcheck fits in memory: 3 Jacobians of 126 MB in all
GOAL_SPEEDUP = 100
BUG = 1e-6  # relative error planted in dX
ALL, VJP = "ours: examine, all checks", "ours: examine, vjp check only"
JAX, FAST, SLOW = "jax.test_util.check_grads (order 1, rev)", "torch gradcheck, fast mode", "torch gradcheck, slow mode"

TOLERANCES = {
    "ours": f"every entry of dX, dW: |error| <= {C:g} (eps Sum|terms| + tiny), eps = 2.2e-16 "
            f"(vjp, jacobian checks); plus one random direction per route (jvp, fd)",
    "torch": "every entry of J (slow) or one random projection u^T J v (fast): |error| <= 1e-5 + 1e-3 |numerical|, "
             "finite-difference step 1e-6",
    "jax": "one random direction: |<vjp(u), v> - <u, jvp_fd(v)>| <= 1e-5 + 1e-5 |.|, finite-difference step 1e-4",
}


def _inputs(shape, seed=0):
    n, d, m = shape
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((d, m))


def _planted(layer):
    def backward(dout, cache):
        dx, dw = layer.backward(dout, cache)
        return dx * (1 + BUG), dw
    return dataclasses.replace(layer, name=f"{layer.name}[dx*(1+{BUG:g})]", backward=backward)


def ours(layer, arrays, checks=CHECKS):
    """True when every selected check passes (a skip, e.g. the Jacobian over its budget, is not a failure)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return not examine(layer, arrays, {}, checks=checks).failed


class TorchTools:
    """torch.autograd.gradcheck of a ``torch.autograd.Function`` that calls a layer's NumPy code."""

    def __init__(self):
        import torch  # ImportError when torch is not installed: the caller skips the torch rows

        self.torch = torch
        self.version = torch.__version__

    def function(self, layer):
        torch = self.torch

        class NumpyLayer(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                out, ctx.cache = layer.forward(x.detach().numpy(), w.detach().numpy())
                return torch.from_numpy(out)

            @staticmethod
            def backward(ctx, dout):
                return tuple(torch.from_numpy(np.ascontiguousarray(g))
                             for g in layer.backward(dout.numpy(), ctx.cache))

        return NumpyLayer.apply

    def tensors(self, arrays):
        return tuple(self.torch.tensor(a, dtype=self.torch.float64, requires_grad=True) for a in arrays)

    def gradcheck(self, layer, arrays, *, fast_mode: bool) -> bool:
        return self.torch.autograd.gradcheck(self.function(layer), self.tensors(arrays), fast_mode=fast_mode,
                                             raise_exception=False)

    def call_seconds(self, layer, arrays, repeats: int = 15) -> tuple[float, float]:
        """Fastest seconds of one forward and of one backward (a vjp), as gradcheck calls them: the
        fastest, so that times stretched by other load never inflate the slow mode's computed time."""
        torch, apply = self.torch, self.function(layer)
        x, w = self.tensors(arrays)
        forward = min(seconds(lambda: apply(x, w)) for _ in range(repeats))
        out = apply(x, w)
        u = torch.ones_like(out)
        backward = min(seconds(lambda: torch.autograd.grad(out, (x, w), u, retain_graph=True)) for _ in range(repeats))
        return forward, backward


def slow_gradcheck_calls(shape, forward_s, backward_s) -> float:
    """Seconds of the calls torch's slow gradcheck makes: central differences on each input entry
    (two forwards), and a backward per output entry, twice (the reentrancy test)."""
    n, d, m = shape
    return 2 * (n * d + d * m) * forward_s + 2 * n * m * backward_s


def slow_gradcheck_bytes(shape) -> int:
    """Its three float64 Jacobians, (input entries) x (output entries) each."""
    n, d, m = shape
    return 3 * 8 * (n * d + d * m) * n * m


def _entries(shape) -> int:
    n, d, m = shape
    return n * d + d * m + n * m


def jax_tool(layer):
    """check_grads(order 1, rev) of a custom_vjp calling the NumPy forward and backward."""
    import jax
    from jax.test_util import check_grads

    @jax.custom_vjp
    def f(x, w):
        return jax.pure_callback(lambda x, w: layer.forward(np.asarray(x), np.asarray(w))[0],
                                 jax.ShapeDtypeStruct((x.shape[0], w.shape[1]), x.dtype), x, w)

    def f_forward(x, w):
        return f(x, w), (x, w)

    def f_backward(residuals, dout):
        x, w = residuals

        def grads(x, w, dout):  # the callback receives JAX arrays; the reference takes NumPy's
            return layer.backward(np.asarray(dout), layer.forward(np.asarray(x), np.asarray(w))[1])

        return jax.pure_callback(grads, (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(w.shape, w.dtype)),
                                 x, w, dout)

    f.defvjp(f_forward, f_backward)

    def run(arrays):
        try:
            check_grads(f, arrays, order=1, modes=("rev",))
            return True
        except AssertionError:
            return False

    return run


def round_robin(tools: dict, rounds: int) -> dict[str, list[float]]:
    """Each tool once per round, in turn; seconds per tool per round (a warm-up round left out)."""
    times = {name: [] for name in tools}
    for r in range(rounds + 1):
        for name, fn in tools.items():
            took = seconds(fn)
            if r:
                times[name].append(took)
    return times


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def run(options: Options) -> Section:
    layer = LAYERS["linear"]
    bug = _planted(layer)
    arrays, small = _inputs(SHAPE), _inputs(SMALL)
    try:
        torch_tools = TorchTools()
    except ImportError:
        torch_tools = None
    check_grads, check_grads_bug = jax_tool(layer), jax_tool(bug)
    rows, notes = [], []
    data = {"shape": list(SHAPE), "small_shape": list(SMALL), "tolerances": TOLERANCES, "tools": {}}

    started = time.perf_counter()
    ours(layer, arrays)
    first_call = time.perf_counter() - started  # traces and compiles the oracle (or loads it from the cache)
    tools = {ALL: lambda: ours(layer, arrays), VJP: lambda: ours(layer, arrays, ("vjp",)),
             JAX: lambda: check_grads(arrays)}
    rejects = {ALL: not ours(bug, arrays), VJP: not ours(bug, arrays, ("vjp",)), JAX: not check_grads_bug(arrays)}
    if torch_tools:
        tools[FAST] = lambda: torch_tools.gradcheck(layer, arrays, fast_mode=True)
        rejects[FAST] = not torch_tools.gradcheck(bug, arrays, fast_mode=True)
    times = round_robin(tools, 3 if options.quick else 5)
    for name, took in times.items():
        ratio = statistics.median(t / b for t, b in zip(took, times[ALL]))
        rows.append((name, _shape(SHAPE), f"{statistics.median(took) * 1e3:.1f} ms", "measured", f"{ratio:.3g}",
                     "yes" if rejects[name] else "no"))
        data["tools"][name] = {"median_s": statistics.median(took), "seconds": took, "time_vs_ours_all": ratio,
                               "rejects_planted_bug": rejects[name]}
        options.say(f"{name}: {statistics.median(took) * 1e3:.1f} ms ({ratio:.3g}x ours), "
                    f"rejects dX*(1+{BUG:g}): {'yes' if rejects[name] else 'no'}")
    data["ours_first_call_s"] = first_call

    what = f"ours (all checks) vs torch slow gradcheck at {_shape(SHAPE)}"
    target = f">= {GOAL_SPEEDUP}x faster, at least as strict"
    if torch_tools:
        forward_s, backward_s = torch_tools.call_seconds(layer, arrays)
        calls_s = slow_gradcheck_calls(SHAPE, forward_s, backward_s)
        ours(layer, small)  # compile at the small shape first: the timed runs below are steady
        ours_small = statistics.median(seconds(lambda: ours(layer, small)) for _ in range(5))
        options.say(f"{SLOW} at {_shape(SMALL)} ...")
        slow_small = seconds(lambda: torch_tools.gradcheck(layer, small, fast_mode=False))
        small_calls_s = slow_gradcheck_calls(SMALL, *torch_tools.call_seconds(layer, small))
        overhead = max(0.0, slow_small - small_calls_s) / _entries(SMALL)  # per input and output entry
        estimate_s = calls_s + overhead * _entries(SHAPE)
        rejects_small = {SLOW: not torch_tools.gradcheck(bug, small, fast_mode=False), ALL: not ours(bug, small)}
        speedup, speedup_first = estimate_s / statistics.median(times[ALL]), estimate_s / first_call
        rows += [(SLOW, _shape(SHAPE), f"{estimate_s:.0f} s", f"computed (calls alone {calls_s:.0f} s; needs "
                  f"{slow_gradcheck_bytes(SHAPE) / 1e9:.0f} GB)", f"{speedup:.3g}", "-"),
                 (SLOW, _shape(SMALL), f"{slow_small:.2f} s", f"measured (calls alone {small_calls_s:.2f} s)",
                  f"{slow_small / ours_small:.3g}", "yes" if rejects_small[SLOW] else "no"),
                 (ALL, _shape(SMALL), f"{ours_small * 1e3:.1f} ms", "measured", "1",
                  "yes" if rejects_small[ALL] else "no")]
        options.say(f"{SLOW}: {slow_small:.2f} s at {_shape(SMALL)}; computed {estimate_s:.0f} s at {_shape(SHAPE)} "
                    f"(its calls alone {calls_s:.0f} s)")
        data["torch"] = {"version": torch_tools.version, "forward_s": forward_s, "backward_s": backward_s,
                         "slow_calls_s": calls_s, "slow_overhead_per_entry_s": overhead, "slow_estimate_s": estimate_s,
                         "slow_bytes": slow_gradcheck_bytes(SHAPE), "slow_small_measured_s": slow_small,
                         "slow_small_calls_s": small_calls_s, "ours_small_s": ours_small,
                         "slow_small_rejects_planted_bug": rejects_small[SLOW],
                         "ours_small_rejects_planted_bug": rejects_small[ALL]}
        notes.append(f"slow mode at {_shape(SHAPE)} not run: its three Jacobians need "
                     f"{slow_gradcheck_bytes(SHAPE) / 1e9:.0f} GB. Computed: its calls, timed here (2 x "
                     f"{SHAPE[0] * SHAPE[1] + SHAPE[1] * SHAPE[2]:,} forwards of {forward_s * 1e3:.3f} ms, 2 x "
                     f"{SHAPE[0] * SHAPE[2]:,} backwards of {backward_s * 1e3:.3f} ms), plus its overhead per input "
                     f"and output entry measured at {_shape(SMALL)} ({overhead * 1e6:.0f} us)")
        # at least as strict: wherever a peer rejects the planted bug, ours rejects it too
        strict = all(rejects[ALL] or not caught for caught in rejects.values()) and (
            rejects_small[ALL] or not rejects_small[SLOW])
        goal = Goal(what, target, f"{speedup:.0f}x (compiled), {speedup_first:.0f}x (first call, compile "
                    f"included); measured at {_shape(SMALL)}: {slow_small / ours_small:.0f}x; "
                    f"{'at least as strict' if strict else 'LESS STRICT'}",
                    min(speedup, speedup_first) >= GOAL_SPEEDUP and strict)
    else:
        notes.append("torch rows skipped: torch is not installed (pip install -e '.[peers]': torch==2.13.0, CPU build)")
        goal = Goal(what, target, "not measured: torch is not installed", None)
    text = table(("tool", "N x D x M", "time", "how", "time / ours (all)", f"rejects dX*(1+{BUG:g})"), rows)
    notes.append(f"ours (all checks), first call at {_shape(SHAPE)}: {first_call:.2f} s (oracle trace and compile, "
                 f"or a persistent-cache hit); the jacobian check is skipped there, over its memory budget")
    notes += [f"tolerance, {tool}: {line}" for tool, line in TOLERANCES.items()]
    return Section("peers", f"Beside the peers: verifying linear at {_shape(SHAPE)}, float64",
                   text + "\n" + "\n".join(notes), data, [goal])
