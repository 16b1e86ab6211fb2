"""A platform's own metrics log (``metrics.jsonl``): figures that never leave the platform.

Each line is one (round, stage) of this platform. A resumed run asks for rounds and stages
again, and the log is appended to, never rewritten (a crash mid-rewrite would lose it), so
a reader keeps each (round, stage, platform) once: the last entry, measured on the state
the run went on from. The file holds per-platform figures under DP too, so it is written
readable by its owner only, like the platform's state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LOCAL_METRICS_FILE = "metrics.jsonl"
#: Test figures a platform serving local-first keeps to itself: the weight its validation users
#: chose for the global model, and its local-only model's means under this prefix.
LOCAL_FIRST_WEIGHT = "local-first-weight"
LOCAL_ONLY_PREFIX = "local-only-"
#: Under ``user-dp-mechanism = gram-subspace``: the rank of the item subspace the platform's validation users chose.
LOCAL_FIRST_RANK = "local-first-rank"
#: Owner read/write only: the same as the platform's state files.
PRIVATE_FILE_MODE = 0o600


def record_locally(directory: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the platform's own metrics log, creating it private to its owner."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / LOCAL_METRICS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "a") as stream:
        stream.write(json.dumps(entry) + "\n")


def read_locally(path: Path, platform: int) -> list[dict[str, Any]]:
    """The entries of ``path`` (platform ``platform``'s log), each (round, stage, platform) once: the last written."""
    if not path.exists():
        return []
    latest: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        key = (entry.get("round"), entry.get("stage"), entry.get("platform", platform))
        latest.pop(key, None)  # re-inserted: the order follows the last write
        latest[key] = entry
    return list(latest.values())
