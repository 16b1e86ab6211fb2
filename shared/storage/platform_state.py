"""A platform's local state as one serialisable object, kept on the platform's own disk.

Holds what must survive a SuperNode restart: the user tower (never sent anywhere), the
optimizer, the last round trained, the user towers early stopping may still select and, with
differential privacy, the ledger. It also holds the platform's user ids in the order of the
user tower's rows: a row means a user only together with that list, so whoever loads the
state against an interactions file checks that the file has the same users in the same order
(:meth:`PlatformState.load_for_users`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from crossfed.shared.errors import CrossfedError
from crossfed.shared.storage.checked import CheckedRecord


class PlatformUsersError(CrossfedError):
    """The platform state was trained on other users than the data it is loaded with."""


@dataclass
class PlatformState(CheckedRecord):
    FILE_NAME: ClassVar[str] = "platform_state.pt"

    user_tower: dict[str, Any]
    #: The platform's user ids, one per row of the user tower, in row order.
    user_ids: list[str]
    optimizer: dict[str, Any] | None = None
    last_round: int = 0
    ledger: dict[str, Any] | None = None
    #: The training reply sent for ``last_round`` (shared arrays, metrics), replayed if that round is asked again.
    last_reply: dict[str, Any] | None = None
    #: User towers of the rounds early stopping may still select (the coordinator's best round so far and
    #: the latest validated one), by round: the test restores the selected round's tower.
    kept_towers: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load_for_users(cls, directory: str | Path, user_ids: Sequence[str]) -> Self | None:
        """The saved state (None if there is none yet), refused unless its users are ``user_ids`` in this order.

        Raises:
            PlatformUsersError: names the file and the first user that differs or is missing.
        """
        state = cls.load(directory)
        if state is not None:
            state.check_users(user_ids, Path(directory) / cls.FILE_NAME)
        return state

    def check_users(self, user_ids: Sequence[str], source: str | Path) -> None:
        """Raise :class:`PlatformUsersError` unless ``user_ids`` are this state's users, row for row."""
        given = [str(u) for u in user_ids]
        if given == self.user_ids:
            return
        shorter = min(len(self.user_ids), len(given))
        row = next((i for i, (a, b) in enumerate(zip(self.user_ids, given, strict=False)) if a != b), shorter)
        if row >= len(given):
            difference = f"user {self.user_ids[row]!r} (row {row} of the state) is missing from the data"
        elif row >= len(self.user_ids):
            difference = f"the data has user {given[row]!r} (row {row}), whom the state was never trained on"
        else:
            difference = f"row {row} is user {self.user_ids[row]!r} in the state but {given[row]!r} in the data"
        raise PlatformUsersError(
            f"{source}: the platform state was trained on other users than the data it is "
            f"loaded with ({len(self.user_ids)} users in the state, {len(given)} in the data): "
            f"{difference}"
        )
