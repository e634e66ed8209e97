"""The README's Python snippets run as written; the pytest one against the README's own layer."""
import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _run(snippet, namespace):
    exec(compile(snippet, str(README), "exec"), namespace)
    return namespace


@pytest.fixture
def my_layers(monkeypatch):
    """The module the pytest snippet imports: the layer the "Verifying your own layer" snippet builds."""
    (defining,) = [s for s in SNIPPETS if "def scale_forward" in s]
    module = types.ModuleType("my_layers")
    module.scale_layer = _run(defining, {"__name__": "readme"})["layer"]
    monkeypatch.setitem(sys.modules, "my_layers", module)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(snippet, request):
    if "from my_layers import" not in snippet:
        _run(snippet, {"__name__": "readme"})
        return
    request.getfixturevalue("my_layers")
    tests = {name: f for name, f in _run(snippet, {"__name__": "readme"}).items() if name.startswith("test_")}
    assert tests
    for test in tests.values():
        test()


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 3
