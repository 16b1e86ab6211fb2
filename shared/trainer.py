"""One platform's model, optimizer and data: what a ClientApp and the local-only baseline both run.

Keeping this in ``shared`` means federated, local-only and centralized runs train and
evaluate with the very same code, split and protocol - the comparison is honest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import nn

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.interactions import LeaveLastOutSplit, PlatformData, leave_last_out
from crossfed.shared.evaluation.progress import validation_score
from crossfed.shared.evaluation.ranking import UserResults, evaluate_ranking
from crossfed.shared.evaluation.results import PlatformMetrics
from crossfed.shared.model.recommender import Recommender, build_model
from crossfed.shared.model.sharing import load_local_parameters, local_parameters
from crossfed.shared.privacy.ledger import BudgetExceeded, PrivacyLedger
from crossfed.shared.storage.platform_state import PlatformState
from crossfed.shared.training.fit import FitResult, fit, make_optimizer
from crossfed.shared.training.private_copy import StackedRecommender, combined_copy, local_model, private_copy
from crossfed.shared.training.seeds import evaluation_seed, platform_seed

logger = logging.getLogger(__name__)


def platform_model(data: PlatformData, config: RunConfig) -> Recommender:
    """A platform's fresh model: the one its trainer starts from and its service loads state into.

    Both must build it alike (same shapes, same seed) so a saved state fits the served model.
    """
    return build_model(
        config.model,
        data.num_items,
        data.item_features,
        data.num_users,
        data.user_features,
        seed=platform_seed(config.experiment, data.platform),
    )


def local_first_copy(
    model: nn.Module,
    data: PlatformData,
    config: RunConfig,
    split: LeaveLastOutSplit | None = None,
    *,
    local: nn.Module | None = None,
) -> StackedRecommender:
    """The platform's local-only model plus ``model``'s logits at the weight its validation users prefer.

    Each weight of ``local-first-weights`` is scored on the platform's own validation split
    (sampled HR@10, then NDCG@10); the first best wins, so weight 0 - the local-only model -
    is kept unless the global model helps on held-out users. Under DP the served model is thus
    local first and the DP global side can only add. Everything here is the platform's: its
    data, its local model, its choice; nothing of it is sent. ``split`` defaults to the
    leave-last-out split of ``data``; ``local``, the platform's :func:`local_model` on that
    split, is trained here unless given (a study over many global models trains it once).
    """
    split = split or leave_last_out(data.interactions)
    served = combined_copy(model, local if local is not None else alone_model(data, split, config), 0.0)

    def validated(weight: float) -> UserResults:
        served.prior_weight.fill_(weight)
        return _ranked(served, data, split, config, "validation", full=False)

    best_weight, best_key = first_best_weight((w, validated(w)) for w in config.serving.local_first_weight_grid)
    served.prior_weight.fill_(best_weight)
    logger.info(
        "platform %d serves its local model + %g x the global model (validation HR@%d %.4f)",
        data.platform,
        best_weight,
        config.evaluation.top_k,
        best_key[0],
    )
    return served


def first_best_weight(results: Iterable[tuple[float, UserResults]]) -> tuple[float, tuple[float, float]]:
    """The weight whose validation results rank best (sampled HR, then NDCG), the first of equals, and its key.

    Every local-first choice picks this way, so a grid that starts at 0 keeps the local-only model
    unless another weight does strictly better on held-out users.
    """
    best_weight, best_key = 0.0, (-1.0, -1.0)
    for weight, result in results:
        summary = result.summary()["sampled"]
        key = (summary["hr"], summary["ndcg"])
        if key > best_key:
            best_weight, best_key = weight, key
    return best_weight, best_key


def alone_model(data: PlatformData, split: LeaveLastOutSplit, config: RunConfig) -> Recommender:
    """:func:`local_model` stopped by the rule the local-only baseline follows, on the same validation users."""

    def score(model: Recommender) -> float | None:
        results = _ranked(model, data, split, config, "validation", full=False)
        return validation_score([PlatformMetrics.from_results(data.platform, results)])

    return local_model(data, split.train, config, validation_score=score)


def _ranked(
    model: nn.Module,
    data: PlatformData,
    split: LeaveLastOutSplit,
    config: RunConfig,
    stage: str,
    *,
    full: bool = True,
) -> UserResults:
    model.eval()
    return rank_on_split(model.score, data, split, config, stage, full=full)


def rank_on_split(
    score: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    data: PlatformData,
    split: LeaveLastOutSplit,
    config: RunConfig,
    stage: str,
    *,
    full: bool = True,
) -> UserResults:
    """``score``'s ranking of ``stage``'s held-out items on one platform's split and candidate lists.

    Every mode ranks through here (a platform's trainer, the pooled model's view of a platform,
    popularity counts), so all of them rank the same candidates with the same protocol.
    """
    return evaluate_ranking(
        score,
        split,
        data.interactions,
        stage=stage,
        k=config.evaluation.top_k,
        eval_negatives=config.evaluation.eval_negatives,
        seed=evaluation_seed(config.experiment, data.platform),
        full=full,
    )


class PlatformTrainer:
    """A platform's recommender over its own leave-last-out split."""

    def __init__(self, data: PlatformData, config: RunConfig) -> None:
        self.data = data
        self.config = config
        self.split: LeaveLastOutSplit = leave_last_out(data.interactions)
        self.model = platform_model(data, config)
        self.ledger: PrivacyLedger | None = None
        #: Earlier rounds' user towers early stopping may still select (``PlatformState.kept_towers``).
        self.kept_towers: dict[int, dict[str, torch.Tensor]] = {}
        #: Price the budget on the noise this platform adds itself, not on the sum its peers
        #: are supposed to complete: set when distributed noise was not the operator's choice.
        self.budget_on_own_noise = False
        if config.private:
            dp_sgd = _private_training()
            privacy = config.privacy
            self.ledger = PrivacyLedger(
                privacy.privacy_unit,
                privacy.epsilon,
                privacy.delta,
                privacy.accountant,
                noise_share=dp_sgd.noise_share(config),
            )
            parameters = dp_sgd.private_parameters(self.model, config.privacy.privacy_unit)
            training = config.training
            self.optimizer = torch.optim.Adam(parameters, lr=training.learning_rate, weight_decay=training.weight_decay)
        else:
            self.optimizer = make_optimizer(self.model, config.training.learning_rate, config.training.weight_decay)

    def train(self, epochs: int, salt: int) -> FitResult:
        """One round of local training; private when the run config asks for a privacy unit.

        Raises :class:`BudgetExceeded` (and trains nothing) when a private round would take
        the platform past its epsilon budget.
        """
        rng = np.random.default_rng(platform_seed(self.config.experiment, self.data.platform, salt))
        if self.ledger is not None:
            return self._train_private(rng)
        return fit(
            self.model,
            self.optimizer,
            self.split.train,
            epochs=epochs,
            batch_size=self.config.training.batch_size,
            negatives=self.config.training.negatives,
            rng=rng,
        )

    @property
    def private(self) -> bool:
        return self.ledger is not None

    def _train_private(self, rng: np.random.Generator) -> FitResult:
        dp_sgd = _private_training()
        assert self.ledger is not None
        step_plan = dp_sgd.plan(self.config, self.split.train)
        if self.ledger.delta >= 1.0 / step_plan.population:
            # No count in the message: error texts travel back to the coordinator.
            raise ConfigError(
                f"config key 'delta' = {self.ledger.delta} is out of range: expected well below "
                f"1/n for this platform's number n of privacy units"
            )
        self.ledger.calibrate(
            step_plan.sample_rate,
            step_plan.steps_per_round,
            self.config.federation.num_server_rounds,
            self.config.privacy.noise_multiplier,
        )
        if self.ledger.noise_share != dp_sgd.noise_share(self.config):
            raise ConfigError(
                "noise-mode, min-platforms or tolerated-colluders changed since this platform's ledger "
                "was started; privacy settings are fixed for a run"
            )
        if (self.ledger.sample_rate, self.ledger.steps_per_round) != (step_plan.sample_rate, step_plan.steps_per_round):
            raise ConfigError(
                "the DP sampling plan (batch size, local epochs) changed since this platform's ledger "
                "was calibrated; privacy settings are fixed for a run"
            )
        if not self.ledger.can_train_round(own_noise_only=self.budget_on_own_noise):
            steps = self.ledger.steps_per_round or 0
            spent = self.ledger.epsilon_alone(steps) if self.budget_on_own_noise else self.ledger.epsilon(steps)
            raise BudgetExceeded(
                f"platform {self.data.platform}: another round would spend epsilon "
                f"{spent:.3f} > budget {self.ledger.budget}"
            )
        return dp_sgd.train_private_round(self.model, self.optimizer, self.split.train, self.ledger, self.config, rng)

    def evaluate(self, stage: str, model: nn.Module | None = None, *, full: bool = True) -> UserResults:
        """Both protocols on ``stage``'s held-out items; ``full=False`` skips the whole-catalog ranking,
        the only part whose cost grows with the catalog."""
        return _ranked(model or self.model, self.data, self.split, self.config, stage, full=full)

    def test(self) -> tuple[UserResults, UserResults]:
        """Test results of the model the platform serves and of the global model.

        They differ under ``serve-model = local-first`` (the default under DP:
        :func:`local_first_copy`) and with ``finetune-epochs > 0`` (a private copy fine-tuned on
        the platform's data); both are built in ``crossfed.shared.training.private_copy``.
        """
        outcome = self.test_outcome()
        return outcome.served, outcome.current

    def test_outcome(self) -> PlatformTestOutcome:
        """:meth:`test`, plus under local-first serving the weight chosen and the local-only model's results.

        The local-only results are those of the served model at weight 0, which is the
        local-only baseline's model: a run serving local-first thus pairs its served model
        with local-only on the same test users, without a second run.
        """
        current = self.evaluate("test")
        if self.config.served_model == "local-first":
            served = local_first_copy(self.model, self.data, self.config, self.split)
            weight = float(served.prior_weight)
            results = self.evaluate("test", model=served)
            served.prior_weight.fill_(0.0)
            return PlatformTestOutcome(results, current, LocalFirstChoice(weight, self.evaluate("test", model=served)))
        if self.config.serving.finetune_epochs > 0:
            private = private_copy(self.model, self.data, self.split.train, self.config)
            return PlatformTestOutcome(self.evaluate("test", model=private), current)
        return PlatformTestOutcome(current, current)

    def snapshot(self, last_round: int) -> PlatformState:
        return PlatformState(
            user_tower=local_parameters(self.model),
            user_ids=[str(user) for user in self.data.user_ids],
            optimizer=self.optimizer.state_dict(),
            last_round=last_round,
            ledger=self.ledger.to_state() if self.ledger is not None else None,
            kept_towers=self.kept_towers,
        )

    def restore(self, state: PlatformState) -> None:
        """Continue from ``state``; load it with :meth:`PlatformState.load_for_users`, so its rows are these users."""
        load_local_parameters(self.model, state.user_tower)
        if state.optimizer is not None:
            self.optimizer.load_state_dict(state.optimizer)
        if state.ledger is not None:
            self.ledger = PrivacyLedger.from_state(state.ledger)
        self.kept_towers = dict(state.kept_towers)


@dataclass(frozen=True)
class LocalFirstChoice:
    """What a platform serving local-first chose, and what it would serve alone; both stay on the platform."""

    weight: float
    local_only: UserResults


@dataclass(frozen=True)
class PlatformTestOutcome:
    """A platform's test: the served model, the global model and, under local-first serving, its choice."""

    served: UserResults
    current: UserResults
    local_first: LocalFirstChoice | None = None


def _private_training() -> ModuleType:
    """``crossfed.shared.privacy.dp_sgd``, imported on first use: importing opacus takes ~1.3 s, and only
    private runs need it."""
    from crossfed.shared.privacy import dp_sgd

    return dp_sgd
