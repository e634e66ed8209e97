"""The seed's own case: the linear layer at N = 64, D = M = 4096, in float32.

The reference backward is checked against ``jax.vjp`` (float64) at full size with the
multilinear tolerance (no Jacobian needed), and the report states what the explicit
Jacobians would cost: dY/dX alone has 64 * 4096 * 64 * 4096 = 68,719,476,736 entries,
256 GiB in float32. The Jacobian check goes through the ordinary budget test and is
skipped with those sizes, never attempted.
"""
from __future__ import annotations

import numpy as np

from .catalogue import LAYERS
from .checks import examine
from .oracles import jacobian_cost
from .runner import CheckSummary, LayerReport, failure_of

SEED_SHAPE = (64, 4096, 4096)  # (N, D, M) from Johnson's note
SEED_CHECKS = ("forward", "vjp", "jvp", "jacobian", "shapes", "unchanged", "aliasing")
"""At full size: the oracles and the contract. Layouts, finite differences and linearity
would re-run the 4.3-GFLOP forward/backward a dozen times to prove what the small shapes
already prove."""


def jacobian_costs(n: int, d: int, m: int) -> list[dict]:
    """Entries and bytes of dY/dX and dY/dW for Y = X W, in float32 and float64."""
    cost = jacobian_cost((n, m), [(n, d), (d, m)], ("X", "W"))
    return [
        {"jacobian": f"dY/d{name}", "shape": [n, m, *shape], "entries": entries,
         "float32_bytes": 4 * entries, "float64_bytes": 8 * entries}
        for name, shape, entries in zip(cost.input_names, [(n, d), (d, m)], cost.entries)
    ]


def seed_scale_case(n: int = SEED_SHAPE[0], d: int = SEED_SHAPE[1], m: int = SEED_SHAPE[2], *,
                    dtype: str = "float32", seed: int = 0) -> tuple[LayerReport, list[dict]]:
    """Check ``linear`` once at (N, D, M) in ``dtype``; return its report and the Jacobian costs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32 if dtype == "float32" else np.float64)
    w = rng.standard_normal((d, m), dtype=x.dtype)
    report = LayerReport(f"linear (N={n}, D={d}, M={m})")
    example = examine(LAYERS["linear"], (x, w), {}, dtype=dtype, cotangent_seed=seed, checks=SEED_CHECKS)
    for outcome in example.outcomes:
        summary = CheckSummary(outcome.check, dtype)
        summary.add(outcome)
        summary.finish()
        report.checks.append(summary)
    if example.failed:
        report.failures.append(failure_of([example], LAYERS["linear"], record=True))
    return report, jacobian_costs(n, d, m)
