"""Hand-derived backward passes in plain NumPy (this package never imports JAX).

Every layer follows one contract::

    out, cache = <layer>_forward(*inputs, **hyperparameters)
    grads = <layer>_backward(dout, cache)   # one gradient per input, in input order

Gradients have their input's shape and dtype; inputs are never modified.
Each family lives in its own module (``reference.linear``, ...); the names in a
module's ``__all__`` are also importable from ``reference`` itself, so adding a
family is adding a module, with nothing here to edit. ``reference.derivation(name)``
returns a layer's derivation page (docs/derivations/<name>.md), installed or not.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from ._pages import derivation

__all__: list[str] = ["derivation"]
for _module_info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module_info.name.startswith("_"):
        continue
    _module = _importlib.import_module(f"{__name__}.{_module_info.name}")
    for _name in getattr(_module, "__all__", ()):
        if _name in globals():
            raise ImportError(f"reference.{_module_info.name}.{_name} clashes with an existing name")
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
