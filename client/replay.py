"""A platform answers a repeated training request with the reply it already computed.

A coordinator that dies after platforms trained round r, but before it checkpointed
round r, asks for round r again when it restarts. Training again would charge the
privacy ledger twice for one round (and train the user tower twice); sending the
same, already privatised reply again is post-processing and costs nothing. So the
reply is saved in the same atomic file as the state it came from (``PlatformState``):
either both the trained state and its reply are on disk, or neither is.

A saved reply answers one request only: the same global arrays (their SHA-256 digest) in
the same run (Flower's run id). A coordinator that resumes from its checkpoint starts a new
Flower run with ``resume = true`` and sends the checkpointed arrays again, so a resumed run
gets the saved reply when the arrays match. Any other new run that reuses the state
directory, or a request for the same round with other global arrays, is trained afresh
instead of being sent an answer to a question it did not ask.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossfed.shared.storage.platform_state import PlatformState

logger = logging.getLogger(__name__)


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class SavedReply:
    server_round: int
    arrays: dict[str, np.ndarray]
    metrics: dict[str, Any]
    #: The run it answered and the digest of the global arrays it was trained from.
    run_id: int = 0
    received: str = ""

    def to_state(self) -> dict[str, Any]:
        return {
            "round": self.server_round,
            "arrays": self.arrays,
            "metrics": self.metrics,
            "run-id": self.run_id,
            "received": self.received,
        }


def saved_reply(
    directory: Path, server_round: int, run_id: int, received: Mapping[str, np.ndarray], resumed: bool = False
) -> SavedReply | None:
    """The reply this platform already sent for ``server_round`` of run ``run_id`` (any run when
    ``resumed``) from the global arrays ``received``, if its saved state holds one."""
    state = PlatformState.load(directory)
    if state is None or state.last_round != server_round or not state.last_reply:
        return None
    reply = state.last_reply
    if int(reply["round"]) != server_round:
        return None
    same_run = reply.get("run-id") == run_id or (resumed and "run-id" in reply)
    if not same_run or reply.get("received") != arrays_digest(received):
        logger.warning(
            "round %d was trained here for another run or other global arrays: training it for this request",
            server_round,
        )
        return None
    logger.warning(
        "round %d was already trained here (coordinator restarted?): sending the saved reply again "
        "instead of training and spending privacy budget twice",
        server_round,
    )
    return SavedReply(server_round, dict(reply["arrays"]), dict(reply["metrics"]), run_id, reply["received"])
