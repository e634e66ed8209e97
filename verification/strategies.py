"""Hypothesis building blocks shared by the specifications.

Values are bounded and finite (hypothesis's default floats include NaN, inf and
subnormals) and drawn densely, element by element, so shrinking shows simple numbers.
Magnitudes below ``MIN_MAGNITUDE`` become exactly 0: hypothesis likes values such as
5e-158, whose products underflow, and underflow is not what a derivation is about
(the tolerance's ``tiny`` term covers the underflow that a layer produces itself).
Shapes come from small menus: every new shape costs the oracle a JAX compile (0.3-1.2 s
on 2 cores), so a spec offers a handful of shapes that include the edge cases (sizes of
1, an empty batch, ...) and lets hypothesis vary the values, the menu choice and the
hyperparameters; shrinking then moves within the menu and never recompiles much.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

VALUE_BOUND = 2.0
MIN_MAGNITUDE = 1e-3


def floats(low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[float]:
    """Finite float64 values in [low, high]: 0 or of magnitude at least MIN_MAGNITUDE."""
    values = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
    return values.map(lambda v: v if abs(v) >= MIN_MAGNITUDE or not low <= 0.0 <= high else 0.0)


def arrays(shape, *, low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[np.ndarray]:
    """Dense float64 arrays of ``shape`` with elements in [low, high]."""
    return hnp.arrays(np.float64, tuple(shape), elements=floats(low, high), fill=st.nothing())


def arrays_of(*shapes, low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[tuple]:
    """A tuple of independent arrays, one per shape."""
    return st.tuples(*(arrays(s, low=low, high=high) for s in shapes))
