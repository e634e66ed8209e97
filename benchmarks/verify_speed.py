"""Sections ``checks`` and ``verify``: how fast the verifier itself is.

``checks``: examples per second of each check alone (``examine(..., checks=(name,))``) on
the small shapes the strategies draw, after a warm-up pass that compiles the oracle (its
time is reported apart: a check's oracle compiles once per shape and configuration). One
layer per reference family (``--quick``: linear alone), float64, one shape per layer:
the compiled oracle is reused, as it is across ``make verify``'s examples.

``verify``: the wall time of a default ``make verify`` (``python -m verification``), run
as a subprocess: the whole catalogue, both dtypes, the seed-scale case.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from verification import CHECKS, LAYERS, examine
from verification.oracles import split_hyper
from verification.report import table

from .common import ROOT, Goal, Options, Section, verdict

GOAL_PER_SECOND = 400
GOAL_VERIFY_SECONDS = 60
ALL = "all"  # examine with every check, as make verify runs it
ONE_THREAD = "all, 1 BLAS thread"


def draw(layer, count: int, seed: int = 0) -> list:
    """``count`` examples from the layer's strategy, all of its most frequent (shapes, static hyper)."""
    drawn = []

    @settings(max_examples=count, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(layer.strategy)
    def collect(example):
        drawn.append(example)

    hypothesis_seed(seed)(collect)()
    keys = [_compile_key(arrays, hyper) for arrays, hyper in drawn]
    common, _ = Counter(keys).most_common(1)[0]
    return [example for example, key in zip(drawn, keys) if key == common]


def _compile_key(arrays, hyper):
    static, traced = split_hyper(hyper)
    return (tuple(np.shape(a) for a in arrays), static,
            tuple((k, np.shape(v)) for k, v in sorted(traced.items())))


def rate(layer, examples, checks, budget_s: float) -> tuple[float, float]:
    """(seconds of the first pass over the examples, steady examples per second after it)."""
    def one_pass(offset):
        for i, (arrays, hyper) in enumerate(examples):
            examine(layer, arrays, hyper, checks=checks, cotangent_seed=offset + i)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # a layer's overflow on some drawn value is not the bench's business
        started = time.perf_counter()
        one_pass(0)
        first = time.perf_counter() - started
        passes, started = 0, time.perf_counter()
        while passes == 0 or time.perf_counter() - started < budget_s:
            passes += 1
            one_pass(passes * len(examples))  # new cotangent seeds: new values, same compiled oracle
        return first, passes * len(examples) / (time.perf_counter() - started)


def representatives(quick: bool) -> list[str]:
    """The first catalogued layer of each reference module (``--quick``: linear alone)."""
    if quick:
        return ["linear"]
    families = {}
    for name, layer in LAYERS.items():
        families.setdefault(getattr(layer.forward, "__module__", name), name)
    return list(families.values())


def run_checks(options: Options) -> Section:
    columns = (*CHECKS, ALL)
    try:  # the same, with BLAS on one thread: on a loaded 2-core machine two BLAS threads wait for each other
        from threadpoolctl import threadpool_limits as one_blas_thread
    except ImportError:
        one_blas_thread = None
    budget = 0.15 if options.quick else 0.3
    results = {}
    for name in representatives(options.quick):
        layer = LAYERS[name]
        examples = draw(layer, 12 if options.quick else 16)
        per_check = {}
        for check in columns:
            first, per_second = rate(layer, examples, CHECKS if check == ALL else (check,), budget)
            # the first pass minus what the same examples cost once compiled: compiling and tracing
            per_check[check] = {"per_second": per_second, "compile_s": max(0.0, first - len(examples) / per_second)}
        if one_blas_thread is not None:
            with one_blas_thread(1):
                per_check[ONE_THREAD] = {"per_second": rate(layer, examples, CHECKS, budget)[1], "compile_s": 0.0}
        results[name] = {"shapes": [list(np.shape(a)) for a in examples[0][0]], "examples": len(examples),
                         "checks": per_check}
        slowest = min(CHECKS, key=lambda c: per_check[c]["per_second"])
        options.say(f"{name}: {len(examples)} examples of shapes {results[name]['shapes']}; slowest check {slowest} "
                    f"{per_check[slowest]['per_second']:.0f}/s; all checks together "
                    f"{per_check[ALL]['per_second']:.0f}/s; compile {sum(c['compile_s'] for c in per_check.values()):.1f} s")

    if one_blas_thread is not None:
        columns = (*columns, ONE_THREAD)
    blank = ("",) * (len(columns) - len(CHECKS) + 1)
    rows = [(name, *(f"{r['checks'][c]['per_second']:.0f}" for c in columns),
             f"{sum(v['compile_s'] for v in r['checks'].values()):.1f}") for name, r in results.items()]
    worst = {c: min(r["checks"][c]["per_second"] for r in results.values()) for c in CHECKS}
    rows.append(("slowest", *(f"{worst[c]:.0f}" for c in CHECKS), *blank))
    rows.append(("goal", *(f">={GOAL_PER_SECOND}" for _ in CHECKS), *blank))
    rows.append(("", *(verdict(worst[c] >= GOAL_PER_SECOND) for c in CHECKS), *blank))
    text = table(("layer", *columns, "compile s"), rows) + (
        "\nexamples per second of each check alone, float64, after a warm-up pass; 'compile s': the warm-up "
        "passes' extra time over the steady rate, summed over the columns (each new oracle configuration compiles "
        f"once); '{ALL}': one examine with every check, as make verify runs it (hypothesis adds ~1 ms per example "
        f"there)" + (f"; '{ONE_THREAD}': the same with BLAS limited to one thread (threadpoolctl)"
                     if one_blas_thread is not None else ""))
    missed = [c for c in CHECKS if worst[c] < GOAL_PER_SECOND]
    goal = Goal("examples per second of each check", f">= {GOAL_PER_SECOND}/s",
                f"slowest: {min(worst.values()):.0f}/s ({min(worst, key=worst.get)})"
                + (f"; under the goal: {', '.join(missed)}" if missed else ""), not missed)
    return Section("checks", "Verification speed: examples per second of each check", text,
                   {"layers": results, "slowest_per_check": worst}, [goal])


def run_verify(options: Options) -> Section:
    """``python -m verification --json ...`` in a subprocess, timed from outside, cold: with
    JAX's compile cache off, as on a fresh machine (or in CI, after the tests filled the
    cache under other XLA flags), every oracle compiles."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "verify.json"
        options.say("running python -m verification (the default make verify), compile cache off ...")
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "verification", "--json", str(report)], cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ, "BACKPROP_JAX_CACHE": ""})
        wall = time.perf_counter() - started
        document = json.loads(report.read_text()) if report.exists() else {}
    passed = run.returncode == 0
    layers = len(document.get("layers", []))
    options.say(f"make verify: {wall:.1f} s wall, {layers} layers, {'passed' if passed else 'FAILED'}")
    met = wall <= GOAL_VERIFY_SECONDS
    text = table(("command", "layers", "wall s", "goal", "", "result"),
                 [("python -m verification (cold)", layers, f"{wall:.1f}", f"<= {GOAL_VERIFY_SECONDS}", verdict(met),
                   "passed" if passed else f"FAILED (exit {run.returncode})")])
    data = {"wall_s": wall, "returncode": run.returncode, "layers": layers,
            "reported_s": document.get("seconds"), "settings": document.get("settings"),
            "stderr_tail": run.stderr[-2000:] if not passed else ""}
    return Section("verify", "Wall time of a default make verify", text, data,
                   [Goal("make verify wall time, cold (whole catalogue, 2 cores)", f"<= {GOAL_VERIFY_SECONDS} s",
                         f"{wall:.1f} s", met)])
