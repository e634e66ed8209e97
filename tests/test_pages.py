"""The derivation pages are reachable from the package, in a checkout and once installed."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import reference
from verification import LAYERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layers_page_is_readable_from_the_package(name):
    assert reference.derivation(name) == (ROOT / "docs" / "derivations" / f"{name}.md").read_text()


def test_an_unknown_page_is_named():
    with pytest.raises(ValueError, match=r"no derivation page for 'nope'; there are pages for affine"):
        reference.derivation("nope")


def test_the_wheel_ships_the_pages(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"reference/derivations/{name}.md" for name in LAYERS} <= names
    assert "reference/_pages.py" in names
