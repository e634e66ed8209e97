"""``python -m verification``: prove every catalogued layer (``make verify``)."""
import sys

from .cli import main, one_xla_thread

one_xla_thread()  # this process is ours: before JAX computes anything
sys.exit(main())
