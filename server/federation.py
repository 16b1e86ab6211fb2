"""The federation loop: train, aggregate, validate, checkpoint - round after round.

Flower's strategy samples platforms and aggregates; this loop owns what a demanding
coordinator needs around it: per-platform progress, a checkpoint every round, early
stopping, resume, a final test evaluation and the results contract.

Early stopping follows the rule of every mode (``crossfed.shared.training.early_stopping``)
on the validation HR@K the platforms report. The coordinator keeps the best round's global
parameters; each platform keeps its user tower of that round (the coordinator names the
best round in every validation request), and the test request names the selected round, so
the platforms test the pair that belongs together. Nothing user-side travels for it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from crossfed.server.errors import FederationError
from crossfed.server.preparation import await_platforms, prepare_platforms
from crossfed.server.screening import screen_updates
from crossfed.server.secure_groups import secure_groups
from crossfed.server.secure_round import secure_train_round
from crossfed.server.strategy import make_strategy, restore_strategy_state, strategy_state
from crossfed.shared.config import FederationConfig, RunConfig
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.datasets import item_side
from crossfed.shared.evaluation.progress import RoundReport, validation_score
from crossfed.shared.evaluation.results import PlatformMetrics, build_summary, write_summary
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    BEST_ROUND,
    CONFIG_RECORD,
    METRICS_RECORD,
    NUM_EXAMPLES,
    SERVER_ROUND,
    STAGE,
    STAGE_TEST,
    STAGE_VALIDATION,
)
from crossfed.shared.protocol.records import from_array_record, to_array_record
from crossfed.shared.protocol.replies import EvaluateReply, TrainReply, parse_evaluate_reply, parse_train_reply
from crossfed.shared.storage.checkpoint import Checkpoint, FinalModel
from crossfed.shared.training.early_stopping import EarlyStopping

logger = logging.getLogger("crossfed.server")

#: One update for the strategy to aggregate: shared parameters and their aggregation weight.
Update = tuple[Mapping[str, np.ndarray], float | int]


def initial_arrays(config: RunConfig) -> dict:
    """Global shared parameters at round 0, built from the public item catalog alone."""
    if config.data.catalog:  # the published catalog is the item side every platform codes its items against
        catalog = load_catalog(config.data.catalog, config.data.catalog_version)
        model = build_model(config.model, len(catalog), catalog.item_features(), seed=config.experiment.seed)
    else:
        num_items, item_features = item_side(config)
        model = build_model(config.model, num_items, item_features, seed=config.experiment.seed)
    return dict(shared_arrays(model))


def run_federation(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run every round, then the final test evaluation; returns the written summary.

    The clock of the history (``elapsed_seconds``) starts once every platform is ready;
    the start-up before it is ``startup_seconds``, and ``wall_seconds`` is both. A resumed
    run adds to the figures its checkpoint holds, so they cover every session of the run,
    and continues early stopping where it left off (its best round, parameters and count).
    """
    run_started = time.perf_counter()
    strategy = make_strategy(config, config.data.num_platforms)
    checkpoint = Checkpoint.load(config.experiment.run_dir) if config.experiment.resume else None
    if checkpoint is not None:
        _check_same_run(checkpoint.config, config)
        arrays, first_round = checkpoint.arrays, checkpoint.last_round + 1
        history, elapsed_before = checkpoint.history, checkpoint.elapsed_seconds
        startup_before = checkpoint.startup_seconds
        restore_strategy_state(strategy, checkpoint.strategy_state)
        stopping = (
            EarlyStopping.from_state(checkpoint.early_stopping, config.federation.patience)
            if checkpoint.early_stopping
            else EarlyStopping(config.federation.patience, best_round=checkpoint.last_round)
        )
        best_arrays = checkpoint.best_arrays if checkpoint.best_arrays is not None else arrays
        logger.info(
            "resuming from %s/%s after round %d", config.experiment.run_dir, Checkpoint.FILE_NAME, checkpoint.last_round
        )
    else:
        arrays, first_round, history, elapsed_before, startup_before = initial_arrays(config), 1, [], 0.0, 0.0
        stopping, best_arrays = EarlyStopping(config.federation.patience), arrays
    await_platforms(grid, config.data.num_platforms)  # else the first round samples whoever is connected yet
    prepare_platforms(grid, config.federation)
    startup_seconds = startup_before + time.perf_counter() - run_started
    started = time.perf_counter() - elapsed_before
    round_config = config.to_flat()
    random.seed(config.experiment.seed * 1_000_003 + first_round)  # Flower samples nodes with ``random``

    rounds_completed = first_round - 1
    for server_round in range(first_round, config.federation.num_server_rounds + 1):
        if stopping.should_stop:  # a resumed run that had already stopped
            break
        record = to_array_record(arrays)
        # Platforms take every setting from their own run config; a round only says which round it is.
        messages = strategy.configure_train(server_round, record, ConfigRecord(), grid)
        groups: list[list[int]] = []
        if config.secure_aggregation.secagg:
            replies, updates, groups = _secure_round(grid, arrays, messages, server_round, config)
        else:
            replies = [
                parse_train_reply(reply)
                for reply in _successful(
                    grid.send_and_receive(messages, timeout=config.federation.reply_timeout), "train", server_round
                )
            ]
            # Under SecAgg+ there is nothing to screen here: each platform bounds its own update.
            trained, _rejected = screen_updates(
                [reply for reply in replies if reply.sent_parameters],
                arrays,
                config.robustness.max_update_norm,
                server_round,
                private=config.private,
            )
            updates = in_platform_order(trained)
        declined = [
            reply.platform
            for reply in replies
            if reply.declined and reply.platform is not None and not reply.sent_parameters
        ]
        if declined:
            logger.warning("round %d: platforms %s declined to train: privacy budget spent", server_round, declined)
        contributing = _contributing(updates, replies, declined, config)
        if contributing < config.federation.min_platforms:
            if declined:
                report = RoundReport(
                    server_round,
                    float("nan"),
                    [],
                    time.perf_counter() - started,
                    epsilon=_epsilon(replies),
                    declined=declined,
                )
                history.append(report.as_dict())
                report.log(config)
                logger.warning(
                    "round %d: %d platform(s) left with budget, fewer than min-platforms = %d; stopping after round %d",
                    server_round,
                    contributing,
                    config.federation.min_platforms,
                    server_round - 1,
                )
                break
            _require(contributing, config.federation, f"round {server_round} training")
        arrays = aggregate_updates(strategy, server_round, updates)
        validation = evaluate_platforms(grid, arrays, server_round, STAGE_VALIDATION, config, stopping.best_round)
        report = RoundReport(
            server_round,
            _weighted_loss(replies),
            validation,
            time.perf_counter() - started,
            epsilon=_epsilon(replies),
            declined=declined,
        )
        history.append({**report.as_dict(), **({"secagg_groups": groups} if len(groups) > 1 else {})})
        report.log(config)
        rounds_completed = server_round
        if stopping.report(server_round, validation_score(validation)):
            best_arrays = arrays
        Checkpoint(
            arrays=arrays,
            last_round=server_round,
            config=round_config,
            history=history,
            strategy_state=strategy_state(strategy),
            elapsed_seconds=time.perf_counter() - started,
            startup_seconds=startup_seconds,
            early_stopping=stopping.to_state(),
            best_arrays=best_arrays,
        ).save(config.experiment.run_dir)
        if stopping.should_stop:
            logger.info(
                "no better validation HR in %d round(s): stopping after round %d, testing round %d",
                stopping.rounds_without_improvement,
                server_round,
                stopping.best_round,
            )
            break

    # No round measured better than nothing (only NaN scores): the last round's model is the one to test.
    selected, tested = (stopping.best_round, best_arrays) if stopping.best_round else (rounds_completed, arrays)
    FinalModel(arrays=tested, config=round_config, selected_round=selected).save(config.experiment.run_dir)
    replies = request_evaluation(grid, tested, rounds_completed, STAGE_TEST, config, selected)
    summary = build_summary(
        mode="federated",
        config=config,
        wall_seconds=time.perf_counter() - started + startup_seconds,
        startup_seconds=startup_seconds,
        test=_platform_metrics(replies),
        global_test=_platform_metrics(replies, global_model=True),
        history=history,
        extra={
            "rounds_completed": rounds_completed,
            "selected_round": selected,
            "stopped_round": rounds_completed,
            "secure_aggregation": config.secure_aggregation.secagg,
            "noise_mode": config.secure_aggregation.noise_mode,
            **({"privacy": privacy_block(config, replies)} if config.private else {}),
        },
    )
    write_summary(config.experiment.run_dir, summary)
    return summary


def aggregate_in_order(strategy: Strategy, server_round: int, trained: Sequence[TrainReply]) -> dict[str, np.ndarray]:
    """The strategy's aggregate of the accepted updates, taken in platform order (see :func:`aggregate_updates`)."""
    return aggregate_updates(strategy, server_round, in_platform_order(trained))


def in_platform_order(trained: Sequence[TrainReply]) -> list[Update]:
    """Parameters and weights of readable updates, in platform order.

    Replies arrive in any order, and a float sum depends on its order: taken in platform
    order, the same seed gives the same model, bit for bit.
    """
    return [
        (reply.arrays, reply.num_examples)
        for reply in sorted(trained, key=platform_order)
        if reply.arrays is not None and reply.num_examples is not None
    ]


def aggregate_updates(strategy: Strategy, server_round: int, updates: Sequence[Update]) -> dict[str, np.ndarray]:
    """The strategy's aggregate of ``(parameters, weight)`` pairs, summed in the order given.

    The strategy sees only what it weighs and averages (the parameters and ``num-examples``):
    Flower's aggregation also averages every other metric of every reply and requires them
    all to match, so one platform's extra or list-valued metric would otherwise fail the round for all.
    """
    inputs = [
        _local_reply(
            RecordDict(
                {
                    ARRAYS_RECORD: to_array_record(parameters),
                    METRICS_RECORD: MetricRecord({NUM_EXAMPLES: weight}),
                }
            )
        )
        for parameters, weight in updates
    ]
    aggregated, _ = strategy.aggregate_train(server_round, inputs)
    if aggregated is None:
        raise FederationError(f"round {server_round}: aggregation produced no parameters")
    return from_array_record(aggregated)


def _secure_round(
    grid: Grid, arrays: dict, messages: Iterable[Message], server_round: int, config: RunConfig
) -> tuple[list[TrainReply], list[Update], list[list[int]]]:
    """A SecAgg+ round, in the shape of a plain one: each platform's status, and one update per
    group - the group's unmasked mean (global + mean update) with its total weight - for the strategy
    to combine; and the groups (node ids) the round used.

    With ``secagg-groups = 1`` the one group is every sampled platform. A group whose sum could
    not be unmasked because too few of its platforms contributed adds no update; a robust rule
    then still needs enough group means to outvote one.
    """
    node_ids = [message.metadata.dst_node_id for message in messages]
    federation = config.federation
    groups = secure_groups(
        node_ids,
        config.secure_aggregation.secagg_groups,
        federation.min_platforms,
        config.experiment.seed,
        server_round,
    )
    if len(groups) > 1:
        logger.info("round %d: SecAgg+ groups (node ids) %s", server_round, groups)
    replies: list[TrainReply] = []
    updates: list[Update] = []
    for members in groups:
        outcome = secure_train_round(grid, arrays, members, server_round, config)
        replies += outcome.replies
        if outcome.mean_update is None:
            if outcome.contributors >= federation.min_platforms:
                raise FederationError(
                    f"round {server_round}: SecAgg+ could not unmask the sum of {outcome.contributors} "
                    f"platforms ({outcome.dropped} dropped; too few key shares left)"
                )
            continue
        mean = {name: arrays[name] + outcome.mean_update[name].astype(arrays[name].dtype) for name in arrays}
        updates.append((mean, outcome.total_weight))
    needed = config.robustness.values_to_outvote_one or 1
    if updates and len(updates) < needed:
        raise FederationError(
            f"round {server_round}: only {len(updates)} of {len(groups)} SecAgg+ group sums were unmasked; "
            f"aggregation = '{config.robustness.aggregation}' needs at least {needed}"
        )
    return replies, updates, groups


def _contributing(
    updates: Sequence[Update], replies: Sequence[TrainReply], declined: list[int], config: RunConfig
) -> int:
    """How many platforms' updates are in this round's aggregate (under SecAgg+ each update is a group's)."""
    if not config.secure_aggregation.secagg:
        return len(updates)
    return len(replies) - len(declined) if updates else 0


def platform_order(reply: TrainReply) -> tuple[float, int]:
    """Replies sort by platform index; one without a valid index comes last, by node."""
    return (float(reply.platform) if reply.platform is not None else math.inf, reply.node_id)


def _local_reply(content: RecordDict) -> Message:
    """A message built on the coordinator, standing in for replies it never sees one by one."""
    return Message(content=content, dst_node_id=0, message_type=MessageType.TRAIN)


def evaluate_platforms(
    grid: Grid, arrays: dict, server_round: int, stage: str, config: RunConfig, best_round: int = 0
) -> list[PlatformMetrics]:
    return _platform_metrics(request_evaluation(grid, arrays, server_round, stage, config, best_round))


def request_evaluation(
    grid: Grid, arrays: dict, server_round: int, stage: str, config: RunConfig, best_round: int = 0
) -> list[EvaluateReply]:
    """Every connected platform ranks its own held-out items and reports platform-level means.

    ``best_round`` (see :data:`~crossfed.shared.protocol.keys.BEST_ROUND`): for validation the best round
    before this one, for the test the selected round; 0 names none.
    """
    content_config = ConfigRecord({SERVER_ROUND: server_round, STAGE: stage, BEST_ROUND: best_round})
    messages = [
        Message(
            content=RecordDict({ARRAYS_RECORD: to_array_record(arrays), CONFIG_RECORD: content_config}),
            message_type=MessageType.EVALUATE,
            dst_node_id=node_id,
        )
        for node_id in grid.get_node_ids()
    ]
    replies = _successful(
        grid.send_and_receive(messages, timeout=config.federation.reply_timeout), f"{stage} evaluation", server_round
    )
    _require(len(replies), config.federation, f"round {server_round} {stage} evaluation")
    return [parse_evaluate_reply(reply) for reply in replies]


def _platform_metrics(replies: Sequence[EvaluateReply], *, global_model: bool = False) -> list[PlatformMetrics]:
    """Metrics of the replies that carry them (none do under DP: platforms keep them), by platform."""
    found = [reply.global_model if global_model else reply.served for reply in replies]
    return sorted((metrics for metrics in found if metrics is not None), key=lambda m: m.platform)


def privacy_block(config: RunConfig, replies: Sequence[EvaluateReply]) -> dict[str, Any]:
    """The results contract's ``privacy`` block, from what the platforms report.

    Each figure is keyed by the reporting node (:func:`reporter_keys`): a platform index is
    only what a reply claims, and one platform claiming another's index must not replace
    that platform's ε in the summary.
    """
    reported = [reply for reply in replies if reply.platform is not None]
    keys = reporter_keys(reported)
    return {
        "unit": config.privacy.privacy_unit,
        "epsilon": {keys[r.node_id]: r.privacy.epsilon for r in reported if r.privacy.epsilon is not None},
        "epsilon_alone": {
            keys[r.node_id]: r.privacy.epsilon_alone for r in reported if r.privacy.epsilon_alone is not None
        },
        "epsilon_budget": config.privacy.epsilon,
        "noise_mode": config.secure_aggregation.noise_mode,
        "delta": config.privacy.delta,
        "noise_multiplier": {
            keys[r.node_id]: r.privacy.noise_multiplier for r in reported if r.privacy.noise_multiplier is not None
        },
        "clip": config.privacy.clip_norm,
        "accountant": config.privacy.accountant,
    }


def reporter_keys(replies: Sequence[TrainReply | EvaluateReply]) -> dict[int, str]:
    """Node id -> the key its figures go under: its platform index when no other node claims the same
    index, else ``node-<id>`` for every claimant (the coordinator cannot tell which claim is true)."""
    claimants: dict[int | None, set[int]] = {}
    for reply in replies:
        claimants.setdefault(reply.platform, set()).add(reply.node_id)
    keys = {}
    for platform, nodes in claimants.items():
        if len(nodes) > 1:
            logger.warning("nodes %s all claim platform %s: their figures are kept per node", sorted(nodes), platform)
        for node in nodes:
            keys[node] = str(platform) if len(nodes) == 1 and platform is not None else f"node-{node}"
    return keys


def _epsilon(replies: Sequence[TrainReply]) -> dict[int | str, float]:
    reported = [reply for reply in replies if reply.privacy.epsilon is not None and reply.platform is not None]
    keys = reporter_keys(reported)
    return {
        (int(keys[reply.node_id]) if keys[reply.node_id].isdigit() else keys[reply.node_id]): reply.privacy.epsilon
        for reply in reported
    }


#: Keys that may differ between a run and its resumption (more rounds or more patience extend a run; DP budgets
#: still hold).
_RESUMABLE_KEYS = frozenset({"resume", "run-dir", "data-dir", "num-server-rounds", "patience", "reply-timeout"})


def _check_same_run(saved: dict[str, Any], config: RunConfig) -> None:
    current = config.to_flat()
    changed = sorted(
        k for k in set(saved) | set(current) if k not in _RESUMABLE_KEYS and saved.get(k) != current.get(k)
    )
    if changed:
        raise FederationError(
            f"cannot resume {config.experiment.run_dir}: its checkpoint was made with other settings for {changed}"
        )


def _successful(replies: Iterable[Message], what: str, server_round: int) -> list[Message]:
    good: list[Message] = []
    for reply in replies:
        if reply.has_error():
            logger.warning(
                "round %d %s: node %s failed: %s", server_round, what, reply.metadata.src_node_id, reply.error.reason
            )
        else:
            good.append(reply)
    return good


def _require(count: int, federation: FederationConfig, what: str) -> None:
    if count < federation.min_platforms:
        raise FederationError(
            f"{what}: only {count} platform(s) answered, fewer than min-platforms = {federation.min_platforms}"
        )


def _weighted_loss(replies: Sequence[TrainReply]) -> float:
    """Example-weighted training loss (summed in platform order, like the parameters); NaN under
    DP, where platforms do not send it."""
    pairs = [
        (float(r.train_loss), float(r.num_examples))
        for r in sorted(replies, key=platform_order)
        if r.train_loss is not None and r.num_examples is not None
    ]
    total = sum(weight for _, weight in pairs)
    return sum(loss * weight for loss, weight in pairs) / total if total else float("nan")
