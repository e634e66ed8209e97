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


@pytest.fixture(scope="session")
def mutant_reports(tmp_path_factory):
    """Every mutant of the library checked once (its first failure, not shrunk: here only the
    verdict and the reproducer matter; `make mutants` shrinks), reproducers in a temporary folder."""
    from verification import LAYERS, MUTANTS, check_layer

    folder = tmp_path_factory.mktemp("repro")
    saved = os.environ.get("BACKPROP_REPRO_DIR")
    os.environ["BACKPROP_REPRO_DIR"] = str(folder)
    try:
        from verification.oracles import forget

        reports, last = {}, None
        for m in sorted(MUTANTS, key=lambda m: m.layer):  # a layer's mutants share its compiled programs
            if last not in (None, m.layer):
                forget()
            last = m.layer
            reports[m.key] = check_layer(m.apply(LAYERS[m.layer]), max_examples=MUTANT_EXAMPLES, seed=0, shrink=False)
        return reports
    finally:
        if saved is None:
            os.environ.pop("BACKPROP_REPRO_DIR", None)
        else:
            os.environ["BACKPROP_REPRO_DIR"] = saved


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
