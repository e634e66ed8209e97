"""``make demo``: the reference models trained with their hand-written backward.

fc_net and conv_net learn scikit-learn's bundled handwritten digits; a character-level gpt
learns the Zen of Python (the standard library's ``this`` module) and regenerates its first
line. Every K steps the whole network's gradient on the current batch is checked against JAX
at the current (trained) weights. Run ``python -m demo --help``.
"""
