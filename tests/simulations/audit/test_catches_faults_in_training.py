"""The audit catches a fault in real training: crossfed's own platform trainer, on MovieLens-100K.

Two platforms of a few hundred real users plus ``own-items`` canaries train one round of
user-level DP-SGD at a ledger of epsilon = 1, through :class:`PlatformTrainer` (the code a
ClientApp runs), in process rather than under Flower to stay fast; the coordinator's view is
each platform's ``trained - global``, recorded as the audit's capture mod records it. With the
real mechanism the audited bound stays at or under the ledger's epsilon; with the noise
silently switched off (the ledger still says epsilon = 1) it exceeds it.
"""

from __future__ import annotations

import numpy as np
import opacus.optimizers.optimizer as opacus_optimizer
import opacus.optimizers.optimizer_fast_gradient_clipping as opacus_fast_optimizer
import pytest
import torch

from crossfed.shared.config import RunConfig
from crossfed.shared.data.loader import all_platforms
from crossfed.shared.model.recommender import build_model
from crossfed.shared.model.sharing import load_shared_arrays, shared_arrays
from crossfed.shared.trainer import PlatformTrainer
from crossfed.simulations.audit.bounds import audit_bound
from crossfed.simulations.audit.capture import Rounds
from crossfed.simulations.audit.runner import adversary_scores, prepare_canaries

USERS, CANARIES, CANARY_ITEMS = 300, 200, 8


@pytest.fixture(scope="module")
def audited(movielens_dir, tmp_path_factory):
    config = RunConfig.from_mapping(
        {
            "dataset": "ml-100k",
            "data-dir": str(movielens_dir),
            "max-users": USERS,
            "num-platforms": 2,
            "num-server-rounds": 1,
            "local-epochs": 2,
            "privacy-unit": "user",
            "user-dp-mechanism": "dp-sgd",
            "epsilon": 1.0,
            "user-batch": 32,
        }
    )
    return prepare_canaries(config, CANARIES, CANARY_ITEMS, tmp_path_factory.mktemp("audit"))


def one_round(config: RunConfig) -> tuple[Rounds, float]:
    """Every platform trains one round from the same global model; their updates and the ledgers' largest epsilon."""
    platforms = all_platforms(config)
    trainers = [PlatformTrainer(platform, config) for platform in platforms]
    start = dict(shared_arrays(build_model(config.model, platforms[0].num_items, platforms[0].item_features)))
    updates = {}
    for trainer in trainers:
        load_shared_arrays(trainer.model, {name: value.copy() for name, value in start.items()})
        trainer.train(config.training.local_epochs, salt=1)
        trained = shared_arrays(trainer.model)
        updates[trainer.data.platform] = {name: trained[name] - value for name, value in start.items()}
    return {1: (start, updates)}, max(trainer.ledger.epsilon() for trainer in trainers)


def coordinator_bound(audited) -> tuple[float, float]:
    """The coordinator's audited epsilon lower bound after one round, and the ledger's epsilon."""
    config, canaries = audited
    rounds, claimed = one_round(config)
    start, updates = rounds[1]
    released = {name: start[name] + np.mean([u[name] for u in updates.values()], axis=0) for name in start}
    scores = adversary_scores(config, canaries, rounds, released)["coordinator"]
    return audit_bound(scores, canaries.included, config.privacy.delta).epsilon_lower_bound, claimed


def test_real_noise_stays_under_the_claimed_epsilon(audited):
    bound, claimed = coordinator_bound(audited)
    assert claimed == pytest.approx(1.0, abs=0.05)
    assert bound <= claimed


def test_noise_switched_off_in_training_is_caught(audited, monkeypatch):
    def no_noise(std, reference, generator=None, secure_mode=False):
        return torch.zeros_like(reference)

    monkeypatch.setattr(opacus_optimizer, "_generate_noise", no_noise)
    monkeypatch.setattr(opacus_fast_optimizer, "_generate_noise", no_noise)
    bound, claimed = coordinator_bound(audited)
    assert claimed == pytest.approx(1.0, abs=0.05)  # the ledger does not notice
    assert bound > claimed
