"""A layer's input space: configurations from ranges and constraints, values per configuration.

A *configuration* is a dict of the things that fix the shapes of an example and the
hyperparameters that are not floats: ``{"N": 2, "C": 4, "H": 5, "W": 3, "KH": 2, "KW": 3,
"stride": (1, 2), "padding": (0, 1), "dilation": (1, 1), "groups": 2}``. A spec declares

* ``configs``: a hypothesis strategy of configurations, drawn with hypothesis primitives
  (``st.integers``, ``st.sampled_from``, ``st.composite`` for constraints) over the whole
  valid space, so that shrinking moves toward small, simple configurations;
* ``values(config)``: a strategy of whole examples ``(arrays, hyper)`` for one
  configuration (the arrays, float hyperparameters such as eps, labels, masks);
* ``edges``: configurations every run includes, whatever hypothesis draws (an empty
  batch, size-1 axes, a square case where a missing transpose keeps its shape, pad = 0).

Every distinct configuration costs the oracle a compile (tens of milliseconds), values
cost nothing: so a run draws a bounded number of configurations from the space, then
many values on them (``verification.runner``). ``coverage`` reports what a run explored.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from hypothesis import strategies as st


def freeze(config: dict) -> tuple:
    """A configuration as a hashable key (lists become tuples)."""
    def hashable(value):
        return tuple(hashable(v) for v in value) if isinstance(value, (list, tuple)) else value
    return tuple(sorted((key, hashable(value)) for key, value in config.items()))


class Space:
    """Configurations (``configs``), values for each (``values``) and guaranteed ``edges``."""

    def __init__(self, configs: st.SearchStrategy[dict], values: Callable[[dict], st.SearchStrategy],
                 *, edges: Sequence[dict] = ()):
        self.configs = configs
        self._values = values
        self._cache: dict[tuple, st.SearchStrategy] = {}
        self.edges = tuple(dict(e) for e in edges)

    def values(self, config: dict) -> st.SearchStrategy:
        """The strategy of examples ``(arrays, hyper)`` for one configuration (built once each:
        building strategies per draw costs hypothesis a source inspection)."""
        key = freeze(config)
        if key not in self._cache:
            self._cache[key] = self._values(dict(config))
        return self._cache[key]

    def draws(self, configs: Sequence[dict] | None = None) -> st.SearchStrategy:
        """``(config, (arrays, hyper))``: configurations from the whole space, or from the
        given list (which shrinks toward its first entry)."""
        source = self.configs if configs is None else st.sampled_from(list(configs))

        @st.composite
        def draw_example(draw):
            config = draw(source)
            return config, draw(self.values(config))

        return draw_example()

    def strategy(self) -> st.SearchStrategy:
        """Whole examples ``(arrays, hyper)`` from the whole space."""
        return self.draws().map(lambda drawn: drawn[1])


def config_of_example(arrays, hyper) -> dict:
    """The configuration of an example drawn by a plain strategy: each array's shape and
    every hyperparameter that is not a float or an array (what a compile depends on)."""
    import numpy as np

    config: dict[str, Any] = {f"shape{i}": tuple(np.shape(a)) for i, a in enumerate(arrays)}
    for key, value in hyper.items():
        if not isinstance(value, (float, np.floating, np.ndarray)):
            config[key] = value
    return config


def coverage(configs: Iterable[dict]) -> dict[str, str]:
    """What a set of configurations spans, per key: integers (and tuples of them) as a range
    ``lo-hi``, anything else as the set of values seen."""
    seen: dict[str, set] = {}
    for config in configs:
        for key, value in config.items():
            seen.setdefault(key, set()).add(value if not isinstance(value, list) else tuple(value))
    return {key: _span(values) for key, values in seen.items()}


def _span(values: set) -> str:
    numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    numbers += [x for v in values if isinstance(v, tuple) for x in v
                if isinstance(x, int) and not isinstance(x, bool)]
    others = sorted((repr(v) for v in values if not (isinstance(v, int) and not isinstance(v, bool))
                     and not (isinstance(v, tuple) and all(isinstance(x, int) for x in v))), key=str)
    parts = []
    if numbers:
        low, high = min(numbers), max(numbers)
        parts.append(str(low) if low == high else f"{low}-{high}")
    if others and len(others) <= 4:
        parts.append("{" + ", ".join(others) + "}")
    elif others:
        parts.append(f"{len(others)} values")
    return " ".join(parts)


def describe_coverage(configs: Iterable[dict]) -> str:
    """One line: ``N 0-5, stride 1-3, padding 0-3, groups 1-4``."""
    return ", ".join(f"{key} {span}" for key, span in coverage(configs).items())


def grow(array, shape, value=0.0):
    """``array`` padded at the end of each axis to ``shape`` with ``value`` (for ``Hints.pad``; an
    axis already longer is kept). Every oracle call pads its arrays: np.pad takes ten times as long."""
    import numpy as np

    array = np.asarray(array)
    target = tuple(max(n, m) for n, m in zip(array.shape, shape))
    if array.ndim == 0 or target == array.shape:
        return array
    grown = np.full(target, value, dtype=array.dtype)
    grown[tuple(slice(0, n) for n in array.shape)] = array
    return grown


def bucket(*targets):
    """A ``Hints.pad`` that grows array i to ``targets[i]`` (None in a target keeps that axis;
    a None target keeps the array), with zeros; hyperparameters unchanged."""
    def pad(arrays, hyper):
        grown = tuple(a if t is None else grow(a, tuple(n if m is None else m for n, m in zip(a.shape, t)))
                      for a, t in zip(arrays, targets))
        return grown, hyper
    return pad
