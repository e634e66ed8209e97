"""JAX specifications of the temporal layers (``reference/temporal.py``): ``temporal_affine``
and ``temporal_softmax_loss``.

``temporal_affine`` is an einsum over (n, t) rows, not the NumPy code's reshape to a matrix;
``temporal_softmax_loss`` is ``jax.nn.log_softmax`` (stable) read at the labels by a gather,
with ``jnp.where`` keeping masked positions out of the sum (their gradient is then exactly
0), divided by N. Labels and mask are hyperparameters: arrays, traced by the oracle, so new
ones do not recompile.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from reference import temporal as ref
from reference.linear import LinearCache, linear_backward
from verification.layer import BenchCase, ErrorCase, Hints, Layer, Mutant, Variant
from verification.space import Space, bucket, grow
from verification.strategies import arrays, choices, indices, values
from verification.tolerance import multilinear_magnitude


def jax_temporal_affine(x, w, b):
    return jnp.einsum("ntd,dm->ntm", x, w) + b


def jax_temporal_softmax_loss(x, *, labels, mask):
    log_probs = jax.nn.log_softmax(x, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(mask, picked, 0.0)) / x.shape[0]


def _temporal_softmax_loss_magnitude(f, arrays, hyper, dout):
    """The terms of L and dx, as for softmax_cross_entropy (verification/specs/losses.py), per
    unmasked position and over N.

    With s = x - max_v x_v, dx = dL m (p - onehot) / N: its terms are p and 1, which cancel
    where the label's probability is near 1, so the scale is p + onehot, not |p - onehot|.
    Rounding s costs exp(s) a relative error |s| u, so p carries exp_error = 1 + |s| and the
    row sum Z its p-weighted mean (sum_error); L adds log Z, |s_y| and sum_error per
    unmasked position (its terms are >= 0, so their sum adds nothing beyond them). Masked
    positions have no terms: scale 0, so anything but an exact 0 there fails.
    """
    (x,) = arrays
    n, vocab = x.shape[0], x.shape[2]
    counted = hyper["mask"].astype(x.dtype)
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    probs = jax.nn.softmax(x, axis=-1)
    onehot = jax.nn.one_hot(hyper["labels"], vocab, dtype=x.dtype)
    exp_error = 1.0 + jnp.abs(shifted)
    sum_error = jnp.sum(probs * exp_error, axis=-1, keepdims=True)
    per_position = jax.nn.logsumexp(shifted, axis=-1) + jnp.sum(onehot * jnp.abs(shifted), axis=-1) + sum_error[..., 0]
    out_scale = jnp.sum(counted * per_position) / n
    return out_scale, (jnp.abs(dout) / n * counted[..., None] * (probs * (exp_error + sum_error) + onehot),)


# ----------------------------------------------------------------------------------------
# Inputs.

WIDE_SCORE = 100.0
"""Half the scores are also drawn from [-100, 100]: exp(100) overflows float32, so a softmax
without the max shift is caught."""


def _affine_values(config):
    n, t, d, m = config["N"], config["T"], config["D"], config["M"]
    return st.tuples(arrays((n, t, d)), arrays((d, m)), arrays((m,))).map(lambda drawn: (drawn, {}))


AFFINE_DIMS = {"N": (0, 5), "T": (0, 6), "D": (1, 6), "M": (1, 6)}
LOSS_DIMS = {"N": (1, 6), "T": (0, 6), "V": (1, 8)}


def _dims(spans):
    return st.fixed_dictionaries({name: st.integers(*span) for name, span in spans.items()})


temporal_affine_space = Space(
    _dims(AFFINE_DIMS),
    _affine_values,
    edges=({"N": 0, "T": 3, "D": 2, "M": 3},    # an empty batch
           {"N": 2, "T": 0, "D": 2, "M": 3},    # empty sequences
           {"N": 1, "T": 1, "D": 1, "M": 1},    # every size 1
           {"N": 2, "T": 3, "D": 4, "M": 4}),   # D = M: w square, a missing transpose keeps its shape
)


def _loss_values(config):
    """Scores, labels from few words (V <= 8: repeats are the rule), and a mask: each position
    counted with probability 2/3, and each whole sequence dropped with probability 1/3 (a
    caption with no word, or a padded batch row); both shrink toward counting everything."""
    n, t, v = config["N"], config["T"], config["V"]
    scores = arrays((n, t, v), elements=values() | values(-WIDE_SCORE, WIDE_SCORE))
    keep_position = choices((n, t), (1.0, 1.0, 0.0))
    keep_sequence = choices((n, 1), (1.0, 1.0, 0.0))

    def example(drawn):
        x, labels, positions, sequences = drawn
        return (x,), {"labels": labels, "mask": (positions * sequences) > 0}

    return st.tuples(scores, indices((n, t), v), keep_position, keep_sequence).map(example)


temporal_softmax_loss_space = Space(
    _dims(LOSS_DIMS),
    _loss_values,
    edges=({"N": 2, "T": 0, "V": 3},    # no positions: L = 0, dx empty
           {"N": 3, "T": 4, "V": 1},    # one word: p = 1, L = 0 and dx = 0 whatever the scores
           {"N": 1, "T": 1, "V": 2},    # one sequence of one word
           {"N": 4, "T": 5, "V": 5}),   # T = V: scores summed over the wrong axis keep their shape
)


def _affine_bucket():
    """Hints.pad: every configuration in the space's largest, (N, T, D, M) = (5, 6, 6, 6), with zeros
    appended: an added row (n, t) is pulled back from a zero dout, an added feature d meets a zero
    row of w, an added output m (zero columns of w and b) is cut off."""
    n, t, d, m = (span[1] for span in AFFINE_DIMS.values())
    return bucket((n, t, d), (d, m), (m,))


ABSENT_SCORE = -1e4


def _loss_bucket(arrays, hyper):
    """Hints.pad, one bucket per N (L is divided by N): T grown to 6 with the added positions masked
    out (left out of the sum, they pull nothing back), V to 8 with scores of ABSENT_SCORE for the
    added words (and positions): e^(-1e4 - max) underflows to exactly 0 in float64, so the real
    words' softmax, the loss and the magnitude (whose terms are weighted by p) are unchanged, and
    a finite score keeps the magnitude's |s| finite."""
    (x,) = arrays
    n, steps, vocab = x.shape[0], LOSS_DIMS["T"][1], LOSS_DIMS["V"][1]
    return (grow(x, (n, steps, vocab), ABSENT_SCORE),), {**hyper, "labels": grow(hyper["labels"], (n, steps)),
                                                          "mask": grow(hyper["mask"], (n, steps))}


def temporal_affine_bench(rng, n=64, t=32, d=256, m=256):
    """A captioning model's output projection: N = 64 sequences of T = 32 steps, D = M = 256.
    The backward is two products of 2 N T D M flops each (dx, dw)."""
    return BenchCase((rng.standard_normal((n, t, d)), rng.standard_normal((d, m)) / np.sqrt(d),
                      rng.standard_normal(m)), {}, flops=4.0 * n * t * d * m)


def temporal_softmax_loss_bench(rng, n=64, t=32, v=256):
    """Scores over V = 256 words at N = 64 by T = 32 positions, each caption of 16 to 32 words."""
    lengths = rng.integers(16, t + 1, n)
    return BenchCase((rng.standard_normal((n, t, v)),),
                     {"labels": rng.integers(0, v, (n, t)), "mask": np.arange(t) < lengths[:, None]})


def _loss_call(x=(2, 3, 4), labels=None, mask=None):
    x = np.ones(x)
    return (x,), {"labels": np.zeros(x.shape[:2], np.int64) if labels is None else labels,
                  "mask": np.ones(x.shape[:2], bool) if mask is None else mask}


temporal_affine = Layer(
    "temporal_affine", ref.temporal_affine_forward, ref.temporal_affine_backward, jax_temporal_affine,
    temporal_affine_space, magnitude=multilinear_magnitude,
    hints=Hints(per_example=True, linear_in=(0, 1, 2), pad=_affine_bucket()),
    errors=(
        ErrorCase("x of rank 2", (np.ones((2, 3)), np.ones((3, 4)), np.ones(4)), {}, ValueError,
                  r"x has shape \(2, 3\) but a 3-d array \(N, T, D\) is expected"),
        ErrorCase("w for another D", (np.ones((2, 5, 3)), np.ones((4, 4)), np.ones(4)), {}, ValueError,
                  r"w has shape \(4, 4\) but x has shape \(2, 5, 3\): w.shape\[0\] must equal x.shape\[2\] = 3"),
        ErrorCase("b for another M", (np.ones((2, 5, 3)), np.ones((3, 4)), np.ones(5)), {}, ValueError,
                  r"b has shape \(5,\) but w has shape \(3, 4\): b.shape\[0\] must equal w.shape\[1\] = 4"),
        ErrorCase("w in float32 beside float64 x", (np.ones((2, 5, 3)), np.ones((3, 4), np.float32), np.ones(4)), {},
                  TypeError, "w has dtype float32 but x has dtype float64"),
        ErrorCase("float16 x", (np.ones((2, 5, 3), np.float16), np.ones((3, 4)), np.ones(4)), {}, TypeError,
                  r"x has dtype float16 \(shape \(2, 5, 3\)\) but float32 or float64 is expected"),
    ),
    bench=temporal_affine_bench)

temporal_softmax_loss = Layer(
    "temporal_softmax_loss", ref.temporal_softmax_loss_forward, ref.temporal_softmax_loss_backward,
    jax_temporal_softmax_loss, temporal_softmax_loss_space, magnitude=_temporal_softmax_loss_magnitude,
    hints=Hints(pad=_loss_bucket), errors=(
        ErrorCase("no sequence", *_loss_call(x=(0, 3, 4)), ValueError,
                  r"x has shape \(0, 3, 4\) but the loss is divided by N, the number of sequences"),
        ErrorCase("no word", *_loss_call(x=(2, 3, 0)), ValueError,
                  r"x has shape \(2, 3, 0\) but a softmax over V = 0 words is undefined"),
        ErrorCase("x of rank 2", *_loss_call(x=(2, 3)), ValueError,
                  r"x has shape \(2, 3\) but a 3-d array \(N, T, V\) is expected"),
        ErrorCase("labels of another shape", *_loss_call(labels=np.zeros((2, 4), np.int64)), ValueError,
                  r"labels has shape \(2, 4\) but shape \(2, 3\) is expected"),
        ErrorCase("a label beyond V", *_loss_call(labels=np.full((2, 3), 4)), ValueError,
                  r"labels has entries in \[4, 4\] but they must lie in \[0, 4\) \(word indices, V = 4\)"),
        ErrorCase("float labels", *_loss_call(labels=np.zeros((2, 3))), TypeError,
                  "labels must be a numpy.ndarray of integers, got dtype float64"),
        ErrorCase("a mask of 0s and 1s", *_loss_call(mask=np.ones((2, 3), np.int64)), TypeError,
                  r"mask must be a numpy.ndarray of booleans \(True where a position counts\), got dtype int64"),
        ErrorCase("a mask of another shape", *_loss_call(mask=np.ones((3, 2), bool)), ValueError,
                  r"mask has shape \(3, 2\) but shape \(2, 3\) is expected"),
        ErrorCase("float16 x", (np.ones((2, 3, 4), np.float16),),
                  {"labels": np.zeros((2, 3), np.int64), "mask": np.ones((2, 3), bool)}, TypeError,
                  r"x has dtype float16 \(shape \(2, 3, 4\)\) but float32 or float64 is expected"),
    ),
    bench=temporal_softmax_loss_bench)


# ----------------------------------------------------------------------------------------
# Correct variants: other ways to write the same derivatives, which the verifier must accept.

def _temporal_affine_backward_einsum(dout, cache):
    x, w = cache
    return np.einsum("ntm,dm->ntd", dout, w), np.einsum("ntd,ntm->dm", x, dout), np.einsum("ntm->m", dout)


def _temporal_affine_backward_per_step(dout, cache):
    """The linear layer's backward at each time step, its dw and db summed over the steps."""
    x, w = cache
    dx = np.empty(x.shape, x.dtype)
    dw, db = np.zeros(w.shape, x.dtype), np.zeros(w.shape[1], x.dtype)
    for t in range(x.shape[1]):
        dx[:, t], dw_t = linear_backward(np.ascontiguousarray(dout[:, t]), LinearCache(x[:, t], w))
        dw += dw_t
        db += dout[:, t].sum(axis=0)
    return dx, dw, db


def _temporal_softmax_loss_backward_loops(dout, cache):
    """One position at a time: an unmasked (n, t) gets dL (p - onehot(y)) / N, a masked one nothing."""
    probs, labels, mask = cache
    dx = np.zeros_like(probs)
    n, steps = labels.shape
    for i in range(n):
        for t in range(steps):
            if mask[i, t]:
                dx[i, t] = probs[i, t] * dout / n
                dx[i, t, labels[i, t]] -= dout / n
    return (dx,)


VARIANTS = (
    Variant("temporal_affine", "einsum", "every product spelled as an einsum over (n, t)",
            _temporal_affine_backward_einsum),
    Variant("temporal_affine", "per_step", "the linear layer's backward at each step, dw and db summed",
            _temporal_affine_backward_per_step),
    Variant("temporal_softmax_loss", "loops", "one (n, t) position at a time, skipping the masked ones",
            _temporal_softmax_loss_backward_loops),
)


# ----------------------------------------------------------------------------------------
# Mutants: the bugs a student or a kernel author writes; the verifier must reject each one.

def _loss_backward_divided_by(count):
    """The reference's dx rescaled as if L were divided by count(mask) instead of N."""
    def backward(dout, cache):
        (dx,) = ref.temporal_softmax_loss_backward(dout, cache)
        return (dx * (cache.labels.shape[0] / max(count(cache.mask), 1)),)
    return backward


def _loss_backward_mask_ignored(dout, cache):
    """Every position's gradient, masked or not."""
    return ref.temporal_softmax_loss_backward(dout, cache._replace(mask=np.ones_like(cache.mask)))


def _loss_forward_without_shift(x, *, labels, mask):
    """exp(x) without subtracting the maximum: overflows to inf (then NaN) for large scores."""
    loss, cache = ref.temporal_softmax_loss_forward(x, labels=labels, mask=mask)
    with np.errstate(over="ignore", invalid="ignore"):
        exps = np.exp(x)
        return loss, cache._replace(probs=exps / exps.sum(axis=2, keepdims=True))


def _temporal_affine_dw_reshaped(dout, cache):
    dx, _, db = ref.temporal_affine_backward(dout, cache)
    x, w = cache
    return dx, np.ascontiguousarray((ref._as_rows(dout).T @ ref._as_rows(x)).reshape(w.shape)), db


def _temporal_affine_db_over_batch(dout, cache):
    dx, dw, _ = ref.temporal_affine_backward(dout, cache)
    return dx, dw, dout.sum(axis=0)


def _temporal_affine_dw_first_sequence(dout, cache):
    dx, _, db = ref.temporal_affine_backward(dout, cache)
    x, w = cache
    return dx, (x[0].T @ dout[0] if len(x) else np.zeros(w.shape, x.dtype)), db


MUTANTS = (
    Mutant("temporal_softmax_loss", "mask_ignored", "masked positions get p - onehot(y) too",
           _loss_backward_mask_ignored, bug="partial"),
    Mutant("temporal_softmax_loss", "mean_over_n_t", "dx divided by N T, as if L were a mean over positions",
           _loss_backward_divided_by(lambda mask: mask.size), bug="factor"),
    Mutant("temporal_softmax_loss", "mean_over_unmasked", "dx divided by the number of unmasked positions, not N",
           _loss_backward_divided_by(lambda mask: mask.sum()), bug="factor"),
    Mutant("temporal_softmax_loss", "no_max_shift", "softmax as exp(x) / sum exp(x): overflows for large scores",
           forward=_loss_forward_without_shift, bug="instability"),
    Mutant("temporal_affine", "dw_reshaped_not_transposed", "dw = (dout^T x) reshaped to (D, M) instead of x^T dout",
           _temporal_affine_dw_reshaped, bug="transpose"),
    Mutant("temporal_affine", "db_over_batch_only", "db summed over N alone: (T, M), not (M,)",
           _temporal_affine_db_over_batch, bug="wrong_axis"),
    Mutant("temporal_affine", "dw_from_first_sequence", "dw = x[0]^T dout[0]: the other sequences left out",
           _temporal_affine_dw_first_sequence, bug="formula"),
)
