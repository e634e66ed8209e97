"""The demo's data, all shipped with installed packages: nothing is downloaded."""
from __future__ import annotations

import codecs
import contextlib
import io

import numpy as np

BOS = "\x02"
"""Start of text: the first line's first word is then a prompt with a context, not a guess."""


def digits(dtype=np.float32):
    """scikit-learn's 1,797 8x8 digits, pixels scaled to [0, 1], split 75/25 stratified with a fixed seed.

    -> (x_train (1347, 64), y_train, x_test (450, 64), y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(dtype)
    return tuple(train_test_split(x, data.target.astype(np.int64), test_size=0.25, random_state=0,
                                  stratify=data.target))


def zen() -> str:
    """The Zen of Python, as ``import this`` prints it (the module holds it ROT13-encoded)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")
