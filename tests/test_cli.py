"""`python -m verification`: table, JSON, exit status."""
import json

import pytest

from verification import LAYERS, MUTANTS, cli
from verification.seedscale import jacobian_costs, seed_scale_case


def test_verify_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = cli.main(["--layer", "linear", "--max-examples", "5", "--no-seed-scale", "--jobs", "1",
                     "--json", str(path)])
    assert code == 0
    assert "linear" in capsys.readouterr().out
    report = json.loads(path.read_text())
    assert report["passed"] is True
    checks = {(c["check"], c["dtype"]) for c in report["layers"][0]["checks"]}
    assert ("jacobian", "float32") in checks and ("vjp", "float64") in checks


def test_verify_exits_nonzero_on_a_failing_layer(monkeypatch, capsys):
    mutant = next(m for m in MUTANTS if m.layer == "linear")
    monkeypatch.setattr(cli, "LAYERS", {**LAYERS, "linear": mutant.apply(LAYERS["linear"])})
    code = cli.main(["--max-examples", "5", "--no-seed-scale", "--jobs", "1"])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "reproduce:" in out


def test_unknown_layer_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--layer", "no_such_layer"])
    assert "invalid choice" in capsys.readouterr().err


def test_seed_scale_jacobian_costs_are_the_seed_notes():
    dx, dw = jacobian_costs(64, 4096, 4096)
    assert dx["entries"] == 68_719_476_736 and dx["float32_bytes"] == 256 * 2**30
    assert dw["entries"] == 64 * 4096 * 4096 * 4096


def test_seed_scale_case_streams_the_jacobian_when_it_fits_in_time():
    report, _ = seed_scale_case(8, 256, 128)  # the full size runs in `make verify`, where it is skipped
    assert report.passed
    assert report.check("vjp", "float32").examples == 1
    jacobian = report.check("jacobian", "float32")
    assert jacobian.examples == 1 and jacobian.note.startswith("streamed")


def test_mutants_command_prints_the_kill_matrix(tmp_path, capsys):
    path = tmp_path / "mutants.json"
    code = cli.main(["mutants", "--layer", "affine", "--jobs", "1", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "affine[db_mean]" in out and "killed" in out and "accepted" in out
    summary = json.loads(path.read_text())
    assert summary["survivors"] == [] and summary["false_alarms"] == []
    assert summary["killed"] == summary["mutants"] > 0


def test_mutants_command_fails_when_a_mutant_survives(monkeypatch, capsys):
    from verification import Mutant, VARIANTS

    survivor = Mutant("linear", "actually_correct", "the right backward, planted as a bug", LAYERS["linear"].backward, bug="formula")
    monkeypatch.setattr(cli, "MUTANTS", (survivor,))
    monkeypatch.setattr(cli, "VARIANTS", tuple(v for v in VARIANTS if v.layer == "linear"))
    code = cli.main(["mutants", "--layer", "linear", "--max-examples", "5", "--jobs", "1"])
    assert code == 1
    assert "SURVIVED" in capsys.readouterr().out


def test_seeds_command_runs_each_seed(capsys):
    code = cli.main(["seeds", "--count", "2", "--layer", "linear", "--max-examples", "5", "--jobs", "1"])
    assert code == 0
    assert "2 of 2 layer runs over 2 seeds passed" in capsys.readouterr().out


def test_a_mutants_failure_reproduces_with_one_command(capsys):
    from verification import check_layer

    mutant = next(m for m in MUTANTS if (m.layer, m.name) == ("linear", "sign_flip"))
    report = check_layer(mutant.apply(LAYERS["linear"]), max_examples=10, seed=3, dtypes=("float64",))
    command = report.failures[0].reproducer
    assert command == "python -m verification mutants --only 'linear[sign_flip]' --dtype float64 --seed 3 --max-examples 10"
    argv = command.split()[3:]
    assert cli.main([a.strip("'") for a in argv] + ["--jobs", "1"]) == 0  # the mutant is killed again
    assert "linear[sign_flip]" in capsys.readouterr().out
