"""``python -m crossfed.shared.config [--root DIR]``: regenerate DIR/docs/reference/configuration.md.

The reference page is generated from the fields' own documentation, so it cannot drift from
the code; a test checks that the committed page is the generated one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from crossfed.shared.config.reference import write_reference


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossfed.shared.config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: .)")
    args = parser.parse_args(argv)
    print(f"wrote {write_reference(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
