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

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

VALUE_BOUND = 2.0
MIN_MAGNITUDE = 1e-3


def floats(low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[float]:
    """Finite float64 values in [low, high]: 0 or of magnitude at least MIN_MAGNITUDE."""
    values = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
    return values.map(lambda v: v if abs(v) >= MIN_MAGNITUDE or not low <= 0.0 <= high else 0.0)


def signed(gap: float, bound: float = VALUE_BOUND) -> st.SearchStrategy[float]:
    """Values with gap <= |v| <= bound, of either sign: a margin from a kink at 0 (relu, a
    hinge's margin) by construction, where filtering would reject draws and slow shrinking."""
    return st.one_of(floats(gap, bound), floats(-bound, -gap))


def arrays(shape, *, low: float = -VALUE_BOUND, high: float = VALUE_BOUND,
           elements: st.SearchStrategy[float] | None = None) -> st.SearchStrategy[np.ndarray]:
    """Dense float64 arrays of ``shape``, elements in [low, high] or drawn from ``elements``."""
    values = floats(low, high) if elements is None else elements
    return hnp.arrays(np.float64, tuple(shape), elements=values, fill=st.nothing())


def indices(shape, stop: int) -> st.SearchStrategy[np.ndarray]:
    """int64 arrays of ``shape`` with entries in [0, stop): labels, embedding indices."""
    return hnp.arrays(np.int64, tuple(shape), elements=st.integers(0, stop - 1))


@st.composite
def distinct_arrays(draw, shape, step: float = 2.0 ** -7, bound: float = VALUE_BOUND):
    """Arrays whose entries are pairwise at least ``step`` apart (no ties: max pooling).

    x = step * (size * coarse + fine): coarse free integers as large as ``bound`` allows,
    fine a permutation of 0 .. size-1, which breaks every tie of coarse. Both shrink freely
    (toward 0 and toward the identity); ``hnp.arrays(unique=True)`` instead makes hypothesis
    reject most of its shrinking attempts (about 100x slower). The default step, 2^-7, is
    exact in float32 and far wider than a finite-difference step moves an entry.
    """
    size = math.prod(shape)
    if size == 0:
        return np.zeros(shape)
    reach = int(bound / (step * size)) - 1
    coarse = draw(hnp.arrays(np.int64, tuple(shape), elements=st.integers(-reach, reach), fill=st.nothing()))
    fine = np.array(draw(st.permutations(range(size)))).reshape(shape)
    return step * (size * coarse + fine)


def arrays_of(*shapes, low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[tuple]:
    """A tuple of independent arrays, one per shape."""
    return st.tuples(*(arrays(s, low=low, high=high) for s in shapes))
