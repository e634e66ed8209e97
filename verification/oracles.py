"""The JAX oracles: everything JAX says about one example, from one compiled function.

For an example (arrays, hyper, dout) a single ``jax.jit`` of the specification returns

* the output of ``jax_forward``;
* the ``jax.vjp`` pullback of dout (reverse-mode AD);
* ``jax.jacobian`` of the forward, contracted with dout: sum_ij dY_ij dY_ij/dtheta, the
  explicit chain rule the Jacobian-free formula replaces (only when it fits the budget);
* the error magnitudes the tolerance policy scales by (``verification.tolerance``).

Compiling costs 0.2-0.5 s per new shape on 2 cores while a call costs ~0.2 ms, so
everything is computed in float64 by one function, cached per specification and static
hyperparameters (jit itself caches per shape); float and array hyperparameters are
traced arguments, so drawing new labels or a new eps does not recompile.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _jax  # noqa: F401  (x64 before any trace)

JACOBIAN_BUDGET_BYTES = 256 * 2**20
"""Default memory allowed for the explicit Jacobian check; above it the check is skipped."""

ORACLE_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
"""XLA options for the oracle programs. Their arrays are tiny, so compiling is what costs:
XLA's CPU fusion emitters (MLIR, the default) take 2-2.5x as long to compile them as its
classic elemental emitter (12 programs: 3.6-4.2 s against 1.2-1.9 s; the whole cold
catalogue, 96 programs: 10 s of backend compile against 26 s), and a call stays well under
a millisecond. Both emit the same IEEE arithmetic (no fast math either way)."""


class JacobianCost(NamedTuple):
    """The size of dY/d(input) for each input, computed from shapes alone."""

    input_names: tuple[str, ...]
    entries: tuple[int, ...]  # out.size * input.size, per input
    out_size: int

    @property
    def total_entries(self) -> int:
        return sum(self.entries)

    def oracle_bytes(self) -> int:
        """Memory of the float64 check: J and |J| plus jacrev's one-hot basis (out.size^2)."""
        return 8 * (2 * self.total_entries + self.out_size ** 2)

    def describe(self) -> str:
        parts = [
            f"dY/d{name} has {n:,} entries ({format_bytes(4 * n)} in float32, {format_bytes(8 * n)} in float64)"
            for name, n in zip(self.input_names, self.entries)
        ]
        return "; ".join(parts)


def jacobian_cost(out_shape, input_shapes, input_names) -> JacobianCost:
    out_size = int(np.prod(out_shape, dtype=np.int64))
    entries = tuple(out_size * int(np.prod(s, dtype=np.int64)) for s in input_shapes)
    return JacobianCost(tuple(input_names), entries, out_size)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


ELEMENTWISE_LENGTH = 64
"""Elementwise layers' inputs up to this size share one compiled oracle (see ``evaluate``)."""


class OracleResult(NamedTuple):
    out: np.ndarray
    vjp: tuple[np.ndarray, ...]  # pullback of the first cotangent, per input
    vjp2: tuple[np.ndarray, ...] | None  # pullback of the second cotangent, when one was given
    jacobian: tuple[np.ndarray, ...] | None  # J^T dY per input; None when not computed
    jvp: tuple[np.ndarray, ...] | None  # J_k t_k (output-shaped) per input k; None when not asked
    out_scale: np.ndarray | None
    grad_scales: tuple[np.ndarray, ...] | None  # magnitudes for the first cotangent
    grad_scales2: tuple[np.ndarray, ...] | None  # ... and for the second


def split_hyper(hyper: dict) -> tuple[tuple, dict]:
    """Static hyperparameters (ints, tuples, strings...) key the compile; floats and arrays are traced."""
    static, traced = [], {}
    for key, value in sorted(hyper.items()):
        if isinstance(value, (float, np.floating, np.ndarray)):
            traced[key] = value
        else:
            static.append((key, _hashable(value)))
    return tuple(static), traced


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    hash(value)
    return value


@functools.lru_cache(maxsize=None)
def _compiled(jax_forward, magnitude, static: tuple, with_jacobian: bool, with_jvp: bool):
    static_hyper = dict(static)

    def oracle(arrays, traced_hyper, douts, tangents):
        hyper = {**static_hyper, **traced_hyper}

        def f(*a):
            return jax_forward(*a, **hyper)

        out, pullback = jax.vjp(f, *arrays)
        vjps = tuple(pullback(d) for d in douts)
        jac = out_scale = grad_scales = jvps = None
        if with_jacobian:
            jacobians = jax.jacobian(f, argnums=tuple(range(len(arrays))))(*arrays)
            jac = tuple(jnp.tensordot(douts[0], j, axes=out.ndim) for j in jacobians)
            if magnitude is None:
                grad_scales = tuple(
                    tuple(jnp.tensordot(jnp.abs(d), jnp.abs(j), axes=out.ndim) for j in jacobians)
                    for d in douts)
                out_scale = jnp.abs(out) + sum(
                    (jnp.tensordot(jnp.abs(j), jnp.abs(a), axes=a.ndim) for j, a in zip(jacobians, arrays)),
                    jnp.zeros_like(out),
                )
        if magnitude is not None:
            scales = [magnitude(f, arrays, hyper, d) for d in douts]
            out_scale, grad_scales = scales[0][0], tuple(tuple(s[1]) for s in scales)
        if with_jvp:  # forward mode, one input at a time: J_k t_k
            jvps = tuple(
                jax.jvp(lambda a_k, k=k: f(*arrays[:k], a_k, *arrays[k + 1:]), (arrays[k],), (tangents[k],))[1]
                for k in range(len(arrays)))
        return out, vjps, jac, jvps, out_scale, grad_scales

    return jax.jit(oracle, compiler_options=ORACLE_COMPILER_OPTIONS)


def evaluate(jax_forward, arrays, hyper, douts, *, tangents=None, magnitude=None,
             with_jacobian=True, elementwise=False) -> OracleResult:
    """Run the float64 oracles on one example.

    ``arrays``: float64 inputs; ``douts``: one or two float64 cotangents (the second feeds
    the linearity property); ``tangents``: one float64 tangent per input, for forward mode.
    ``elementwise``: the layer's declaration (``Layer.elementwise``); one input of at most
    ``ELEMENTWISE_LENGTH`` elements, with no array hyperparameter, is then evaluated as a
    zero-padded vector of that length, which every shape shares.
    """
    if (elementwise and len(arrays) == 1 and np.size(arrays[0]) <= ELEMENTWISE_LENGTH
            and not any(isinstance(v, np.ndarray) for v in hyper.values())):
        return _evaluate_as_vector(jax_forward, arrays[0], hyper, douts, tangents=tangents,
                                   magnitude=magnitude, with_jacobian=with_jacobian)
    static, traced = split_hyper(hyper)
    function = _compiled(jax_forward, magnitude, static, with_jacobian, tangents is not None)
    out, vjps, jac, jvps, out_scale, grad_scales = jax.device_get(
        function(tuple(arrays), traced, tuple(douts), None if tangents is None else tuple(tangents)))
    if np.asarray(out).dtype != np.float64:
        raise RuntimeError(
            f"the JAX oracle computed in {np.asarray(out).dtype}, not float64: jax_enable_x64 is "
            "off (import verification before any other use of JAX)"
        )

    def arrays_of(grads):
        return None if grads is None else tuple(np.asarray(g) for g in grads)

    second = len(douts) > 1
    return OracleResult(
        out=np.asarray(out), vjp=arrays_of(vjps[0]), vjp2=arrays_of(vjps[1]) if second else None,
        jacobian=arrays_of(jac), jvp=arrays_of(jvps),
        out_scale=None if out_scale is None else np.asarray(out_scale),
        grad_scales=None if grad_scales is None else arrays_of(grad_scales[0]),
        grad_scales2=arrays_of(grad_scales[1]) if grad_scales is not None and second else None,
    )


def _evaluate_as_vector(jax_forward, x, hyper, douts, *, tangents, magnitude, with_jacobian) -> OracleResult:
    """An elementwise layer's oracles on x flattened and zero-padded to ELEMENTWISE_LENGTH.

    The padding's own outputs, gradients and Jacobian rows are computed and dropped; none
    reaches a real element, since out[i] depends on x[i] alone (the Jacobian is diagonal).
    """
    def vector(a):
        return np.pad(np.ravel(a), (0, ELEMENTWISE_LENGTH - np.size(a)))

    def shaped(a):
        return np.asarray(a)[:x.size].reshape(x.shape)

    padded = evaluate(jax_forward, (vector(x),), hyper, tuple(vector(d) for d in douts),
                      tangents=None if tangents is None else (vector(tangents[0]),),
                      magnitude=magnitude, with_jacobian=with_jacobian)
    return OracleResult(*(
        None if field is None else tuple(map(shaped, field)) if isinstance(field, tuple) else shaped(field)
        for field in padded))
