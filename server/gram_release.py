"""The coordinator's side of ``user-dp-mechanism = gram-subspace``: one release, one eigendecomposition.

Under user-level DP the federation can spend each platform's whole budget on one noised release
of its item Gram matrix over unit user rows (``crossfed.shared.privacy.item_subspace``) instead
of DP-SGD rounds: every platform answers one request with its release (plainly, or masked under
SecAgg+ so the coordinator sees only the sum), the coordinator sums them, takes the top
eigenvectors of the sum - post-processing, no privacy spent - and sends them to every platform,
which serves its local-only model plus its users' projections on them
(``crossfed.client.subspace``). Nothing is trained here and no round loop runs: the summary's
history holds the one release.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from crossfed.server.errors import FederationError
from crossfed.server.federation import privacy_block, reporter_keys
from crossfed.server.preparation import await_platforms, prepare_platforms
from crossfed.server.secure_round import secure_train_round
from crossfed.shared.config import RunConfig
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.datasets import item_side
from crossfed.shared.evaluation.results import PlatformMetrics, build_summary, write_summary
from crossfed.shared.privacy.item_subspace import release_length, release_noise_std, release_subspace
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    BASIS_ARRAY,
    CONFIG_RECORD,
    GRAM_RELEASE_MESSAGE_TYPE,
    RELEASE_ARRAY,
    SERVER_ROUND,
    STAGE,
    STAGE_TEST,
    SUBSPACE_TEST_MESSAGE_TYPE,
)
from crossfed.shared.protocol.records import to_array_record
from crossfed.shared.protocol.replies import EvaluateReply, parse_evaluate_reply, parse_release_reply
from crossfed.shared.protocol.secure_aggregation import release_plan

logger = logging.getLogger("crossfed.server")

#: What one kind of reply parses into.
Reply = TypeVar("Reply")

#: The stage name of the release request and of its entry in the summary's history.
STAGE_RELEASE = "gram-release"


def catalog_size(config: RunConfig) -> int:
    """Items in the run's catalog (the published one, else the simulated one): ``n`` of every release."""
    if config.data.catalog:
        return len(load_catalog(config.data.catalog, config.data.catalog_version))
    return item_side(config)[0]


def run_gram_subspace(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Collect one release per platform, send the top eigenvectors of their sum, and write the summary."""
    run_started = time.perf_counter()
    num_items = catalog_size(config)
    rank = min(max(config.serving.subspace_rank_grid), num_items)
    await_platforms(grid, config.data.num_platforms)
    prepare_platforms(grid, config.federation)
    startup_seconds = time.perf_counter() - run_started
    started = time.perf_counter()
    if config.secure_aggregation.secagg:
        total, contributors, declined = _secure_sum(grid, config, num_items)
    else:
        total, contributors, declined = _plain_sum(grid, config, num_items)
    if declined:
        logger.warning("platforms %s declined the Gram release: privacy budget spent", declined)
    if contributors < config.federation.min_platforms:
        raise FederationError(
            f"the Gram release: {contributors} platform(s) contributed, fewer than "
            f"min-platforms = {config.federation.min_platforms}"
        )
    assert total is not None
    basis = release_subspace(total, num_items, rank)
    released_seconds = time.perf_counter() - started
    logger.info(
        "the sum of %d Gram releases (%d entries) gives the top %d eigenvectors in %.1f s",
        contributors,
        total.size,
        rank,
        released_seconds,
    )
    replies = _test(grid, basis, config)
    history = [
        {
            "round": 1,
            "stage": STAGE_RELEASE,
            "contributors": contributors,
            "declined": declined,
            "rank_sent": rank,
            "elapsed_seconds": round(released_seconds, 3),
        }
    ]
    summary = build_summary(
        mode="federated",
        config=config,
        wall_seconds=time.perf_counter() - started + startup_seconds,
        startup_seconds=startup_seconds,
        test=_served(replies),
        history=history,
        extra={
            "rounds_completed": 1,
            "selected_round": 1,
            "stopped_round": 1,
            "secure_aggregation": config.secure_aggregation.secagg,
            "noise_mode": config.secure_aggregation.noise_mode,
            "privacy": {**privacy_block(config, replies), "mechanism": config.privacy.mechanism},
        },
    )
    write_summary(config.experiment.run_dir, summary)
    return summary


def _plain_sum(grid: Grid, config: RunConfig, num_items: int) -> tuple[np.ndarray | None, int, list[int]]:
    """The releases sent in the clear, summed in platform order (the same seed and noise give the same sum)."""
    length = release_length(num_items)
    content = RecordDict({CONFIG_RECORD: ConfigRecord({SERVER_ROUND: 1, STAGE: STAGE_RELEASE})})
    replies = _ask_every_platform(
        grid, config, content, GRAM_RELEASE_MESSAGE_TYPE, "the Gram release", lambda r: parse_release_reply(r, length)
    )
    keys = reporter_keys(replies)
    for reply in replies:
        if reply.unreadable is not None:
            logger.warning("the Gram release of %s left out: %s", keys[reply.node_id], reply.unreadable)
    kept = sorted((r for r in replies if r.release is not None), key=lambda r: (keys[r.node_id], r.node_id))
    total = None
    for reply in kept:
        assert reply.release is not None
        total = reply.release.copy() if total is None else total + reply.release
    declined = sorted(r.platform for r in replies if r.declined and r.platform is not None)
    return total, len(kept), declined


def _secure_sum(grid: Grid, config: RunConfig, num_items: int) -> tuple[np.ndarray | None, int, list[int]]:
    """The releases summed by Flower's SecAgg+: the coordinator unmasks only the sum.

    The request carries an empty placeholder (each platform's release starts from nothing); the
    ranges are :func:`release_plan`'s for this run's noise. Every platform weighs 1, so the unmasked
    mean times the contributors is the sum.
    """
    node_ids = list(grid.get_node_ids())
    placeholder = {RELEASE_ARRAY: np.zeros(0, np.float32)}
    plan = release_plan(release_noise_std(config))
    outcome = secure_train_round(grid, placeholder, node_ids, 1, config, plan=plan)
    declined = sorted(r.platform for r in outcome.replies if r.declined and r.platform is not None)
    if outcome.mean_update is None:
        return None, 0, declined
    total = outcome.mean_update[RELEASE_ARRAY].astype(np.float64) * outcome.total_weight
    if total.shape != (release_length(num_items),):
        raise FederationError(f"the SecAgg+ sum has {total.size} entries, not {release_length(num_items)}")
    return total, outcome.contributors, declined


def _test(grid: Grid, basis: np.ndarray, config: RunConfig) -> list[EvaluateReply]:
    """Every platform serves with the basis and tests on its own users; replies carry its privacy status."""
    content = RecordDict(
        {
            ARRAYS_RECORD: to_array_record({BASIS_ARRAY: basis}),
            CONFIG_RECORD: ConfigRecord({SERVER_ROUND: 1, STAGE: STAGE_TEST}),
        }
    )
    replies = _ask_every_platform(
        grid,
        config,
        content,
        SUBSPACE_TEST_MESSAGE_TYPE,
        "the subspace test (each platform trains its local-only model in it)",
        parse_evaluate_reply,
    )
    if len(replies) < config.federation.min_platforms:
        raise FederationError(
            f"the subspace test: only {len(replies)} platform(s) answered, fewer than "
            f"min-platforms = {config.federation.min_platforms}"
        )
    return replies


def _ask_every_platform(
    grid: Grid,
    config: RunConfig,
    content: RecordDict,
    message_type: str,
    what: str,
    parse: Callable[[Message], Reply],
) -> list[Reply]:
    """``content`` to every platform; the parsed replies of those that answered in time.

    A failed node and a silent one (no answer within ``reply-timeout``) are logged by name, since
    their figures are then missing from the run's summary.
    """
    messages = [
        Message(content=content, message_type=message_type, dst_node_id=node_id) for node_id in grid.get_node_ids()
    ]
    received = list(grid.send_and_receive(messages, timeout=config.federation.reply_timeout))
    replies = []
    for reply in received:
        if reply.has_error():
            logger.warning("%s: node %s failed: %s", what, reply.metadata.src_node_id, reply.error.reason)
        else:
            replies.append(parse(reply))
    silent = sorted({m.metadata.dst_node_id for m in messages} - {r.metadata.src_node_id for r in received})
    if silent:
        logger.warning(
            "%s: nodes %s did not answer within reply-timeout = %g s", what, silent, config.federation.reply_timeout
        )
    return replies


def _served(replies: list[EvaluateReply]) -> list[PlatformMetrics]:
    """Served metrics the replies carry (none under DP: each platform keeps its own)."""
    return sorted((r.served for r in replies if r.served is not None), key=lambda m: m.platform)
