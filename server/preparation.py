"""Before round 1: every platform connects, loads its data and builds its model, and says it is ready.

Two reasons to do this as its own step rather than inside round 1:

* a platform whose files or settings are broken fails before any round, and the log names it;
* start-up (in a simulation: Ray starting its workers, each importing torch and Flower and
  loading the data) is measured on its own, so round 1 costs what every other round costs
  and "time to reach an HR@10" counts training, not start-up, in every mode alike.
"""

from __future__ import annotations

import logging
import time

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from crossfed.server.errors import FederationError
from crossfed.shared.config import FederationConfig
from crossfed.shared.protocol.keys import CONFIG_RECORD, PREPARE_MESSAGE_TYPE, SERVER_ROUND, STAGE, STAGE_PREPARE
from crossfed.shared.protocol.replies import parse_prepare_reply

logger = logging.getLogger("crossfed.server")

#: How long the coordinator waits for every expected platform to connect before going on with those connected.
CONNECT_TIMEOUT_SECONDS = 120.0


def await_platforms(grid: Grid, expected: int, timeout: float = CONNECT_TIMEOUT_SECONDS) -> int:
    """Wait until ``expected`` platforms are connected (or ``timeout`` passes); returns how many are.

    Flower's strategies size a round's sample from the nodes connected at that instant;
    right after start-up that may be none, and the first round then trains only
    ``min-platforms`` of them - silently, and differently from run to run.
    """
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    if connected < expected:
        logger.warning("%d of %d platforms connected after %.0f s; going on with them", connected, expected, timeout)
    return connected


def prepare_platforms(grid: Grid, federation: FederationConfig) -> None:
    """Ask every connected platform to get ready, and wait for all of them to answer.

    The request carries no parameters (round 0, stage "prepare"); the replies carry only the
    platform's index. A platform that fails or does not answer within ``reply-timeout`` is
    logged and left to the rounds, which go on with at least ``min-platforms``; fewer than
    that ready ends the run here, before any round.
    """
    started = time.perf_counter()
    node_ids = list(grid.get_node_ids())
    content = RecordDict({CONFIG_RECORD: ConfigRecord({SERVER_ROUND: 0, STAGE: STAGE_PREPARE})})
    messages = [
        Message(content=content, message_type=PREPARE_MESSAGE_TYPE, dst_node_id=node_id) for node_id in node_ids
    ]
    ready: dict[int, int | None] = {}
    failed = set()
    for reply in grid.send_and_receive(messages, timeout=federation.reply_timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            failed.add(node)
            logger.warning("node %s could not get ready: %s", node, reply.error.reason)
        else:
            ready[node] = parse_prepare_reply(reply).platform
    silent = sorted(set(node_ids) - set(ready) - failed)
    if silent:
        logger.warning("nodes %s did not answer the prepare request within %.0f s", silent, federation.reply_timeout)
    if len(ready) < federation.min_platforms:
        raise FederationError(
            f"only {len(ready)} platform(s) got ready (nodes {sorted(failed)} failed, {silent} did "
            f"not answer), fewer than min-platforms = {federation.min_platforms}"
        )
    logger.info(
        "%d platform(s) ready in %.1f s (node: platform %s)",
        len(ready),
        time.perf_counter() - started,
        dict(sorted(ready.items())),
    )
