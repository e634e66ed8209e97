"""Shared settings: the quick profile for `make test` (`make verify` is the thorough run)."""
import os

from hypothesis import settings

# Oracle tests compile JAX per shape: no per-example deadline.
settings.register_profile("quick", max_examples=20, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

# Examples per layer and dtype in the catalogue tests (make verify runs 100).
TEST_EXAMPLES = int(os.environ.get("BACKPROP_TEST_EXAMPLES", "25"))
