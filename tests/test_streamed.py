"""The streamed Jacobian contraction equals the full one, in bounded memory."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from verification.streamed import (StreamedTimeExceeded, chunk_rows, streamed_cost,
                                   streamed_jacobian_contraction)

ROOT = Path(__file__).resolve().parents[1]


def full_contraction(f, arrays, dout):
    """tensordot(dY, dY/da_k) with the whole Jacobian, as jax.jacobian builds it."""
    jacobians = jax.jit(jax.jacobian(f, argnums=tuple(range(len(arrays)))))(*arrays)
    return tuple(np.asarray(jnp.tensordot(dout, j, axes=dout.ndim)) for j in jacobians)


def _linear(x, w):
    return x @ w


def _nonlinear(x, w):
    return jnp.tanh(x @ w) * jax.nn.softplus(x[:, :1])


def _affine3(x, w, b):
    return jnp.einsum("nhw,hwm->nm", x, w) + b


def _scalar(x, w):
    return jnp.sum(jnp.sin(x) * w)


CASES = {  # name: (f, input shapes)
    "linear": (_linear, ((3, 4), (4, 5))),
    "nonlinear": (_nonlinear, ((4, 3), (3, 6))),
    "multiple_inputs": (_affine3, ((2, 3, 2), (3, 2, 4), (4,))),
    "scalar_output": (_scalar, ((3, 2), (3, 2))),
    "empty_batch": (_linear, ((0, 3), (3, 2))),
    "empty_contraction": (_linear, ((2, 0), (0, 3))),
}


@pytest.mark.parametrize("rows_per_chunk", [7, None], ids=["uneven_chunks", "default_chunks"])
@pytest.mark.parametrize("name", list(CASES))
def test_streamed_contraction_equals_full_jacobian_contraction(name, rows_per_chunk):
    f, shapes = CASES[name]
    rng = np.random.default_rng(len(name))
    arrays = tuple(rng.standard_normal(s) for s in shapes)
    dout = rng.standard_normal(jax.eval_shape(f, *arrays).shape)
    # 7 rows a chunk: the last chunk of 15, 24 or 8 rows is padded
    chunk_elements = 2**18 if rows_per_chunk is None else rows_per_chunk * (dout.size + sum(a.size for a in arrays))
    streamed = streamed_jacobian_contraction(f, arrays, dout, chunk_elements=chunk_elements)
    expected = full_contraction(f, arrays, dout)
    assert len(streamed) == len(arrays)
    for got, want, a in zip(streamed, expected, arrays):
        assert got.shape == a.shape and got.dtype == a.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_streamed_contraction_keeps_float32():
    x, w = (np.random.default_rng(1).standard_normal(s).astype(np.float32) for s in ((3, 4), (4, 2)))
    dout = np.ones((3, 2), np.float32)
    dx, dw = streamed_jacobian_contraction(_linear, (x, w), dout, chunk_elements=8)
    assert dx.dtype == dw.dtype == np.float32
    np.testing.assert_allclose(dx, dout @ w.T, rtol=1e-5)


def test_streamed_contraction_rejects_a_wrong_cotangent_shape():
    with pytest.raises(ValueError, match="dout has shape"):
        streamed_jacobian_contraction(_linear, (np.ones((2, 3)), np.ones((3, 4))), np.ones((4, 2)))


def test_streamed_cost_counts_rows_chunks_and_pullback_flops():
    n, d, m = 8, 16, 32
    cost = streamed_cost(_linear, (np.ones((n, d)), np.ones((d, m))), chunk_elements=1000)
    assert cost.rows == n * m and cost.row_entries == n * d + d * m
    assert cost.jacobian_entries == n * m * (n * d + d * m)
    assert cost.chunk_rows == chunk_rows(n * m, n * d + d * m, 1000) == 1000 // (n * m + n * d + d * m)
    assert cost.chunks == -(-cost.rows // cost.chunk_rows)
    assert cost.pullback_flops == 4 * n * d * m  # two products of 2 N D M flops, the forward not counted
    assert cost.seconds(1e9) == pytest.approx(cost.rows * 4 * n * d * m / 1e9)


def test_streamed_contraction_stops_when_over_its_time_budget():
    arrays = (np.ones((16, 16)), np.ones((16, 16)))
    with pytest.raises(StreamedTimeExceeded, match="over the 0 s budget") as caught:
        streamed_jacobian_contraction(_linear, arrays, np.ones((16, 16)), chunk_elements=600, time_budget=1e-9)
    assert caught.value.cost.chunks > 1 and caught.value.estimate_seconds > 0


def test_streamed_contraction_memory_stays_far_below_the_jacobian():
    """N = D = M = 80: J holds 625 MiB in float64; the process's peak RSS grows by under a fifth of that.

    Measured in a fresh process by the bench's probe, which resets the peak-RSS mark before the call.
    """
    n = 80
    run = subprocess.run([sys.executable, "-m", "benchmarks.probe", "streamed", str(n), str(n), str(n)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rel_error"] < 1e-12
    jacobian_bytes = 8 * n * n * (n * n + n * n)
    assert jacobian_bytes > 600 * 2**20
    assert result["peak_bytes"] < 128 * 2**20, f"peak RSS grew by {result['peak_bytes'] / 2**20:.0f} MiB"
