"""Where a layer lives, as a string another process can load it from, and loading it back.

    catalogue:NAME              a catalogue layer (``LAYERS[NAME]``)
    mutant:LAYER[NAME]          a mutant of the self-proof library (``variant:`` likewise)
    path/to/file.py:ATTR        a module-level ``Layer`` (or list of them) in a file
    package.module:ATTR         ... or in an importable module
    cs231n:FILE.py:FUNCTION     a course function, through the CS231n checker's adapter

The last two are what ``python -m verification check`` takes. A layer of your own is never
confused with a catalogue layer of the same name: the catalogue form is used only for the
catalogue's own object.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .layer import Layer


class LocatorError(ValueError):
    """A locator that does not name a loadable layer; the message is one line."""


def locate(layer: Layer) -> str | None:
    """The locator of ``layer``, or None when it lives nowhere importable (a local variable)."""
    from .catalogue import LAYERS, MUTANTS, VARIANTS

    if layer.locator is not None:
        return layer.locator
    if LAYERS.get(layer.name) is layer:
        return f"catalogue:{layer.name}"
    for kind, library in (("mutant", MUTANTS), ("variant", VARIANTS)):
        for replacement in library:
            if replacement.key == layer.name and _same_functions(replacement, layer):
                return f"{kind}:{replacement.key}"
    for module in list(sys.modules.values()):
        attr = _attribute_holding(module, layer)
        if attr is None:
            continue
        path = getattr(module, "__file__", None)
        if path:  # a file path loads from any directory; a module name only where it is importable
            return f"{Path(path).resolve()}:{attr}"
        return f"{module.__name__}:{attr}"
    return None


def _same_functions(replacement, layer) -> bool:
    return ((replacement.backward is None or replacement.backward is layer.backward)
            and (replacement.forward is None or replacement.forward is layer.forward))


def _attribute_holding(module, layer):
    try:
        items = list(vars(module).items())
    except TypeError:
        return None
    for attr, value in items:
        if value is layer or (isinstance(value, (list, tuple)) and any(v is layer for v in value)):
            return attr
    return None


def load(locator: str, name: str | None = None) -> list[Layer]:
    """The layers a locator names (one, or a module-level list); ``name`` picks one by name."""
    from .catalogue import LAYERS, MUTANTS, VARIANTS

    kind, _, rest = locator.partition(":")
    if kind == "cs231n":  # a course function adapted by the CS231n checker
        from .cs231n import load as load_course

        layers = load_course(rest)
    elif kind == "catalogue":
        if rest not in LAYERS:
            raise LocatorError(f"no catalogue layer {rest!r}; the catalogue has {', '.join(sorted(LAYERS))}")
        layers = [LAYERS[rest]]
    elif kind in ("mutant", "variant"):
        library = {r.key: r for r in (MUTANTS if kind == "mutant" else VARIANTS)}
        if rest not in library:
            raise LocatorError(f"no {kind} {rest!r} in the self-proof library")
        replacement = library[rest]
        layers = [replacement.apply(LAYERS[replacement.layer])]
    else:
        layers = _from_module(locator)
    if name is not None:
        layers = [layer for layer in layers if layer.name == name] or layers[:0]
        if not layers:
            raise LocatorError(f"{locator} holds no layer named {name!r}")
    return layers


def _from_module(locator: str) -> list[Layer]:
    source, sep, attr = locator.rpartition(":")
    if not sep or not source or not attr:
        raise LocatorError(f"{locator!r} is not FILE.py:NAME or module:NAME")
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source)
        if not path.is_file():
            raise LocatorError(f"{source}: no such file")
        module_name = f"_verification_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.resolve().parent))  # its own sibling imports
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise LocatorError(f"{source} raised {type(error).__name__} on import: {error}") from None
    else:
        try:
            module = importlib.import_module(source)
        except Exception as error:
            raise LocatorError(f"cannot import {source}: {type(error).__name__}: {error}") from None
    if not hasattr(module, attr):
        raise LocatorError(f"{source} has no attribute {attr!r}")
    value = getattr(module, attr)
    layers = list(value) if isinstance(value, (list, tuple)) else [value]
    if not layers or not all(isinstance(v, Layer) for v in layers):
        raise LocatorError(f"{source}:{attr} is not a verification.Layer (or a list of them), "
                           f"it is a {type(value).__name__}")
    return layers
