"""Cases for reference/network.py and reference/models.py that the generic catalogue checks do not
pin: the walk's rules (a value used twice sums its gradients, names written once), the tied
embedding as the sum of its two uses, stacked parameters, the structure switches of fc_net,
the padding mask of captioning_rnn; and the buckets the oracles evaluate every model in. Bad
input is declared on the Layers (``verification/specs/models.py``, ``errors=``)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import models, network
from reference.linear import affine_backward, affine_forward
from verification import LAYERS, MUTANTS, VARIANTS
from verification.oracles import split_hyper

MODELS = ("two_layer_net", "fc_net", "conv_net", "captioning_rnn", "gpt")
AFFINE = network.Op(affine_forward, affine_backward)


def test_every_model_is_in_the_catalogue_with_mutants():
    assert set(MODELS) <= set(LAYERS)
    assert {m.layer for m in MUTANTS} >= {"gpt", "fc_net", "captioning_rnn"}
    assert {v.layer for v in VARIANTS} >= {"two_layer_net", "fc_net"}


def test_a_value_read_twice_gets_the_sum_of_both_gradients():
    x = np.array([[1.0, -2.0]])
    out, tape = network.network_forward([network.Step(network.ADD, ("x", "x"), "y")], {"x": x})
    np.testing.assert_array_equal(out, 2 * x)
    dout = np.array([[3.0, 5.0]])
    grads = network.network_backward(dout, tape)
    np.testing.assert_array_equal(grads["x"], 2 * dout)
    assert not np.shares_memory(grads["x"], dout)


def test_a_given_value_nothing_reads_gets_a_zero_gradient():
    values = {"x": np.ones((2, 3)), "w": np.ones((3, 1)), "b": np.ones(1), "unused": np.ones((4,), np.float64)}
    _, tape = network.network_forward([network.Step(AFFINE, ("x", "w", "b"), "y")], values)
    grads = network.network_backward(np.ones((2, 1)), tape)
    np.testing.assert_array_equal(grads["unused"], np.zeros(4))
    assert set(grads) == set(values)


def test_a_step_branching_off_the_output_is_skipped():
    """A step whose output nothing downstream reads contributes no gradient."""
    values = {"x": np.ones((1, 2)), "w": np.ones((2, 2)), "b": np.zeros(2)}
    steps = [network.Step(AFFINE, ("x", "w", "b"), "side"), network.Step(network.ADD, ("x", "x"), "y")]
    _, tape = network.network_forward(steps, values)
    grads = network.network_backward(np.ones((1, 2)), tape)
    np.testing.assert_array_equal(grads["w"], np.zeros((2, 2)))
    np.testing.assert_array_equal(grads["x"], 2 * np.ones((1, 2)))


@pytest.mark.parametrize("steps, message", [
    ([network.Step(network.ADD, ("x", "nowhere"), "y")], r"step 0 \('y'\) reads \['nowhere'\]"),
    ([network.Step(network.ADD, ("x", "x"), "x")], "step 0 writes 'x', which already names a value"),
    ([], "steps is empty"),
])
def test_the_walk_refuses_a_graph_it_cannot_differentiate(steps, message):
    with pytest.raises(ValueError, match=message):
        network.network_forward(steps, {"x": np.ones(2)})


def _gpt(layers=1, vocab=5, e=4, t=3, n=2, hidden=6, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(vocab, e), (t, e), (layers, e), (layers, e)] + [(layers, e, e), (layers, e)] * 4 + [
        (layers, e), (layers, e), (layers, e, hidden), (layers, hidden), (layers, hidden, e), (layers, e), (e,), (e,)]
    params = [rng.standard_normal(s) for s in shapes]
    hyper = {"tokens": rng.integers(0, vocab, (n, t)), "targets": rng.integers(0, vocab, (n, t)), "heads": 2}
    return params, hyper


def test_gpt_tied_embedding_gradient_is_the_sum_of_embedding_and_unembedding():
    params, hyper = _gpt()
    _, cache = models.gpt_forward(*params, **hyper)
    dwte = models.gpt_backward(np.array(1.0), cache)[0]
    # the same network with the unembedding read from a separate copy of wte: two gradients
    steps = models.gpt_steps(1, **hyper)
    steps = [s._replace(inputs=("wte_out",)) if s.op is network.TRANSPOSE else s for s in steps]
    values = {**models.named_values(models.GPT_PARAMS, params, models.GPT_STACKED), "wte_out": params[0]}
    _, tape = network.network_forward(steps, values)
    grads = network.network_backward(np.array(1.0), tape)
    assert np.abs(grads["wte_out"]).max() > 0 and np.abs(grads["wte"]).max() > 0
    np.testing.assert_allclose(dwte, grads["wte"] + grads["wte_out"], rtol=1e-12, atol=1e-15)


def test_gpt_stacked_gradients_are_each_blocks_own():
    """Block l's slice of a stacked gradient is what the walk gives that block's parameters."""
    params, hyper = _gpt(layers=2)
    _, cache = models.gpt_forward(*params, **hyper)
    grads = dict(zip(models.GPT_PARAMS, models.gpt_backward(np.array(1.0), cache)))
    walked = network.network_backward(np.array(1.0), cache.tape)
    for name in models.GPT_STACKED:
        for layer in range(2):
            np.testing.assert_array_equal(grads[name][layer], walked[f"{name}.{layer}"])


def test_gpt_with_no_blocks_is_embeddings_layernorm_and_the_tied_head():
    params, hyper = _gpt(layers=0)
    loss, cache = models.gpt_forward(*params, **hyper)
    grads = models.gpt_backward(np.array(1.0), cache)
    assert np.isfinite(loss) and grads[4].shape == (0, 4, 4)


def _fc(layers=2, n=4, d=3, h=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(n, d), (d, h), (h,), (layers - 1, h, h), (layers - 1, h), (layers, h), (layers, h), (h, c), (c,)]
    return [rng.standard_normal(s) for s in shapes], rng.integers(0, c, n)


def test_fc_net_without_normalisation_leaves_gamma_and_beta_without_gradient():
    arrays, labels = _fc()
    _, cache = models.fc_net_forward(*arrays, labels=labels)
    grads = models.fc_net_backward(np.array(1.0), cache)
    assert not grads[5].any() and not grads[6].any() and grads[1].any()


def test_fc_net_dropout_keeping_everything_at_p_1_is_no_dropout():
    arrays, labels = _fc()
    plain = models.fc_net_forward(*arrays, labels=labels, norm="layernorm")
    kept = models.fc_net_forward(*arrays, labels=labels, norm="layernorm", dropout_masks=np.ones((2, 4, 5)), p=1.0)
    assert plain[0] == kept[0]
    for a, b in zip(models.fc_net_backward(np.array(1.0), plain[1]), models.fc_net_backward(np.array(1.0), kept[1])):
        np.testing.assert_array_equal(a, b)


def test_fc_net_with_one_hidden_layer_has_empty_stacked_hidden_weights():
    arrays, labels = _fc(layers=1)
    _, cache = models.fc_net_forward(*arrays, labels=labels, norm="batchnorm")
    grads = models.fc_net_backward(np.array(1.0), cache)
    assert grads[3].shape == (0, 5, 5) and grads[5].shape == (1, 5)


def test_captioning_rnn_masked_targets_contribute_nothing():
    rng = np.random.default_rng(1)
    n, d, w, h, v = 1, 2, 2, 3, 4
    arrays = [rng.standard_normal(s) for s in [(n, d), (d, h), (h,), (v, w), (w, h), (h, h), (h,), (h, v), (v,)]]
    full, _ = models.captioning_rnn_forward(*arrays, captions=np.array([[1, 2, 3]]))
    padded, cache = models.captioning_rnn_forward(*arrays, captions=np.array([[1, 2, 0]]))
    alone, _ = models.captioning_rnn_forward(*arrays, captions=np.array([[1, 2]]))
    assert padded == alone and padded != full
    assert np.all(np.isfinite(models.captioning_rnn_backward(np.array(1.0), cache)[0]))


# --- the buckets the oracles evaluate examples in -----------------------------------------

def _bucket(layer, arrays, hyper):
    padded, padded_hyper = layer.hints.pad(arrays, hyper)
    return tuple(a.shape for a in padded), split_hyper(padded_hyper)[0]


@pytest.mark.parametrize("name", MODELS)
def test_every_configuration_of_a_model_shares_one_bucket(name):
    """Sizes, depth, heads, kernels, the normalisation, dropout and the cell are all padding or
    traced hyperparameters: the whole space is one compiled program (of each kind)."""
    layer = LAYERS[name]
    buckets = set()

    @settings(max_examples=40, deadline=None, database=None)
    @given(drawn=st.one_of(layer.space.draws(), layer.space.draws(layer.space.edges)))
    def run(drawn):
        buckets.add(_bucket(layer, *drawn[1]))

    run()
    assert len(buckets) == 1


@pytest.mark.parametrize("name", MODELS)
def test_an_example_larger_than_the_bucket_is_evaluated_as_it_is(name):
    """The demo's and the bench's sizes are no configuration of the space: the pad leaves them alone."""
    layer = LAYERS[name]
    case = layer.bench(np.random.default_rng(0))

    arrays, hyper = layer.hints.pad(case.arrays, case.hyper)

    assert all(a is b for a, b in zip(arrays, case.arrays)) and hyper is case.hyper
