"""The local-first served model: the platform's local-only model, plus the global one where validation says so."""

import numpy as np
import pytest
import torch
from torch import nn

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.interactions import platform_view
from crossfed.shared.evaluation.progress import validation_score
from crossfed.shared.evaluation.results import PlatformMetrics
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.trainer import PlatformTrainer, local_first_copy
from crossfed.shared.training.early_stopping import EarlyStopping, copy_state

CONFIG = RunConfig().replace(
    embedding_dim=4,
    mlp_layers="8,4",
    batch_size=32,
    num_server_rounds=6,
    patience=1,
    eval_negatives=10,
    serve_model="local-first",
)


def _platform(dataset):
    return platform_view(dataset, np.zeros(len(dataset.users), np.int64), 0)


def _local_only_test(dataset, config):
    """What the local-only baseline serves: one block per round with the round as salt, stopped early on
    the platform's own validation HR@10, the best block's model tested."""
    alone = PlatformTrainer(_platform(dataset), config.replace(serve_model="global"))
    stopping, best = EarlyStopping(config.federation.patience), copy_state(alone.model)
    for block in range(1, config.federation.num_server_rounds + 1):
        alone.train(config.training.local_epochs, salt=block)
        validation = PlatformMetrics.from_results(0, alone.evaluate("validation", full=False))
        if stopping.report(block, validation_score([validation])):
            best = copy_state(alone.model)
        if stopping.should_stop:
            break
    alone.model.load_state_dict(best)
    return alone.evaluate("test")


def _results(results):
    return {p: (results.hits[p].tolist(), results.ndcgs[p].tolist()) for p in results.hits}


def test_auto_serves_local_first_exactly_when_a_privacy_unit_is_set():
    assert RunConfig().served_model == "global"
    assert RunConfig().replace(privacy_unit="user").served_model == "local-first"
    assert RunConfig().replace(privacy_unit="interaction").served_model == "local-first"
    assert RunConfig().replace(privacy_unit="user", serve_model="global").served_model == "global"


@pytest.mark.parametrize("weights", ["", "a,1", "0,-1"])
def test_bad_weight_grids_are_refused_naming_the_key(weights):
    with pytest.raises(ConfigError, match="local-first-weights"):
        RunConfig().replace(local_first_weights=weights)


def test_weight_zero_alone_serves_exactly_the_local_only_model(dataset):
    config = CONFIG.replace(local_first_weights="0")
    trainer = PlatformTrainer(_platform(dataset), config)
    served, current = trainer.test()
    assert _results(served) == _results(_local_only_test(dataset, config))
    assert _results(served) != _results(current)


def test_the_test_outcome_pairs_the_served_model_with_the_local_only_model(dataset):
    trainer = PlatformTrainer(_platform(dataset), CONFIG)
    outcome = trainer.test_outcome()
    assert outcome.local_first is not None
    assert outcome.local_first.weight in CONFIG.serving.local_first_weight_grid
    assert _results(outcome.local_first.local_only) == _results(_local_only_test(dataset, CONFIG))
    served, current = trainer.test()
    assert _results(outcome.served) == _results(served) and _results(outcome.current) == _results(current)


def test_a_platform_serving_the_global_model_reports_no_local_first_choice(dataset):
    trainer = PlatformTrainer(_platform(dataset), CONFIG.replace(serve_model="global"))
    assert trainer.test_outcome().local_first is None


class _Oracle(nn.Module):
    """A stand-in global model: logit ``sign * 100`` on each user's held-out validation item, 0 elsewhere."""

    def __init__(self, targets: np.ndarray, num_items: int, sign: float) -> None:
        super().__init__()
        self.targets = torch.as_tensor(targets)
        self.num_items = num_items
        self.sign = sign

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.sign * 100.0 * (items == self.targets[users][:, None]).float()

    def score(self, users: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        if items is None:
            items = torch.arange(self.num_items).expand(len(users), -1)
        return self(users, items)


def _oracle_served(dataset, sign):
    trainer = PlatformTrainer(_platform(dataset), CONFIG)
    oracle = _Oracle(trainer.split.targets("validation"), trainer.data.num_items, sign)
    return local_first_copy(oracle, trainer.data, CONFIG, trainer.split)


def test_a_global_model_that_hurts_on_validation_gets_weight_zero(dataset):
    served = _oracle_served(dataset, sign=-1.0)
    assert float(served.prior_weight) == 0.0
    assert not served.prior_weight.requires_grad


def test_a_global_model_that_helps_on_validation_gets_the_first_weight_that_helps(dataset):
    served = _oracle_served(dataset, sign=1.0)
    assert float(served.prior_weight) == 0.125  # any weight > 0 puts every validation item first; ties keep the first


def test_building_the_served_model_leaves_the_global_model_untouched_and_trainable(dataset):
    trainer = PlatformTrainer(_platform(dataset), CONFIG)
    before = shared_arrays(trainer.model)
    served = local_first_copy(trainer.model, trainer.data, CONFIG, trainer.split)
    after = shared_arrays(trainer.model)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert all(parameter.requires_grad for parameter in trainer.model.parameters())
    assert served.global_model is not trainer.model
