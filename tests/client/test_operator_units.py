"""Serving's building blocks on a small synthetic model: fast scoring, fold-in, cold-start segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from crossfed.client.serving.cold_start import MIN_SEGMENT_USERS, Popularity, find_segment
from crossfed.client.serving.foldin import fold_in
from crossfed.client.serving.scoring import CatalogScorer
from crossfed.shared.config import RunConfig
from crossfed.shared.data.interactions import Interactions
from crossfed.shared.model.recommender import build_model
from crossfed.shared.training.private_copy import StackedRecommender
from tests.helpers import make_dataset


def small_models():
    data = make_dataset(num_users=12, num_items=40)
    config = RunConfig.from_mapping({"embedding-dim": 4, "mlp-layers": "8,4"})
    model = build_model(config.model, data.num_items, data.item_features, data.num_users, data.user_features, seed=1)
    local = build_model(
        config.replace(embedding_dim=3).model,
        data.num_items,
        data.item_features,
        data.num_users,
        data.user_features,
        seed=2,
    )
    with torch.no_grad():  # untrained, items are all alike (tiny embeddings, zero biases): tell them apart
        for part in (model, local):
            part.shared.item_bias.weight.normal_()
            part.shared.item_tower.ids.weight.normal_()
    stacked = StackedRecommender(model, local)
    with torch.no_grad():
        stacked.prior_weight.fill_(0.7)
    return data, model, stacked


def test_cached_item_vectors_score_exactly_like_the_model():
    _, model, stacked = small_models()
    users = torch.arange(5)
    for served in (model, stacked):
        scorer = CatalogScorer(served)
        expected = served.score(users, None)
        torch.testing.assert_close(scorer.scores(scorer.user_vectors(users)), expected)
        items = torch.randint(0, 40, (5, 7))
        torch.testing.assert_close(scorer.logits(scorer.user_vectors(users), items), served(users, items))


def test_fold_in_moves_only_the_users_vectors_toward_their_items():
    _, model, stacked = small_models()
    for served in (model, stacked):
        before = {name: p.detach().clone() for name, p in served.named_parameters()}
        scorer = CatalogScorer(served)
        start = scorer.user_vectors(torch.tensor([0, 1]))
        histories = [np.array([3, 5, 7, 9]), np.array([20, 21])]
        folded = fold_in(scorer, start, histories, steps=100, learning_rate=0.1, seed=0)
        for name, parameter in served.named_parameters():
            assert torch.equal(parameter, before[name]), name
            assert parameter.grad is None, name
        old, new = scorer.scores(start), scorer.scores(folded)
        for row, history in enumerate(histories):
            others = np.setdiff1d(np.arange(40), history)
            gap_before = old[row, history].mean() - old[row, others].mean()
            gap_after = new[row, history].mean() - new[row, others].mean()
            assert gap_after > gap_before + 0.1


def test_fold_in_is_reproducible_and_zero_steps_change_nothing():
    _, model, _ = small_models()
    scorer = CatalogScorer(model)
    start = scorer.user_vectors(torch.tensor([0]))
    a = fold_in(scorer, start, [np.array([1, 2])], steps=5, learning_rate=0.1, seed=3)
    b = fold_in(scorer, start, [np.array([1, 2])], steps=5, learning_rate=0.1, seed=3)
    assert torch.equal(a[0], b[0])
    assert torch.equal(fold_in(scorer, start, [np.array([1, 2])], steps=0, learning_rate=0.1)[0], start[0])


def test_segment_backs_off_to_the_largest_match_and_ignores_unknown_features():
    n = 100
    attributes = pd.DataFrame(
        {
            "gender": ["F" if u % 2 else "M" for u in range(n)],
            "occupation": ["rare" if u < 3 else "common" for u in range(n)],
            "age": np.arange(n, dtype=float),
        }
    )
    both = find_segment(attributes, {"gender": "F", "occupation": "common"})
    assert both.features == {"gender": "F", "occupation": "common"} and len(both.users) == 49  # odd users but user 1
    rare = find_segment(attributes, {"gender": "F", "occupation": "rare", "shoe size": "44"})
    assert rare.features == {"gender": "F"} and len(rare.users) == 50
    young = find_segment(attributes, {"age": 10})
    assert set(young.users) == set(range(25)) and len(young.users) >= MIN_SEGMENT_USERS
    assert len(find_segment(attributes, None).users) == n


def test_segment_popularity_is_shrunk_toward_the_platform():
    users = np.array([0, 0, 1, 2, 3, 3])
    items = np.array([0, 1, 1, 2, 2, 3])
    history = Interactions(users, items, np.zeros(6, np.int64), 4, 5)
    popularity = Popularity(history)
    from crossfed.client.serving.cold_start import Segment

    scores = popularity.scores(Segment(np.array([0]), {"x": "y"}))
    assert scores[1] > scores[2] and scores[0] > scores[3]  # equally popular: the segment's item first
    assert scores[2] > scores[0]  # one segment user does not outweigh the platform (shrinkage)
    assert scores[3] > scores[4] and scores[4] == 0  # never-touched items last
