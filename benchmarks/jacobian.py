"""Section ``jacobian``: the seed's argument, measured. What the explicit chain rule costs.

For the linear layer Y = X W at N = D = M = n, float64, each in a fresh process
(``benchmarks.probe``): ``jax.jacobian`` + contraction with dY, the streamed contraction
(``verification.streamed``), the ``jax.vjp`` oracle and the NumPy reference backward:
time of the first call (compile included) and peak memory. Then the seed's N = 64,
D = M = 4096 as a computed row (its flops at the measured GEMM peak; memory from
shapes), and, outside ``--quick``, the streamed contraction at N = D = M = 224 (J: 38 GB)
measured. The table goes to a PNG plot when matplotlib is installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from verification.oracles import format_bytes
from verification.report import table
from verification.streamed import CHUNK_ELEMENTS, chunk_rows

from .common import ROOT, Goal, Options, Section, gemm_rate
from .probe import METHODS

SIZES = (8, 16, 32, 64, 96, 128)
QUICK_SIZES = (8, 32, 64)
SEED = (64, 4096, 4096)
LARGE = 224  # J = 2 * 224^4 float64 entries: 40 GB, 37.5 GiB
LARGE_GOAL_SECONDS, LARGE_GOAL_BYTES = 60.0, 0.5e9
PROBE_TIMEOUT_S = 600
LABELS = {"jacobian": "jax.jacobian + contraction", "streamed": "streamed contraction",
          "vjp": "jax.vjp (the oracle)", "reference": "NumPy reference backward"}


def entries(n, d, m) -> int:
    """Entries of J = dY/d(X, W): N M (N D + D M)."""
    return n * m * (n * d + d * m)


def work(method, n, d, m) -> float:
    """Flops: one pullback (two products of 2 N D M) per Jacobian row for the Jacobian routes, one for the others."""
    pullback = 4.0 * n * d * m
    return n * m * pullback if method in ("jacobian", "streamed") else pullback


def computed_bytes(method, n, d, m) -> int:
    """Memory from shapes alone (float64)."""
    rows, row_entries = n * m, n * d + d * m
    if method == "jacobian":  # J itself and jacrev's (NM) x (NM) one-hot basis
        return 8 * (entries(n, d, m) + rows * rows)
    if method == "streamed":  # the accumulated gradients, one chunk's contribution, one chunk
        c = chunk_rows(rows, row_entries, CHUNK_ELEMENTS)
        return 8 * (2 * row_entries + c * (rows + row_entries))
    return 8 * row_entries  # the gradients


def probe(method, n, d, m) -> dict:
    # no persistent compilation cache: every probe pays the compile a new shape costs
    env = {**os.environ, "BACKPROP_JAX_CACHE": ""}
    try:
        run = subprocess.run([sys.executable, "-m", "benchmarks.probe", method, str(n), str(d), str(m)], cwd=ROOT,
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "d": d, "m": m, "error": f"timed out after {PROBE_TIMEOUT_S} s"}
    if run.returncode != 0:
        return {"method": method, "n": n, "d": d, "m": m,
                "error": f"exit {run.returncode}: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ''}"}
    return json.loads(run.stdout.strip().splitlines()[-1])


def _line(r) -> str:
    if "error" in r:
        return f"{LABELS[r['method']]} at {r['n']}x{r['d']}x{r['m']}: {r['error']}"
    return (f"{LABELS[r['method']]} at {r['n']}x{r['d']}x{r['m']}: {r['seconds']:.3g} s, "
            f"{format_bytes(r['peak_bytes'])}, relative error {r['rel_error']:.1e}")


def run(options: Options, plot_path: Path) -> Section:
    peak = gemm_rate("float64")
    options.say(f"GEMM peak float64: {peak / 1e9:.1f} GFLOP/s (the computed rows' rate)")
    measured = []
    for n in QUICK_SIZES if options.quick else SIZES:
        for method in METHODS:
            measured.append(probe(method, n, n, n))
            options.say(_line(measured[-1]))
    large = None
    if options.quick:
        options.say(f"streamed contraction at {LARGE}^3: skipped under --quick")
    else:
        options.say(f"streamed contraction at N=D=M={LARGE} (J: {format_bytes(8 * entries(LARGE, LARGE, LARGE))}) ...")
        large = probe("streamed", LARGE, LARGE, LARGE)
        large["estimate_s"] = work("streamed", LARGE, LARGE, LARGE) / peak
        options.say(_line(large))
    seed_rows = [_computed(method, peak) for method in METHODS]

    text = _text(measured, seed_rows, large, peak)
    plot = write_plot(measured, seed_rows, large, plot_path)
    options.say(plot)
    goals = [_large_goal(large)]
    return Section("jacobian", "The explicit chain rule's cost: jax.jacobian vs streamed vs vjp vs reference (linear, float64)",
                   text + "\n" + plot,
                   {"gemm_float64_flops": peak, "measured": measured, "seed_computed": seed_rows, "large_streamed": large,
                    "plot": str(plot_path) if plot_path.exists() else None}, goals)


def _computed(method, peak: float) -> dict:
    """The seed's row, from shapes: its flops at the GEMM peak (a lower bound on time), its memory."""
    n, d, m = SEED
    return {"method": method, "n": n, "d": d, "m": m, "computed": True,
            "seconds": work(method, n, d, m) / peak, "peak_bytes": computed_bytes(method, n, d, m)}


def _duration(s) -> str:
    if s is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.3g} s"


def _text(measured, seed_rows, large, peak) -> str:
    rows = []
    for r in measured + ([large] if large else []):
        shape = f"{r['n']}x{r['d']}x{r['m']}"
        if "error" in r:
            rows.append((shape, LABELS[r["method"]], format_bytes(8 * entries(r["n"], r["d"], r["m"])), "-", "-", "-",
                         r["error"]))
            continue
        rows.append((shape, LABELS[r["method"]], format_bytes(8 * entries(r["n"], r["d"], r["m"])),
                     _duration(r["seconds"]), "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}",
                     format_bytes(r["peak_bytes"]), f"{r['rel_error']:.1e}"))
    for r in seed_rows:
        rows.append((f"{r['n']}x{r['d']}x{r['m']}", LABELS[r["method"]], format_bytes(8 * entries(*SEED)),
                     _duration(r.get("seconds")) + " (computed)", "-", format_bytes(r["peak_bytes"]) + " (computed)",
                     "-"))
    text = table(("N x D x M", "method", "J (float64)", "time", "compile s", "peak memory", "rel. error"), rows)
    notes = ["time: first call at the shape, compile included, each method in a fresh process with no compilation "
             "cache; peak memory: growth of the process's peak RSS (JAX, compile included), tracemalloc peak (NumPy)",
             f"computed rows: time = flops at this run's float64 GEMM peak ({peak / 1e9:.1f} GFLOP/s), a lower bound "
             "(Jacobian routes: one pullback of 4NDM flops per row of J, NM rows; vjp and reference: 4NDM); memory "
             "from shapes (jax.jacobian: J plus its (NM)^2 one-hot basis; streamed: gradients twice plus one chunk; "
             "others: the gradients)"]
    if large and "error" not in large:
        notes.append(f"{LARGE}^3 streamed: {large['estimate_s']:.0f} s computed the same way; measured "
                     f"{large['seconds']:.0f} s")
    return text + "\n" + "\n".join(notes)


def _large_goal(large) -> Goal:
    what = f"streamed contraction, N=D=M={LARGE} (J: {format_bytes(8 * entries(LARGE, LARGE, LARGE))})"
    goal = f"<= {LARGE_GOAL_SECONDS:.0f} s, <= {LARGE_GOAL_BYTES / 1e9:.1f} GB peak RSS"
    if large is None:
        return Goal(what, goal, "not run (--quick)", None)
    if "error" in large:
        return Goal(what, goal, large["error"], False)
    met = large["seconds"] <= LARGE_GOAL_SECONDS and large["peak_bytes"] <= LARGE_GOAL_BYTES
    return Goal(what, goal, f"{large['seconds']:.1f} s, {format_bytes(large['peak_bytes'])}", met)


def write_plot(measured, seed_rows, large, path: Path) -> str:
    """Time and memory against J's size, one line per method; the seed's computed row as open markers."""
    try:
        import matplotlib
    except ImportError:
        return "plot: skipped, matplotlib is not installed (pip install -e '.[bench]', or make bench)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = dict(zip(METHODS, ("tab:red", "tab:blue", "tab:green", "tab:gray")))
    for method in METHODS:
        ok = [r for r in measured if r["method"] == method and "error" not in r]
        if method == "streamed" and large and "error" not in large:
            ok.append(large)
        x = [8 * entries(r["n"], r["d"], r["m"]) for r in ok]
        seed = next(r for r in seed_rows if r["method"] == method)
        for ax, key in zip(axes, ("seconds", "peak_bytes")):
            points = [(size, r[key]) for size, r in zip(x, ok) if r[key] > 0]  # a log axis has no 0
            if points:
                ax.plot(*zip(*points), "o-", color=colours[method], label=LABELS[method])
            if seed.get(key) is not None:
                ax.plot([8 * entries(*SEED)], [seed[key]], "o", mfc="none", color=colours[method], markersize=9)
    for ax, ylabel in zip(axes, ("time of the first call (s)", "peak memory (bytes)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("size of the implicit Jacobian J = dY/d(X, W) in float64 (bytes)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.annotate("seed: N=64, D=M=4096\n(computed, open markers)", (8 * entries(*SEED), ax.get_ylim()[0]),
                    xytext=(-10, 20), textcoords="offset points", ha="right", fontsize=8)
    memory = _machine_memory()
    if memory:
        axes[1].axhline(memory, color="black", linestyle="--", linewidth=0.8)
        axes[1].annotate(f"this machine's memory ({format_bytes(memory)})", (axes[1].get_xlim()[0], memory),
                         xytext=(5, 4), textcoords="offset points", fontsize=8)
    axes[0].legend(fontsize=8, loc="upper left")
    sizes = sorted({r["n"] for r in measured} | ({LARGE} if large else set()))
    figure.suptitle(f"Linear layer Y = XW, float64, N=D=M in {sizes}: the explicit chain rule vs the pullback")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"plot: {path}"


def _machine_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
