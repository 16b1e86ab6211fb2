"""FixedItemScorer: the user-vector refresh's cheap scorer gives the shared scorer's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossfed.shared.config import RunConfig
from crossfed.shared.model.recommender import FixedItemScorer, build_model
from tests.helpers import make_dataset


@pytest.mark.parametrize("mlp_layers", ["16,8", "8"])
def test_fixed_item_logits_equal_the_shared_scorer_and_reach_only_the_user_vectors(mlp_layers):
    dataset = make_dataset(num_users=6, num_items=30)
    shape = RunConfig().replace(embedding_dim=4, mlp_layers=mlp_layers).model
    model = build_model(shape, 30, dataset.item_features, seed=3)
    for parameter in model.shared.parameters():  # non-zero everywhere, so every term counts
        torch.nn.init.normal_(parameter, std=0.5)
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(0, 30, (6, 11), generator=generator)
    users = torch.randn(6, 8, generator=generator, requires_grad=True)

    fixed = FixedItemScorer(model.shared, items)(users)

    torch.testing.assert_close(fixed, model.shared(users, items), rtol=1e-5, atol=1e-5)
    fixed.sum().backward()
    assert users.grad is not None and users.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in model.shared.parameters())


def test_fixed_item_scorer_reuses_given_item_vectors():
    dataset = make_dataset(num_users=4, num_items=30)
    model = build_model(RunConfig().replace(embedding_dim=4, mlp_layers="8").model, 30, dataset.item_features)
    items = torch.as_tensor(np.arange(12).reshape(4, 3))
    item_vectors = torch.zeros(4, 3, 8)  # not the tower's output: the scorer must use these
    users = torch.randn(4, 8)
    torch.testing.assert_close(
        FixedItemScorer(model.shared, items, item_vectors)(users), model.shared(users, items, item_vectors)
    )
