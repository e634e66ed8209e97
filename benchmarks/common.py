"""What every section shares: goals, results, and timing on a noisy shared machine.

The machines here are 2-core and shared: a lone time can be off by 2x. So speed is quoted
as the median of ratios of *interleaved* pairs (A then B, B then A, ...): load that comes
and goes hits both halves of a pair alike and cancels in their ratio.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Goal:
    """One goal of the issue, beside what was measured; ``met`` is None when it was not measured."""

    what: str
    goal: str
    measured: str
    met: bool | None


@dataclass
class Section:
    """A section's result: a table for people, data for programs, and the goals it measured."""

    name: str
    title: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"title": self.title, "data": self.data, "goals": [asdict(g) for g in self.goals]}


@dataclass
class Options:
    quick: bool
    say: Callable[[str], None]  # one progress line (stderr)


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "MISS")


@dataclass
class Pairs:
    """Interleaved timings of A and B: per-pair seconds and the ratios A/B."""

    a_seconds: list[float]
    b_seconds: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.a_seconds, self.b_seconds)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def ratio_quartiles(self) -> tuple[float, float]:
        q = np.percentile(self.ratios, [25, 75])
        return float(q[0]), float(q[1])

    @property
    def a_median(self) -> float:
        return statistics.median(self.a_seconds)

    @property
    def b_median(self) -> float:
        return statistics.median(self.b_seconds)

    def to_dict(self) -> dict:
        return {"pairs": len(self.a_seconds), "ratio_median": self.ratio, "ratio_quartiles": self.ratio_quartiles,
                "a_median_s": self.a_median, "b_median_s": self.b_median,
                "a_seconds": self.a_seconds, "b_seconds": self.b_seconds}


def seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(a: Callable[[], Any], b: Callable[[], Any], *, min_pairs: int, max_pairs: int,
                budget_s: float) -> Pairs:
    """Time a and b alternately, swapping which goes first each pair, for at least ``min_pairs``
    pairs and then until ``budget_s`` has passed or ``max_pairs`` are done. Call each once first
    (compile, caches, page faults) and leave that call out."""
    a()
    b()
    pairs = Pairs([], [])
    started = time.perf_counter()
    while len(pairs.a_seconds) < max_pairs and (
            len(pairs.a_seconds) < min_pairs or time.perf_counter() - started < budget_s):
        if len(pairs.a_seconds) % 2 == 0:
            ta, tb = seconds(a), seconds(b)
        else:
            tb, ta = seconds(b), seconds(a)
        pairs.a_seconds.append(ta)
        pairs.b_seconds.append(tb)
    return pairs


GEMM_SIZE = 2048
"""Square NumPy matmul for the machine's GEMM rate: 17 GFLOP, long enough for both cores to
reach their peak, short enough (0.1-0.5 s) to repeat."""


def gemm_rate(dtype, *, repeats: int = 3, size: int = GEMM_SIZE) -> float:
    """Best flop/s of a square NumPy matmul over ``repeats`` calls (after one warm-up): the peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    best = min(seconds(lambda: a @ b) for _ in range(repeats + 1))
    return 2.0 * size ** 3 / best


def machine() -> dict:
    """What the numbers were measured on: cores, CPU, BLAS kernel, versions, load."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
        "numpy": np.__version__, "load_average": list(os.getloadavg()),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }
    try:
        import jax
        info["jax"] = jax.__version__
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = "unknown: threadpoolctl is not installed (pip install -e '.[bench]')"
    return info


def describe_machine(info: dict) -> str:
    blas = info["blas"]
    if isinstance(blas, list):
        blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']} kernel, {b['num_threads']} threads"
                         for b in blas) or "none found"
    load = ", ".join(f"{x:.1f}" for x in info["load_average"])
    return (f"{info['cores']} cores ({info['cpu']}); BLAS: {blas}; numpy {info['numpy']}, jax {info.get('jax', '-')}; "
            f"load average {load}" + (f"; OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}"
                                      if info["OPENBLAS_CORETYPE"] else ""))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
