"""Proof of the NumPy reference backwards against JAX specifications of the same forwards.

    from verification import LAYERS, check_layer
    report = check_layer(LAYERS["linear"])
    assert report.passed, report

``Layer`` is the contract, ``LAYERS`` the catalogue (filled from ``verification/specs``),
``check_layer`` the property-based proof, ``examine`` one explicit example,
``verification.testing.assert_layer`` the pytest helper.
"""
import sys as _sys

try:
    import hypothesis as _hypothesis  # noqa: F401
    import jax as _jax_module  # noqa: F401
except ModuleNotFoundError as _missing:
    _message = (f"verification needs {_missing.name}, which is not installed: "
                f"pip install 'backprop-reference[verify]'")
    if _sys.argv[:1] == ["-m"]:  # python -m verification: one line, not a traceback
        print(_message, file=_sys.stderr)
        raise SystemExit(2) from None
    raise ModuleNotFoundError(_message, name=_missing.name) from None

from . import _jax  # noqa: F401,E402  (jax_enable_x64 before anything traces)
from .catalogue import LAYERS, MUTANTS, VARIANTS
from .checks import CHECKS, examine
from .layer import BUG_CLASSES, BenchCase, ErrorCase, Hints, Layer, LayerDefinitionError, Mutant, Variant
from .runner import CheckSummary, Failure, LayerReport, check_layer
from .space import Space

__all__ = [
    "BUG_CLASSES", "BenchCase", "CHECKS", "CheckSummary", "ErrorCase", "Failure", "Hints", "LAYERS", "Layer",
    "LayerDefinitionError", "LayerReport", "MUTANTS", "Mutant", "Space", "VARIANTS", "Variant", "check_layer",
    "examine",
]
