"""Long-running Flower processes that a loopback deployment starts and must stop again.

Flower detaches its helpers (``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``
run in their own sessions), so stopping a process group is not enough. Each
:class:`ManagedProcess` remembers the whole tree it grew - by pid, found through
``/proc`` - and stops it: SIGTERM to the root first (a SuperNode then deactivates
itself on the SuperLink, so in-flight messages fail at once instead of hanging), then
SIGKILL to whatever of that tree is still alive. Nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from crossfed.shared.runtime import proc

logger = logging.getLogger("crossfed.deploy")


def _alive(pid: int) -> bool:
    return proc.state(pid) not in (None, "Z")


class ManagedProcess:
    """One started command, its log file, and every process it spawned."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.name, self.command, self.log_path = name, list(command), log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - open as long as the process runs; closed in stop()
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True
        )
        self._seen: dict[int, str | None] = {}
        self.remember()
        logger.info("started %s (pid %d), log %s", name, self.process.pid, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def remember(self) -> None:
        """Note the descendants alive now, so they can be stopped even once orphaned."""
        for pid in proc.tree_pids(self.process.pid):
            self._seen.setdefault(pid, proc.start_time(pid))

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM the root, wait ``grace`` seconds, then SIGKILL everything of its tree still alive."""
        self.remember()
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            self.wait(grace)
        self.remember()
        if self.running():
            self.process.kill()
            self.wait(10)
        for pid, started in self._seen.items():
            if pid != self.process.pid and _alive(pid) and proc.start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.leftovers():
            time.sleep(0.2)
        self._log.close()
        return self.process.returncode

    def leftovers(self) -> list[int]:
        """Pids of this tree still running (zombies excluded)."""
        return [pid for pid, started in self._seen.items() if _alive(pid) and proc.start_time(pid) == started]
