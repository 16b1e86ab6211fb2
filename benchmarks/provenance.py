"""Where a measured result came from: when, from which commit, on which machine, by which command.

Every benchmark in this folder stores this block beside its figures, so a result copied to
``docs/results/`` can be traced back and reproduced.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any


def provenance() -> dict[str, Any]:
    """Date (UTC), git commit (``+dirty`` with uncommitted changes), machine and the command line."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "load_average": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "command": shlex.join(["python", *sys.argv]),
    }


def markdown(block: dict[str, Any]) -> str:
    """One line for the head of a Markdown result."""
    machine = block["machine"]
    return (
        f"Measured {block['date']} at commit {block['commit']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, load {machine['load_average']}) by `{block['command']}`."
    )


def _commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
