"""Each check, run alone, rejects the bug it exists for (and accepts the correct layer).

These are the per-oracle meta-tests: a check that cannot fail is worthless, so every
check is shown failing on a planted bug with every other check switched off.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from verification import CHECKS, LAYERS, MUTANTS, Layer, examine
from verification.checks.contract import LAYOUTS, relayout
from verification.checks.routes import FD_LINEAR_STEP, FD_STEP
from verification.checks.trial import Draws, on_grid, one_in

X, W = np.random.default_rng(5).standard_normal((3, 4)), np.random.default_rng(6).standard_normal((4, 2))
XA, WA, BA = (np.random.default_rng(7).standard_normal(s) for s in ((2, 3, 2), (6, 4), (4,)))


def mutant(layer, name):
    return next(m for m in MUTANTS if (m.layer, m.name) == (layer, name)).apply(LAYERS[layer])


SAMPLED = next(seed for seed in range(100) if one_in(8, seed))
"""A cotangent seed of the examples that the checks kept to one in 4 or 8 run on (layouts, the spec's differences)."""


def only(check, layer, arrays, dtype="float64"):
    example = examine(layer, arrays, {}, dtype=dtype, checks=(check,), cotangent_seed=SAMPLED)
    return {o.check: o for o in example.outcomes}


@pytest.mark.parametrize("check, layer_name, bug, arrays", [
    ("vjp", "linear", "sign_flip", (X, W)),
    ("jacobian", "linear", "sign_flip", (X, W)),
    ("jvp", "linear", "mean_not_sum", (X, W)),
    ("fd", "linear", "mean_not_sum", (X, W)),
    ("linearity", "linear", "float32_inside", (X, W)),
    ("zero", "linear", "weight_decay_inside", (X, W)),
    ("per_example", "linear", "rows_leak", (X, W)),
    ("layouts", "affine", "assumes_c_order", (XA, WA, BA)),
    ("aliasing", "affine", "db_view_of_dout", (XA[:1], WA, BA)),
    ("shapes", "affine", "dx_not_reshaped", (XA, WA, BA)),
    ("unchanged", "linear", "dout_modified", (X, W)),
])
def test_check_alone_rejects_its_bug(check, layer_name, bug, arrays):
    assert only(check, LAYERS[layer_name], arrays)[check].status == "pass"
    outcome = only(check, mutant(layer_name, bug), arrays)[check]
    assert outcome.status == "fail", outcome


def test_every_check_has_a_test_of_its_own():
    here = {"runs", "forward", "routes"}  # tested below
    covered = {p[0] for p in test_check_alone_rejects_its_bug.pytestmark[0].args[1]}
    assert covered | here == set(CHECKS)


def test_forward_check_rejects_a_wrong_forward():
    def forward(x, w):
        return x @ w + 1e-9, (x, w)
    layer = Layer("shifted", forward, LAYERS["linear"].backward, LAYERS["linear"].jax_forward, LAYERS["linear"].inputs)
    assert only("forward", layer, (X, W))["forward"].status == "fail"


def test_runs_check_catches_a_raising_forward():
    def forward(x, w):
        raise ZeroDivisionError("no")
    layer = Layer("raises", forward, LAYERS["linear"].backward, LAYERS["linear"].jax_forward, LAYERS["linear"].inputs)
    outcome = only("vjp", layer, (X, W))["runs"]
    assert outcome.status == "fail" and "ZeroDivisionError" in outcome.message


@jax.custom_jvp
def _sine_with_wrong_derivative(x):
    return jnp.sin(x)


_sine_with_wrong_derivative.defjvp(lambda primals, tangents: (
    jnp.sin(primals[0]), 2 * jnp.cos(primals[0]) * tangents[0]))


def test_routes_blame_the_specification_when_the_oracles_disagree():
    """A spec whose derivative rule is wrong: vjp, jacobian and jvp agree with it, finite differences do not."""
    def forward(x):
        return np.sin(x), x

    def backward(dout, x):
        return (2 * np.cos(x) * dout,)  # agrees with the wrong spec

    layer = Layer("sine", forward, backward, _sine_with_wrong_derivative, LAYERS["linear"].inputs)
    example = examine(layer, (np.linspace(-1, 1, 6).reshape(2, 3),), {}, cotangent_seed=SAMPLED)
    failed = {o.check: o for o in example.failed}
    assert "routes" in failed and "specification" in failed["routes"].message
    assert "fd" in failed and "vjp" not in failed


def test_unknown_check_is_refused():
    with pytest.raises(ValueError, match="unknown checks"):
        examine(LAYERS["linear"], (X, W), {}, checks=("vjp", "nope"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_finite_difference_points_are_exact(dtype):
    """On the example grid, x +- h t is exact in float64 for every step the fd route uses."""
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 1e3):
        x, spacing = on_grid(rng.standard_normal((5, 7)) * scale, dtype)
        assert np.array_equal(x.astype(dtype), x)
        t = Draws(1, [(5,)], (x,), dtype, (spacing,)).tangents[0]
        x64 = x.astype(np.float64)
        for h in (FD_STEP, FD_STEP / 2, FD_LINEAR_STEP, FD_LINEAR_STEP / 2):
            plus, minus = x64 + h * t, x64 - h * t
            assert np.array_equal(plus - h * t, x64) and np.array_equal((plus + minus) / 2, x64)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(), (0, 3), (2, 3, 4)])
def test_relayout_keeps_values_shape_and_type(layout, shape):
    a = np.arange(np.prod(shape), dtype=float).reshape(shape)
    b = relayout(a, layout)
    assert type(b) is np.ndarray and b.shape == a.shape and np.array_equal(a, b)


@pytest.mark.parametrize("every", [4, 8])
def test_a_check_kept_to_one_example_in_n_runs_on_one_in_n(every):
    """By the mixed cotangent seed: hypothesis's favourite seeds (0, small ones) are no more likely picked."""
    assert abs(sum(one_in(every, seed) for seed in range(80_000)) / 80_000 - 1 / every) < 0.01
    assert sum(one_in(every, seed) for seed in range(16)) <= 16 // every + 2
