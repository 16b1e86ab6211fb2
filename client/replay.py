"""A platform answers a repeated training request with the reply it already computed.

A coordinator that dies after platforms trained round r, but before it checkpointed
round r, asks for round r again when it restarts. Training again would charge the
privacy ledger twice for one round (and train the user tower twice); sending the
same, already privatised reply again is post-processing and costs nothing. So the
reply is saved in the same atomic file as the state it came from (``PlatformState``):
either both the trained state and its reply are on disk, or neither is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossfed.shared.storage.platform_state import PlatformState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavedReply:
    server_round: int
    arrays: dict[str, np.ndarray]
    metrics: dict[str, Any]

    def to_state(self) -> dict[str, Any]:
        return {"round": self.server_round, "arrays": self.arrays, "metrics": self.metrics}


def saved_reply(directory: Path, server_round: int) -> SavedReply | None:
    """The reply this platform already sent for ``server_round``, if its saved state holds one."""
    state = PlatformState.load(directory)
    if state is None or state.last_round != server_round or not state.last_reply:
        return None
    reply = state.last_reply
    if int(reply["round"]) != server_round:
        return None
    logger.warning(
        "round %d was already trained here (coordinator restarted?): sending the saved reply again "
        "instead of training and spending privacy budget twice",
        server_round,
    )
    return SavedReply(server_round, dict(reply["arrays"]), dict(reply["metrics"]))
