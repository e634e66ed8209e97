"""Shared settings: the quick profile for `make test` (`make verify` is the thorough run)."""
import os

import pytest
from hypothesis import settings

# Oracle tests compile JAX per shape: no per-example deadline.
settings.register_profile("quick", max_examples=20, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

# Examples per layer and dtype in the catalogue tests (make verify runs 100).
TEST_EXAMPLES = int(os.environ.get("BACKPROP_TEST_EXAMPLES", "25"))
MUTANT_EXAMPLES = 50  # a search stops at its first wrong failure, so this bounds only survivors
VARIANT_EXAMPLES = 12  # a correct variant is proven at 50 by make mutants; here its edges and some configurations


JOBS = min(2, os.cpu_count() or 1)
"""The library and the catalogue are checked in worker processes, as `make verify` does."""


def _selected(request, fixture, param):
    """The values of ``param`` of the collected tests that use ``fixture``: `pytest -k` checks those only."""
    return sorted({item.callspec.params[param] for item in request.session.items
                   if fixture in getattr(item, "fixturenames", ()) and param in getattr(item, "callspec", {}).params
                   } if hasattr(request.session, "items") else set(), key=str)


def _in_workers(locators, *, max_examples, shrink=True):
    """Each (locator, name) checked with seed 0 in JOBS spawned processes: {name: LayerReport}."""
    from verification.cli import run_tasks

    tasks = [(locator, name, 0) for locator, name in locators]
    reports = run_tasks(tasks, max_examples=max_examples, dtypes=("float64", "float32"), jobs=JOBS, shrink=shrink)
    return {name: report for (_, name, _), report in zip(tasks, reports)}


@pytest.fixture(scope="session")
def mutant_reports(tmp_path_factory):
    """Every mutant of the library checked once (its first failure, not shrunk: here only the
    verdict and the reproducer matter; `make mutants` shrinks), reproducers in a temporary folder."""
    from verification import MUTANTS

    folder = tmp_path_factory.mktemp("repro")
    saved = os.environ.get("BACKPROP_REPRO_DIR")
    os.environ["BACKPROP_REPRO_DIR"] = str(folder)  # the workers inherit it
    try:
        ordered = sorted(MUTANTS, key=lambda m: m.layer)  # a layer's mutants share its compiled programs
        return _in_workers([(f"mutant:{m.key}", m.key) for m in ordered], max_examples=MUTANT_EXAMPLES, shrink=False)
    finally:
        if saved is None:
            os.environ.pop("BACKPROP_REPRO_DIR", None)
        else:
            os.environ["BACKPROP_REPRO_DIR"] = saved


@pytest.fixture(scope="session")
def variant_reports(request):
    """The selected correct variants, each checked as the catalogue tests check a layer."""
    keys = [v.key for v in _selected(request, "variant_reports", "variant")]
    return _in_workers([(f"variant:{key}", key) for key in keys], max_examples=VARIANT_EXAMPLES)


@pytest.fixture(scope="session")
def catalogue_reports(request):
    """The selected catalogue layers, the most expensive first (as `make verify` orders them)."""
    from verification.cli import by_cost

    names = by_cost(_selected(request, "catalogue_reports", "name"))
    return _in_workers([(f"catalogue:{name}", name) for name in names], max_examples=TEST_EXAMPLES)


RESIDENT_LIMIT = 2 * 2**30
"""Compiled oracle programs pile up over the suite (2-4 MiB per configuration): past this much
resident memory they are dropped (recompiling costs less than swapping on a 24 GiB machine)."""


@pytest.fixture(autouse=True)
def _bounded_compile_cache():
    yield
    pages = int(open("/proc/self/statm").read().split()[1])
    if pages * os.sysconf("SC_PAGE_SIZE") > RESIDENT_LIMIT:
        from verification.oracles import forget

        forget()


def assert_pad_exact(layer, drawn, *, examples):
    """On ``examples`` draws of ``drawn`` (a strategy of the space's ``(config, (arrays, hyper))``), the
    pad hint's own check finds the padded and the plain oracles equal and the example in its bucket
    (a run checks its first example, and the bucket of any failing one; an empty input is evaluated as it is)."""
    from hypothesis import given

    from verification.checks.trial import Trial
    from verification.hints import check_hints

    @settings(max_examples=examples, deadline=None, database=None)
    @given(drawn=drawn)
    def run(drawn):
        arrays, hyper = drawn[1]
        trial, buckets = Trial(layer, arrays, hyper, with_jacobian=False), set()
        check_hints(trial, {"pad"}, buckets)  # raises if padded and plain disagree
        assert buckets == ({trial.bucket} if all(a.size for a in arrays) else set())

    run()
