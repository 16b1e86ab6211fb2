"""The model a platform serves: the global model, or a private copy built from it and its own data.

The private copy never leaves the platform, so under differential privacy it needs no
noise of its own: DP protects what is sent, and the copy is computed from that plus
local data. Three kinds:

* ``finetune-embedding-dim = 0`` - a copy of the global model (plus the platform's user
  tower), trained ``finetune-epochs`` more on the platform's data;
* ``finetune-embedding-dim = d > 0`` - a **stacked** copy: the global model, frozen, plus a
  local model of width d (with item-id embeddings) trained on top of its logits. The DP
  global model can then stay small (noise grows with its size) while the served model keeps
  full capacity;
* ``serve-model = local-first`` - the platform's **own local-only model** (:func:`local_model`:
  the local-only baseline's shape, seeds and epochs) plus the frozen global model's logits at a
  fixed weight, which the platform picks on its validation users
  (``crossfed.shared.trainer.local_first_copy``). Weight 0 is the local-only model itself, so a
  noisy DP global model can only add what the platform's own data confirms.

(Choosing a snapshot per platform by its own validation users was measured and
rejected: with ~190 validation users the pick is mostly noise, and it served older,
worse models - sampled HR@10 0.626 against 0.642 for the last round.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import Interactions, PlatformData
from crossfed.shared.model.recommender import Recommender, build_model
from crossfed.shared.training.early_stopping import EarlyStopping, copy_state
from crossfed.shared.training.fit import fit, make_optimizer
from crossfed.shared.training.seeds import platform_seed

#: Seed salts of a platform's private copy (``platform_seed(config, platform, salt)``): the order
#: of its fine-tuning batches, and the initial weights of a stacked copy's local model.
FINETUNE_BATCHES_SALT = 7
LOCAL_MODEL_SALT = 8


def private_copy(
    model: nn.Module, data: PlatformData, train: Interactions, config: RunConfig, *, epochs: int | None = None
) -> nn.Module:
    """The copy of ``model`` the platform serves, trained ``epochs`` (default ``finetune-epochs``) on ``train``.

    Its kind follows ``finetune-embedding-dim``; ``model`` is untouched. The same platform and
    settings give the same copy wherever it is built: in the test evaluation, which measures
    it, and in serving, which serves it. With ``epochs=0`` it is the untrained copy, the shape
    a cached copy's parameters are loaded into.
    """
    serving = config.serving
    training = {
        "epochs": serving.finetune_epochs if epochs is None else epochs,
        "learning_rate": serving.finetune_learning_rate,
        "batch_size": config.training.batch_size,
        "negatives": config.training.negatives,
        "rng": np.random.default_rng(platform_seed(config.experiment, data.platform, FINETUNE_BATCHES_SALT)),
    }
    if serving.finetune_embedding_dim > 0:
        local = build_model(
            serving.stacked_model,
            data.num_items,
            data.item_features,
            data.num_users,
            data.user_features,
            seed=platform_seed(config.experiment, data.platform, LOCAL_MODEL_SALT),
        )
        return stacked_copy(model, local, train, **training)
    return fine_tuned_copy(model, train, **training)


def local_model(
    data: PlatformData,
    train: Interactions,
    config: RunConfig,
    *,
    trained: bool = True,
    validation_score: Callable[[Recommender], float | None] | None = None,
) -> Recommender:
    """The model the platform trains alone: what the local-only baseline trains, non-privately, on ``train``.

    Same shape (``finetune-embedding-dim`` > 0: the stacked local model's), initial weights,
    batch order, learning rate (``finetune-learning-rate``, by default the training one),
    budget (``num-server-rounds`` x ``local-epochs``) and, given ``validation_score``, the same
    early-stopping rule on it (``patience``; the best block's weights are returned), so with the
    run's default model it *is* the local-only model. It trains on local data only and never
    leaves the platform, so it needs no noise. ``trained=False`` gives its untrained shape, for
    loading a cached copy.
    """
    shape = config.serving.stacked_model if config.serving.finetune_embedding_dim > 0 else config.model
    experiment, training = config.experiment, config.training
    model = build_model(
        shape,
        data.num_items,
        data.item_features,
        data.num_users,
        data.user_features,
        seed=platform_seed(experiment, data.platform),
    )
    if not trained:
        return model
    optimizer = make_optimizer(model, config.serving.finetune_learning_rate, training.weight_decay)
    stopping, best = EarlyStopping(config.federation.patience), copy_state(model)
    for block in range(1, config.federation.num_server_rounds + 1):
        fit(
            model,
            optimizer,
            train,
            epochs=training.local_epochs,
            batch_size=training.batch_size,
            negatives=training.negatives,
            rng=np.random.default_rng(platform_seed(experiment, data.platform, block)),
        )
        if validation_score is None:
            continue
        if stopping.report(block, validation_score(model)):
            best = copy_state(model)
        if stopping.should_stop:
            break
    if validation_score is not None:
        model.load_state_dict(best)
    model.eval()
    return model


def combined_copy(model: nn.Module, local: nn.Module, weight: float) -> StackedRecommender:
    """``weight * frozen copy of model's logits + local``; neither argument is changed or trained."""
    combined = StackedRecommender(copy.deepcopy(model).eval(), local)
    combined.prior_weight.requires_grad_(False)
    combined.prior_weight.fill_(weight)
    return combined.eval()


def fine_tuned_copy(model: nn.Module, train: Interactions, **training: Any) -> nn.Module:
    """A deep copy of ``model`` trained more on ``train``; ``model`` is untouched."""
    return _trained_locally(copy.deepcopy(model), train, **training)


class StackedRecommender(nn.Module):
    """``w * frozen global logits + local logits``: the local part learns what the global one misses.

    The weight ``w`` is learned too, so a platform leans on the global model exactly as far
    as it helps on its own data (a noisy DP model may earn a small ``w``).
    """

    def __init__(self, global_model: nn.Module, local_model: nn.Module) -> None:
        super().__init__()
        self.global_model = global_model
        self.local_model = local_model
        self.prior_weight = nn.Parameter(torch.ones(()))
        for parameter in self.global_model.parameters():
            parameter.requires_grad_(False)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            prior = self.global_model(users, items)
        return self.prior_weight * prior + self.local_model(users, items)

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        return self.prior_weight * self.global_model.score(users, items) + self.local_model.score(users, items)


def stacked_copy(model: nn.Module, local_model: nn.Module, train: Interactions, **training: Any) -> nn.Module:
    """``local_model`` trained on top of a frozen copy of ``model``; ``model`` is untouched."""
    return _trained_locally(StackedRecommender(copy.deepcopy(model).eval(), local_model), train, **training)


def _trained_locally(
    private: nn.Module,
    train: Interactions,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    negatives: int,
    rng: np.random.Generator,
) -> nn.Module:
    optimizer = make_optimizer(private, learning_rate)  # frozen parameters get no gradient: Adam skips them
    fit(private, optimizer, train, epochs=epochs, batch_size=batch_size, negatives=negatives, rng=rng)
    private.eval()
    return private
