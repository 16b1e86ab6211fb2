"""A multi-hot feature's bag layer is the dense linear layer it replaces: same weights, outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crossfed.shared.model.multi_hot import MultiHotEmbedding, index_bags
from tests.helpers import multi_hot_table


@pytest.mark.parametrize("seed", [0, 1])
def test_bags_compute_the_dense_layer_and_its_gradient(seed):
    table = multi_hot_table(20, 12, seed)
    torch.manual_seed(seed)
    dense = nn.Linear(12, 5, bias=False)
    torch.manual_seed(seed)
    bags = MultiHotEmbedding(12, 5)
    assert torch.equal(bags.weight, dense.weight)  # nn.Linear's shape and initialisation: the same model
    tokens, weights = index_bags(table)
    rows = torch.as_tensor(np.random.default_rng(seed).integers(0, 20, size=(3, 7)))
    upstream = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(seed))
    ours = bags(tokens[rows], weights[rows])
    theirs = dense(torch.as_tensor(table)[rows])
    torch.testing.assert_close(ours, theirs)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(bags.weight.grad, dense.weight.grad)


def test_index_bags_keep_every_non_zero_entry_and_pad_with_zero_weight():
    table = multi_hot_table(30, 9, 2)
    tokens, weights = index_bags(table)
    assert tokens.shape[1] == int((table != 0).sum(axis=1).max())
    rebuilt = torch.zeros(table.shape).scatter_add_(1, tokens, weights)
    torch.testing.assert_close(rebuilt, torch.as_tensor(table))
    assert index_bags(np.zeros((3, 4), dtype=np.float32))[0].shape == (3, 1)
