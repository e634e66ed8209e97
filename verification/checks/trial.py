"""One example in one dtype: the layer run once, everything random about the example, and the
oracle on demand. Every check reads a ``Trial``.

The layer runs in ``dtype`` on the arrays rounded to it; the oracles run in float64 on those
same rounded values. From the cotangent seed come dY (standard normal: never ones, so no error
hides in a symmetric sum), a second cotangent dY2 and a random tangent t_k per input.
"""
from __future__ import annotations

import copy
import functools
import traceback

import numpy as np

from .. import oracles, tolerance
from ..layer import Layer, LayerDefinitionError
from ..oracles import leaves
from .registry import Outcome, check

GRID_BITS = {"float64": 40, "float32": 23}
"""Significant bits of each input kept relative to its largest entry: the example point is
rounded onto the grid 2^(e - bits), |x| < 2^e, so that it is exact in the run's dtype and,
with tangents on a grid 2^13 times coarser, every x +- h t of the finite-difference route
(h = FD_STEP, FD_STEP/2, FD_STEP/4, FD_LINEAR_STEP and its halves) is exact in float64. The
differences are then centred exactly on x: no input rounding shifts the point they differentiate at."""

JACOBIAN_SECONDS = 20.0
"""Time allowed for the streamed Jacobian contraction, used when the full Jacobian is over
the memory budget; its first chunk measures whether the whole would fit."""


def on_grid(a: np.ndarray, dtype) -> tuple[np.ndarray, float]:
    """``a`` rounded onto its dyadic grid (see GRID_BITS), in ``dtype``, and the grid's spacing."""
    top = float(np.max(np.abs(a))) if a.size else 0.0
    exponent = int(np.floor(np.log2(top))) + 1 if top > 0 else 0
    spacing = 2.0 ** (exponent - GRID_BITS[np.dtype(dtype).name])
    return np.asarray(np.round(np.asarray(a, np.float64) / spacing) * spacing, dtype=dtype), spacing


def one_in(every: int, seed: int) -> bool:
    """Whether an example runs a check kept to one example in ``every``: decided by its cotangent
    seed, so that a replay runs it again, mixed first. Hypothesis draws small seeds, 0 above
    all, far more often than others (0 was a third to a half of a run's examples): by
    ``seed % every`` most examples ran it."""
    return ((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64 >> 32) % every == 0


class Draws:
    """Everything random about one example, from its seed."""

    def __init__(self, seed: int, out_shapes, inputs, dtype, spacings):
        rng = np.random.default_rng(seed)
        self.douts = tuple(np.asarray(rng.standard_normal(s), dtype=dtype) for s in out_shapes)
        self.douts2 = tuple(np.asarray(rng.standard_normal(s), dtype=dtype) for s in out_shapes)
        tangent_grids = [2.0 ** 13 * q for q in spacings]  # h/2 * t is a multiple of the input's spacing
        self.tangents = tuple(np.asarray(np.round(rng.standard_normal(a.shape) / g) * g)
                              for a, g in zip(inputs, tangent_grids))
        self.coefficients = tuple(rng.uniform(0.5, 2.0) * rng.choice((-1.0, 1.0)) for _ in range(2))
        first = inputs[0] if inputs else None
        self.row = int(rng.integers(first.shape[0])) if first is not None and first.ndim and first.shape[0] else 0
        self.row_values = tuple(rng.standard_normal(s[1:]) if len(s) else None for s in out_shapes)


def structured(parts: tuple, several: bool):
    """Outputs or cotangents as the layer sees them: one array, or a tuple of arrays."""
    return tuple(parts) if several else parts[0]


class Trial:
    """One example of ``layer`` in ``dtype``, run once. ``runs`` is the outcome of running it:
    when it failed, ``grads`` is None and no other check can run."""

    def __init__(self, layer: Layer, arrays, hyper, *, dtype="float64", cotangent_seed: int = 0,
                 jacobian_budget: int = oracles.JACOBIAN_BUDGET_BYTES, jacobian_seconds: float = JACOBIAN_SECONDS,
                 with_jacobian: bool = True):
        self.layer, self.dtype = layer, np.dtype(dtype)
        self.cotangent_seed = cotangent_seed
        self.jacobian_budget, self.jacobian_seconds = jacobian_budget, jacobian_seconds
        self.with_jacobian = with_jacobian
        gridded = [on_grid(np.array(a, dtype=self.dtype), self.dtype) for a in arrays]  # fresh copies, rounded
        self.inputs = tuple(a for a, _ in gridded)
        self.spacings = [q for _, q in gridded]
        self.pristine = tuple(a.copy() for a in self.inputs)
        self.arrays64 = tuple(a.astype(np.float64) for a in self.pristine)
        self.hyper = hyper
        self.hyper_given = copy.deepcopy(hyper)
        self.input_names = layer.input_names or tuple(f"x{i}" for i in range(len(self.inputs)))
        if len(self.input_names) != len(self.inputs):
            raise LayerDefinitionError(
                f"{layer.name}: {len(self.input_names)} input names ({', '.join(self.input_names)}) for "
                f"{len(self.inputs)} arrays: every array needs its name (Layer.input_names)")
        self.names = tuple(f"d{n}" for n in self.input_names)
        self.grads = self.cache = self.draws = self.dout = None
        self.outcomes: dict[str, Outcome] = {}  # filled by examine, in check order
        self.oracle_jacobian = False  # whether the oracle program computed the Jacobian
        self.interface_problem = ""  # a bare array for a tuple of one gradient: the math can still be checked
        self.runs = self._run()

    # -- running the layer -------------------------------------------------------------

    def _run(self) -> Outcome:
        try:
            returned = self.layer.forward(*self.inputs, **self.hyper)
        except Exception as error:  # the layer under test failed: a finding, not a crash
            return self._raised("forward", error)
        if not (isinstance(returned, (tuple, list)) and len(returned) == 2):
            return _interface(f"forward returned {_kind(returned)}, not (out, cache)")
        self.out_raw, self.cache = returned
        self.outs = tuple(np.asarray(o) for o in leaves(self.out_raw))
        self.several = isinstance(self.out_raw, (tuple, list))
        expected = len(self.layer.output_names)
        if len(self.outs) != expected:
            return _interface(f"forward returned {len(self.outs)} output(s) but the layer declares {expected} "
                              f"({', '.join(self.layer.output_names)})")
        self.output_names = self.layer.output_names if self.several else ("out",)
        self.draws = Draws(self.cotangent_seed, [o.shape for o in self.outs], self.inputs, self.dtype, self.spacings)
        self.dout = structured(tuple(d.copy() for d in self.draws.douts), self.several)
        cache_before = _cache_arrays(self.cache, copy=True)
        try:
            grads = self.layer.backward(self.dout, self.cache)
        except Exception as error:
            return self._raised("backward", error)
        count = len(self.inputs)
        if isinstance(grads, np.ndarray) and count == 1:
            self.interface_problem = (f"backward returned a bare ndarray, expected a tuple of 1 gradient "
                                      f"({self.names[0]},)")
            grads = (grads,)
        if not isinstance(grads, (tuple, list)) or len(grads) != count:
            got = f"{len(grads)} gradients" if isinstance(grads, (tuple, list)) else _kind(grads)
            return _interface(f"backward returned {got}, expected a tuple of {count} ({', '.join(self.names)})")
        self.returned = tuple(grads)  # as returned: the aliasing check looks at their memory
        self.grads = tuple(np.array(g, copy=True) if isinstance(g, np.ndarray) else g for g in grads)
        self.modified = self._modified()
        self.modified += [f"cache.{name}" for name, a in _cache_arrays(self.cache).items()
                          if name in cache_before and not _same(a, cache_before[name])
                          and f"cache.{name}" not in self.modified]
        return Outcome("runs", "pass")

    def _modified(self) -> list[str]:
        """What the forward and backward changed in place (read right after they ran)."""
        changed = [name for name, a, p in zip(self.input_names, self.inputs, self.pristine) if not _same(a, p)]
        changed += [f"hyperparameter {k!r}" for k in self.hyper_given
                    if not _same(self.hyper.get(k), self.hyper_given[k])]
        if any(not _same(d, g) for d, g in zip(leaves(self.dout), self.draws.douts)):
            changed.append("dout")
        return changed

    def backward(self, dout):
        """The layer's backward on another dout (a bare array for one input counts as a tuple of one)."""
        return as_tuple(self.layer.backward(dout, self.cache), len(self.inputs))

    def _raised(self, stage: str, error: Exception) -> Outcome:
        bug, why = classify_exception(error, self.empty)
        return Outcome("runs", "fail", message=f"{stage} raised {describe(error)}", bug=bug,
                       diagnosis=f"{stage} raises {why}")

    @property
    def empty(self) -> bool:
        """An input with no elements or a 0-d input: the edge cases a contract covers."""
        return any(a.size == 0 or a.ndim == 0 for a in self.inputs)

    # -- what the checks read ------------------------------------------------------------

    @property
    def batch(self) -> int | None:
        first = self.inputs[0] if self.inputs else None
        return first.shape[0] if first is not None and first.ndim else None

    @functools.cached_property
    def cost(self) -> oracles.JacobianCost:
        """The explicit Jacobian's size, in the bucket the oracle runs the example in (``Hints.pad``)."""
        shapes = [a.shape for a in self.inputs]
        out_shapes = [o.shape for o in self.outs]
        if self.layer.hints.pad is not None:
            try:
                padded, hyper = self.layer.hints.pad(self.arrays64, dict(self.hyper_given))
                shapes = [np.shape(a) for a in padded]
                out_shapes = list(oracles.output_shapes(self.layer.jax_forward, tuple(shapes), hyper))
            except Exception as error:
                raise LayerDefinitionError(f"{self.layer.name}: the hint pad is wrong: the padded example cannot be "
                                           f"evaluated ({type(error).__name__}: {error})") from None
        return oracles.jacobian_cost(out_shapes, shapes, self.input_names)

    @property
    def bucket(self):
        """Where the oracle runs this example: its padded shapes and static hyperparameters (None without a pad)."""
        if self.layer.hints.pad is None:
            return None
        padded, hyper = self.layer.hints.pad(self.arrays64, dict(self.hyper_given))
        return tuple(np.shape(a) for a in padded), oracles.split_hyper(hyper)[0]

    @property
    def probe_jacobian(self) -> bool:
        """The program a probe (another cotangent, point or tangent) runs: the light one where the
        configurations share programs (it exists anyway), else the one this example compiled."""
        return False if oracles.shares_programs(self.layer) else self.oracle_jacobian

    @property
    def jacobian_fits(self) -> bool:
        return self.cost.oracle_bytes() <= self.jacobian_budget

    @functools.cached_property
    def oracle(self) -> oracles.OracleResult:
        """Everything JAX says about this example (float64). The Jacobian is computed when asked
        for and within the budget, and always (within the budget) for a layer without a
        ``magnitude``, whose tolerance scale it is."""
        with_jacobian = self.jacobian_fits and (self.with_jacobian or self.layer.magnitude is None)
        self.oracle_jacobian = with_jacobian
        return self.evaluate(self.draws.douts, self.draws.douts2, self.draws.tangents, with_jacobian=with_jacobian)

    def evaluate(self, douts, douts2, tangents, *, with_jacobian=False, arrays=None,
                 share_shapes=True) -> oracles.OracleResult:
        """The oracle program on other cotangents, tangents or points (probes, hint checks)."""
        arrays = self.arrays64 if arrays is None else arrays
        first = tuple(np.asarray(d, np.float64) for d in douts)
        second = first if douts2 is douts else tuple(np.asarray(d, np.float64) for d in douts2)  # one call, not two
        try:
            return oracles.evaluate(self.layer, arrays, self.hyper_given, first, second, tangents,
                                    with_jacobian=with_jacobian, share_shapes=share_shapes)
        except Exception as error:
            if type(error).__name__ in ("TracerArrayConversionError", "ConcretizationTypeError",
                                        "TracerBoolConversionError", "TracerIntegerConversionError"):
                raise LayerDefinitionError(
                    f"{self.layer.name}: jax_forward uses NumPy or Python control flow on a traced value "
                    f"({type(error).__name__}): write it with jax.numpy and lax, and keep float and array "
                    f"hyperparameters out of if-statements") from None
            raise OracleError(error) from error

    @functools.cached_property
    def scales(self) -> tolerance.Scales:
        note = "" if self.jacobian_fits else (
            f"the layer gives no magnitude and its Jacobian ({oracles.format_bytes(self.cost.oracle_bytes())}) is over "
            f"the {oracles.format_bytes(self.jacobian_budget)} budget")
        return tolerance.scales(self.oracle, note)


class OracleError(RuntimeError):
    """The JAX specification raised on an example: the specification or the harness is suspect."""

    def __init__(self, error: Exception):
        super().__init__(describe(error))


SHAPE_ERRORS = ("mismatch in its core dimension", "could not be broadcast", "shapes", "aligned",
                "cannot reshape", "operands could not")


def classify_exception(error: Exception, empty: bool) -> tuple[str, str]:
    """A raise on a valid input: a contract break ("crash") where the example is an edge case
    (an empty or 0-d array) or the error is not about shapes; on an ordinary example, a NumPy
    shape mismatch means the formula's shapes do not fit, i.e. a wrong derivative."""
    text = str(error)
    if empty or not isinstance(error, ValueError) or not any(s in text for s in SHAPE_ERRORS):
        return "crash", ("on an empty or 0-d input" if empty else "on a valid input")
    if "core dimension" in text or "aligned" in text:
        return "transpose", "a shape mismatch in a matrix product: a missing or extra transpose?"
    if "broadcast" in text:
        return "wrong_axis", "a broadcasting mismatch: reduced or expanded along the wrong axis?"
    return "formula", "a shape mismatch: the formula's shapes do not fit"


def as_tuple(grads, count: int):
    """A bare array for a layer of one input counts as a tuple of one (the ``shapes`` check
    reports it; every other check judges its values)."""
    return (grads,) if isinstance(grads, np.ndarray) and count == 1 else grads


def _cache_arrays(cache, copy=False) -> dict:
    """The arrays a cache holds, by field name (a NamedTuple) or position."""
    fields = cache._asdict().items() if hasattr(cache, "_asdict") else enumerate(
        cache if isinstance(cache, (tuple, list)) else (cache,))
    return {str(k): (v.copy() if copy else v) for k, v in fields if isinstance(v, np.ndarray)}


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    return type(a) is type(b) and a == b


def _interface(message: str) -> Outcome:
    return Outcome("runs", "fail", message=message, bug="interface", diagnosis=message)


def _kind(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, np.ndarray):
        return f"a bare ndarray of shape {value.shape}"
    return f"a {type(value).__name__}"


def describe(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" at {frame.filename}:{frame.lineno}" if frame else ""
    return f"{type(error).__name__}: {error}{where}"


@check("runs", "trial")
def runs(trial: Trial) -> Outcome:
    """The forward and backward return (out, cache) and one gradient per input; a raise is a failure carrying its example."""
    return trial.runs
