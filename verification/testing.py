"""The pytest helper: prove a layer inside your own test suite.

    # test_my_layer.py
    from verification.testing import assert_layer
    from my_layers import my_layer          # a verification.Layer

    def test_my_layer():
        assert_layer(my_layer)

``assert_layer`` runs ``check_layer`` under the hypothesis profile in force (its
max_examples, derandomize, database and deadline: load one in your conftest.py with
``settings.load_profile``), unless arguments override them, and fails with the report.
"""
from __future__ import annotations

from hypothesis import settings as Settings

from .layer import Layer
from .runner import DTYPES, LayerReport, check_layer


class LayerCheckFailed(AssertionError):
    """The layer failed its checks; the message is the report (the verdict, every failure
    shrunk to a minimal example, and the command that replays it)."""

    def __init__(self, report: LayerReport):
        self.report = report
        super().__init__(f"\n{report}")


def assert_layer(layer: Layer, *, max_examples: int | None = None, seed: int = 0, dtypes=DTYPES,
                 require: str = "contract", **overrides) -> LayerReport:
    """Check ``layer``; raise ``LayerCheckFailed`` (an AssertionError) with the report unless it passes.

    ``max_examples`` and any hypothesis settings in ``overrides`` (``derandomize``,
    ``database``, ``deadline``) take precedence over the profile in force. ``require``:
    'contract' (everything, the default), 'accuracy' (contract breaks aside) or 'math'
    (the derivative alone). Returns the report when it passes.
    """
    profile = Settings(Settings.default, **overrides) if overrides else Settings.default
    report = check_layer(layer, max_examples=profile.max_examples if max_examples is None else max_examples,
                         seed=seed, dtypes=dtypes, require=require, settings=profile)
    if not report.passed:
        raise LayerCheckFailed(report)
    return report
