"""The catalogue, filled from the spec modules in ``verification/specs/``.

Every module there is imported; each ``Layer`` it defines at module level is registered
under its name, and each ``Mutant`` and ``Variant`` (alone or in a module-level tuple or
list) joins the self-proof library. Adding a spec module registers it: no list is edited.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import MappingProxyType

from . import specs
from .layer import Layer, Mutant, Variant


def _discover():
    layers: dict[str, Layer] = {}
    mutants: dict[tuple[str, str], Mutant] = {}
    variants: dict[tuple[str, str], Variant] = {}
    for info in sorted(pkgutil.iter_modules(specs.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{specs.__name__}.{info.name}")
        for value in vars(module).values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(item, Layer):
                    _register(layers, item.name, item, module)
                elif isinstance(item, Mutant):
                    _register(mutants, (item.layer, item.name), item, module)
                elif isinstance(item, Variant):
                    _register(variants, (item.layer, item.name), item, module)
    for replacement in (*mutants.values(), *variants.values()):
        if replacement.layer not in layers:
            raise ImportError(f"{type(replacement).__name__} {replacement.name!r} names unknown layer {replacement.layer!r}")
    return layers, tuple(mutants.values()), tuple(variants.values())


def _register(table, key, item, module):
    if key in table and table[key] is not item:
        raise ImportError(f"{key!r} is defined twice (again in {module.__name__})")
    table[key] = item


_layers, MUTANTS, VARIANTS = _discover()
LAYERS = MappingProxyType(_layers)
"""Catalogue name -> Layer, read-only."""
