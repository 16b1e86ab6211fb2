"""``python -m crossfed.shared.config [ROOT]``: regenerate ROOT/docs/reference/configuration.md (ROOT: ``.``)."""

from __future__ import annotations

import sys
from pathlib import Path

from crossfed.shared.config.reference import write_reference


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = write_reference(Path(args[0]) if args else Path("."))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
