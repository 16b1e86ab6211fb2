"""A platform's local state as one serialisable object, kept on the platform's own disk.

Holds what must survive a SuperNode restart: the user tower (never sent anywhere),
the optimizer, the last round trained and, with differential privacy, the ledger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.storage import load_checked, save_checked

STATE_FILE = "platform_state.pt"


@dataclass
class PlatformState:
    user_tower: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    last_round: int = 0
    ledger: dict[str, Any] | None = None

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / STATE_FILE
        save_checked(path, asdict(self))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "PlatformState | None":
        """The saved state, None if there is none yet; a corrupt file raises, never half-loads."""
        path = Path(directory) / STATE_FILE
        if not path.exists():
            return None
        return cls(**load_checked(path))
