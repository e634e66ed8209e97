"""Layer-specific cases for reference/embedding.py: repeated indices, a 0-d index, index dtypes.

Bad input is declared on the Layer (``verification/specs/embedding.py``, ``errors=``)."""
import tracemalloc

import numpy as np
import pytest

from reference.embedding import embedding_backward, embedding_forward


def test_embedding_accumulates_every_repeated_index():
    """Every row used twice or more: dw[v] is the sum of all the rows of dout that read w[v]."""
    w = np.arange(6.0).reshape(3, 2)
    indices = np.array([[2, 0, 2], [1, 0, 1], [0, 2, 1]])
    out, cache = embedding_forward(w, indices=indices)
    np.testing.assert_array_equal(out, w[indices])
    dout = np.arange(18.0).reshape(3, 3, 2)
    (dw,) = embedding_backward(dout, cache)
    for v in range(3):
        np.testing.assert_array_equal(dw[v], dout[indices == v].sum(axis=0))


def test_embedding_gives_unused_rows_zero_gradient():
    _, cache = embedding_forward(np.ones((4, 3)), indices=np.array([1, 1]))
    (dw,) = embedding_backward(np.ones((2, 3)), cache)
    np.testing.assert_array_equal(dw, [[0, 0, 0], [2, 2, 2], [0, 0, 0], [0, 0, 0]])


def test_embedding_of_a_0d_index_is_one_row_and_a_copy():
    w = np.arange(6.0).reshape(3, 2)
    out, cache = embedding_forward(w, indices=np.array(1))
    assert out.shape == (2,) and not np.shares_memory(out, w)
    (dw,) = embedding_backward(np.array([5.0, 7.0]), cache)
    np.testing.assert_array_equal(dw, [[0, 0], [5, 7], [0, 0]])


def test_embedding_of_no_indices_gives_zero_gradient():
    out, cache = embedding_forward(np.ones((3, 2)), indices=np.zeros((0, 4), np.int32))
    (dw,) = embedding_backward(np.zeros((0, 4, 2)), cache)
    assert out.shape == (0, 4, 2) and dw.shape == (3, 2) and not dw.any()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.uint64])
def test_embedding_takes_any_integer_dtype(dtype):
    """The catalogue draws int64 indices; narrower and unsigned ones index the same rows."""
    w = np.arange(10.0).reshape(5, 2)
    out, cache = embedding_forward(w, indices=np.array([[4, 0, 4]], dtype))
    (dw,) = embedding_backward(np.ones((1, 3, 2)), cache)
    np.testing.assert_array_equal(out, w[[[4, 0, 4]]])
    np.testing.assert_array_equal(dw, [[1, 1], [0, 0], [0, 0], [0, 0], [2, 2]])


def test_embedding_backward_never_forms_a_one_hot_matrix():
    """V = 50000, 8192 indices: one-hot (8192, V) would be 1.5 GiB; the backward allocates dw alone."""
    rng = np.random.default_rng(0)
    w = np.zeros((50_000, 16), np.float32)
    indices = rng.integers(0, 50_000, (64, 128))
    dout = rng.standard_normal((64, 128, 16), dtype=np.float32)
    _, cache = embedding_forward(w, indices=indices)
    tracemalloc.start()
    (dw,) = embedding_backward(dout, cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 1.05 * dw.nbytes
