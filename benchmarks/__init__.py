"""``make bench``: how fast the reference backwards are, how fast the verifier is, and what the
explicit chain rule would cost. Run ``python -m benchmarks --help``; sections:

* ``layers``   each catalogued layer's NumPy backward vs ``jax.jit`` of its specification's VJP;
* ``checks``   examples per second of each check (``verify``: a whole ``make verify``, timed);
* ``jacobian`` ``jax.jacobian`` vs the streamed contraction vs ``jax.vjp`` vs the reference,
               time and peak memory, with a plot;
* ``peers``    our checks vs ``torch.autograd.gradcheck`` and ``jax.test_util.check_grads``.

Not part of ``make test``: the numbers depend on the machine and its load.
"""
