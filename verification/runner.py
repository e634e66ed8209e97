"""``check_layer``: the property-based proof of one layer, and the report it returns.

A run draws examples with hypothesis and examines each in every dtype (float64 and float32
share the example and its compiled oracle). With a ``Space`` it goes in three phases:

1. **edges**: every edge configuration of the space, one example each (and more if they fail);
2. **explore**: ``EXPLORE`` examples from the whole space, each a new configuration as far as
   hypothesis draws one (every new configuration costs a compile; the explicit Jacobian is
   compiled for the edges and the first ``JACOBIAN_CONFIGS`` explored);
3. **values**: the rest of the budget, new values on the configurations explored (free).

A plain strategy runs in one phase. Every failure is shrunk by hypothesis to a minimal
example *of the same tier* (wrong, contract, inaccurate: each raises its own exception, so
shrinking cannot trade a wrong derivative for a contract break), and the search goes on for
more severe tiers only: the report's verdict is the most severe found.
"""
from __future__ import annotations

import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis import strategies as st

from . import oracles
from .checks import CHECKS, Example, examine
from .diagnosis import SPECIFICITY, explain
from .hints import check_hints, confirm_bucket, declared
from .layer import TIERS, Layer, LayerDefinitionError
from .space import config_of_example, describe_coverage, freeze

DTYPES = ("float64", "float32")
EXPLORE = 30
"""Examples drawn from the whole space per run, in the explore phase: each usually a new
configuration, and each new configuration is a compile (tens of milliseconds)."""
EDGE_EXAMPLES = 3
"""Examples per edge configuration (2 where the budget is small)."""
MIN_CONFIGURATIONS = 25
"""Distinct configurations a run explores at least (budget allowing): the explore phase draws
more where hypothesis repeated itself."""
JACOBIAN_CONFIGS = 3
"""Explored configurations that also get the explicit Jacobian (every edge does too): its
program takes two to four times as long to compile as the one without, and the other routes
run on every configuration."""
NAMING_SAMPLE = 20
"""Examples drawn from the whole space (not checked) among which ``name_bug`` looks for large ones."""
SMALL_EXAMPLE = 64  # arrays with at most this many elements are printed in full
SEVERITY = ("pass", "inaccurate", "contract", "wrong", "spec")
"""Tiers from the least severe to the most; 'spec' (the oracles disagree) stops everything."""
REQUIRE = {"contract": ("pass",), "accuracy": ("pass", "contract"), "math": ("pass", "contract", "inaccurate")}
"""What ``check_layer(require=...)`` accepts: everything (the catalogue's standard), or the
mathematics and its accuracy with the house contract aside, or the derivative alone."""


@dataclass
class CheckSummary:
    """One check of one layer in one dtype, over the examples drawn (shrinking not counted)."""

    check: str
    dtype: str
    examples: int = 0  # examples drawn on which the check ran
    skipped: int = 0
    worst_units: float | None = None
    status: str = "pass"  # "pass", "fail" or "skip" (skipped on every example)
    tiers: set = field(default_factory=set)  # tiers of its failures
    notes: Counter = field(default_factory=Counter)  # how it ran or why it skipped, with counts

    def add(self, outcome) -> None:
        if outcome.status == "skip":
            self.skipped += 1
            self.notes[outcome.message] += 1
            return
        self.examples += 1
        if outcome.status == "pass" and outcome.message:  # how it ran (e.g. a streamed Jacobian)
            self.notes[outcome.message] += 1
        if outcome.units is not None and (self.worst_units is None or outcome.units > self.worst_units):
            self.worst_units = outcome.units
        if outcome.status == "fail":
            self.status = "fail"
            self.tiers.add(outcome.tier)

    def finish(self) -> None:
        if self.examples == 0 and self.status != "fail":
            self.status = "skip"

    @property
    def tier(self) -> str:
        return max(self.tiers, key=SEVERITY.index) if self.tiers else "pass"


@dataclass
class Failure:
    """The minimal failing example hypothesis shrank to, and everything that failed on it."""

    layer: str
    tier: str  # "wrong", "contract", "inaccurate" or "spec"
    bug: str  # the headline's bug class
    diagnosis: str  # the likely bug, in words
    dtype: str  # the headline's
    check: str
    gradient: str | None
    index: tuple | None
    expected: float | None
    actual: float | None
    units: float | None
    message: str
    hits: list[dict]  # every failing check on the example: check, dtype, gradient, units, tier, message
    shapes: tuple
    hyper: dict[str, Any]
    reproducer: str
    arrays: tuple | None = None  # the arrays themselves, when small
    douts: tuple | None = None  # the cotangent dY, when small
    cotangent_seed: int = 0

    def to_dict(self) -> dict:
        return {
            "layer": self.layer, "verdict": self.tier, "bug": self.bug, "diagnosis": self.diagnosis,
            "dtype": self.dtype, "check": self.check, "gradient": self.gradient,
            "index": None if self.index is None else list(self.index), "expected": self.expected,
            "actual": self.actual, "units": _finite_or_str(self.units), "message": self.message,
            "hits": [{**h, "units": _finite_or_str(h["units"])} for h in self.hits],
            "shapes": [list(s) for s in self.shapes], "hyper": _jsonable(self.hyper),
            "reproducer": self.reproducer, "cotangent_seed": self.cotangent_seed,
            "arrays": None if self.arrays is None else [a.tolist() for a in self.arrays],
            "douts": None if self.douts is None else [d.tolist() for d in self.douts],
        }


@dataclass
class LayerReport:
    """Every check of one layer: per check and dtype, the failures, what was explored."""

    name: str
    checks: list[CheckSummary] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    configurations: list[dict] = field(default_factory=list)  # distinct, as drawn
    require: str = "contract"

    @property
    def verdict(self) -> str:
        """'wrong', 'contract', 'inaccurate' or 'pass': the most severe tier found. A
        disagreement of the oracles themselves ('spec') reads 'wrong': nothing can be trusted."""
        worst = max((f.tier for f in self.failures), key=SEVERITY.index, default="pass")
        return "wrong" if worst == "spec" else worst

    @property
    def spec_suspect(self) -> bool:
        return any(f.tier == "spec" for f in self.failures)

    @property
    def passed(self) -> bool:
        """Nothing but pass (or what ``require`` accepts), and the oracles agreed."""
        return not self.spec_suspect and self.verdict in REQUIRE[self.require]

    @property
    def coverage(self) -> str:
        return describe_coverage(self.configurations)

    def check(self, name: str, dtype: str) -> CheckSummary:
        return next(c for c in self.checks if c.check == name and c.dtype == dtype)

    def examples(self, dtype: str) -> int:
        return max((c.examples + c.skipped for c in self.checks if c.dtype == dtype), default=0)

    def to_dict(self) -> dict:
        return {
            "layer": self.name, "verdict": self.verdict, "passed": self.passed, "require": self.require,
            "seconds": round(self.seconds, 3),
            "configurations": len(self.configurations), "coverage": self.coverage,
            "checks": [
                {"check": c.check, "dtype": c.dtype, "examples": c.examples, "skipped": c.skipped,
                 "worst_units": _finite_or_str(c.worst_units), "status": c.status, "verdict": c.tier,
                 "notes": dict(c.notes)}
                for c in self.checks
            ],
            "failures": [f.to_dict() for f in self.failures],
        }

    def __str__(self) -> str:
        from .report import layer_text

        return layer_text(self)


class _Failed(Exception):
    """Raised inside the hypothesis test so that it shrinks the failing example; one subclass
    per tier, so that hypothesis keeps the tier while it shrinks."""


TIER_FAILURES = {tier: type(f"{tier.capitalize()}Failure", (_Failed,), {}) for tier in SEVERITY[1:]}


def default_examples() -> int:
    """The hypothesis profile in force decides the examples, unless an argument does."""
    return Settings.default.max_examples


def check_layer(layer: Layer, *, max_examples: int | None = None, seed: int = 0, dtypes=DTYPES,
                require: str = "contract", jacobian_budget: int = oracles.JACOBIAN_BUDGET_BYTES,
                shrink: bool = True, settings: Settings | None = None,
                progress: Callable[[str, str, int], None] | None = None) -> LayerReport:
    """Prove ``layer``'s backward on ``max_examples`` hypothesis examples, each in every dtype.

    Returns a ``LayerReport``: per check and dtype the examples drawn and the worst error in
    tolerance units; the configurations explored; each failure shrunk to a minimal example
    of its tier, with its bug class, diagnosis and a reproducer. ``report.verdict`` is
    'wrong', 'contract', 'inaccurate' or 'pass'; ``report.passed`` accepts only 'pass' unless
    ``require`` is 'accuracy' (contract breaks aside) or 'math' (the derivative alone).
    ``max_examples``: default the hypothesis profile's (``settings`` likewise gives its
    database, derandomize and deadline). ``shrink=False`` reports failures as found.
    ``progress(layer, phase, examples_so_far)`` is called as examples run. Raises
    ``LayerDefinitionError`` (one line) for a layer that cannot be checked as defined.
    """
    if require not in REQUIRE:
        raise ValueError(f"require must be one of {', '.join(REQUIRE)}, got {require!r}")
    budget = default_examples() if max_examples is None else max_examples
    if budget < 1:
        raise ValueError(f"max_examples must be at least 1, got {max_examples}")
    run = _Run(layer, tuple(np.dtype(d).name for d in dtypes), jacobian_budget=jacobian_budget, shrink=shrink,
               settings=settings, progress=progress)
    started = time.perf_counter()
    run.prove(budget, seed)
    report = LayerReport(layer.name, require=require, failures=run.failures, configurations=list(run.configs.values()))
    for summary in run.summaries.values():
        summary.finish()
        report.checks.append(summary)
    report.seconds = time.perf_counter() - started
    return report


class _Run:
    def __init__(self, layer: Layer, dtypes, *, jacobian_budget, shrink, settings, progress):
        self.layer, self.dtypes, self.jacobian_budget = layer, dtypes, jacobian_budget
        self.shrink, self.base_settings, self.progress = shrink, settings, progress
        self.summaries = {(c, d): CheckSummary(c, d) for d in dtypes for c in CHECKS}
        self.configs: dict[tuple, dict] = {}
        self.jacobian_configs: set[tuple] = set()  # the edges and the first JACOBIAN_CONFIGS explored
        self.explored_jacobian = 0
        self.failures: list[Failure] = []
        self.threshold = "pass"
        self.hints_pending = declared(layer)
        self.buckets_checked: set = set()  # buckets whose padding the pad hint's check has confirmed
        self.drawn = 0
        self.definition_error: LayerDefinitionError | None = None
        self.examples_seen: dict[tuple, tuple] = {}  # an example of each configuration drawn, for naming bugs
        self.confirmed: dict[tuple, bool] = {}  # (configuration, hyper) -> a wrong failure repeats on moderate values

    # -- the phases --------------------------------------------------------------------

    def prove(self, budget: int, seed: int) -> None:
        space = self.layer.space
        if space is None:
            strategy = self.layer.strategy.map(lambda example: (None, example))
            self._phase("examples", strategy, budget, seed, jacobian=True)
            return
        # hypothesis's first example is its simplest (zeros, the range's low end): a bug that
        # vanishes there (gamma = 0, no overlap of equal values) needs the random ones after it
        per_edge = EDGE_EXAMPLES if budget >= 3 * EDGE_EXAMPLES * len(space.edges) else 2
        for i, edge in enumerate(space.edges[:budget // per_edge]):
            self.jacobian_configs.add(freeze(edge))
            self._phase("edges", space.draws([edge]), per_edge, seed * 7919 + i, jacobian=True)
        explore = min(EXPLORE, budget - self.drawn)
        self._phase("explore", space.draws(), explore, seed * 7919 + 1000, jacobian=True)
        for attempt in range(1, 4):  # hypothesis repeats simple configurations: top up to MIN_CONFIGURATIONS
            missing, rest = MIN_CONFIGURATIONS - len(self.configs), budget - self.drawn
            if missing <= 0 or rest <= 0:
                break
            self._phase("explore", space.draws(), min(rest, 2 * missing), seed * 7919 + 1000 + attempt, jacobian=True)
        rest = budget - self.drawn
        if rest > 0 and self.configs:
            ordered = sorted(self.configs.values(), key=_simplicity)
            self._phase("values", space.draws(ordered), rest, seed * 7919 + 2000, jacobian=False)

    def _phase(self, name: str, strategy, count: int, seed: int, *, jacobian: bool) -> None:
        """Draw ``count`` examples; after a failure below the top tier, go on for more severe ones."""
        attempt = 0
        while count > 0 and self.threshold not in ("wrong", "spec"):
            before = self.drawn
            self._search(name, strategy, count, seed + 104729 * attempt, jacobian)
            count -= self.drawn - before
            attempt += 1
            if self.drawn == before:
                break

    # -- one hypothesis search ---------------------------------------------------------

    def _search(self, phase, strategy, count, seed, jacobian) -> None:
        target: list[str] = []  # the tier this search shrinks, fixed by its first failure
        failing: list[list[Example]] = []

        def prove(drawn, cotangent_seed):
            if self.definition_error is not None:
                raise self.definition_error
            config, example = drawn
            try:
                examples = self._examine(config, example, cotangent_seed, jacobian, record=not target)
            except LayerDefinitionError as error:
                self.definition_error = error
                raise
            tier = max((e.tier for e in examples), key=SEVERITY.index)
            if SEVERITY.index(tier) > SEVERITY.index(self.threshold) and (not target or tier == target[0]):
                target[:] = [tier]
                failing.append(examples)  # hypothesis replays the shrunk example last
                raise TIER_FAILURES[tier]

        # hypothesis keys its example database by the test's name: one per layer and phase
        prove.__name__ = prove.__qualname__ = re.sub(r"\W", "_", f"check_layer_{self.layer.name}_{phase}")
        settings = self._settings(count)
        test = settings(given(drawn=strategy, cotangent_seed=st.integers(0, 2**32 - 1))(prove))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # a layer's NaN or overflow is judged by the checks
            try:
                hypothesis_seed(seed)(test)()
            except _Failed:
                pass
            except LayerDefinitionError:
                raise
        if self.definition_error is not None:
            raise self.definition_error
        if failing:
            seen = [(e.arrays, e.hyper) for e in failing[0][:1]] + list(self.examples_seen.values()) + self._sample(seed)
            self.failures.append(failure_of(failing[-1], self.layer, record=True, candidates=seen))
            self.threshold = target[0]

    def _sample(self, seed, count=NAMING_SAMPLE) -> list[tuple]:
        """Examples ``(arrays, hyper)`` from the whole space, not checked: a failure found on the
        first edges (a 0-d array) is named on larger ones."""
        drawn: list[tuple] = []
        strategy = self.layer.space.draws() if self.layer.space is not None else self.layer.strategy.map(
            lambda example: (None, example))

        def collect(pair):
            drawn.append(_unpack(self.layer, pair[1]))

        settings = Settings(database=None, deadline=None, max_examples=count, phases=(Phase.generate,),
                            verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck))
        hypothesis_seed(seed)(settings(given(strategy)(collect)))()
        return drawn

    def _settings(self, count) -> Settings:
        base = self.base_settings or Settings(database=None, deadline=None, derandomize=False)
        phases = ((Phase.reuse,) if base.database is not None else ()) + (Phase.explicit, Phase.generate) + (
            (Phase.shrink,) if self.shrink else ())
        # hypothesis's own 200 ms default deadline would fail on JAX compiles; a deadline you set is kept
        deadline = None if base.deadline == Settings.get_profile("default").deadline else base.deadline
        return Settings(base, max_examples=count, deadline=deadline, report_multiple_bugs=False, verbosity=Verbosity.quiet,
                        print_blob=False, phases=phases,
                        suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large,
                                               HealthCheck.large_base_example, HealthCheck.filter_too_much))

    def _examine(self, config, example, cotangent_seed, jacobian, *, record) -> list[Example]:
        arrays, hyper = _unpack(self.layer, example)
        if config is None:
            config = config_of_example(arrays, hyper)
        key = freeze(config)
        if record and jacobian and key not in self.jacobian_configs and self.explored_jacobian < JACOBIAN_CONFIGS:
            self.jacobian_configs.add(key)
            self.explored_jacobian += 1
        with_jacobian = key in self.jacobian_configs
        examples = reconcile([examine(self.layer, arrays, hyper, dtype=dtype, cotangent_seed=cotangent_seed,
                                      jacobian_budget=self.jacobian_budget, with_jacobian=with_jacobian)
                              for dtype in self.dtypes])
        if self.hints_pending:
            self.hints_pending -= check_hints(examples[0].trial, self.hints_pending, self.buckets_checked)
        if any(e.tier != "pass" for e in examples):
            confirm_bucket(examples[0].trial, self.buckets_checked)
        if any(e.tier == "wrong" for e in examples):
            probe_key = (key, _hyper_key(hyper))  # shrinking revisits configurations: probe each once
            if probe_key not in self.confirmed:
                self.confirmed[probe_key] = confirm_wrong(self.layer, examples, len(self.confirmed))
            if not self.confirmed[probe_key]:
                downgrade(examples)
        if record:
            self.drawn += 1
            self.configs.setdefault(key, config)
            self.examples_seen.setdefault(key, (arrays, hyper))
            for e in examples:
                for outcome in e.outcomes:
                    self.summaries.setdefault((outcome.check, e.dtype), CheckSummary(outcome.check, e.dtype)).add(
                        outcome)
            if self.progress is not None:
                self.progress(self.layer.name, "examples", self.drawn)
        return examples


def _unpack(layer: Layer, example):
    """(arrays, hyper) from a strategy's draw, or a one-line error naming what it drew instead."""
    if not (isinstance(example, (tuple, list)) and len(example) == 2 and isinstance(example[1], dict)
            and isinstance(example[0], (tuple, list))):
        raise LayerDefinitionError(
            f"{layer.name}: its inputs strategy must draw (arrays, hyper), a tuple of arrays and a dict of "
            f"hyperparameters; it drew {_kind(example)}")
    arrays = tuple(example[0])
    if not all(isinstance(a, np.ndarray) for a in arrays):
        raise LayerDefinitionError(f"{layer.name}: its inputs strategy must draw NumPy arrays; it drew "
                                   f"{', '.join(type(a).__name__ for a in arrays)}")
    return arrays, example[1]


def _kind(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def _hyper_key(hyper: dict) -> tuple:
    return tuple(sorted((k, v.tobytes() + str(v.shape).encode() if isinstance(v, np.ndarray) else repr(v))
                        for k, v in hyper.items()))


def _simplicity(config: dict):
    """Smaller configurations first: the values phase shrinks toward the first."""
    def total(value):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return 0
        if isinstance(value, (tuple, list)):
            return sum(total(v) for v in value)
        return abs(value) if isinstance(value, (int, np.integer)) else 0
    return sum(total(v) for v in config.values()), repr(sorted(config.items(), key=lambda kv: kv[0]))


NUMERIC = ("forward", "vjp", "jacobian", "jvp", "fd", "linearity")
PRECISION_RATIO = 2.0 ** 10
"""A float32 error this many times the float64 error on the same example scales with the
precision (eps differs by 2^29): rounding, not a wrong formula."""


def reconcile(examples: list[Example]) -> list[Example]:
    """Judge a numeric failure by the same example in the other dtype: a formula right in
    float64 but off in float32, or off in both by amounts in the ratio of their precisions,
    is right and loses digits (inaccurate), whatever its error pattern said."""
    by_dtype = {e.dtype: e for e in examples}
    wide, narrow = by_dtype.get("float64"), by_dtype.get("float32")
    if wide is None or narrow is None:
        return examples
    for check in NUMERIC:
        w = next((o for o in wide.outcomes if o.check == check), None)
        n = next((o for o in narrow.outcomes if o.check == check), None)
        if w is not None and w.bug == "precision" and n is not None and n.status == "fail" and _scales_with_precision(w, n):
            w.bug, w.diagnosis = "instability", (  # float32 inside would err as much in both runs
                f"off by float32-sized errors in float64 and far more in float32 (errors {_error(w):.3g} and "
                f"{_error(n):.3g}): not float32 arithmetic inside, but a formula that loses digits in either dtype")
            continue
        if n is None or n.status != "fail" or n.tier != "wrong" or w is None or w.status == "skip":
            continue
        if w.status == "pass":
            n.bug, n.diagnosis = "instability", (
                f"right in float64 on the same example, off in float32 ({n.diagnosis}): the formula is right and "
                f"loses digits in float32 (saturation, cancellation, underflow or overflow)")
        elif w.tier in ("wrong", "inaccurate") and _scales_with_precision(w, n):
            for o in (w, n):
                o.bug, o.diagnosis = "instability", (
                    f"off in float64 and far more in float32 on the same example (errors {_error(w):.3g} and "
                    f"{_error(n):.3g}): rounding, amplified where the formula is unstable; the formula is right")
    return examples


MODERATE_PROBES = 2
"""Examples of moderate values (standard normal) on which a wrong verdict is confirmed."""


def confirm_wrong(layer: Layer, examples: list[Example], seed: int) -> bool:
    """A derivative that is wrong is wrong at ordinary values too: True where the same
    configuration with moderate inputs (standard normal, hyperparameters kept) fails as wrong
    in some dtype. Where it passes, the failure is the arithmetic of an extreme regime
    (saturation, overflow), not the formula (``downgrade``)."""
    rng = np.random.default_rng(seed)
    template = examples[0]
    for _ in range(MODERATE_PROBES):
        arrays = tuple(rng.standard_normal(np.shape(a)) for a in template.arrays)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            probe = reconcile([examine(layer, arrays, template.hyper, dtype=e.dtype, cotangent_seed=seed)
                               for e in examples])
        if any(e.tier == "wrong" for e in probe):
            return True
    return False


def downgrade(examples: list[Example]) -> None:
    """A 'wrong' failure that moderate values of its configuration do not repeat: inaccurate."""
    largest = max((float(np.max(np.abs(a), initial=0.0)) for a in examples[0].arrays), default=0.0)
    for e in examples:
        for o in e.failed:
            if o.tier == "wrong":
                o.bug, o.diagnosis = "instability", (
                    f"right on moderate values of the same configuration, off on these (inputs up to {largest:.3g}; "
                    f"{o.diagnosis}): the formula is right and its arithmetic fails in this regime")


def _error(outcome) -> float:
    if outcome.expected is None or outcome.actual is None:
        return float("nan")
    return abs(outcome.actual - outcome.expected)


def _scales_with_precision(wide, narrow) -> bool:
    w, n = _error(wide), _error(narrow)
    return np.isfinite(w) and w > 0 and (not np.isfinite(n) or n >= PRECISION_RATIO * w)


def failure_of(examples: list[Example], layer: Layer, *, record: bool = False, reproducer: str | None = None,
               candidates: list[tuple] = ()) -> Failure:
    """The Failure of one failing example (in every dtype it ran): its headline and every hit.
    ``record``: write the example to a reproducer file (``verification.reproduce``).
    ``candidates``: examples ``(arrays, hyper)`` of the run, on the largest of which the bug is
    named (``name_bug``): a shrunk example, or a 0-d edge, is too small to tell a constant
    factor or a few wrong entries from a wrong formula."""
    from . import reproduce
    from .locate import locate

    tier = max((e.tier for e in examples), key=SEVERITY.index)
    head_example = next(e for e in examples if e.tier == tier)
    head = head_example.headline
    bug, diagnosis = name_bug(layer, examples, tier, candidates)
    if reproducer is None:
        locator = locate(layer)
        path = reproduce.save(head_example, head, locator=locator, with_jacobian=True) if record else None
        reproducer = reproduce.command(path, locator) if path is not None else ""
    hits = [{"check": o.check, "dtype": e.dtype, "gradient": o.gradient, "units": o.units, "tier": o.tier,
             "bug": o.bug, "message": o.message} for e in examples for o in e.failed]
    small = sum(a.size for a in head_example.arrays) <= SMALL_EXAMPLE
    trial = head_example.trial
    douts = trial.draws.douts if trial is not None and trial.draws is not None else None
    return Failure(
        layer=layer.name, tier=tier, bug=bug, diagnosis=diagnosis, dtype=head_example.dtype,
        check=head.check, gradient=head.gradient, index=head.index, expected=head.expected, actual=head.actual,
        units=head.units, message=head.message, hits=hits, shapes=head_example.shapes, hyper=head_example.hyper,
        reproducer=reproducer, arrays=head_example.arrays if small else None,
        douts=douts if small and douts is not None and sum(d.size for d in douts) <= SMALL_EXAMPLE else None,
        cotangent_seed=head_example.cotangent_seed)


PROBES = 3
"""Examples of fresh generic values on which ``name_bug`` names a failure's bug."""
NAMING_CANDIDATES = 3
"""The largest examples of a run that ``name_bug`` tries, until one fails at the tier."""


def name_bug(layer: Layer, examples: list[Example], tier: str, candidates=()) -> tuple[str, str]:
    """(bug class, sentence) for a failure of ``tier``, named on fresh generic values (seeded
    standard normal; hyperparameters, labels and masks kept) of the largest examples the run
    drew: ``PROBES`` of each of the ``NAMING_CANDIDATES`` largest until they fail at the
    tier. The probes must agree (a constant factor must be the same constant): where they do
    not, the bug is a wrong formula. Where no probe fails at the tier (a bug that needs
    special values), the failing example's own diagnosis. Each is looked at again by
    ``diagnosis.explain`` (``_explained``): the oracle of a transformed example may be it."""
    own_example = next(e for e in examples if e.tier == tier)
    if tier == "spec":
        return own_example.headline.bug, own_example.headline.diagnosis
    rng = np.random.default_rng(0)
    by_size = sorted(candidates, key=lambda c: -sum(np.size(a) for a in c[0]))
    for arrays, hyper in by_size[:NAMING_CANDIDATES]:
        named, known = [], None
        for _ in range(PROBES):
            fresh = tuple(rng.standard_normal(np.shape(a)) * max(1.0, float(np.max(np.abs(a), initial=0.0)))
                          for a in arrays)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                probe = reconcile([examine(layer, fresh, hyper, dtype=e.dtype, cotangent_seed=int(rng.integers(2**32)))
                                   for e in examples])
            if max((e.tier for e in probe), key=SEVERITY.index) == tier:
                failing = next(e for e in probe if e.tier == tier)
                bug, text, known = _explained(failing, known, first=not named)
                named.append((bug, text))
        if named:
            shapes = ", ".join(str(np.shape(a)) for a in arrays)
            return _agreed(named, f" (named on fresh values of an example of shapes {shapes})")
    return _explained(own_example, None, first=True)[:2]


def _explained(example: Example, known, *, first: bool):
    """The headline's (bug, sentence) of a failing example, looked at again by
    ``diagnosis.explain``: on the first probe with every transform, on the others with the
    one that explained the first (a probe the first's transform does not explain keeps its own
    diagnosis, and the probes then disagree). Returns (bug, sentence, transform)."""
    head = example.headline
    if not first and known is None:
        return head.bug, head.diagnosis, None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        found = explain(example.trial, head, known)
    return found if found is not None else (head.bug, head.diagnosis, None)


def _agreed(named, where: str) -> tuple[str, str]:
    """The bug the probes agree on; a constant factor must be one constant (the same words)."""
    bugs = {bug for bug, _ in named}
    texts = {text for bug, text in named if bug == "factor"}
    if len(bugs) == 1 and len(texts) <= 1:
        return named[0][0], named[0][1] + where
    return "formula", "wrong values in no simpler pattern: fresh values of the same example name " + \
        " / ".join(sorted(bugs)) + where


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _finite_or_str(value):
    if value is None or np.isfinite(value):
        return value
    return str(value)


__all__ = ["CheckSummary", "DTYPES", "Failure", "LayerReport", "REQUIRE", "TIERS", "check_layer"]
