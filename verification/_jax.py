"""JAX, configured once for every oracle, before anything else in the package touches it.

* ``jax_enable_x64``: without it JAX silently computes float64 NumPy inputs in
  float32 (normwise difference ~1e-7), and every float64 proof would fail; enabling
  it after a shape was traced can still return stale float32, so it happens here,
  at import, and the oracles also check the dtype they get back.
* A persistent compilation cache: an oracle compiles once per shape (0.2-0.5 s on
  the 2-core machine, against ~0.2 ms per call), so reruns reuse the compiled code.
  ``BACKPROP_JAX_CACHE`` names the folder; set it empty to switch the cache off.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

_default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backprop-reference" / "jax"
CACHE_DIR = os.environ.get("BACKPROP_JAX_CACHE", str(_default_cache))
if CACHE_DIR:
    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
