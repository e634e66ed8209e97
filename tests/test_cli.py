"""`python -m verification`: tables, JSON, exit statuses, and one clear line for every mistake."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from verification import LAYERS, MUTANTS, cli
from verification.seedscale import jacobian_costs, seed_scale_case

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, cwd=ROOT, timeout=240, **kwargs):
    return subprocess.run([sys.executable, "-m", "verification", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


def test_verify_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = cli.main(["--layer", "linear", "--max-examples", "5", "--jobs", "1", "--json", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "linear" in out and "Seed-scale" not in out  # --layer alone leaves the 4096-wide case out
    report = json.loads(path.read_text())
    assert report["passed"] is True and report["seed_scale"] is None
    layer = report["layers"][0]
    assert layer["verdict"] == "pass" and layer["configurations"] >= 1 and layer["coverage"]
    checks = {(c["check"], c["dtype"]) for c in layer["checks"]}
    assert ("jacobian", "float32") in checks and ("vjp", "float64") in checks


def test_verify_exits_1_on_a_failing_layer_and_says_how_to_replay(monkeypatch, capsys):
    mutant = next(m for m in MUTANTS if m.key == "linear[sign_flip]")
    monkeypatch.setattr(cli, "load", lambda locator, name=None: [mutant.apply(LAYERS["linear"])])
    code = cli.main(["--layer", "linear", "--max-examples", "5", "--jobs", "1"])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "WRONG" in out and "reproduce: python -m verification replay" in out


@pytest.mark.parametrize("argv, words", [
    (["--max-examples", "0"], "--max-examples: must be at least 1, got 0"),
    (["--max-examples", "-3"], "--max-examples: must be at least 1, got -3"),
    (["--jobs", "0"], "--jobs: must be at least 1, got 0"),
    (["seeds", "--count", "0"], "--count: must be at least 1, got 0"),
    (["--layer", "no_such_layer"], "no layer 'no_such_layer'; the catalogue has affine"),
    (["--dtype", "float16"], "invalid choice: 'float16' (choose from 'float64', 'float32')"),
    (["mutants", "--only", "linear[nope]"], "unknown mutants or variants: linear[nope]"),
    (["check", "nowhere.py:layer"], "nowhere.py: no such file"),
    (["replay", "missing.npz"], "missing.npz: no such file"),
])
def test_a_mistake_gets_one_line_and_exit_status_2(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_json_to_a_directory_is_refused_before_the_run(tmp_path, capsys):
    assert cli.main(["--layer", "relu", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_json_to_a_missing_folder_is_refused_and_creates_nothing(tmp_path, capsys):
    target = tmp_path / "missing" / "report.json"
    assert cli.main(["--layer", "relu", "--json", str(target)]) == 2
    assert "does not exist" in capsys.readouterr().err and not target.parent.exists()


def test_a_repeated_layer_runs_once(capsys):
    assert cli.main(["--layer", "relu", "--layer", "relu", "--max-examples", "3", "--jobs", "1"]) == 0
    assert "1 of 1 layer reports passed" in capsys.readouterr().out


def test_the_report_says_each_note_once(capsys):
    assert cli.main(["--layer", "relu", "--layer", "linear", "--max-examples", "5", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    notes = out.split("Notes:\n")[1].split("\n\n")[0].splitlines()
    assert notes and len(notes) == len(set(notes))
    assert sum("runs in float64 only" in line for line in notes) == 1


def test_without_jax_one_line_names_the_extra():
    code = ("import sys; sys.modules['jax'] = None; sys.argv = ['-m']; import verification")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == ("verification needs jax, which is not installed: "
                                     "pip install 'backprop-reference[verify]'")


def test_ctrl_c_gets_one_line_and_exit_130_and_leaves_no_worker():
    process = subprocess.Popen([sys.executable, "-m", "verification", "--jobs", "2", "--no-seed-scale"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    started = time.monotonic()
    line = process.stderr.readline()  # "Checking ..." comes once the package has imported
    assert line.startswith("Checking")
    time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))  # let the workers start
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    for _ in range(50):  # multiprocessing's resource tracker leaves once the main process is gone
        survivors = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
        if not survivors:
            break
        time.sleep(0.1)
    assert survivors == []


USER_LAYER = textwrap.dedent('''
    import jax.numpy as jnp
    import numpy as np
    from hypothesis import strategies as st
    from verification import Layer
    from verification.strategies import arrays_of

    def forward(x, w):
        return x * w, (x, w)

    def right(dout, cache):
        x, w = cache
        return dout * w, (dout * x).sum(axis=0)

    def wrong(dout, cache):
        x, w = cache
        return dout * w, (dout * x).mean(axis=0)

    @st.composite
    def inputs(draw):
        n, d = draw(st.sampled_from([(2, 3), (3, 1)]))
        return draw(arrays_of((n, d), (d,))), {}

    scale = Layer("scale", forward, right, lambda x, w: x * w[None, :], inputs())
    linear = Layer("linear", forward, wrong, lambda x, w: x * w[None, :], inputs())  # named like a catalogue layer
    both = [scale, linear]
''')


def test_check_proves_a_layer_of_your_own_from_another_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "layers.py").write_text(USER_LAYER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("check", str(tmp_path / "mine" / "layers.py") + ":scale", "--max-examples", "5", "--jobs", "1",
                 cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: 1 of 1" in result.stdout
    result = run("check", "../mine/layers.py:both", "--max-examples", "10", "--jobs", "1", cwd=elsewhere)
    assert result.returncode == 1
    assert "linear: WRONG" in result.stdout and "scale" in result.stdout
    replay = next(line.split("reproduce: ")[1] for line in result.stdout.splitlines() if "reproduce:" in line)
    assert "layers.py" not in replay  # the file is in the reproducer's .npz, not the command
    again = subprocess.run([sys.executable, *replay.split()[1:]], cwd=elsewhere, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert again.returncode == 1 and "reproduced" in again.stdout  # the user's linear, not the catalogue's


def test_seed_scale_jacobian_costs_are_the_seed_notes():
    dx, dw = jacobian_costs(64, 4096, 4096)
    assert dx["entries"] == 68_719_476_736 and dx["float32_bytes"] == 256 * 2**30
    assert dw["entries"] == 64 * 4096 * 4096 * 4096


def test_seed_scale_case_streams_the_jacobian_when_it_fits_in_time():
    report, _ = seed_scale_case(8, 256, 128)  # the full size runs in `make verify`, where it is skipped
    assert report.passed
    assert report.check("vjp", "float32").examples == 1
    jacobian = report.check("jacobian", "float32")
    assert jacobian.examples == 1 and next(iter(jacobian.notes)).startswith("streamed")


def test_mutants_command_prints_the_kill_matrix_and_the_diagnosis_accuracy(tmp_path, capsys):
    path = tmp_path / "mutants.json"
    code = cli.main(["mutants", "--layer", "affine", "--jobs", "1", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "affine[db_mean]" in out and "killed" in out and "accepted" in out and "Diagnosis accuracy" in out
    summary = json.loads(path.read_text())
    assert summary["survivors"] == [] and summary["false_alarms"] == []
    assert summary["killed"] == summary["mutants"] > 0
    assert summary["diagnosis"]["scored"] == summary["killed"]


def test_mutants_command_fails_when_a_mutant_survives(monkeypatch, capsys):
    from verification import Mutant, VARIANTS

    survivor = Mutant("linear", "actually_correct", "the right backward, planted as a bug", LAYERS["linear"].backward,
                      bug="formula")
    monkeypatch.setattr(cli, "MUTANTS", (survivor,))
    monkeypatch.setattr("verification.catalogue.MUTANTS", (survivor,))
    monkeypatch.setattr(cli, "VARIANTS", tuple(v for v in VARIANTS if v.layer == "linear"))
    code = cli.main(["mutants", "--layer", "linear", "--max-examples", "5", "--jobs", "1"])
    assert code == 1
    assert "SURVIVED" in capsys.readouterr().out


def test_seeds_command_runs_each_seed_and_counts_configurations(capsys):
    code = cli.main(["seeds", "--count", "2", "--layer", "linear", "--max-examples", "5", "--jobs", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 of 2 layer runs over 2 seeds passed" in out and "Configurations explored over all seeds" in out
