"""The CS231n checker: course-style files of our own (tests/cs231n/) through
`python -m verification cs231n`, a verdict per function, the JSON, and one line for every mistake.

correct/ holds finished assignments (every function passes; fast_layers.py under the names of
the course's fast layers), buggy/ the course's classic bugs
(each function's docstring names its bug and verdict, as the tables below do), stubs/
unfinished assignments (not implemented, never a crash).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from verification import cs231n
from verification.reproduce import replay

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "tests" / "cs231n"
CORRECT_EXAMPLES = 5  # every function passes: each runs its whole budget, the first edges
BUGGY_EXAMPLES = 14  # a search stops at its first failure; max pooling's = for += needs 12 (seed 0)

CORRECT = {name: "pass" for name in (
    "affine", "relu", "batchnorm", "batchnorm_alt", "layernorm", "dropout", "conv_naive", "max_pool_naive",
    "spatial_batchnorm", "spatial_groupnorm", "svm_loss", "softmax_loss", "conv_fast", "max_pool_fast", "rnn_step",
    "rnn", "word_embedding", "temporal_affine", "temporal_softmax_loss", "lstm_step", "lstm")}
BUGGY = {
    "affine": "pass",
    "relu": "contract",  # dx = dout; dx[x <= 0] = 0 zeroes the caller's dout
    "batchnorm": "contract",  # dgamma, dbeta of shape (1, D)
    "batchnorm_alt": "pass",
    "layernorm": "wrong",  # the backward's means over the batch axis
    "dropout": "wrong",  # no 1/p
    "conv_naive": "wrong",  # dx_pad[:, :, pad:-pad, pad:-pad] is empty at pad = 0
    "layers.py:max_pool_naive": "wrong",  # = instead of += where windows overlap
    "pool_argmax.py:max_pool_naive": "wrong",  # the argmax unravelled with the pool's height as its width
    "spatial_batchnorm": "wrong",  # (N, C, H, W) reshaped to (N*H*W, C) without a transpose
    "spatial_groupnorm": "wrong",  # eps outside the square root
    "svm_loss": "pass",
    "softmax_loss": "wrong",  # dx without 1/N
    "rnn_step": "inaccurate",  # tanh' = 1 - next_h^2
    "rnn": "contract",  # rnn_backward raises at T = 1
    "word_embedding": "wrong",  # dW[x] += dout drops repeated words
    "temporal_affine": "pass",
    "temporal_softmax_loss": "wrong",  # dx ignores the mask
    "lstm_step": "pass",
    "lstm": "wrong",  # dnext_c from step t + 1 never carried
}
BUGS = {  # the bug class the diagnosis names, where it is the whole story
    "relu": "in_place", "batchnorm": "shape", "dropout": "factor", "conv_naive": "partial", "softmax_loss": "factor",
    "rnn_step": "instability", "rnn": "crash", "word_embedding": "partial",
}


@pytest.fixture(scope="module")
def repro_dir(tmp_path_factory):
    """Reproducers in a temporary folder, not under reports/."""
    folder = tmp_path_factory.mktemp("repro")
    saved = os.environ.get("BACKPROP_REPRO_DIR")
    os.environ["BACKPROP_REPRO_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("BACKPROP_REPRO_DIR", None)
    else:
        os.environ["BACKPROP_REPRO_DIR"] = saved


def _check(*names, examples, **options):
    return cs231n.check_files([FILES / n for n in names], max_examples=examples, jobs=1, shrink=False, progress=None,
                              **options)


@pytest.fixture(scope="module")
def buggy(repro_dir):
    return _check("buggy/layers.py", "buggy/pool_argmax.py", "buggy/rnn_layers.py", examples=BUGGY_EXAMPLES)


def test_every_function_of_a_correct_assignment_passes():
    report = _check("correct/layers.py", "correct/fast_layers.py", "correct/rnn_layers.py", examples=CORRECT_EXAMPLES)
    assert report.verdicts() == CORRECT, cs231n.report_text(report)
    assert report.passed and report.absent == []


def test_each_classic_bug_gets_its_verdict(buggy):
    assert buggy.verdicts() == BUGGY, cs231n.report_text(buggy)
    assert not buggy.passed
    rows = {buggy.label(r): r for r in buggy.rows}
    for name, bug in BUGS.items():
        assert cs231n.presented(rows[name].headline).bug == bug, (name, rows[name].headline)


def test_a_keepdims_gradient_reaches_the_verifier_in_its_own_shape(buggy):
    failure = next(r for r in buggy.rows if r.course.name == "batchnorm").headline
    assert failure.tier == "contract" and "(1, " in failure.diagnosis and "dgamma" in failure.diagnosis


def test_the_pad_slicing_bug_is_shrunk_to_pad_0_and_named(buggy):
    row = next(r for r in buggy.rows if r.course.name == "conv_naive")
    assert row.course.course_arguments(row.headline.hyper)["conv_param"]["pad"] == 0
    assert "p:-p" in row.headline.diagnosis


def test_the_rnn_crash_is_found_at_one_step(buggy):
    failure = next(r for r in buggy.rows if r.course.name == "rnn").headline
    assert failure.shapes[0][1] == 1 and "stack" in failure.message


def test_a_wrong_forward_that_is_right_at_the_example_reads_wrong_not_spec(buggy):
    row = next(r for r in buggy.rows if r.course.name == "spatial_batchnorm")
    shown = cs231n.presented(row.headline)
    assert row.verdict == "wrong" and shown.tier == "wrong"
    if row.headline.tier == "spec":  # the verifier blames its specification where the routes disagree
        assert shown.diagnosis == cs231n.FORWARD_SUSPECT and shown.bug == "formula"


def test_a_failure_replays_through_its_cs231n_locator(buggy, repro_dir):
    failure = next(r for r in buggy.rows if r.course.name == "softmax_loss").headline
    path = failure.reproducer.split()[-1]
    assert path.startswith(str(repro_dir))
    assert replay(path, out=open(os.devnull, "w")) == 1  # reproduced


def test_stubs_are_not_implemented_and_never_crash():
    report = _check("stubs/layers.py", "stubs/rnn_layers.py", examples=5)
    verdicts = report.verdicts()
    assert verdicts.pop("relu") == "pass"  # the one finished function is checked
    assert set(verdicts.values()) == {"not implemented"}, verdicts
    reasons = {r.course.name: r.unfinished for r in report.rows}
    assert reasons["affine"] == "affine_backward returned None for db (an unfinished stub)"
    assert reasons["layernorm"] == "layernorm_forward not found in layers.py"
    assert reasons["batchnorm_alt"].startswith("batchnorm_forward returned None for out")
    assert reasons["spatial_groupnorm"] == "spatial_groupnorm_forward raises NotImplementedError"
    assert reasons["softmax_loss"] == "softmax_loss returned None (an unfinished stub)"
    assert reasons["lstm_step"].startswith("lstm_step_forward returned None for next_h, next_c")
    assert report.passed  # every implemented function passes


def test_the_command_line_prints_a_row_per_function_and_writes_the_json(tmp_path):
    target = tmp_path / "cs231n.json"
    result = subprocess.run(
        [sys.executable, "-m", "verification", "cs231n", str(FILES / "buggy/layers.py"),
         str(FILES / "stubs/rnn_layers.py"), "--only", "relu", "--only", "conv_backward_naive", "--only", "svm_loss",
         "--only", "lstm", "--max-examples", "8", "--jobs", "2", "--json", str(target)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT), "BACKPROP_REPRO_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stderr[-3000:]
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line[:1].isalpha()}
    assert "contract" in rows["relu"] and "wrong" in rows["conv_naive"] and "pad': 0" in rows["conv_naive"]
    assert " pass " in rows["svm_loss"] and "not implemented" in rows["lstm"]
    assert "one stride and one pad for both axes" in result.stdout  # the restriction, said
    assert "returns (loss, dx) in one call" in result.stdout  # the loss's adapter, said
    document = json.loads(target.read_text())
    assert {f["function"]: f["verdict"] for f in document["functions"]} == {
        "relu": "contract", "conv_naive": "wrong", "svm_loss": "pass", "lstm": "not implemented"}
    assert document["passed"] is False
    conv = next(f for f in document["functions"] if f["function"] == "conv_naive")
    assert conv["example"]["arguments"]["conv_param"] == {"stride": 1, "pad": 0} and conv["bug"] == "partial"
    assert conv["reproducer"].startswith("python -m verification replay ")


def _main(*argv):
    from verification.cli import UsageError

    with pytest.raises(UsageError) as raised:
        cs231n.main(list(argv))
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_file_that_is_not_python_is_one_line(tmp_path):
    broken = tmp_path / "layers.py"
    broken.write_text("def affine_forward(x, w, b):\n    return x +\n")
    assert "layers.py: line 2: SyntaxError" in _main(str(broken))


def test_a_file_whose_import_raises_is_one_line(tmp_path):
    failing = tmp_path / "layers.py"
    failing.write_text("from cs231n.im2col_cython import im2col_cython\n")
    assert "importing it raised ModuleNotFoundError" in _main(str(failing))


def test_command_line_mistakes_are_one_line(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("import numpy as np\n")
    assert "no CS231n function found" in _main(str(empty))
    assert "no such file" in _main(str(tmp_path / "missing.py"))
    assert "--only conv_forward: no such course function" in _main(str(FILES / "correct/layers.py"), "--only",
                                                                   "conv_forward")
    assert "must be at least 1" in _main(str(FILES / "correct/layers.py"), "--max-examples", "0")


def test_the_dropout_mask_is_the_courses_own():
    arrays, hyper = cs231n.probe_example("dropout")
    np.random.seed(int(hyper["seed"]))
    assert np.array_equal(hyper["mask"], np.random.rand(*arrays[0].shape) < hyper["p"])
