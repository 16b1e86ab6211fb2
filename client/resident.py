"""A platform's trainer kept in its worker process between the messages of one run.

Rebuilding the platform's trainer for every message of a round (train, then validation) means
the leave-last-out split, a freshly initialised model, an optimizer, and the saved state read
back from disk, checksummed and checked against the users, each time. A simulated platform's worker lives across
rounds, so the trainer it finished the last message with can serve the next one, provided it
is exactly what rebuilding from disk would give.

The platform's state file stays the truth. A trainer is kept only right after the message that
wrote (or found) that file, together with the file's stamp (inode, size, modification time); it
is taken back only for the same run, the same configuration and the same data object, and only
while the file still carries that stamp. Anything else - another process wrote the state, the
run restarted, a message failed half-way (taking a trainer removes it) - rebuilds from disk.
Private trainers are never kept: their ledger and clipping wrappers are rebuilt from the state
every message, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import PlatformData
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.shared.trainer import PlatformTrainer

#: A state file's identity: inode, size, modification time in ns; None when there is no file yet.
Stamp = tuple[int, int, int] | None

#: Trainers one worker keeps (a simulation's worker serves several platforms in turn); beyond
#: this the least recently used one is rebuilt from disk when asked again.
MAX_RESIDENT = 16


@dataclass(frozen=True)
class _Entry:
    trainer: PlatformTrainer
    config: RunConfig
    stamp: Stamp


_RESIDENT: OrderedDict[tuple[str, int], _Entry] = OrderedDict()


def state_stamp(directory: Path) -> Stamp:
    """The identity of ``directory``'s platform state file as it is now (a save replaces the file)."""
    try:
        status = (directory / PlatformState.FILE_NAME).stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def take(directory: Path, run_id: int, config: RunConfig, data: PlatformData) -> PlatformTrainer | None:
    """The trainer kept for this platform's state, if it still matches; it is no longer kept either way."""
    entry = _RESIDENT.pop((str(directory), run_id), None)
    if entry is None or entry.config != config or entry.trainer.data is not data:
        return None
    return entry.trainer if entry.stamp == state_stamp(directory) else None


def keep(directory: Path, run_id: int, trainer: PlatformTrainer) -> None:
    """Keep ``trainer`` for the next message; call only when it equals the state now on disk."""
    if trainer.private:
        return
    key = (str(directory), run_id)
    _RESIDENT[key] = _Entry(trainer, trainer.config, state_stamp(directory))
    _RESIDENT.move_to_end(key)
    while len(_RESIDENT) > MAX_RESIDENT:
        _RESIDENT.popitem(last=False)


def clear() -> None:
    """Forget every kept trainer (each next message rebuilds from disk)."""
    _RESIDENT.clear()
