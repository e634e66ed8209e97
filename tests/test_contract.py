"""The reference contract, generically over the catalogue: every layer gets every test.

Each spec declares its bad inputs and the message they must raise (``Layer.errors``); the
rest is the same for every layer: a wrong dout is refused naming dout, float16 and long
double are refused, each layer has its derivation page and its line in the README.
"""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from verification import LAYERS
from verification.oracles import leaves

ROOT = Path(__file__).resolve().parents[1]
CASES = [(name, case) for name in sorted(LAYERS) for case in LAYERS[name].errors]


def test_every_layer_declares_its_error_inputs():
    missing = sorted(name for name, layer in LAYERS.items() if not layer.errors)
    assert not missing, f"layers without error inputs: {missing}"


@pytest.mark.parametrize("name, case", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_forward_refuses_a_bad_input_with_a_message_naming_it(name, case):
    with pytest.raises(case.error, match=case.match):
        LAYERS[name].forward(*case.arrays, **case.hyper)


def example_of(layer):
    """A non-empty example of the layer, from its own strategy."""
    found = []

    @settings(max_examples=30, database=None, deadline=None, derandomize=True)
    @given(layer.strategy)
    def draw(example):
        if not found and all(np.size(a) for a in example[0]):
            found.append(example)

    draw()
    return found[0]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backward_refuses_a_dout_of_another_shape_or_dtype(name):
    layer = LAYERS[name]
    arrays, hyper = example_of(layer)
    out, cache = layer.forward(*arrays, **hyper)
    douts = [np.ones_like(np.asarray(o)) for o in leaves(out)]
    several = isinstance(out, tuple)

    def structured(first):
        return (first, *douts[1:]) if several else first

    with pytest.raises(ValueError, match=r"dout|dh|dc|dloss"):
        layer.backward(structured(douts[0][None]), cache)  # an extra axis
    with pytest.raises(TypeError, match=r"dout|dh|dc|dloss"):
        layer.backward(structured(douts[0].astype(np.float32)), cache)  # the forward ran in float64


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float16_and_long_double_are_refused(name, dtype):
    layer = LAYERS[name]
    arrays, hyper = example_of(layer)
    with pytest.raises(TypeError, match=r"float32 or float64 is expected"):
        layer.forward(*(a.astype(dtype) for a in arrays), **hyper)


def test_the_readme_lists_every_layer():
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"`([a-z0-9_]+)`", readme.split("<!-- layers -->")[1].split("<!-- /layers -->")[0]))
    assert listed == set(LAYERS), f"README lists {sorted(listed ^ set(LAYERS))} differently from LAYERS"


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_has_its_derivation_page(name):
    page = ROOT / "docs" / "derivations" / f"{name}.md"
    assert page.is_file(), f"no {page.relative_to(ROOT)}"
    assert len(page.read_text().split()) > 100
