"""The derivation pages: docs/derivations in a checkout, reference/derivations in an installed package."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def _pages():
    installed = resources.files("reference") / "derivations"  # where pyproject.toml ships them
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "docs" / "derivations"


def derivation(name: str) -> str:
    """The derivation page of layer ``name`` (``docs/derivations/<name>.md``), as Markdown text:
    a small case element by element, then the general formula and its shapes."""
    pages = _pages()
    page = pages / f"{name}.md"
    if not page.is_file():
        known = sorted(p.name[:-3] for p in pages.iterdir() if p.name.endswith(".md"))
        raise ValueError(f"no derivation page for {name!r}; there are pages for {', '.join(known)}")
    return page.read_text(encoding="utf-8")
