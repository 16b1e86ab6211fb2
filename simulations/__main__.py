"""``python -m crossfed.simulations``: the same as the ``crossfed`` command."""

import sys

from crossfed.shared.cli import main

if __name__ == "__main__":
    sys.exit(main())
