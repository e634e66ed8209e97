"""Reproducers replay: every mutant's failure, run again in a fresh process, fails the same way,
and a layer of your own is never replaced by a catalogue layer of the same name."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from verification import LAYERS, MUTANTS
from verification.reproduce import load_example

ROOT = Path(__file__).resolve().parents[1]


def _most_severe(report):
    return max(report.failures, key=lambda f: ("inaccurate", "contract", "wrong", "spec").index(f.tier))


def test_every_mutants_reproducer_replays_in_a_fresh_process(mutant_reports):
    paths = []
    for key, report in mutant_reports.items():
        failure = _most_severe(report)
        assert failure.reproducer.startswith("python -m verification replay "), (key, failure.reproducer)
        paths.append(failure.reproducer.split()[-1])
    # one fresh process replays them all, each as its own command would
    script = textwrap.dedent("""
        import sys
        from verification.reproduce import replay
        codes = [replay(path, out=open("/dev/null", "w")) for path in sys.argv[1:]]
        print(" ".join(map(str, codes)))
    """)
    halves = [paths[::2], paths[1::2]]  # two fresh processes, one a core
    replays = [subprocess.Popen([sys.executable, "-c", script, *half], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for half in halves]
    outputs = [replay.communicate(timeout=1200) for replay in replays]
    for replay, (_, stderr) in zip(replays, outputs):
        assert replay.returncode == 0, stderr[-3000:]
    by_half = [stdout.split() for stdout, _ in outputs]
    codes = [code for pair in zip(*by_half) for code in pair] + by_half[0][len(by_half[1]):]
    failed = [key for key, code in zip(mutant_reports, codes) if code != "1"]
    assert len(codes) == len(paths) and not failed, f"did not reproduce: {failed}"


def test_a_reproducer_carries_the_exact_example(mutant_reports):
    failure = _most_severe(mutant_reports["dropout[not_divided_by_p]"])
    meta, arrays, hyper = load_example(failure.reproducer.split()[-1])
    assert meta["locator"] == "mutant:dropout[not_divided_by_p]" and meta["check"] == failure.check
    assert isinstance(hyper["mask"], np.ndarray) and isinstance(hyper["p"], float)  # an array stays an array
    assert arrays[0].shape == failure.shapes[0]


def test_an_empty_input_replays_with_its_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKPROP_REPRO_DIR", str(tmp_path))
    from verification import examine
    from verification.reproduce import command, save

    layer = next(m for m in MUTANTS if m.key == "linear[sign_flip]").apply(LAYERS["linear"])
    example = examine(layer, (np.zeros((0, 2)), np.ones((2, 2))), {})
    outcome = next(o for o in example.outcomes if o.check == "vjp")
    path = save(example, outcome, locator="mutant:linear[sign_flip]", with_jacobian=True)
    _, arrays, _ = load_example(path)
    assert arrays[0].shape == (0, 2)
    assert command(path, "mutant:linear[sign_flip]") == f"python -m verification replay {path}"


USER = textwrap.dedent('''
    import jax.numpy as jnp
    from verification import LAYERS, Layer
    from reference.linear import linear_forward

    def backward(dout, cache):  # a sign error
        return -(dout @ cache.w.T), cache.x.T @ dout

    linear = Layer("linear", linear_forward, backward, lambda x, w: jnp.einsum("nd,dm->nm", x, w),
                   LAYERS["linear"].inputs)
''')


def test_a_user_layer_named_like_a_catalogue_layer_replays_the_users_layer(tmp_path):
    (tmp_path / "mine.py").write_text(USER)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import mine
        from verification import check_layer
        report = check_layer(mine.linear, max_examples=20)
        print(report.failures[0].reproducer)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BACKPROP_REPRO_DIR": str(tmp_path / "repro")}
    made = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    command = made.stdout.strip().splitlines()[-1]
    meta, _, _ = load_example(command.split()[-1])
    assert meta["locator"].endswith("mine.py:linear")  # the user's file, not catalogue:linear
    replayed = subprocess.run([sys.executable, *command.split()[1:]], cwd=tmp_path, capture_output=True, text=True,
                              env=env)
    assert replayed.returncode == 1 and "reproduced: vjp fails" in replayed.stdout, replayed.stdout + replayed.stderr
