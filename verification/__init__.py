"""Proof of the NumPy reference backwards against JAX specifications of the same forwards.

    from verification import LAYERS, check_layer
    report = check_layer(LAYERS["linear"])
    assert report.passed, report

``Layer`` is the contract, ``LAYERS`` the catalogue (filled from ``verification/specs``),
``check_layer`` the property-based proof, ``examine`` one explicit example.
"""
from . import _jax  # noqa: F401  (jax_enable_x64 before anything traces)
from .catalogue import LAYERS, MUTANTS, VARIANTS
from .checks import CHECKS, examine
from .layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from .space import Space
from .runner import CheckSummary, Failure, LayerReport, check_layer

__all__ = [
    "BenchCase", "CHECKS", "ErrorCase", "Hints", "Space", "LAYERS", "MUTANTS", "VARIANTS", "CheckSummary", "Failure", "Layer", "LayerReport",
    "Mutant", "Variant", "check_layer", "examine",
]
