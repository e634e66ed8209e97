"""Section ``layers``: each reference backward against ``jax.jit`` of the VJP of its specification.

Every catalogued layer with a ``Layer.bench`` case runs at that realistic size, in float32
and float64, on the same inputs and cotangent; the ratio is the median over interleaved
pairs of NumPy time / JAX time (below 1: NumPy is faster). For matmul-shaped layers (a
``BenchCase.flops``) both sides' GFLOP/s are given against the machine's GEMM peak,
measured in the same run.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from verification import LAYERS
from verification.oracles import leaves
from verification.report import table

from .common import GEMM_SIZE, Goal, Options, Section, gemm_rate, interleaved, verdict

DTYPES = ("float32", "float64")


def goal_ratio(name: str) -> float:
    """The issue's goals: linear at most 1.0, convolutions and pooling 2, every other layer 1.5."""
    if name == "linear":
        return 1.0
    if "conv" in name or "pool" in name:
        return 2.0
    return 1.5


def _cast(value, dtype):
    """Floating arrays to the run's dtype; integers (labels, indices) and Python scalars as they are."""
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return value.astype(dtype)
    return value


def _jax_vjp(layer, hyper):
    """jit(arrays, array hyperparameters, dout -> pullback): scalars are closed over, so a Python
    float stays weakly typed and float32 runs stay float32."""
    arrays_hyper = {k: v for k, v in hyper.items() if isinstance(v, np.ndarray)}
    fixed = {k: v for k, v in hyper.items() if k not in arrays_hyper}

    def vjp(arrays, traced, dout):
        return jax.vjp(lambda *a: layer.jax_forward(*a, **fixed, **traced), *arrays)[1](dout)

    def forward(arrays, traced):
        return layer.jax_forward(*arrays, **fixed, **traced)

    return jax.jit(vjp), forward, arrays_hyper


def bench_layer(layer, case, dtype: str, options: Options) -> dict:
    rng = np.random.default_rng(1)
    arrays = tuple(np.asarray(a, dtype=dtype) for a in case.arrays)
    hyper = {k: _cast(v, dtype) for k, v in case.hyper.items()}
    out, cache = layer.forward(*arrays, **hyper)
    douts = tuple(np.asarray(rng.standard_normal(np.shape(o)), dtype=dtype) for o in leaves(out))
    several = len(douts) > 1  # lstm_step: ((h, c), cache), its backward takes (dh, dc)
    dout = douts if several else douts[0]

    pullback, forward, traced = _jax_vjp(layer, hyper)
    device = jax.device_put((arrays, traced))
    jax_outs = leaves(jax.eval_shape(forward, *device))
    jax_douts = tuple(jnp.asarray(d, dtype=o.dtype) for d, o in zip(douts, jax_outs))
    jax_dout = jax.device_put(jax_douts if several else jax_douts[0])

    def reference():
        return layer.backward(dout, cache)

    def jax_side():
        return jax.block_until_ready(pullback(*device, jax_dout))

    pairs = interleaved(reference, jax_side, min_pairs=3 if options.quick else 5,
                        max_pairs=9 if options.quick else 25, budget_s=0.3 if options.quick else 3.0)
    row = {"layer": layer.name, "dtype": dtype, "shapes": [list(a.shape) for a in arrays],
           "jax_dtype": str(jax_outs[0].dtype), "flops": case.flops, "goal": goal_ratio(layer.name), **pairs.to_dict()}
    row["met"] = row["ratio_median"] <= row["goal"]
    return row


def run(options: Options) -> Section:
    rows, without = [], []
    peaks = {}
    for dtype in DTYPES:
        peaks[dtype] = gemm_rate(dtype)
        options.say(f"GEMM peak {dtype}: {peaks[dtype] / 1e9:.1f} GFLOP/s")
    for name, layer in LAYERS.items():
        if layer.bench is None:
            without.append(name)
            continue
        case = layer.bench(np.random.default_rng(0))
        for dtype in DTYPES:
            try:
                row = bench_layer(layer, case, dtype, options)
            except Exception as error:  # one layer's broken bench case must not hide the others' rows
                row = {"layer": name, "dtype": dtype, "error": f"{type(error).__name__}: {error}",
                       "goal": goal_ratio(name), "met": False}
                options.say(f"{name} {dtype}: ERROR {row['error']}")
                rows.append(row)
                continue
            if row["flops"]:
                row["gflops_reference"] = row["flops"] / row["a_median_s"] / 1e9
                row["gflops_jax"] = row["flops"] / row["b_median_s"] / 1e9
                row["fraction_of_peak"] = row["flops"] / row["a_median_s"] / peaks[dtype]
            rows.append(row)
            options.say(f"{name} {dtype}: NumPy/JAX {row['ratio_median']:.2f} (goal <= {row['goal']:g}, "
                        f"{verdict(row['met'])}); NumPy {row['a_median_s'] * 1e3:.1f} ms, "
                        f"JAX {row['b_median_s'] * 1e3:.1f} ms, {row['pairs']} pairs")
    return Section("layers", "Reference backward vs jax.jit(jax.vjp) of the specification", _text(rows, peaks, without),
                   {"gemm_peak_flops": peaks, "rows": rows, "without_bench": without}, _goals(rows))


def _text(rows, peaks, without) -> str:
    lines = []
    for r in rows:
        if "error" in r:
            lines.append((r["layer"], r["dtype"], "-", "-", "-", "ERROR", f"<= {r['goal']:g}", "MISS", r["error"][:60]))
            continue
        q1, q3 = r["ratio_quartiles"]
        flops = (f"{r['gflops_reference']:.1f} / {r['gflops_jax']:.1f} ({100 * r['fraction_of_peak']:.0f}% of peak)"
                 if r.get("flops") else "")
        lines.append((r["layer"], r["dtype"], " ".join("x".join(map(str, s)) for s in r["shapes"]),
                      f"{r['a_median_s'] * 1e3:.2f}", f"{r['b_median_s'] * 1e3:.2f}",
                      f"{r['ratio_median']:.2f} ({q1:.2f}-{q3:.2f})", f"<= {r['goal']:g}", verdict(r["met"]), flops))
    text = table(("layer", "dtype", "inputs", "NumPy ms", "JAX ms", "ratio (IQR)", "goal", "", "GFLOP/s NumPy / JAX"),
                 lines)
    notes = [f"ratio: median over interleaved pairs of NumPy backward time / jax.jit(vjp) time, IQR in brackets; "
             f"GEMM peak ({GEMM_SIZE}^3 NumPy matmul, this run): " +
             ", ".join(f"{d} {p / 1e9:.1f} GFLOP/s" for d, p in peaks.items())]
    promoted = sorted({f"{r['layer']}" for r in rows if r.get("jax_dtype") not in (None, r["dtype"])})
    if promoted:
        notes.append(f"the JAX specification computes float32 inputs in float64 for: {', '.join(promoted)}")
    if without:
        notes.append(f"no Layer.bench case yet: {', '.join(without)}")
    return text + "\n" + "\n".join(notes)


def _goals(rows) -> list[Goal]:
    """Linear's two goals one by one; every other layer's as a count, naming the misses."""
    goals = []
    for r in rows:
        if r["layer"] == "linear":
            goals.append(Goal(f"linear {r['dtype']} NumPy/JAX backward (N=64, D=M=4096)", "<= 1",
                              r.get("error") or f"{r['ratio_median']:.2f}", r["met"]))
    others = [r for r in rows if r["layer"] != "linear"]
    if others:
        misses = [r for r in others if not r["met"]]
        worst = max(others, key=lambda r: float("inf") if "error" in r else r["ratio_median"] / r["goal"])
        worst_text = f"{worst['layer']} {worst['dtype']} " + (
            "ERROR" if "error" in worst else f"{worst['ratio_median']:.2f} (goal {worst['goal']:g})")
        goals.append(Goal("other layers NumPy/JAX backward", "<= 1.5 (conv, pooling <= 2)",
                          f"{len(others) - len(misses)} of {len(others)} rows met; furthest: {worst_text}", not misses))
    return goals
