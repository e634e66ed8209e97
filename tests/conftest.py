"""Shared settings: the quick profile for `make test` (`make verify` is the thorough run)."""
import os
import shutil
import tempfile

# One thread per process, set before NumPy and JAX start their pools: this process runs the
# tests beside one background worker (BACKGROUND), a process per core, and threads of BLAS or
# XLA on top oversubscribe them (verification.cli._one_thread_each sets the same for workers).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402  (after the thread settings)
from hypothesis import settings  # noqa: E402

from verification.cli import one_xla_thread  # noqa: E402

one_xla_thread()

# Oracle tests compile JAX per shape: no per-example deadline.
settings.register_profile("quick", max_examples=20, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

# Examples per layer and dtype in the catalogue tests (make verify runs 80).
TEST_EXAMPLES = int(os.environ.get("BACKPROP_TEST_EXAMPLES", "25"))
MUTANT_EXAMPLES = 50  # a search stops at its first wrong failure, so this bounds only survivors
VARIANT_EXAMPLES = 12  # a correct variant is proven at 50 by make mutants; here its edges and some configurations


BACKGROUND = ("catalogue_reports", "mutant_reports", "variant_reports")
"""Session fixtures whose checks run in one background worker process from the end of collection,
while this process runs the other tests (a process per core); the tests that read them run last."""
_background = []  # the verification.cli.Background of this session, once started


def _plan(items) -> dict:
    """{fixture: (tasks, max_examples, shrink)} for the BACKGROUND fixtures the collected tests use
    (`pytest -k` checks only the selected layers and variants), in the order they are needed."""
    from verification import MUTANTS
    from verification.cli import by_cost

    def selected(fixture, param):
        return sorted({item.callspec.params[param] for item in items if fixture in getattr(item, "fixturenames", ())
                       and param in getattr(item, "callspec", {}).params}, key=str)

    used = [f for f in BACKGROUND if any(f in getattr(item, "fixturenames", ()) for item in items)]
    plans = {
        "catalogue_reports": ([(f"catalogue:{name}", name, 0) for name in by_cost(selected("catalogue_reports", "name"))],
                              TEST_EXAMPLES, True),
        # a layer's mutants share its compiled programs; not shrunk: here only the verdict and the
        # reproducer matter (`make mutants` shrinks)
        "mutant_reports": ([(f"mutant:{m.key}", m.key, 0) for m in sorted(MUTANTS, key=lambda m: m.layer)],
                           MUTANT_EXAMPLES, False),
        "variant_reports": ([(f"variant:{v.key}", v.key, 0) for v in selected("variant_reports", "variant")],
                            VARIANT_EXAMPLES, True),
    }
    return {fixture: plans[fixture] for fixture in used}


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: any(f in getattr(item, "fixturenames", ()) for f in BACKGROUND))  # stable


def pytest_collection_finish(session):
    plan = _plan(session.items)
    if not plan or session.config.option.collectonly:
        return
    from verification.cli import Background

    # the worker writes the mutants' reproducers here: it reads the folder when it starts
    repro = tempfile.mkdtemp(prefix="backprop-repro-")
    saved = os.environ.get("BACKPROP_REPRO_DIR")
    os.environ["BACKPROP_REPRO_DIR"] = repro
    try:
        background = Background(jobs=1)
        for tasks, examples, shrink in plan.values():
            background.submit(tasks, max_examples=examples, shrink=shrink)
    finally:
        if saved is None:
            os.environ.pop("BACKPROP_REPRO_DIR", None)
        else:
            os.environ["BACKPROP_REPRO_DIR"] = saved
    _background[:] = [(background, plan, repro)]


def pytest_sessionfinish():
    for background, _, repro in _background:
        background.close()
        shutil.rmtree(repro, ignore_errors=True)


def _reports(fixture) -> dict:
    """{name: LayerReport} of a BACKGROUND fixture, waiting for the worker where it is not done."""
    (background, plan, _), = _background
    tasks = plan[fixture][0]
    return {name: report for (_, name, _), report in zip(tasks, background.reports(tasks))}


@pytest.fixture(scope="session")
def mutant_reports():
    """Every mutant of the library checked once (its first failure), reproducers in a temporary folder."""
    return _reports("mutant_reports")


@pytest.fixture(scope="session")
def variant_reports():
    """The selected correct variants, each checked as the catalogue tests check a layer."""
    return _reports("variant_reports")


@pytest.fixture(scope="session")
def catalogue_reports():
    """The selected catalogue layers, the most expensive first (as `make verify` orders them)."""
    return _reports("catalogue_reports")


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
