"""What a platform does in one round: restore local state, train or evaluate, save state.

The handlers in ``client_app`` only read their configuration and call these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message

from crossfed.client import resident
from crossfed.client.bound import bound_update
from crossfed.client.local_metrics import LOCAL_FIRST_WEIGHT, LOCAL_ONLY_PREFIX, record_locally
from crossfed.client.replay import SavedReply, arrays_digest, saved_reply
from crossfed.shared.config import ExperimentConfig, RunConfig, pinned_run_config
from crossfed.shared.config.node import deployed_state_dir, is_deployed, without_platform_paths
from crossfed.shared.config.trust import (
    refuse_revealing_settings,
    refuse_unpinned_privacy_settings,
    trusts_distributed_noise,
)
from crossfed.shared.data.interactions import PlatformData
from crossfed.shared.data.loader import platform_data
from crossfed.shared.errors import CrossfedError
from crossfed.shared.evaluation.per_user_results import (
    GlobalPerUserResults,
    LocalOnlyPerUserResults,
    PerUserResults,
)
from crossfed.shared.evaluation.results import PlatformMetrics, platform_dir
from crossfed.shared.model.sharing import load_local_parameters, load_shared_arrays, shared_arrays
from crossfed.shared.privacy import BudgetExceeded
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    BEST_ROUND,
    CONFIG_RECORD,
    DECLINED,
    DELTA,
    EPSILON,
    EPSILON_ALONE,
    GLOBAL_PREFIX,
    NOISE_MULTIPLIER,
    NUM_EXAMPLES,
    NUM_USERS,
    PAIRS_PER_SECOND,
    PLATFORM,
    SERVER_ROUND,
    STAGE,
    STAGE_VALIDATION,
    TRAIN_LOSS,
    TRAIN_SECONDS,
)
from crossfed.shared.protocol.records import from_array_record
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.shared.trainer import LocalFirstChoice, PlatformTrainer

logger = logging.getLogger(__name__)


class MechanismMismatch(CrossfedError, RuntimeError):
    """A request for one user-level DP mechanism reached a platform configured for the other."""


def platform_config(context: Context, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The platform's own configuration: run config < local overrides < node config.

    Nothing here comes from the coordinator's messages: a coordinator that could set
    ``privacy-unit``, ``epsilon`` or the state directory could switch privacy off or
    reset a budget. It only tells the round number and the evaluation stage. In a
    deployment the run config is what the coordinator submitted, so every run-config key
    may also be pinned in the SuperNode's node config (``--node-config 'privacy-unit="user"
    epsilon=4.0 secagg=true'``), and the operator's value wins. A node-config key that is
    neither a run-config key nor one Flower or the platform itself uses is refused.

    A deployed platform (:func:`~crossfed.shared.config.node.is_deployed`) also ignores the
    paths the run config names and refuses a privacy-relevant value the operator did not pin
    (:mod:`crossfed.shared.config.trust`); a simulation's run config is the researcher's own.
    """
    node = context.node_config
    local = pinned_run_config(node)
    if "num-partitions" in node:
        local["num-platforms"] = node["num-partitions"]
    if not is_deployed(node):
        return RunConfig.from_mapping(context.run_config, overrides, local)
    submitted = without_platform_paths(context.run_config)
    ignored = sorted(set(context.run_config) - set(submitted))
    if ignored:
        logger.info("paths in the coordinator's run config ignored (node config names them): %s", ignored)
    config = RunConfig.from_mapping(submitted, overrides, local)
    refuse_unpinned_privacy_settings(config, operator_pins(context, overrides))
    return config


def operator_pins(context: Context, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keys the platform's side set: its node config and the local overrides."""
    return {**(overrides or {}), **pinned_run_config(context.node_config)}


def platform_index(context: Context) -> int:
    return int(context.node_config.get("partition-id", 0))


def state_dir(context: Context, experiment: ExperimentConfig, platform: int) -> Path:
    """The platform's private directory: ``state-dir`` from node config (required when deployed), else
    under the run folder of a simulation."""
    if is_deployed(context.node_config):
        return deployed_state_dir(context.node_config)
    return platform_dir(experiment.run_dir, platform)


def build_trainer(context: Context, overrides: Mapping[str, Any] | None) -> tuple[PlatformTrainer, Path, RunConfig]:
    """The platform's model over its own data, with its saved user tower (if any)."""
    torch.set_num_threads(1)  # one simulated platform per core; avoid oversubscription
    config = platform_config(context, overrides)
    platform = platform_index(context)
    data: PlatformData = platform_data(config, platform)
    directory = state_dir(context, config.experiment, platform)
    trainer = resident.take(directory, context.run_id, config, data)
    if trainer is None:
        trainer = PlatformTrainer(data, config)
        saved = PlatformState.load_for_users(directory, data.user_ids)
        if saved is not None:
            trainer.restore(saved)
    if is_deployed(context.node_config):
        pins = operator_pins(context, overrides)
        trainer.budget_on_own_noise = not trusts_distributed_noise(config, pins)
        if "eval-negatives" not in pins:
            refuse_revealing_settings(config, data.num_items)
    return trainer, directory, config


def open_trainer(
    arrays: Mapping[str, np.ndarray], context: Context, overrides: Mapping[str, Any] | None
) -> tuple[PlatformTrainer, Path, RunConfig]:
    """The platform's model with the coordinator's shared parameters and its own user tower."""
    trainer, directory, config = build_trainer(context, overrides)
    load_shared_arrays(trainer.model, dict(arrays))
    return trainer, directory, config


def prepare(context: Context, overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, int], bool]:
    """Get ready to train before round 1: load and check the data, build the model.

    A platform whose files or settings are broken fails here, before any round, and the
    coordinator knows which. In a simulation the Ray worker lives on and keeps the dataset
    it loaded (``platform_data`` caches per process), so round 1 costs what every other
    round does. Returns the metrics to send (only the platform's index) and whether it is private.
    """
    trainer, directory, _config = build_trainer(context, overrides)
    resident.keep(directory, context.run_id, trainer)
    return {PLATFORM: trainer.data.platform}, trainer.private


def request_contents(message: Message) -> tuple[dict[str, np.ndarray], int]:
    """The global shared parameters and the round number of a plain (Message API) request."""
    return from_array_record(message.content[ARRAYS_RECORD]), int(message.content[CONFIG_RECORD][SERVER_ROUND])


def train(
    arrays: Mapping[str, np.ndarray],
    server_round: int,
    context: Context,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[PlatformTrainer, dict[str, float | int], bool]:
    """One local round. Returns the trainer, the metrics to send, and whether it trained.

    A platform whose next round would exceed its privacy budget declines: it trains
    nothing and sends no parameters, only its status.
    """
    trainer, directory, config = open_trainer(arrays, context, overrides)
    if config.privacy.mechanism == "gram-subspace":
        raise MechanismMismatch(
            "this platform's configuration says user-dp-mechanism = 'gram-subspace': it spends its budget on one "
            "Gram release and trains no DP-SGD round"
        )
    platform = trainer.data.platform
    # Under SecAgg+ a repeated round is trained (and charged) again: the same update under fresh masks,
    # summed with a different set of platforms, would let the coordinator isolate it.
    earlier = (
        None
        if config.secure_aggregation.secagg
        else saved_reply(directory, server_round, context.run_id, arrays, resumed=config.experiment.resume)
    )
    if earlier is not None:  # a restarted coordinator asks again: same reply, no second charge
        load_shared_arrays(trainer.model, earlier.arrays)
        return trainer, earlier.metrics, True
    try:
        result = trainer.train(config.training.local_epochs, salt=server_round)
    except BudgetExceeded as refusal:
        logger.warning("%s: declining round %d", refusal, server_round)
        return trainer, {PLATFORM: platform, DECLINED: 1, **privacy_metrics(trainer)}, False
    bound_update(trainer.model, arrays, config.robustness.max_update_norm)
    if trainer.private:
        # Under DP only values derived from public settings leave: equal weights, no loss, no timings.
        metrics = {PLATFORM: platform, NUM_EXAMPLES: 1, DECLINED: 0, **privacy_metrics(trainer)}
    else:
        metrics = {
            PLATFORM: platform,
            NUM_EXAMPLES: result.positives,
            TRAIN_LOSS: result.loss,
            TRAIN_SECONDS: result.seconds,
            PAIRS_PER_SECOND: result.pairs_per_second,
        }
    state = trainer.snapshot(server_round)
    state.last_reply = SavedReply(
        server_round, dict(shared_arrays(trainer.model)), metrics, context.run_id, arrays_digest(arrays)
    ).to_state()
    state.save(directory)
    record_locally(
        directory,
        {
            "round": server_round,
            "stage": "train",
            "loss": result.loss,
            "seconds": result.seconds,
            "pairs-per-second": result.pairs_per_second,
        },
    )
    resident.keep(directory, context.run_id, trainer)
    return trainer, metrics, True


def evaluate(
    message: Message, context: Context, overrides: Mapping[str, Any] | None = None
) -> tuple[dict[str, float | int], bool]:
    """Validation: the current model. Test: the model the platform serves and the global model.

    Returns the metrics to send and whether the platform is private. The platform always
    keeps its own figures (``metrics.jsonl`` in its directory). Without DP it sends their
    platform-level means; under DP it sends none of them. For early stopping a validation
    keeps this round's user tower (and the best round's) on the platform's disk, and the test
    restores the tower of the round the coordinator selected, whose shared parameters it sends.
    """
    arrays, server_round = request_contents(message)
    trainer, directory, config = open_trainer(arrays, context, overrides)
    stage = str(message.content[CONFIG_RECORD].get(STAGE, STAGE_VALIDATION))
    best_round = int(message.content[CONFIG_RECORD].get(BEST_ROUND, 0))
    platform = trainer.data.platform
    kept_here: dict[str, float] = {}  # the platform's own log only, never the reply
    if stage == STAGE_VALIDATION:
        results = trainer.evaluate(STAGE_VALIDATION, full=config.evaluation.full_ranking_due(server_round))
        metrics = PlatformMetrics.from_results(platform, results).to_flat()
        trainer.kept_towers = keep_user_tower(directory, server_round, best_round)
        resident.keep(directory, context.run_id, trainer)
    else:
        restore_user_tower(trainer, directory, best_round)
        outcome = trainer.test_outcome()
        PerUserResults.save(directory, outcome.served)
        GlobalPerUserResults.save(directory, outcome.current)
        metrics = {
            **PlatformMetrics.from_results(platform, outcome.served).to_flat(),
            **PlatformMetrics.from_results(platform, outcome.current).to_flat(prefix=GLOBAL_PREFIX),
        }
        results = outcome.served
        if outcome.local_first is not None:
            kept_here = local_first_figures(directory, platform, outcome.local_first)
    local = {PLATFORM: platform, NUM_USERS: len(results.users), **metrics}
    record_locally(directory, {"round": server_round, "stage": stage, **local, **kept_here})
    if trainer.private:
        return {PLATFORM: platform, **privacy_metrics(trainer)}, True
    return local, False


def local_first_figures(directory: Path, platform: int, choice: LocalFirstChoice) -> dict[str, float]:
    """The local-first weight and the local-only model's test figures, for the platform's own log.

    Its local-only model's per-user outcomes are saved beside the served model's, so the
    platform can test on its own users whether the global model's share helped.
    """
    LocalOnlyPerUserResults.save(directory, choice.local_only)
    return {
        LOCAL_FIRST_WEIGHT: choice.weight,
        **PlatformMetrics.from_results(platform, choice.local_only).to_flat(prefix=LOCAL_ONLY_PREFIX),
    }


def keep_user_tower(directory: Path, server_round: int, best_round: int) -> dict[int, dict[str, torch.Tensor]]:
    """Keep the user tower validated in ``server_round`` beside the best earlier round's; drop any other.

    Early stopping may select either of the two once the coordinator has this round's figures; no
    other round can be selected any more. A platform that has never trained has nothing to keep.
    Returns the towers now kept on disk, which the platform's trainer must hold too.
    """
    state = PlatformState.load(directory)
    if state is None:
        return {}
    kept = {round_: tower for round_, tower in state.kept_towers.items() if round_ == best_round}
    kept[server_round] = state.user_tower
    state.kept_towers = kept
    state.save(directory)
    return dict(kept)


def restore_user_tower(trainer: PlatformTrainer, directory: Path, selected_round: int) -> None:
    """Give the trainer's model the user tower of ``selected_round`` (0: keep the latest one).

    A platform that missed the selected round's validation (it failed, or joined later) has no tower
    of that round; it tests with its latest one and says so.
    """
    if not selected_round:
        return
    tower = trainer.kept_towers.get(selected_round)
    if tower is None:
        logger.warning(
            "%s: no user tower kept for the selected round %d; testing with the latest", directory, selected_round
        )
        return
    load_local_parameters(trainer.model, tower)


def privacy_metrics(trainer: PlatformTrainer) -> dict[str, float]:
    """Epsilon spent and the noise: functions of the public configuration and the platform's size."""
    ledger = trainer.ledger
    if ledger is None:
        return {}
    return {
        EPSILON: ledger.epsilon(),
        EPSILON_ALONE: ledger.epsilon_alone(),
        NOISE_MULTIPLIER: ledger.noise_multiplier or 0.0,
        DELTA: ledger.delta,
    }
