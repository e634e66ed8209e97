"""``python -m verification``: prove every catalogued layer (``make verify``)."""
import sys

from .cli import main

sys.exit(main())
