"""Reproducers that replay: a failing example saved bit for bit, and the command that replays it.

A failure's example (the drawn arrays, every hyperparameter with its exact type, the dtype,
the cotangent seed) and the layer's locator (``verification.locate``) go into one ``.npz``
under ``reports/repro/`` (``BACKPROP_REPRO_DIR`` moves it). ``python -m verification replay
FILE`` runs the checks on exactly that example and exits 1 when the same check fails at the
same place, printing the failure; 3 when it does not reproduce.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

DEFAULT_DIR = "reports/repro"


def directory() -> Path:
    return Path(os.environ.get("BACKPROP_REPRO_DIR", DEFAULT_DIR))


def _encode(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, np.generic):
        return {"numpy": value.dtype.name, "value": value.item()}
    if isinstance(value, (int, float)):
        return value  # JSON writes floats as their shortest round-trip repr: exact
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    raise TypeError(f"cannot save a hyperparameter of type {type(value).__name__}")


def _decode(value):
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_decode(v) for v in value["tuple"])
    if isinstance(value, dict) and "numpy" in value:
        return np.dtype(value["numpy"]).type(value["value"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def save(example, outcome, *, locator: str | None, with_jacobian: bool) -> Path:
    """Write the example behind ``outcome`` and return its path."""
    arrays = {f"array{i}": np.asarray(a) for i, a in enumerate(example.arrays)}
    hyper_arrays = {f"hyper_{k}": v for k, v in example.hyper.items() if isinstance(v, np.ndarray)}
    meta = {
        "layer": example.layer, "locator": locator, "dtype": example.dtype, "cotangent_seed": example.cotangent_seed,
        "check": outcome.check, "gradient": outcome.gradient,
        "index": None if outcome.index is None else list(outcome.index), "tier": outcome.tier,
        "arrays": len(arrays), "with_jacobian": with_jacobian,
        "hyper": {k: _encode(v) for k, v in example.hyper.items() if not isinstance(v, np.ndarray)},
        "hyper_arrays": sorted(k for k, v in example.hyper.items() if isinstance(v, np.ndarray)),
    }
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode())
    for a in (*arrays.values(), *hyper_arrays.values()):
        digest.update(a.tobytes())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", example.layer).strip("-")
    path = directory() / f"{slug}-{outcome.check}-{example.dtype}-{digest.hexdigest()[:10]}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays, **hyper_arrays)
    return path


def command(path: Path, locator: str | None) -> str:
    line = f"python -m verification replay {path}"
    if locator is None:
        line += " --layer MODULE:ATTR   (the layer is not at module level anywhere: name where it is defined)"
    return line


def load_example(path) -> tuple[dict, tuple, dict]:
    """(meta, arrays, hyper) of a saved example."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        arrays = tuple(data[f"array{i}"] for i in range(meta["arrays"]))
        hyper = {k: _decode(v) for k, v in meta["hyper"].items()}
        hyper.update({k: data[f"hyper_{k}"] for k in meta["hyper_arrays"]})
    return meta, arrays, hyper


def replay(path, layer_locator: str | None = None, out=None) -> int:
    """Run the saved example again; print the failure; 1 if it reproduces, 3 if not."""
    import sys

    from .checks import examine
    from .locate import load
    from .report import failure_text
    from .runner import failure_of

    out = out or sys.stdout
    meta, arrays, hyper = load_example(path)
    locator = layer_locator or meta["locator"]
    if locator is None:
        raise ValueError(f"{path} does not say where its layer lives: pass --layer FILE.py:NAME or module:NAME")
    (layer,) = load(locator, name=meta["layer"])
    example = examine(layer, arrays, hyper, dtype=meta["dtype"], cotangent_seed=meta["cotangent_seed"],
                      with_jacobian=meta["with_jacobian"])
    outcome = next((o for o in example.outcomes if o.check == meta["check"]), None)
    same = (outcome is not None and outcome.status == "fail" and outcome.gradient == meta["gradient"]
            and (None if outcome.index is None else list(outcome.index)) == meta["index"])
    if example.failed:
        print(failure_text(failure_of([example], layer, reproducer=command(Path(path), locator))), file=out)
    if same:
        print(f"reproduced: {meta['check']} fails on {meta['gradient'] or 'the layer'}"
              f"{'' if meta['index'] is None else meta['index']} in {meta['dtype']}", file=out)
        return 1
    print(f"did not reproduce: {meta['check']} on {meta['gradient']}{meta['index'] or ''} in {meta['dtype']} "
          f"{'now passes' if outcome is None or outcome.status != 'fail' else 'now fails elsewhere'}", file=out)
    return 3
