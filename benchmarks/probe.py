"""One measurement of the linear layer's gradients in a fresh process, so its peak memory is its own.

    python -m benchmarks.probe METHOD N D M

METHOD: ``jacobian`` (``jax.jacobian`` of Y = X W, contracted with dY: the explicit chain
rule), ``streamed`` (the same contraction, ``verification.streamed``), ``vjp`` (the
``jax.vjp`` pullback, the verifier's oracle) or ``reference`` (the NumPy backward). All
in float64. Prints one JSON line: ``seconds`` (the first call at this shape, compile
included), ``compile_s`` (JAX methods compiled ahead of the call), ``peak_bytes`` (for
JAX, growth of the process's peak RSS across the call, compile included, see ``PeakRss``;
for NumPy, tracemalloc's peak, which sees every NumPy allocation) and ``rel_error`` against the
NumPy reference.
"""
from __future__ import annotations

import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from reference.linear import linear_backward, linear_forward

METHODS = ("jacobian", "streamed", "vjp", "reference")


class PeakRss:
    """Growth of the process's peak RSS across a block: its high-water mark after, minus its RSS before.

    ru_maxrss alone is a high-water mark since the process began, which imports can already
    have raised above what the measured call adds; on Linux the mark is reset first
    (``/proc/self/clear_refs``), so the growth is the call's own.
    """

    def __enter__(self):
        self.before = _status_bytes("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.mark = lambda: _status_bytes("VmHWM")
        except OSError:
            self.mark = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
            self.before = self.mark()
        return self

    def __exit__(self, *exc):
        self.bytes = max(0, self.mark() - self.before)


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(method: str, n: int, d: int, m: int) -> dict:
    rng = np.random.default_rng(0)
    x, w, dout = rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal((n, m))
    _, cache = linear_forward(x, w)
    expected = linear_backward(dout, cache)
    result = {"method": method, "n": n, "d": d, "m": m, "compile_s": None}
    if method == "reference":
        tracemalloc.start()
        started = time.perf_counter()
        grads = linear_backward(dout, cache)
        result["seconds"] = time.perf_counter() - started
        result["peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        import jax
        import jax.numpy as jnp

        import verification  # noqa: F401  (float64 in JAX)
        from verification.streamed import streamed_jacobian_contraction

        def f(x, w):
            return jnp.einsum("nd,dm->nm", x, w)

        def jacobian(x, w, dout):
            jx, jw = jax.jacobian(f, argnums=(0, 1))(x, w)
            return jnp.tensordot(dout, jx, axes=2), jnp.tensordot(dout, jw, axes=2)

        def vjp(x, w, dout):
            return jax.vjp(f, x, w)[1](dout)

        args = jax.device_put((x, w, dout))
        jax.block_until_ready(jax.jit(lambda a: a + 1)(args[0]))  # the XLA runtime is not the method's memory
        with PeakRss() as peak:
            started = time.perf_counter()
            if method == "streamed":
                grads = streamed_jacobian_contraction(f, args[:2], args[2])
            else:
                compiled = jax.jit({"jacobian": jacobian, "vjp": vjp}[method]).lower(*args).compile()
                result["compile_s"] = time.perf_counter() - started
                grads = jax.block_until_ready(compiled(*args))
            result["seconds"] = time.perf_counter() - started
        result["peak_bytes"] = peak.bytes
    result["rel_error"] = max(float(np.max(np.abs(np.asarray(g) - e), initial=0.0) / max(np.max(np.abs(e), initial=0.0), 1e-300))
                              for g, e in zip(grads, expected))
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or argv[0] not in METHODS:
        print(f"usage: python -m benchmarks.probe {{{','.join(METHODS)}}} N D M", file=sys.stderr)
        return 2
    print(json.dumps(measure(argv[0], *map(int, argv[1:]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
