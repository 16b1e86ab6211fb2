"""The one-pass clipped gradient sum equals Opacus' ghost clipping's, and refuses what it cannot clip."""

from __future__ import annotations

import math
import secrets

import numpy as np
import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.model.multi_hot import MultiHotEmbedding, index_bags
from crossfed.shared.privacy import PrivacyLedger
from crossfed.shared.privacy.bags import BagLoss, user_bags
from crossfed.shared.privacy.clipping import ClippedGradients
from crossfed.shared.privacy.dp_sgd import GRAD_SAMPLE_MODES, UserLevelCore, private_parameters, train_private_round
from crossfed.shared.trainer import PlatformTrainer
from tests.helpers import make_dataset, multi_hot_table

CONFIG = RunConfig().replace(privacy_unit="user", embedding_dim=4, mlp_layers="8,4", bag_positives=4)


def _batch(seed: int):
    dataset = make_dataset(num_users=12, seed=seed)
    trainer = PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), CONFIG)
    for parameter in trainer.model.parameters():  # larger than the initial weights: norms well above small clips
        nn.init.normal_(parameter, std=0.3, generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(trainer.data.num_users, size=7, replace=False))
    train = trainer.split.train
    items, targets = user_bags(users, train.items_per_user(), train, positives=4, negatives=2, rng=rng)
    return trainer.model, torch.as_tensor(users), items, targets


def _opacus_clipped_sum(
    core: nn.Module, inputs: tuple, targets: torch.Tensor, clip: float, mode: str = "ghost"
) -> torch.Tensor:
    for parameter in core.parameters():
        parameter.grad = None
    loader = DataLoader(TensorDataset(torch.arange(len(targets))), batch_size=len(targets))
    private = PrivacyEngine().make_private(
        module=core,
        optimizer=torch.optim.SGD(core.parameters(), lr=0.0),
        criterion=BagLoss(reduction="sum"),
        data_loader=loader,
        noise_multiplier=0.0,
        max_grad_norm=clip,
        grad_sample_mode=mode,
        loss_reduction="sum",
        poisson_sampling=False,
    )
    if mode == "hooks":  # per-sample gradients materialised; the optimizer clips them. Per-sample losses summed:
        module, optimizer, _ = private

        def criterion(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return BagLoss(reduction="none")(logits, targets).sum()

    else:  # the wrapped criterion (its per-sample losses: reduction "none") clips in its backward
        module, optimizer, criterion, _ = private
    criterion(module(*inputs), targets).backward()
    if mode == "hooks":
        optimizer.pre_step()
    flat = torch.cat([p.grad.reshape(-1) for p in optimizer.params])
    module._close()
    return flat


def _one_pass_clipped_sum(core: nn.Module, inputs: tuple, targets: torch.Tensor, clip: float) -> torch.Tensor:
    for parameter in core.parameters():
        parameter.grad = None
    clipper = ClippedGradients(core, clip)
    try:
        with clipper.recording():
            logits = core(*inputs)
        clipper.backward(BagLoss(reduction="none")(logits, targets))
    finally:
        clipper.close()
    return torch.cat([p.grad.reshape(-1) for p in core.parameters()])


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("clip", [1e-3, 0.3, 1e9])
def test_user_level_clipped_sum_equals_opacus_ghost_clipping(seed, clip):
    model, users, items, targets = _batch(seed)
    core = UserLevelCore(model)
    inputs = (model.user_tower.ids.weight[users].detach(), users, items)
    ours = _one_pass_clipped_sum(core, inputs, targets, clip)
    theirs = _opacus_clipped_sum(core, inputs, targets, clip)
    assert ours.norm() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("clip", [1e-3, 1e9])
def test_interaction_level_clipped_sum_equals_opacus_ghost_clipping(clip):
    model, _users, items, targets = _batch(2)
    rows = torch.arange(len(items)) % model.user_tower.num_ids  # one row per sample, each with its own user
    ours = _one_pass_clipped_sum(model, (rows, items), targets, clip)
    theirs = _opacus_clipped_sum(model, (rows, items), targets, clip)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


class _TitleScorer(nn.Module):
    """Logits ``[users, bag]`` from a multi-hot item feature, as dense indicator rows or as index bags."""

    def __init__(self, table: np.ndarray, bags: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.words = MultiHotEmbedding(table.shape[1], 4) if bags else nn.Linear(table.shape[1], 4, bias=False)
        self.head = nn.Linear(4, 1)
        self.table = torch.as_tensor(table)
        self.tokens, self.weights = index_bags(table)
        self.bags = bags

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        words = self.words(self.tokens[items], self.weights[items]) if self.bags else self.words(self.table[items])
        return self.head(torch.relu(words)).squeeze(-1)


@pytest.mark.parametrize("clip", [1e-3, 0.05, 1e9])
def test_multi_hot_bags_clip_as_opacus_clips_the_dense_layer(clip):
    """Several words per item, words shared within a bag: the oracle is Opacus' per-sample gradients of nn.Linear."""
    table = multi_hot_table(15, 6, 3)  # 6 words over 15 items: a user's bag repeats words
    items = torch.as_tensor(np.random.default_rng(3).integers(0, 15, size=(5, 8)))
    targets = (torch.arange(8) < 3).float().expand(5, -1)
    ours = _one_pass_clipped_sum(_TitleScorer(table, bags=True), (items,), targets, clip)
    theirs = _opacus_clipped_sum(_TitleScorer(table, bags=False), (items,), targets, clip, mode="hooks")
    assert ours.norm() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


def test_parameters_of_an_unknown_layer_are_refused():
    with pytest.raises(ValueError, match="LayerNorm"):
        ClippedGradients(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)), 1.0)
    with pytest.raises(ValueError, match=r"plain nn\.Embedding"):
        ClippedGradients(nn.Embedding(5, 3, padding_idx=0), 1.0)


def test_a_layer_run_twice_in_one_step_is_refused():
    layer = nn.Linear(3, 3)
    clipper = ClippedGradients(layer, 1.0)
    with pytest.raises(ValueError, match="ran twice"), clipper.recording():
        layer(layer(torch.ones(2, 3)))
    clipper.close()


def test_forward_passes_outside_recording_are_not_clipped():
    layer = nn.Linear(3, 1)
    clipper = ClippedGradients(layer, 1.0)
    layer(torch.ones(2, 3))  # not recorded: an unrecorded pass leaves the step without that layer's calls
    with clipper.recording():
        loss_per_sample = layer(torch.ones(2, 3)).squeeze(-1)
    norms = clipper.backward(loss_per_sample)
    torch.testing.assert_close(norms, torch.full((2,), 2.0))  # |(1, 1, 1)| for the weight and 1 for the bias
    torch.testing.assert_close(layer.weight.grad, torch.full((1, 3), 2 * 0.5))
    clipper.close()


@pytest.mark.parametrize("unit", ["user", "interaction"])
def test_every_grad_sample_mode_takes_the_same_private_round(unit, monkeypatch):
    """No noise, the same Poisson draws and bags: one-pass, Opacus ghost and Opacus hooks clipping agree."""
    monkeypatch.setattr(secrets, "randbits", lambda bits: 20_251_202)
    config = CONFIG.replace(privacy_unit=unit, user_batch=4, batch_size=16, clip_norm=0.05, local_epochs=2)
    rounds = {}
    for mode in GRAD_SAMPLE_MODES:
        dataset = make_dataset(num_users=12)
        trainer = PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), config)
        optimizer = torch.optim.SGD(private_parameters(trainer.model, unit), lr=1.0)
        ledger = PrivacyLedger(unit, math.inf, config.privacy.delta)
        ledger.noise_multiplier = 0.0
        train_private_round(
            trainer.model, optimizer, trainer.split.train, ledger, config, np.random.default_rng(3), mode
        )
        rounds[mode] = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
    assert not torch.equal(rounds["ghost"], _fresh_parameters(config))
    for mode in GRAD_SAMPLE_MODES:
        torch.testing.assert_close(rounds[mode], rounds["ghost"], rtol=1e-4, atol=1e-6)


def _fresh_parameters(config: RunConfig) -> torch.Tensor:
    dataset = make_dataset(num_users=12)
    trainer = PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), config)
    return torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])


def test_an_optimizer_over_parameters_the_step_does_not_clip_is_refused():
    """User level clips the shared scorer and user features; the user-id table must not be stepped with them."""
    dataset = make_dataset(num_users=12)
    trainer = PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), CONFIG)
    ledger = PrivacyLedger("user", math.inf, CONFIG.privacy.delta)
    ledger.noise_multiplier = 1.0
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match="does not clip"):
        train_private_round(trainer.model, optimizer, trainer.split.train, ledger, CONFIG, np.random.default_rng(0))
