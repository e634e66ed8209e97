"""The JAX oracles: everything JAX says about one example, from one compiled program.

For an example (arrays, hyper, cotangents dY and dY2, a tangent t_k per input) one
``jax.jit`` of the specification returns, all in float64:

* the output of ``jax_forward`` (a tuple of arrays for a layer with several outputs);
* the ``jax.vjp`` pullbacks of dY and dY2 (reverse-mode AD);
* <dY, J t> from one ``jax.jvp`` along a random tangent of every input (forward-mode AD, the
  adjoint identity: it must equal sum_k <grad_k, t_k>);
* optionally ``jax.jacobian`` of the forward contracted with dY, sum_ij dY_ij dY_ij/dtheta:
  the explicit chain rule (only when it fits the memory budget);
* the error magnitudes the tolerance policy scales by (``verification.tolerance``): the
  layer's own ``magnitude``, or, without one, |J|^T |dY| and |out| + sum_k |J_k| |a_k| from
  the Jacobian, which is then always computed (when it fits): the scale never depends on
  which checks were selected.

Compiling is what costs (tens of milliseconds per new shape on 2 cores, against a call of
well under a millisecond), so there are two programs per shape: a light one (no Jacobian)
and a full one, and the runner asks for the Jacobian on a bounded set of configurations.
Float and array hyperparameters are traced arguments: new labels or a new eps do not
recompile; ints, tuples, bools and strings are static.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _jax  # noqa: F401  (x64 before any trace)
from .space import grow

JACOBIAN_BUDGET_BYTES = 256 * 2**20
"""Default memory allowed for the explicit Jacobian check; above it the check streams or is skipped."""

ORACLE_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                           "xla_cpu_parallel_codegen_split_count": 1}
"""XLA options for the oracle programs. Their arrays are tiny, so compiling is what costs.
XLA's classic elemental emitter compiles them 2-2.5x faster than its MLIR fusion emitters,
and LLVM's optimisation level 0 another 2-4x (measured on 2 cores: a conv2d program with
its Jacobian 443 -> 105 ms, layernorm 288 -> 161 ms, softmax 156 -> 85 ms), while a call
stays under a millisecond except for a convolution's Jacobian (1 -> 7 ms), which runs on a
bounded set of configurations. No fast math at either level: the same IEEE arithmetic. One
LLVM module per program instead of XLA's parallel split: 25-35% less for convolutions and
attention (conv2d 61 -> 46 ms, multi_head_attention 384 -> 243 ms), the same for the rest."""


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


def jacobian_cost(out_shapes, input_shapes, input_names) -> JacobianCost:
    """``out_shapes``: one shape, or a list of the outputs' shapes."""
    if out_shapes and not isinstance(out_shapes[0], (tuple, list)):
        out_shapes = [out_shapes]
    out_size = sum(int(np.prod(s, dtype=np.int64)) for s in out_shapes)
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
    """Float64 NumPy results; outputs are tuples of arrays (one per output)."""

    outs: tuple[np.ndarray, ...]
    vjp: tuple[np.ndarray, ...]  # pullback of dY, per input
    vjp2: tuple[np.ndarray, ...]  # pullback of dY2, per input
    jvp: float  # <dY, J t> = sum_k <dY, J_k t_k>: forward mode along all the tangents at once
    jacobian: tuple[np.ndarray, ...] | None  # J^T dY per input; None when not computed
    out_scales: tuple[np.ndarray, ...] | None  # magnitudes (None: the tolerance falls back)
    grad_scales: tuple[np.ndarray, ...] | None  # for dY
    grad_scales2: tuple[np.ndarray, ...] | None  # for dY2
    out_underflow: tuple[np.ndarray, ...] | None  # sensitivity to underflowing intermediates
    grad_underflow: tuple[np.ndarray, ...] | None
    scale_source: str  # "magnitude", "jacobian" or "" (none: the tolerance falls back)


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


def leaves(out) -> tuple:
    """The outputs of a forward as a tuple (one array for a single-output layer)."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _structured(parts: tuple, several: bool):
    return tuple(parts) if several else parts[0]


def _flat(parts) -> jnp.ndarray:
    return jnp.concatenate([jnp.ravel(p) for p in parts]) if len(parts) > 1 else jnp.ravel(parts[0])


def _unflat(vector, like) -> tuple:
    sizes = [int(np.prod(p.shape, dtype=np.int64)) for p in like]
    starts = np.cumsum([0, *sizes])
    return tuple(vector[starts[i]:starts[i + 1]].reshape(p.shape) for i, p in enumerate(like))


@functools.lru_cache(maxsize=None)
def _compiled(jax_forward, magnitude, static: tuple, with_jacobian: bool, several: bool):
    """The program of one cotangent: dY2 is a second call of it (a program with both
    pullbacks and both magnitudes took 1.2-1.9x as long to compile)."""
    static_hyper = dict(static)

    def oracle(arrays, traced_hyper, douts, tangents):
        hyper = {**static_hyper, **traced_hyper}

        def f(*a):
            return jax_forward(*a, **hyper)

        out, pullback = jax.vjp(f, *arrays)
        outs = leaves(out)
        dout = _structured(douts, several)
        # forward mode along every input's tangent at once: one pass, whatever the number of inputs
        jvp = sum(jnp.vdot(d, o) for d, o in zip(douts, leaves(jax.jvp(f, tuple(arrays), tuple(tangents))[1])))
        result = {"outs": outs, "vjp": pullback(dout), "jvp": jvp}
        if with_jacobian:
            jacobians, result["jacobian"] = _contracted_jacobians(f, arrays, douts)
            d = _flat(douts)
            if magnitude is None:
                result["grad_scales"] = tuple(jnp.tensordot(jnp.abs(d), jnp.abs(j), axes=1) for j in jacobians)
                result["out_scales"] = _unflat(jnp.abs(_flat(outs)) + sum(
                    (jnp.tensordot(jnp.abs(j), jnp.abs(a), axes=a.ndim) for j, a in zip(jacobians, arrays)),
                    jnp.zeros(_flat(outs).shape, _flat(outs).dtype)), outs)
        if magnitude is not None:
            scales = magnitude(f, arrays, hyper, dout)
            result["out_scales"], result["grad_scales"] = leaves(scales[0]), tuple(scales[1])
            if len(scales) > 2:
                result["out_underflow"], result["grad_underflow"] = leaves(scales[2][0]), tuple(scales[2][1])
        return result

    return jax.jit(oracle, compiler_options=ORACLE_COMPILER_OPTIONS)


def _contracted_jacobians(f, arrays, douts):
    """(the Jacobian of f's flattened outputs by each input, J^T dY per input)."""
    jacobians = jax.jacobian(lambda *a: _flat(leaves(f(*a))), argnums=tuple(range(len(arrays))))(*arrays)
    return jacobians, tuple(jnp.tensordot(_flat(douts), j, axes=1) for j in jacobians)


@functools.lru_cache(maxsize=None)
def _jacobian_program(jax_forward, static: tuple):
    """J^T dY per input, by the explicit Jacobian alone (for layers whose light program is shared)."""
    static_hyper = dict(static)

    def program(arrays, traced_hyper, douts):
        return _contracted_jacobians(lambda *a: jax_forward(*a, **static_hyper, **traced_hyper), arrays, douts)[1]

    return jax.jit(program, compiler_options=ORACLE_COMPILER_OPTIONS)


def shares_programs(layer) -> bool:
    """Whether the configurations of ``layer`` share the light program (a bucket, the padded
    vector): it exists anyway, so probes and the Jacobian run beside it, not in copies of it."""
    return layer.hints.pad is not None or bool(layer.hints.elementwise)


def forget() -> None:
    """Drop every compiled oracle program. A process that checks layer after layer would
    otherwise hold them all (2-4 MiB per configuration: a whole catalogue run, gigabytes)."""
    _compiled.cache_clear()
    _jacobian_program.cache_clear()
    _shapes_seen.clear()
    jax.clear_caches()


def fetched(results):
    """A program's results as NumPy arrays (jax.device_get takes four times as long on these small ones)."""
    return jax.tree_util.tree_map(np.asarray, results)


def evaluate(layer, arrays, hyper, douts, douts2, tangents, *, with_jacobian=True,
             share_shapes=True) -> OracleResult:
    """Run the float64 oracles of ``layer`` on one example.

    ``arrays``: float64 inputs; ``douts``, ``douts2``: two cotangents, each a tuple with one
    float64 array per output; ``tangents``: one float64 tangent per input. With
    ``layer.hints.elementwise``, one input of at most ``ELEMENTWISE_LENGTH`` elements (and no
    array hyperparameter) is evaluated as a zero-padded vector of that length, which every
    shape shares; with ``layer.hints.pad``, the example is evaluated in the bucket the hint
    embeds it in (``share_shapes=False`` evaluates it as it is).
    """
    if (share_shapes and layer.hints.elementwise and len(arrays) == 1 and np.size(arrays[0]) <= ELEMENTWISE_LENGTH
            and not any(isinstance(v, np.ndarray) for v in hyper.values())):
        return _evaluate_as_vector(layer, arrays[0], hyper, douts, douts2, tangents, with_jacobian)
    if share_shapes and layer.hints.pad is not None:
        return _evaluate_padded(layer, arrays, hyper, douts, douts2, tangents, with_jacobian)
    static, traced = split_hyper(hyper)
    several = len(douts) > 1
    shared = layer.magnitude is not None and shares_programs(layer)  # else the Jacobian is the scale: one program
    # a scalar's Jacobian is one more pullback: it rides in the shared program (one compile, not two)
    inline = shared and sum(np.size(d) for d in douts) == 1
    light = _compiled(layer.jax_forward, layer.magnitude, static, inline, several)
    function = light if shared else _compiled(layer.jax_forward, layer.magnitude, static, bool(with_jacobian), several)

    def run(program, cotangents):
        return fetched(program(tuple(arrays), traced, tuple(cotangents), tuple(tangents)))

    raw = run(function, douts)
    if shared and with_jacobian and not inline:
        raw["jacobian"] = fetched(_jacobian_program(layer.jax_forward, static)(tuple(arrays), traced,
                                                                                         tuple(douts)))
    # dY2 needs its pullback and its scale, not the Jacobian again
    second = raw if douts2 is douts else run(light if shared else function, douts2)
    outs = tuple(np.asarray(o) for o in raw["outs"])
    if any(o.dtype != np.float64 for o in outs):
        raise RuntimeError(
            f"the JAX oracle computed in {outs[0].dtype}, not float64: jax_enable_x64 is off (import "
            "verification before any other use of JAX)")

    def arrays_of(key, result=raw):
        value = result.get(key)
        return None if value is None else tuple(np.asarray(v) for v in value)

    source = "magnitude" if layer.magnitude is not None else "jacobian" if "grad_scales" in raw else ""
    return OracleResult(
        outs=outs, vjp=arrays_of("vjp"), vjp2=arrays_of("vjp", second), jvp=float(raw["jvp"]),
        jacobian=arrays_of("jacobian"), out_scales=arrays_of("out_scales"), grad_scales=arrays_of("grad_scales"),
        grad_scales2=arrays_of("grad_scales", second), out_underflow=arrays_of("out_underflow"),
        grad_underflow=arrays_of("grad_underflow"), scale_source=source)


OUTPUT_FIELDS = ("outs", "out_scales", "out_underflow")
"""OracleResult fields with one array per output; the others with arrays have one per input."""


def _evaluate_padded(layer, arrays, hyper, douts, douts2, tangents, with_jacobian) -> OracleResult:
    """The oracles on the example embedded in its bucket (``Hints.pad``), every result cut back.

    The padded example's cotangents and tangents are the real ones with zeros appended, so
    the padding's outputs pull nothing back and its inputs push nothing forward: the prefix of
    each result is the real example's (which the hint's check confirms: ``verification.hints``).
    """
    padded, padded_hyper = layer.hints.pad(tuple(arrays), dict(hyper))
    if len(padded) != len(arrays) or any(np.ndim(p) != np.ndim(a) or any(m < n for m, n in zip(np.shape(p), np.shape(a)))
                                         for p, a in zip(padded, arrays)):
        from .layer import LayerDefinitionError

        raise LayerDefinitionError(f"{layer.name}: the hint pad must return every array with its rank and sizes at "
                                   f"least the original's, got {[np.shape(p) for p in padded]} for "
                                   f"{[np.shape(a) for a in arrays]}")
    out_shapes = output_shapes(layer.jax_forward, tuple(np.shape(p) for p in padded), padded_hyper)

    def zeros_after(a, shape):
        return grow(np.asarray(a, np.float64), shape)

    first = tuple(zeros_after(d, s) for d, s in zip(douts, out_shapes))
    second = first if douts2 is douts else tuple(zeros_after(d, s) for d, s in zip(douts2, out_shapes))
    result = evaluate(layer, padded, padded_hyper, first, second,
                      tuple(zeros_after(t, np.shape(p)) for t, p in zip(tangents, padded)),
                      with_jacobian=with_jacobian, share_shapes=False)

    def cut(values, shapes):
        return tuple(np.asarray(v)[tuple(slice(0, n) for n in shape)] for v, shape in zip(values, shapes))

    return result._replace(**{
        field: cut(value, [np.shape(d) for d in douts] if field in OUTPUT_FIELDS else [np.shape(a) for a in arrays])
        for field, value in result._asdict().items() if isinstance(value, tuple)})


_shapes_seen: dict = {}


def output_shapes(jax_forward, shapes, hyper) -> tuple:
    """The output shapes of the forward on arrays of ``shapes`` (abstract evaluation, once each)."""
    static, traced = split_hyper(hyper)
    key = (jax_forward, shapes, static, tuple((k, np.shape(v)) for k, v in traced.items()))
    if key not in _shapes_seen:
        out = jax.eval_shape(lambda *a: jax_forward(*a, **hyper), *(jax.ShapeDtypeStruct(s, np.float64) for s in shapes))
        _shapes_seen[key] = tuple(o.shape for o in leaves(out))
    return _shapes_seen[key]


def _evaluate_as_vector(layer, x, hyper, douts, douts2, tangents, with_jacobian) -> OracleResult:
    """An elementwise layer's oracles on x flattened and zero-padded to ELEMENTWISE_LENGTH.

    The padding's own outputs, gradients and Jacobian rows are computed and dropped; none
    reaches a real element, since out[i] depends on x[i] alone (the Jacobian is diagonal),
    and the padding's cotangents and tangents are 0, so the scalar <dY, J t> is unchanged.
    """
    def vector(a):
        return grow(np.ravel(a), (ELEMENTWISE_LENGTH,))

    def shaped(a):
        return np.asarray(a)[:x.size].reshape(x.shape)

    first = tuple(map(vector, douts))
    padded = evaluate(layer, (vector(x),), hyper, first, first if douts2 is douts else tuple(map(vector, douts2)),
                      (vector(tangents[0]),), with_jacobian=with_jacobian, share_shapes=False)
    return padded._replace(**{
        field: tuple(map(shaped, value)) for field, value in padded._asdict().items()
        if isinstance(value, tuple) and value and isinstance(value[0], np.ndarray)})
