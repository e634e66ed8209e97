"""The pytest helper: a user's test file passes for a right layer and fails with the report
for a wrong one, with the example count of the hypothesis profile in force."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = textwrap.dedent('''
    from hypothesis import settings
    settings.register_profile("mine", max_examples=7, deadline=None)
    settings.load_profile("mine")
''')

TESTS = textwrap.dedent('''
    import dataclasses
    from verification import LAYERS, MUTANTS
    from verification.testing import assert_layer

    def test_right_layer():
        report = assert_layer(LAYERS["linear"])
        assert report.examples("float64") == 7  # the profile's max_examples

    def test_wrong_layer():
        mutant = next(m for m in MUTANTS if m.key == "linear[sign_flip]")
        assert_layer(mutant.apply(LAYERS["linear"]))

    def test_an_argument_overrides_the_profile():
        report = assert_layer(LAYERS["relu"], max_examples=3)
        assert report.examples("float64") == 3
''')


def test_a_users_pytest_file(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_mine.py").write_text(TESTS)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "BACKPROP_REPRO_DIR": str(tmp_path / "r")})
    out = result.stdout
    assert "1 failed, 2 passed" in out, out[-3000:]
    assert "LayerCheckFailed" in out and "linear[sign_flip]: WRONG" in out and "likely bug" in out
