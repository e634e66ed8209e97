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


def test_seed_scale_case_runs_the_vjp_and_skips_the_jacobian():
    report, _ = seed_scale_case(8, 256, 128)  # the full size runs in `make verify`
    assert report.passed
    assert report.check("vjp", "float32").examples == 1
    assert report.check("jacobian", "float32").status == "skip"
