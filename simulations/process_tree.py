"""Peak memory and CPU time of a whole process tree, Ray's raylet and workers included.

A simulated run is many processes (the driver, Ray's GCS and raylet, one worker per
concurrent platform), so the driver's own figures say little. This samples the tree
under one pid from ``/proc`` (Linux only; elsewhere it reports nothing) and keeps the
peak of two memory sums: RSS, which counts the torch libraries mapped by every worker
once per worker and so overstates, and PSS, which splits shared pages between their
users and so adds up to what the tree really occupies. It also adds up the CPU time of
every process it has seen: on a machine shared with other jobs, wall time measures the
neighbours as much as the run, CPU time much less so.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_PROC = Path("/proc")


@dataclass(frozen=True)
class MemoryPeak:
    rss_mb: float
    pss_mb: float
    processes: int


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants alive now (children are found through each process's ppid)."""
    parents: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the ppid; the command name (field 2) may hold spaces, so split after its ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of one process so far, in clock ticks (0 once it is gone)."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(root: int) -> MemoryPeak:
    """Current RSS and PSS sums of the tree under ``root``, in MiB."""
    pids = tree_pids(root)
    rss = sum(_kib(_PROC / str(pid) / "status", "VmRSS:") for pid in pids)
    pss = sum(_kib(_PROC / str(pid) / "smaps_rollup", "Pss:") for pid in pids)
    return MemoryPeak(rss / 1024, pss / 1024, len(pids))


class TreeMonitor:
    """Samples a process tree in a background thread until stopped.

    ``peak`` is the largest memory seen; :meth:`cpu_seconds` the CPU time of every process
    seen so far (a process's last half-second before it exits may be missed).
    """

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root, self.interval = root, interval
        self.peak: MemoryPeak | None = None
        self._ticks: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"memory-{root}", daemon=True)

    def __enter__(self) -> "TreeMonitor":
        if _PROC.is_dir():
            self._thread.start()
        else:
            logger.warning("no /proc: peak memory is not measured on this system")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def cpu_seconds(self) -> float:
        """CPU time of the tree so far, read now (also between samples)."""
        self._count_cpu()
        with self._lock:
            return sum(self._ticks.values()) / _TICKS

    def _count_cpu(self) -> None:
        for pid in tree_pids(self.root):
            ticks = cpu_ticks(pid)
            with self._lock:
                self._ticks[pid] = max(ticks, self._ticks.get(pid, 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._count_cpu()
            now = sample(self.root)
            peak = self.peak
            if peak is None or now.rss_mb > peak.rss_mb or now.pss_mb > peak.pss_mb:
                self.peak = MemoryPeak(max(now.rss_mb, peak.rss_mb if peak else 0.0),
                                       max(now.pss_mb, peak.pss_mb if peak else 0.0),
                                       max(now.processes, peak.processes if peak else 0))
