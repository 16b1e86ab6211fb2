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

from crossfed.shared.runtime.proc import PROC, cpu_ticks, status_kib, tree_pids

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryPeak:
    rss_mb: float
    pss_mb: float
    processes: int


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sample(root: int) -> MemoryPeak:
    """Current RSS and PSS sums of the tree under ``root``, in MiB."""
    pids = tree_pids(root)
    rss = sum(status_kib(pid, "VmRSS:") for pid in pids)
    pss = sum(status_kib(pid, "Pss:") for pid in pids)
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

    def __enter__(self) -> TreeMonitor:
        if PROC.is_dir():
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
                self.peak = MemoryPeak(
                    max(now.rss_mb, peak.rss_mb if peak else 0.0),
                    max(now.pss_mb, peak.pss_mb if peak else 0.0),
                    max(now.processes, peak.processes if peak else 0),
                )
