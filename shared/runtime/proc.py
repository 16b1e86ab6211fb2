"""Reading a process tree from ``/proc`` (Linux): who descends from whom, and what each holds.

A simulated or deployed run is many processes (Ray's raylet and workers, Flower's detached
SuperExec, ServerApp and ClientApp processes), so its memory, file handles and CPU time -
and the processes a loopback must stop - are those of the whole tree. Elsewhere than
Linux every function here reports nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (which may hold spaces and parentheses)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants alive now, found through each process's parent pid."""
    children: dict[int, list[int]] = {}
    if PROC.is_dir():
        for entry in PROC.iterdir():
            if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
                try:
                    children.setdefault(int(fields[1]), []).append(int(entry.name))
                except (IndexError, ValueError):
                    continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def state(pid: int) -> str | None:
    """The kernel's one-letter state (``Z`` for a zombie), ``None`` once the process is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot): tells a live process from a reused pid."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of one process so far, in clock ticks (0 once it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields and len(fields) > 12 else 0


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` figure of ``/proc/PID/status`` or ``smaps_rollup`` (e.g. ``VmRSS:``, ``Pss:``), else 0."""
    source = "smaps_rollup" if field == "Pss:" else "status"
    try:
        for line in (PROC / str(pid) / source).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0
