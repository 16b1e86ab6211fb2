"""A platform's local state as one serialisable object, kept on the platform's own disk.

Holds what must survive a SuperNode restart: the user tower (never sent anywhere),
the optimizer, the last round trained and, with differential privacy, the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from crossfed.shared.storage.checked import CheckedRecord

STATE_FILE = "platform_state.pt"


@dataclass
class PlatformState(CheckedRecord):
    FILE_NAME: ClassVar[str] = STATE_FILE

    user_tower: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    last_round: int = 0
    ledger: dict[str, Any] | None = None
    #: The training reply sent for ``last_round`` (shared arrays, metrics), replayed if that round is asked again.
    last_reply: dict[str, Any] | None = None
