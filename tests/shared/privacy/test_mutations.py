"""Privacy guarantees checked end to end, each through the code path that runs in a round.

Every test names, in its docstring, the change to the product code it exists to catch:
each of those changes once passed the whole privacy and federation suite.

The private rounds here use plain SGD at learning rate 1 over exactly the parameters
DP-SGD trains, so a round's parameter change is minus the sum of its noisy, clipped
mean gradients and can be compared with ``clip-norm`` and the noise standard deviation
directly (the trainer's Adam would rescale it).
"""

from __future__ import annotations

import dataclasses
import math
import secrets

import numpy as np
import pytest
import torch
from flwr.app import Context, RecordDict

from crossfed.client import task
from crossfed.shared.config import RunConfig
from crossfed.shared.data.features import EncodedDataset
from crossfed.shared.data.interactions import PlatformData, leave_last_out, platform_view
from crossfed.shared.model.recommender import Recommender, build_model
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.privacy import PrivacyLedger, dp_sgd
from tests.helpers import make_dataset

USERS, ITEMS = 20, 50

USER_LEVEL = RunConfig().replace(
    privacy_unit="user",
    user_dp_mechanism="dp-sgd",
    epsilon=8.0,
    delta=1e-3,
    embedding_dim=4,
    mlp_layers="8",
    bag_positives=4,
    negatives=2,
    user_batch=USERS,
    clip_norm=1e-3,
)


def _platform(dataset: EncodedDataset) -> PlatformData:
    return platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)


def _flat(model: Recommender) -> np.ndarray:
    """Every parameter DP-SGD updates (shared scorer and user-feature embeddings), as one vector."""
    return torch.cat([p.detach().reshape(-1) for p in dp_sgd.private_parameters(model, "user")]).numpy().copy()


def _private_round(
    data: PlatformData, config: RunConfig, noise_multiplier: float, bag_seed: int = 5
) -> tuple[Recommender, np.ndarray, PrivacyLedger]:
    """One private round with SGD at learning rate 1; returns the model, the change of ``_flat`` and the ledger."""
    model = build_model(config.model, data.num_items, data.item_features, data.num_users, data.user_features, seed=0)
    optimizer = torch.optim.SGD(dp_sgd.private_parameters(model, "user"), lr=1.0)
    ledger = PrivacyLedger("user", math.inf, config.privacy.delta)
    ledger.noise_multiplier = noise_multiplier
    before = _flat(model)
    dp_sgd.train_private_round(
        model, optimizer, leave_last_out(data.interactions).train, ledger, config, np.random.default_rng(bag_seed)
    )
    return model, _flat(model) - before, ledger


@pytest.fixture
def fixed_private_randomness(monkeypatch):
    """Poisson sampling and noise are seeded from OS entropy; a fixed value makes a statistical check repeatable."""
    monkeypatch.setattr(secrets, "randbits", lambda bits: 20_251_201)


def test_every_users_gradient_is_clipped_inside_the_private_round():
    """Catches: per-user clipping switched off with the noise unchanged.

    Every user sampled, no noise: the step is the mean of per-user gradients, each clipped
    to ``clip-norm``, so it can be no longer than ``clip-norm``. Unclipped, the gradients of
    this model are orders of magnitude longer than the tiny clip.
    """
    _model, change, _ledger = _private_round(_platform(make_dataset(USERS, ITEMS)), USER_LEVEL, noise_multiplier=0.0)
    assert np.linalg.norm(change) <= USER_LEVEL.privacy.clip_norm * (1 + 1e-4), np.linalg.norm(change)


def test_the_noise_added_is_the_noise_the_ledger_accounts_for(fixed_private_randomness):
    """Catches: noise counted by the ledger but never added (or added on fewer steps than counted).

    Clip 1e-3 and noise multiplier 20: the clipped signal is negligible and each of the
    round's steps adds independent noise of std ``sigma * clip / expected batch`` to every
    coordinate. Over the steps the ledger records, the change per coordinate therefore has
    std ``sqrt(steps) * sigma * clip / expected batch``.
    """
    config = USER_LEVEL.replace(user_batch=5, local_epochs=2)
    sigma = 20.0
    _model, change, ledger = _private_round(_platform(make_dataset(USERS, ITEMS)), config, noise_multiplier=sigma)
    [(accounted_noise, rate, steps)] = ledger.history
    assert (accounted_noise, rate, steps) == (sigma, 0.25, 8)
    expected = math.sqrt(steps) * sigma * config.privacy.clip_norm / (USERS * rate)
    assert float(np.std(change)) == pytest.approx(expected, rel=0.15)


def test_users_are_poisson_sampled_at_the_accounted_rate(monkeypatch, fixed_private_randomness):
    """Catches: fixed-size sorted batches instead of Poisson sampling.

    The accountant prices Poisson sampling at rate ``1 / steps-per-epoch``: every step
    includes each user independently, so batch sizes and a user's number of steps are
    binomial, not constant. 60 steps over 40 users at rate 1/4: batch sizes have mean 10
    and variance 7.5, a user's count of steps mean 15 and variance 11.25; the bounds
    below are several standard errors wide.
    """
    batches: list[np.ndarray] = []
    real_step = dp_sgd._user_level_step

    def recording_step(model, backward, users, *rest):
        batches.append(np.array(users))
        return real_step(model, backward, users, *rest)

    monkeypatch.setattr(dp_sgd, "_user_level_step", recording_step)
    config = USER_LEVEL.replace(user_batch=10, local_epochs=15, refresh_steps=0, clip_norm=1.0)
    _model, _change, ledger = _private_round(_platform(make_dataset(40, ITEMS)), config, noise_multiplier=1.0)
    assert ledger.history == [(1.0, 0.25, 60)]
    sizes = np.array([len(batch) for batch in batches] + [0] * (60 - len(batches)))  # empty draws skip the step
    assert 8.5 < sizes.mean() < 11.5 and 3.0 < sizes.var() < 15.0, (sizes.mean(), sizes.var())
    steps_per_user = np.bincount(np.concatenate(batches), minlength=40)
    assert 13 < steps_per_user.mean() < 17 and 4.0 < steps_per_user.var() < 25.0, steps_per_user


def _with_other_items_for_last_user(dataset: EncodedDataset) -> EncodedDataset:
    """The same dataset but the last user's items replaced by as many items they never had."""
    last = dataset.users == dataset.users.max()
    unseen = np.setdiff1d(np.arange(len(dataset.item_ids)), dataset.items[last])
    items = dataset.items.copy()
    items[last] = unseen[: int(last.sum())]
    return dataclasses.replace(dataset, items=items)


def test_one_users_data_moves_the_shared_parameters_only_through_the_clipped_step():
    """Catches: user rows written into ``item_bias`` (any per-user value reaching the shared side outside DP-SGD).

    Two platforms differ only in the last user's items (the same number of them, so every
    other user's bag is drawn identically). Without noise and with every user sampled, the
    step's difference is that user's clipped gradient before and after the change over the
    batch size: at most ``2 * clip / users``, on every DP-trained parameter, ``item_bias``
    included.
    """
    dataset = make_dataset(USERS, ITEMS)
    original, _change, _ledger = _private_round(_platform(dataset), USER_LEVEL, noise_multiplier=0.0)
    neighbour, _change, _ledger = _private_round(
        _platform(_with_other_items_for_last_user(dataset)), USER_LEVEL, noise_multiplier=0.0
    )
    bound = 2 * USER_LEVEL.privacy.clip_norm / USERS * (1 + 1e-3)
    a, b = shared_arrays(original), shared_arrays(neighbour)
    moved = {name: float(np.linalg.norm(a[name] - b[name])) for name in a}
    assert max(moved.values()) > 0  # the changed user does take part
    assert math.sqrt(sum(m * m for m in moved.values())) <= bound, moved
    assert np.linalg.norm(_flat(original) - _flat(neighbour)) <= bound


def test_a_platform_sends_an_update_no_longer_than_max_update_norm(monkeypatch, tmp_path):
    """Catches: the client-side update bound removed from a round.

    A plain round at a high learning rate moves the shared parameters far; what
    ``crossfed.client.task.train`` leaves in the model to send must be at exactly the bound.
    """
    config = RunConfig().replace(
        embedding_dim=4,
        mlp_layers="8",
        batch_size=16,
        learning_rate=0.1,
        local_epochs=2,
        max_update_norm=0.01,
        eval_negatives=10,
    )
    platform = _platform(make_dataset(USERS, ITEMS))
    monkeypatch.setattr(task, "platform_data", lambda _config, _platform: platform)
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "state-dir": str(tmp_path)},
        state=RecordDict(),
        run_config=config.to_flat(),
    )
    sent = shared_arrays(build_model(config.model, platform.num_items, platform.item_features))
    trainer, _metrics, trained = task.train(sent, 1, context)
    assert trained
    after = shared_arrays(trainer.model)
    norm = math.sqrt(sum(float(np.sum((after[n].astype(np.float64) - sent[n]) ** 2)) for n in sent))
    assert norm == pytest.approx(config.robustness.max_update_norm, rel=1e-4)
