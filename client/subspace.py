"""The platform's side of ``user-dp-mechanism = gram-subspace``: one noised Gram release, then serving.

Two requests reach a platform. The release request: the platform spends one step of its
on-disk ledger (written before the release exists, so a restart cannot release twice), and
answers with the diagonal over sqrt(2) and strict upper triangle of its noised item Gram matrix
over unit user rows - nothing else, and nothing user-side
(:meth:`crossfed.shared.privacy.item_subspace.PlatformPowerStep.release`). The test request
carries the federation's item basis: the platform checks it
(:func:`crossfed.shared.privacy.item_subspace.checked_basis`), trains its local-only model,
chooses the rank and the weight of the subspace on its own validation users
(:func:`crossfed.shared.subspace_serving.chosen_subspace`), and tests the served model, the
subspace alone and the local-only model. Those figures stay in the platform's own files; the
reply carries only its privacy status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Context, Message

from crossfed.client.local_metrics import LOCAL_FIRST_RANK, LOCAL_FIRST_WEIGHT, LOCAL_ONLY_PREFIX, record_locally
from crossfed.client.task import MechanismMismatch, build_trainer, privacy_metrics
from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.evaluation.per_user_results import GlobalPerUserResults, LocalOnlyPerUserResults, PerUserResults
from crossfed.shared.evaluation.results import PlatformMetrics
from crossfed.shared.privacy import BudgetExceeded
from crossfed.shared.privacy.item_subspace import (
    PlatformPowerStep,
    checked_basis,
    release_ledger,
    release_length,
    unit_rows,
)
from crossfed.shared.protocol.keys import (
    ARRAYS_RECORD,
    BASIS_ARRAY,
    DECLINED,
    GLOBAL_PREFIX,
    NUM_EXAMPLES,
    NUM_USERS,
    PLATFORM,
    STAGE_TEST,
)
from crossfed.shared.protocol.records import from_array_record
from crossfed.shared.subspace_serving import SubspaceScores, served_scores
from crossfed.shared.subspace_serving import chosen_subspace as choose
from crossfed.shared.trainer import alone_model, rank_on_split

logger = logging.getLogger(__name__)


def release(context: Context, overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, float | int], np.ndarray]:
    """The platform's one Gram release and the metrics to send with it (its index and privacy status).

    A platform whose ledger has no step left declines: its metrics say so and its vector is all
    zeros (under SecAgg+ it still takes part in the masking with weight 0; plainly it is not sent).
    """
    trainer, directory, config = build_trainer(context, overrides)
    _require_gram_subspace(config)
    data = trainer.data
    ledger = trainer.ledger
    if ledger is None or ledger.noise_multiplier is None:  # no release yet: a fresh ledger for this run's one step
        ledger = release_ledger(config, data.num_users)
    elif ledger.noise_share != release_ledger(config, data.num_users).noise_share:
        raise ConfigError(
            "noise-mode, min-platforms or tolerated-colluders changed since this platform's ledger was started; "
            "privacy settings are fixed for a run"
        )
    trainer.ledger = ledger
    step = PlatformPowerStep(
        unit_rows(trainer.split.train), ledger, np.random.default_rng(), own_noise_only=trainer.budget_on_own_noise
    )

    def on_disk(_ledger: object) -> None:
        trainer.snapshot(last_round=1).save(directory)

    try:
        vector = step.release(spent=on_disk)
    except BudgetExceeded as refusal:
        logger.warning("%s: declining the Gram release", refusal)
        declined = {PLATFORM: data.platform, DECLINED: 1, NUM_EXAMPLES: 0, **privacy_metrics(trainer)}
        return declined, np.zeros(release_length(data.num_items))
    logger.info(
        "platform %d released its noised item Gram matrix (%d entries, noise std %.4f)",
        data.platform,
        vector.size,
        step.noise_std,
    )
    record_locally(directory, {"round": 1, "stage": "gram-release", "platform": data.platform})
    return {PLATFORM: data.platform, DECLINED: 0, NUM_EXAMPLES: 1, **privacy_metrics(trainer)}, vector


def test(message: Message, context: Context, overrides: Mapping[str, Any] | None = None) -> dict[str, float | int]:
    """Serve and test with the coordinator's item basis; returns the metrics to send (privacy status only)."""
    trainer, directory, config = build_trainer(context, overrides)
    _require_gram_subspace(config)
    data, split = trainer.data, trainer.split
    received = from_array_record(message.content[ARRAYS_RECORD]).get(BASIS_ARRAY)
    if received is None:
        raise ConfigError(f"the subspace test request carries no '{BASIS_ARRAY}' array")
    basis = checked_basis(received, data.num_items, max(config.serving.subspace_rank_grid))
    local = alone_model(data, split, config)
    choice = choose(local, basis, data, split, config)
    subspace = SubspaceScores(basis[:, : choice.rank], split.history(STAGE_TEST))
    served = rank_on_split(served_scores(local, subspace, choice.weight), data, split, config, STAGE_TEST)
    alone = rank_on_split(local.score, data, split, config, STAGE_TEST)
    subspace_alone = rank_on_split(subspace, data, split, config, STAGE_TEST)
    PerUserResults.save(directory, served)
    GlobalPerUserResults.save(directory, subspace_alone)
    LocalOnlyPerUserResults.save(directory, alone)
    record_locally(
        directory,
        {
            "round": 1,
            "stage": STAGE_TEST,
            PLATFORM: data.platform,
            NUM_USERS: len(served.users),
            **PlatformMetrics.from_results(data.platform, served).to_flat(),
            **PlatformMetrics.from_results(data.platform, subspace_alone).to_flat(prefix=GLOBAL_PREFIX),
            **PlatformMetrics.from_results(data.platform, alone).to_flat(prefix=LOCAL_ONLY_PREFIX),
            LOCAL_FIRST_WEIGHT: choice.weight,
            LOCAL_FIRST_RANK: choice.rank,
        },
    )
    return {PLATFORM: data.platform, **privacy_metrics(trainer)}


def _require_gram_subspace(config: RunConfig) -> None:
    if config.privacy.mechanism != "gram-subspace":
        raise MechanismMismatch(
            "this platform's configuration does not say privacy-unit = 'user' with user-dp-mechanism = "
            "'gram-subspace'; it sends no Gram release and serves no item subspace"
        )
