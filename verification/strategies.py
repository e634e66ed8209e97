"""Hypothesis building blocks shared by the specifications.

Arrays are drawn as byte strings and decoded with NumPy, four bytes per element:
hypothesis draws a float element by element at about 60 us apiece, which made drawing
the inputs 40% of a ``make verify`` run; a 64-byte chunk per 16 elements costs a fraction
of that and still shrinks, toward the simplest values (all-zero bytes decode to 0, or to
the point of the range nearest 0, and the values next to it to halves). The decoding keeps
what hypothesis's own floats are good at finding:
about one element in six is a special value (the range's ends, 0, +-1, +-1/2, or a repeat
of the previous element), the rest are spread over the range.

Values are bounded and finite, and magnitudes below ``MIN_MAGNITUDE`` become exactly 0:
products of values such as 5e-158 underflow, and underflow is not what a derivation is
about (the tolerance's ``tiny`` term covers the underflow that a layer produces itself).
Shapes and hyperparameters come from each spec's ``Space`` (``verification.space``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import strategies as st

VALUE_BOUND = 2.0
MIN_MAGNITUDE = 1e-3

NICE_STEPS = 256
"""Steps (of 2^23 or 2^24 per range) below this decode to k/2 from the range's point nearest
0: random draws land there once in 2^15, shrinking lands there always, so a shrunk value
reads as a small multiple of 1/2 (as small as the bug allows), not as 0.0039."""

SPECIAL_SELECTORS = 40
"""Of the 256 values of an element's first byte, this many pick a special value (~16%)."""


def floats(low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[float]:
    """One finite float64 in [low, high], 0 or of magnitude at least MIN_MAGNITUDE (a hyperparameter)."""
    values = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
    return values.map(lambda v: v if abs(v) >= MIN_MAGNITUDE or not low <= 0.0 <= high else 0.0)


class Values:
    """Where an array's elements lie: a union of closed ranges, each picked equally often.

    ``values(low, high)`` is one range; ``a | b`` the union (e.g. mostly moderate values,
    some large); ``signed(gap)`` the two ranges [gap, bound] and [-bound, -gap].
    """

    def __init__(self, *ranges: tuple[float, float]):
        for low, high in ranges:
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"a range must be finite with low <= high, got ({low}, {high})")
        self.ranges = tuple((float(low), float(high)) for low, high in ranges)
        self._lows, self._highs = (np.array([r[i] for r in self.ranges]) for i in (0, 1))
        # per range: the point nearest 0, the ends, +-1 and +-1/2 where inside, and NaN,
        # which stands for "a repeat of the previous element"
        self._specials = np.array([
            [anchor, low, high, *(v if low <= v <= high else anchor for v in (1.0, -1.0, 0.5, -0.5)), np.nan]
            for low, high in self.ranges for anchor in [min(max(0.0, low), high)]])

    def __eq__(self, other) -> bool:
        return isinstance(other, Values) and self.ranges == other.ranges

    def __hash__(self) -> int:
        return hash(self.ranges)

    def __or__(self, other: Values) -> Values:
        return Values(*self.ranges, *other.ranges)

    def __repr__(self) -> str:
        return " | ".join(f"[{low:g}, {high:g}]" for low, high in self.ranges)

    def decode(self, words: np.ndarray) -> np.ndarray:
        """float64 values from uint32 words: the first byte picks a range (or a special
        value), the other 24 bits a point of it, measured from the point nearest 0."""
        selector, bits = words >> 24, words & 0xFFFFFF
        ordinary = selector < 256 - SPECIAL_SELECTORS
        which = np.where(ordinary, selector * len(self.ranges) // (256 - SPECIAL_SELECTORS),
                         bits % len(self.ranges))
        low, high = self._lows[which], self._highs[which]
        anchor = np.clip(0.0, low, high)
        up, down = high - anchor, anchor - low
        both = (up > 0) & (down > 0)
        # on a two-sided range the lowest bit picks the side, else all 24 bits measure
        steps = np.where(both, bits >> 1, bits)
        fraction = steps / np.where(both, 2.0 ** 23, 2.0 ** 24)
        negative = np.where(both, bits & 1, down > 0).astype(bool)
        # the smallest few hundred steps are halves: where shrinking takes a value, it reads 0.5, 1, 1.5
        distance = np.where(steps < NICE_STEPS, np.minimum(steps / 2.0, np.where(negative, down, up)),
                            fraction * np.where(negative, down, up))
        x = np.where(negative, anchor - distance, anchor + distance)

        pick = np.where(ordinary, 0, (selector - (256 - SPECIAL_SELECTORS)) % self._specials.shape[1])
        special = self._specials[which, pick]
        x = np.where(ordinary, x, special)
        repeat = ~ordinary & np.isnan(special)
        if repeat.any():  # the previous element's value (the first element: its range's anchor)
            flat_repeat, flat_x = repeat.ravel(), x.ravel()
            source = np.maximum.accumulate(np.where(flat_repeat, -1, np.arange(flat_x.size)))
            x = np.where(source >= 0, flat_x[np.maximum(source, 0)], anchor.ravel()).reshape(x.shape)
        return np.where((np.abs(x) < MIN_MAGNITUDE) & (low <= 0.0) & (0.0 <= high), 0.0, x)


@functools.lru_cache(maxsize=None)
def values(low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> Values:
    """Elements in [low, high]."""
    return Values((low, high))


def signed(gap: float, bound: float = VALUE_BOUND) -> Values:
    """Elements with gap <= |v| <= bound, of either sign: a margin from a kink at 0 (relu, a
    hinge's margin) by construction, where filtering would reject draws and slow shrinking."""
    return Values((gap, bound), (-bound, -gap))


CHUNK_BYTES = 64
_chunk = st.binary(min_size=CHUNK_BYTES, max_size=CHUNK_BYTES)


@functools.lru_cache(maxsize=None)  # building a strategy costs hypothesis a source inspection
def _words(shape, nbytes: int = 4) -> st.SearchStrategy[np.ndarray]:
    """Unsigned big-endian words of ``nbytes`` each, one per element of ``shape``.

    The bytes come in chunks of one fixed size, whatever the array: hypothesis's mutator
    copies a draw over another one with the same label, and a copy that does not fit the
    target's size is replaced by the simplest value, all zeros. (One byte string per array
    made half of all arrays zero.) Every chunk fits every chunk's place, so a copy only
    repeats values, which is what the mutator is for.
    """
    size = math.prod(shape)
    dtype = {2: ">u2", 4: ">u4"}[nbytes]
    chunks = -(-size * nbytes // CHUNK_BYTES)

    @st.composite
    def words(draw, _size=(size, nbytes)):  # the default gives each size its own hypothesis label
        raw = b"".join(draw(_chunk) for _ in range(chunks))
        return np.frombuffer(raw[:size * nbytes], dtype=dtype).astype(np.int64).reshape(shape)

    return words()


def arrays(shape, *, low: float = -VALUE_BOUND, high: float = VALUE_BOUND,
           elements: Values | None = None) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of ``shape``, elements in [low, high] or as ``elements`` says."""
    return _arrays(tuple(shape), values(low, high) if elements is None else elements)


@functools.lru_cache(maxsize=None)
def _arrays(shape, elements: Values) -> st.SearchStrategy[np.ndarray]:
    return _words(shape).map(elements.decode)


def indices(shape, stop: int) -> st.SearchStrategy[np.ndarray]:
    """int64 arrays of ``shape`` with entries in [0, stop): labels, embedding indices."""
    return _indices(tuple(shape), stop)


@functools.lru_cache(maxsize=None)
def _indices(shape, stop: int) -> st.SearchStrategy[np.ndarray]:
    return _words(shape, 2).map(lambda words: np.asarray(words % stop))


def choices(shape, options) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of ``shape`` whose entries are taken from ``options`` (shrinking to the first)."""
    return _choices(tuple(shape), tuple(float(v) for v in options))


@functools.lru_cache(maxsize=None)
def _choices(shape, options: tuple[float, ...]) -> st.SearchStrategy[np.ndarray]:
    table = np.array(options)
    return _words(shape, 2).map(lambda words: np.asarray(table[words % len(table)]))


@st.composite
def distinct_arrays(draw, shape, step: float = 2.0 ** -7, bound: float = VALUE_BOUND):
    """Arrays whose entries are pairwise at least ``step`` apart (no ties: max pooling).

    x = step * (size * coarse + fine): coarse integers as large as ``bound`` allows, and
    fine a permutation of 0 .. size-1 (the stable order of drawn keys), which breaks every
    tie of coarse. Both shrink freely, toward 0 and toward the identity.
    """
    size = math.prod(shape)
    if size == 0:
        return np.zeros(shape)
    reach = int(bound / (step * size)) - 1
    words = draw(_words(tuple(shape))).ravel()
    zigzag = (words >> 16) % (2 * reach + 1)  # 0, 1, 2, 3, ... -> 0, -1, 1, -2, ...
    coarse = np.where(zigzag % 2, -(zigzag + 1) // 2, zigzag // 2)
    fine = np.empty(size, dtype=np.int64)
    fine[np.argsort(words & 0xFFFF, kind="stable")] = np.arange(size)
    return (step * (size * coarse + fine)).reshape(shape)


def rarely_zero(high: int) -> st.SearchStrategy[int]:
    """An int in 0 .. high that shrinks toward 0, then 1, but is 0 on few draws (hypothesis
    draws a range's lower end often): an empty batch or a 0-d array, which the edges hold
    anyway, exercises little but the shapes."""
    return st.integers(0, 3 * high).map(lambda v: -(-v // 3))


EMPTY_ONE_IN = 10
"""Where a side may be 0, it is 0 one time in this many: an empty array is an edge case to
meet on every run, not a third of all draws (as 0-5 drawn evenly would make of rank 3)."""


def draw_shape(draw, rank: int, *, low: int, high: int, max_size: int, nonzero=()) -> tuple[int, ...]:
    """A shape of ``rank`` sides in [low, high] (the axes in ``nonzero``: at least 1), drawn in
    order, each at most what the sides before it leave of ``max_size`` elements (after a side
    of 0 the array is empty whatever follows). Built, not filtered: every side shrinks toward
    1 (and toward not being 0), so a shrunk failure has the smallest shape the bug allows."""
    shape: list[int] = []
    for axis in range(rank):
        room = max_size // max(math.prod(shape), 1)
        side = draw(st.integers(max(low, 1), max(1, min(high, room))))
        empty = low == 0 and axis not in nonzero and draw(st.integers(1, EMPTY_ONE_IN)) == EMPTY_ONE_IN
        shape.append(0 if empty else side)
    return tuple(shape)


def arrays_of(*shapes, low: float = -VALUE_BOUND, high: float = VALUE_BOUND) -> st.SearchStrategy[tuple]:
    """A tuple of independent arrays, one per shape."""
    return st.tuples(*(arrays(s, low=low, high=high) for s in shapes))
