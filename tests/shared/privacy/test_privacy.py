"""Differential privacy: accounting, the ledger across restarts, per-user clipping, noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from torch.utils.data import DataLoader, TensorDataset

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.model.recommender import FixedItemScorer
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.privacy import BudgetExceeded, PrivacyLedger
from crossfed.shared.privacy.bags import BagLoss, user_bags
from crossfed.shared.privacy.dp_sgd import UserLevelCore, plan, refresh_user_embeddings, train_private_round
from crossfed.shared.trainer import PlatformTrainer
from tests.helpers import make_dataset

PRIVATE = RunConfig().replace(
    privacy_unit="user",
    user_dp_mechanism="dp-sgd",
    epsilon=8.0,
    delta=1e-3,
    embedding_dim=4,
    mlp_layers="8",
    user_batch=10,
    bag_positives=4,
    num_server_rounds=5,
    learning_rate=0.01,
)


def _trainer(config: RunConfig = PRIVATE, seed: int = 0) -> PlatformTrainer:
    dataset = make_dataset(num_users=40, seed=seed)
    return PlatformTrainer(platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0), config)


def test_epsilon_composes_across_rounds_and_matches_a_direct_computation():
    trainer = _trainer()
    trainer.train(1, salt=1)
    after_one = trainer.ledger.epsilon()
    trainer.train(1, salt=2)
    after_two = trainer.ledger.epsilon()
    assert 0 < after_one < after_two <= PRIVATE.privacy.epsilon
    step_plan = plan(PRIVATE, trainer.split.train)
    direct = RDPAccountant()
    direct.history = [(trainer.ledger.noise_multiplier, step_plan.sample_rate, 2 * step_plan.steps_per_round)]
    assert after_two == pytest.approx(direct.get_epsilon(PRIVATE.privacy.delta), rel=1e-9)


def test_calibrated_noise_spends_the_budget_over_the_planned_rounds_and_no_more():
    trainer = _trainer()
    spent = []
    for server_round in range(1, PRIVATE.federation.num_server_rounds + 1):
        trainer.train(1, salt=server_round)
        spent.append(trainer.ledger.epsilon())
    assert spent == sorted(spent) and spent[-1] <= PRIVATE.privacy.epsilon
    assert spent[-1] > 0.95 * PRIVATE.privacy.epsilon  # calibrated to the budget, not far below it
    with pytest.raises(BudgetExceeded):
        trainer.train(1, salt=99)
    assert trainer.ledger.epsilon() == spent[-1]  # declining spends nothing


def test_ledger_survives_a_restart_and_a_spent_budget_stays_spent(tmp_path):
    config = PRIVATE.replace(noise_multiplier=1.0, epsilon=6.0)
    trainer = _trainer(config)
    rounds = 0
    with pytest.raises(BudgetExceeded):
        while True:
            trainer.train(1, salt=rounds)
            rounds += 1
            trainer.snapshot(rounds).save(tmp_path)
            trainer = _trainer(config)  # a restarted platform process
            state = type(trainer.snapshot(0)).load(tmp_path)
            trainer.restore(state)
            assert trainer.ledger.rounds_trained == rounds
    assert rounds >= 1
    assert trainer.ledger.epsilon() <= config.privacy.epsilon
    restarted = _trainer(config)
    restarted.restore(type(trainer.snapshot(0)).load(tmp_path))
    with pytest.raises(BudgetExceeded):
        restarted.train(1, salt=123)


def test_ledger_round_trips_through_its_state():
    ledger = PrivacyLedger("user", 8.0, 1e-5)
    ledger.calibrate(sample_rate=0.25, steps_per_round=4, planned_rounds=10, noise_multiplier=0.0)
    ledger.record_round([(ledger.noise_multiplier, 0.25, 4)])
    copy = PrivacyLedger.from_state(ledger.to_state())
    assert copy == ledger and copy.epsilon() == ledger.epsilon()


def _clipped_sum(model, users: np.ndarray, items, targets, clip: float) -> torch.Tensor:
    """Sum of per-user clipped gradients of the DP-trained parameters, as Opacus' ghost clipping computes it."""
    core = UserLevelCore(model)
    for parameter in core.parameters():
        parameter.grad = None
    optimizer = torch.optim.SGD(core.parameters(), lr=0.0)
    loader = DataLoader(TensorDataset(torch.arange(len(users))), batch_size=len(users))
    module, dp_optimizer, criterion, _ = PrivacyEngine().make_private(
        module=core,
        optimizer=optimizer,
        criterion=BagLoss(reduction="sum"),
        data_loader=loader,
        noise_multiplier=0.0,
        max_grad_norm=clip,
        grad_sample_mode="ghost",
        loss_reduction="sum",
        poisson_sampling=False,
    )
    ids = model.user_tower.ids.weight[torch.as_tensor(users)].detach()
    criterion(module(ids, torch.as_tensor(users), items), targets).backward()
    flat = torch.cat([p.grad.reshape(-1) for p in dp_optimizer.params])
    module._close()
    return flat


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), clip=st.sampled_from([1e-3, 0.05, 1.0]))
def test_one_users_contribution_to_the_clipped_sum_never_exceeds_the_clip(seed, clip):
    trainer = _trainer(seed=seed % 7)
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(trainer.data.num_users, size=6, replace=False))
    items, targets = user_bags(
        users, trainer.split.train.items_per_user(), trainer.split.train, positives=4, negatives=2, rng=rng
    )
    with_everyone = _clipped_sum(trainer.model, users, items, targets, clip)
    for drop in range(len(users)):
        keep = np.arange(len(users)) != drop
        without = _clipped_sum(trainer.model, users[keep], items[keep], targets[keep], clip)
        assert torch.linalg.vector_norm(with_everyone - without) <= clip * (1 + 1e-3)


def test_noise_is_present_the_same_bags_give_different_updates():
    """Same salt and every user sampled: bags, sampling and refresh agree, so only the noise can
    tell the two rounds apart (different salts would differ in their bags even without noise)."""
    config = PRIVATE.replace(user_batch=1000)
    first, second = _trainer(config), _trainer(config)
    first.train(1, salt=1)
    second.train(1, salt=1)
    a, b = shared_arrays(first.model), shared_arrays(second.model)
    assert any(not np.allclose(a[name], b[name]) for name in a)


def test_zero_noise_and_infinite_clip_reproduce_non_private_training():
    config = PRIVATE.replace(user_batch=1000, noise_multiplier=0.0, clip_norm=1e9, refresh_steps=2)
    private, plain = _trainer(config), _trainer(config)
    ledger = PrivacyLedger("user", math.inf, config.privacy.delta)
    ledger.noise_multiplier = 0.0
    train_private_round(private.model, private.optimizer, private.split.train, ledger, config, np.random.default_rng(5))

    # The same round by hand, without Opacus: same bags, same refresh, plain mean of per-user losses.
    rng = np.random.default_rng(5)
    train = plain.split.train
    users = np.arange(train.num_users)
    items, targets = user_bags(
        users,
        train.items_per_user(),
        train,
        positives=config.privacy.bag_positives,
        negatives=config.training.negatives,
        rng=rng,
    )
    core = UserLevelCore(plain.model)
    user_tensor = torch.as_tensor(users)
    scorer = FixedItemScorer(plain.model.shared, items)
    ids = refresh_user_embeddings(plain.model, scorer, user_tensor, targets, config.privacy)
    plain.optimizer.zero_grad()
    BagLoss(reduction="none")(core(ids, user_tensor, items), targets).mean().backward()
    plain.optimizer.step()

    for (name, a), b in zip(private.model.named_parameters(), plain.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_the_sampling_that_runs_is_the_sampling_accounted_for():
    """40 users in batches of 15: three Poisson draws per epoch at rate 1/3, not rounding's 1/4."""
    config = PRIVATE.replace(user_batch=15, local_epochs=2)
    trainer = _trainer(config)
    trainer.train(2, salt=1)
    step_plan = plan(config, trainer.split.train)
    assert (step_plan.steps_per_epoch, step_plan.sample_rate) == (3, 1 / 3)
    assert trainer.ledger.history == [(trainer.ledger.noise_multiplier, 1 / 3, 6)]


def test_a_changed_sampling_plan_is_refused_mid_run(tmp_path):
    trainer = _trainer()
    trainer.train(1, salt=1)
    trainer.snapshot(1).save(tmp_path)
    changed = _trainer(PRIVATE.replace(local_epochs=5))  # would run 5x the steps the ledger prices
    changed.restore(type(trainer.snapshot(1)).load(tmp_path))
    with pytest.raises(ConfigError, match="sampling plan"):
        changed.train(5, salt=2)


DISTRIBUTED = PRIVATE.replace(
    secagg=True, noise_mode="distributed", noise_multiplier=3.0, min_platforms=4, clip_norm=0.5
)


def test_distributed_noise_takes_one_step_per_round_and_accounts_the_full_noise():
    trainer = _trainer(DISTRIBUTED)
    trainer.train(1, salt=1)
    trainer.train(1, salt=2)
    step_plan = plan(DISTRIBUTED, trainer.split.train)
    against_coordinator, alone = RDPAccountant(), RDPAccountant()
    against_coordinator.history = [(3.0, step_plan.sample_rate, 2)]
    alone.history = [(3.0 / math.sqrt(4), step_plan.sample_rate, 2)]
    delta = DISTRIBUTED.privacy.delta
    assert trainer.ledger.epsilon() == pytest.approx(against_coordinator.get_epsilon(delta), rel=1e-9)
    assert trainer.ledger.epsilon_alone() == pytest.approx(alone.get_epsilon(delta), rel=1e-9)
    assert trainer.ledger.epsilon_alone() > trainer.ledger.epsilon()


def test_distributed_update_carries_its_share_of_the_noise():
    """With no signal the shared update is pure noise: std = lr * share * sigma * C / user-batch."""
    config = DISTRIBUTED.replace(learning_rate=1.0)
    updates = []
    for seed in range(6):
        trainer = _trainer(config, seed=seed)
        before = shared_arrays(trainer.model)
        trainer.train(1, salt=seed)
        after = shared_arrays(trainer.model)
        updates.append(np.concatenate([(after[n] - before[n]).ravel() for n in before]))
    spread = float(np.std(np.stack(updates), axis=0).mean())
    expected = 1.0 * (1 / math.sqrt(4)) * 3.0 * 0.5 / config.privacy.user_batch
    # The clipped signal adds a little; the noise share dominates and the full sigma would be twice as large.
    assert 0.8 * expected < spread < 1.4 * expected, (spread, expected)


def test_colluding_platforms_are_covered_by_a_larger_noise_share():
    from crossfed.shared.privacy.dp_sgd import noise_share

    assert noise_share(DISTRIBUTED) == pytest.approx(1 / math.sqrt(4))
    assert noise_share(DISTRIBUTED.replace(tolerated_colluders=3)) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="tolerated-colluders"):
        DISTRIBUTED.replace(tolerated_colluders=4)


def test_ledger_history_stays_short_over_many_single_step_rounds():
    ledger = PrivacyLedger("user", 8.0, 1e-5, noise_share=0.5)
    for _ in range(50):
        ledger.record_round([(2.0, 0.25, 1)], keep=True)
    assert ledger.history == [(2.0, 0.25, 50)]


def test_a_ledger_started_with_other_noise_settings_refuses_to_train():
    trainer = _trainer(DISTRIBUTED)
    trainer.train(1, salt=1)
    restarted = _trainer(DISTRIBUTED.replace(min_platforms=2))
    restarted.restore(trainer.snapshot(1))
    with pytest.raises(ConfigError, match="min-platforms"):
        restarted.train(1, salt=2)


@settings(max_examples=30, deadline=None)
@given(
    samples=st.integers(1, 5),
    rows=st.integers(1, 12),
    inputs=st.integers(1, 40),
    outputs=st.integers(1, 40),
    sequence=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cost_aware_linear_norms_equal_opacus_and_the_materialised_gradient(
    samples, rows, inputs, outputs, sequence, seed
):
    from opacus.grad_sample.linear import compute_linear_norm_sample

    from crossfed.shared.privacy.norm_samplers import linear_norm_sample

    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(inputs, outputs)
    shape = (samples, rows) if sequence else (samples,)
    activations = torch.randn(*shape, inputs, generator=generator)
    backprops = torch.randn(*shape, outputs, generator=generator)
    ours = linear_norm_sample(layer, [activations], backprops)
    theirs = compute_linear_norm_sample(layer, [activations], backprops)
    direct = torch.einsum("n...o,n...i->noi", backprops, activations).flatten(1).norm(dim=1)
    for parameter in (layer.weight, layer.bias):
        torch.testing.assert_close(ours[parameter], theirs[parameter], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours[layer.weight], direct, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(samples=st.integers(1, 6), rows=st.integers(1, 20), vocabulary=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_embedding_norms_equal_opacus_with_repeated_ids(samples, rows, vocabulary, seed):
    from opacus.grad_sample.embedding_norm_sample import compute_embedding_norm_sample

    from crossfed.shared.privacy.norm_samplers import embedding_norm_sample

    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Embedding(vocabulary, 3)
    ids = torch.randint(0, vocabulary, (samples, rows), generator=generator)  # small vocabulary: many repeats
    backprops = torch.randn(samples, rows, 3, generator=generator)
    torch.testing.assert_close(
        embedding_norm_sample(layer, [ids], backprops)[layer.weight],
        compute_embedding_norm_sample(layer, [ids], backprops)[layer.weight],
    )


def test_private_training_uses_the_cost_aware_norm_samplers():
    """In a fresh interpreter: importing the private-training module alone must register them."""
    import subprocess
    import sys

    check = (
        "import torch, crossfed.shared.privacy.dp_sgd\n"
        "from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import "
        "GradSampleModuleFastGradientClipping as G\n"
        "for layer in (torch.nn.Linear, torch.nn.Embedding):\n"
        "    assert G.NORM_SAMPLERS[layer].__module__ == 'crossfed.shared.privacy.norm_samplers', layer\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, cwd=Path(__file__).resolve().parents[3])


def test_norm_samplers_accept_an_empty_batch():
    from crossfed.shared.privacy.norm_samplers import embedding_norm_sample, linear_norm_sample

    linear, embedding = torch.nn.Linear(6, 3), torch.nn.Embedding(9, 3)
    for shape in ((0,), (0, 4)):
        norms = linear_norm_sample(linear, [torch.zeros(*shape, 6)], torch.zeros(*shape, 3))
        assert all(value.shape == (0,) for value in norms.values())
    ids = torch.zeros(0, 4, dtype=torch.long)
    assert embedding_norm_sample(embedding, [ids], torch.zeros(0, 4, 3))[embedding.weight].shape == (0,)
