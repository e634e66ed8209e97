"""The explicit chain rule at any size: sum_ij dY_ij dY_ij/dtheta, a few Jacobian rows at a time.

``jax.jacobian`` materialises J (out.size x in.size entries per input) and, in reverse
mode, an out.size x out.size one-hot basis to build it: at N = D = M = 128 that is 6 GB
for a 4 GB J, and the seed's linear layer (N = 64, D = M = 4096) would need 36 TB. The
contraction needs neither at once. Here, inside one compiled step,

* c one-hot cotangents e_r (r = start .. start + c - 1) are built,
* ``jax.vmap`` of the ``jax.vjp`` pullback maps them to c rows of J, J[r] = e_r^T J,
  which are really formed (an optimisation barrier keeps XLA from folding the
  contraction back into a single pullback of dY: that would be the ``vjp`` oracle again,
  not an independent route),
* the rows are contracted with their slice of dY, sum_r dY_r J[r], and accumulated;

and a Python loop runs the step over the out.size rows. Memory is bounded by the chunk,
``chunk_elements`` entries (2 MiB in float64 by default), whatever J's size; time
is out.size pullbacks: ``streamed_cost`` counts them before anything runs, and
``time_budget`` stops a run whose first chunk shows it cannot finish in time.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .oracles import format_bytes

CHUNK_ELEMENTS = 2**18
"""Entries of one chunk (c one-hot cotangents plus the c Jacobian rows they give): 2 MiB in
float64, about a core's L2 cache. Measured on the 2-core machine (linear layer, N = D = M
= 96 to 224): 2^17 to 2^18 ran fastest; 8 Mi entries, 64 MiB, ran 2-3x slower."""


class StreamedCost(NamedTuple):
    """What a streamed contraction costs, from shapes and XLA's operation count, before it runs."""

    rows: int  # out.size: Jacobian rows, one pullback each
    row_entries: int  # entries of one row over all inputs: the sum of the inputs' sizes
    chunk_rows: int  # rows formed at once (c)
    chunks: int  # compiled steps run: ceil(rows / c)
    pullback_flops: float | None  # XLA's count for one pullback; None where XLA gives none
    itemsize: int = 8

    @property
    def jacobian_entries(self) -> int:
        """Entries of the whole J, never held at once."""
        return self.rows * self.row_entries

    @property
    def chunk_bytes(self) -> int:
        """Memory of one chunk: its one-hot cotangents and the Jacobian rows they give."""
        return self.itemsize * self.chunk_rows * (self.rows + self.row_entries)

    @property
    def flops(self) -> float | None:
        """rows x pullback cost: the work of forming every row of J."""
        return None if self.pullback_flops is None else self.rows * self.pullback_flops

    def seconds(self, flops_per_second: float) -> float | None:
        """Estimated run time at a sustained rate (e.g. the machine's GEMM rate), compile excluded."""
        return None if self.flops is None else self.flops / flops_per_second

    def describe(self) -> str:
        work = "" if self.flops is None else f", {self.flops / 1e9:,.1f} GFLOP"
        return (f"J has {self.jacobian_entries:,} entries ({format_bytes(self.itemsize * self.jacobian_entries)}); "
                f"streamed as {self.rows:,} pullbacks in {self.chunks:,} chunks of {self.chunk_rows:,} rows "
                f"({format_bytes(self.chunk_bytes)} each){work}")


class StreamedTimeExceeded(RuntimeError):
    """Raised when the first chunk shows the whole contraction would exceed the time budget."""

    def __init__(self, estimate_seconds: float, time_budget: float, cost: StreamedCost):
        self.estimate_seconds, self.time_budget, self.cost = estimate_seconds, time_budget, cost
        super().__init__(f"the streamed contraction would take about {estimate_seconds:,.0f} s "
                         f"(measured on its first chunk), over the {time_budget:,.0f} s budget: {cost.describe()}")


def chunk_rows(rows: int, row_entries: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that c one-hot cotangents (rows entries each) and c rows of J fit in chunk_elements."""
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be at least 1, got {chunk_elements}")
    return max(1, min(rows, chunk_elements // max(1, rows + row_entries)))


def streamed_cost(f: Callable, arrays, *, chunk_elements: int = CHUNK_ELEMENTS) -> StreamedCost:
    """The cost of ``streamed_jacobian_contraction(f, arrays, ...)``, from shapes; nothing is run or compiled.

    ``pullback_flops`` is XLA's operation count for one pullback of ``f`` at ``arrays``
    (from the lowered program: tracing only; ``arrays`` may be ``jax.ShapeDtypeStruct``s).
    ``cost.seconds(rate)`` turns rows x
    pullback flops into a time at a sustained rate; the bench compares that estimate,
    at the measured GEMM rate, with a measured run.
    """
    arrays = tuple(jax.ShapeDtypeStruct(np.shape(a), _float_dtype(a)) for a in arrays)
    # abstract evaluation: the pullback's residuals as shapes, so the count is of the
    # pullback alone (the streamed loop runs the forward once, not once per row)
    out, pullback = jax.eval_shape(lambda *a: jax.vjp(f, *a), *arrays)
    rows = math.prod(out.shape)
    row_entries = sum(math.prod(a.shape) for a in arrays)
    c = chunk_rows(rows, row_entries, chunk_elements)
    chunks = math.ceil(rows / c) if row_entries else 0
    flops = (jax.jit(lambda p, d: p(d)).lower(pullback, out).cost_analysis() or {}).get("flops")
    pullback_flops = None if flops is None else float(flops)
    return StreamedCost(rows, row_entries, c, chunks, pullback_flops, np.dtype(out.dtype).itemsize)


def streamed_jacobian_contraction(f: Callable, arrays, dout, *, chunk_elements: int = CHUNK_ELEMENTS,
                                  time_budget: float | None = None) -> tuple[np.ndarray, ...]:
    """sum_ij dout_ij d f(arrays)_ij / d arrays[k], for each k, forming J ``chunk_rows`` rows at a time.

    f: ``f(*arrays) -> array`` (close over hyperparameters); arrays: floating inputs;
    dout: f's output shape. Returns one NumPy array per input, shaped and typed like it:
    the same numbers as ``tensordot(dout, jax.jacobian(f)(*arrays)[k], dout.ndim)``
    up to rounding, in bounded memory. ``time_budget`` (seconds): after compiling and
    running the first chunk, raise ``StreamedTimeExceeded`` if chunks x that chunk's time
    exceeds it.
    """
    arrays = tuple(jnp.asarray(a, dtype=_float_dtype(a)) for a in arrays)
    out, pullback = jax.vjp(f, *arrays)  # the forward runs once; its residuals feed every chunk
    dout = jnp.asarray(dout, dtype=out.dtype)
    if dout.shape != out.shape:
        raise ValueError(f"dout has shape {dout.shape} but f's output has shape {out.shape}")
    rows = out.size
    row_entries = sum(a.size for a in arrays)
    grads = tuple(jnp.zeros(a.shape, a.dtype) for a in arrays)
    if rows == 0 or row_entries == 0:
        return tuple(np.asarray(g) for g in grads)
    c = chunk_rows(rows, row_entries, chunk_elements)
    chunks = math.ceil(rows / c)
    # weights past the last row are zero; their one-hot rows repeat the last row, so a
    # padded row adds 0 x (a finite row) rather than a pullback of an all-zero cotangent
    weights = jnp.zeros(chunks * c, out.dtype).at[:rows].set(dout.reshape(-1))

    def step(pullback, grads, weights, start):
        index = jnp.minimum(start + jnp.arange(c), rows - 1)
        cotangents = (index[:, None] == jnp.arange(rows)[None, :]).astype(out.dtype).reshape(c, *out.shape)
        jacobian_rows = lax.optimization_barrier(jax.vmap(pullback)(cotangents))
        w = lax.dynamic_slice(weights, (start,), (c,))
        return tuple(g + jnp.tensordot(w, j, axes=1).astype(g.dtype) for g, j in zip(grads, jacobian_rows))

    compiled = jax.jit(step, donate_argnums=1).lower(pullback, grads, weights, 0).compile()
    started = time.perf_counter()
    for k in range(chunks):
        grads = compiled(pullback, grads, weights, k * c)
        if k == 0 and time_budget is not None and chunks > 1:
            jax.block_until_ready(grads)
            estimate = (time.perf_counter() - started) * chunks
            if estimate > time_budget:
                cost = StreamedCost(rows, row_entries, c, chunks, None, np.dtype(out.dtype).itemsize)
                raise StreamedTimeExceeded(estimate, time_budget, cost)
    return tuple(np.asarray(g) for g in jax.device_get(grads))


def _float_dtype(a) -> np.dtype:
    dtype = np.dtype(a.dtype) if hasattr(a, "dtype") else np.result_type(a)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"the streamed contraction differentiates floating inputs only, got {dtype}")
    return dtype
