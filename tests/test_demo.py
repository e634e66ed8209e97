"""A fast smoke test of ``make demo``: one optimiser step of each model lowers its loss on the
batch it saw, the optimisers follow their formulas, and the demo's gradient check runs. The
full demo (minutes) is not part of ``make test``."""
import numpy as np
import pytest

from demo import data, runs
from demo.optim import SGD, Adam
from reference import models


def _lowers_loss(forward, backward, arrays, hyper, first_is_data=True):
    loss, cache = forward(*arrays, **hyper)
    grads = backward(np.ones((), loss.dtype), cache)
    params = [a.copy() for a in arrays[1:]] if first_is_data else [a.copy() for a in arrays]
    Adam(params, lr=1e-3).step(grads[1:] if first_is_data else grads)
    after, _ = forward(*((arrays[0],) if first_is_data else ()), *params, **hyper)
    assert after < loss, (float(after), float(loss))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_step_of_every_model_lowers_its_batch_loss(dtype):
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    labels = rng.integers(0, 3, 4)
    _lowers_loss(models.two_layer_net_forward, models.two_layer_net_backward,
                 (r(4, 5), r(5, 6), r(6), r(6, 3), r(3)), {"labels": labels})
    _lowers_loss(models.fc_net_forward, models.fc_net_backward,
                 (r(4, 5), r(5, 6), r(6), r(1, 6, 6), r(1, 6), r(2, 6), r(2, 6), r(6, 3), r(3)),
                 {"labels": labels, "norm": "batchnorm", "dropout_masks": (rng.random((2, 4, 6)) < 0.8).astype(dtype),
                  "p": 0.8})
    _lowers_loss(models.conv_net_forward, models.conv_net_backward,
                 (r(4, 1, 8, 8), r(3, 1, 3, 3), r(3), r(4, 3, 3, 3), r(4), r(16, 3), r(3)), {"labels": labels})
    _lowers_loss(models.captioning_rnn_forward, models.captioning_rnn_backward,
                 (r(4, 5), r(5, 3), r(3), r(6, 2), r(2, 12), r(3, 12), r(12), r(3, 6), r(6)),
                 {"captions": rng.integers(0, 6, (4, 5)), "cell": "lstm"})
    params, hyper = [a.astype(dtype) for a in _gpt_params(rng)], {"tokens": rng.integers(0, 5, (2, 3)),
                                                                  "targets": rng.integers(0, 5, (2, 3)), "heads": 2}
    _lowers_loss(models.gpt_forward, models.gpt_backward, params, hyper, first_is_data=False)


def _gpt_params(rng, layers=1, v=5, e=4, t=3, m=8):
    shapes = [(v, e), (t, e), (layers, e), (layers, e)] + [(layers, e, e), (layers, e)] * 4 + [
        (layers, e), (layers, e), (layers, e, m), (layers, m), (layers, m, e), (layers, e), (e,), (e,)]
    return [rng.standard_normal(s) for s in shapes]


def test_sgd_with_momentum_accumulates_the_velocity():
    p = [np.array([1.0])]
    opt = SGD(p, lr=0.1, momentum=0.5)
    opt.step([np.array([2.0])])  # v = 2, p = 1 - 0.2
    opt.step([np.array([2.0])])  # v = 0.5 * 2 + 2 = 3, p = 0.8 - 0.3
    np.testing.assert_allclose(p[0], [0.5])


def test_adams_first_step_is_lr_times_the_gradients_sign():
    p = [np.array([1.0, 1.0])]
    Adam(p, lr=0.01).step([np.array([3.0, -1e-3])])
    np.testing.assert_allclose(p[0], [0.99, 1.01], rtol=1e-6)


def test_the_zen_is_read_from_the_standard_library():
    text = data.zen()
    assert text.startswith("The Zen of Python, by Tim Peters\n\nBeautiful is better than ugly.")


def test_the_demo_gradient_check_is_well_within_tolerance_on_a_batch():
    rng = np.random.default_rng(0)
    arrays = tuple(rng.standard_normal(s).astype(np.float32) for s in [(8, 5), (5, 6), (6,), (6, 3), (3,)])
    units = runs.gradient_check("two_layer_net", arrays, {"labels": rng.integers(0, 3, 8)}, seed=0)
    assert 0 <= units < 1


def test_the_digits_come_from_the_installed_package_with_a_fixed_split():
    pytest.importorskip("sklearn")
    x_train, x_test, y_train, y_test = data.digits()
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64) and x_train.max() <= 1.0
    np.testing.assert_array_equal(data.digits()[3], y_test)
