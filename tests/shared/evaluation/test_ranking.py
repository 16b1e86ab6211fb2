import numpy as np
import pytest
import torch

from crossfed.shared.data.interactions import Interactions, leave_last_out
from crossfed.shared.evaluation.ranking import evaluate_ranking, hit_rate, ndcg, rank_of_first


def test_hit_rate_and_ndcg_hand_computed():
    ranks = np.array([0, 1, 9, 10, 50])
    assert hit_rate(ranks, 10).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    expected = [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0, 0.0]
    assert ndcg(ranks, 10) == pytest.approx(expected)


def test_rank_counts_ties_against_the_target():
    scores = np.array([[0.5, 0.9, 0.1, 0.5], [0.9, 0.1, 0.2, 0.3], [1.0, 1.0, 1.0, 1.0]])
    assert rank_of_first(scores).tolist() == [2, 0, 3]


def test_constant_model_gets_no_credit():
    """A model that scores every item the same must rank the target last, not first."""
    users = np.repeat(np.arange(5), 4)
    items = np.tile(np.arange(4), 5)
    interactions = Interactions(users, items, np.tile(np.arange(4), 5), 5, 200)
    split = leave_last_out(interactions)
    results = evaluate_ranking(
        lambda u, i: torch.zeros(len(u), 200 if i is None else i.shape[1]),
        split,
        interactions,
        k=10,
        eval_negatives=99,
    )
    assert results.hits["sampled"].sum() == 0 and results.hits["full"].sum() == 0


def test_oracle_model_hits_everything_and_full_ranking_skips_history():
    users = np.repeat(np.arange(6), 5)
    items = np.concatenate([np.arange(u, u + 5) for u in range(6)])
    interactions = Interactions(users, items, np.tile(np.arange(5), 6), 6, 50)
    split = leave_last_out(interactions)
    history = split.history("test")
    target = split.test_items

    def oracle(u, i):
        # Highest score to the target, second highest to the user's history items (must be masked).
        full = torch.zeros(len(u), 50)
        for row, user in enumerate(u.tolist()):
            full[row, history.items[history.users == user]] = 5.0
            full[row, target[user]] = 10.0
        return full if i is None else torch.gather(full, 1, i)

    results = evaluate_ranking(oracle, split, interactions, k=1, eval_negatives=20)
    assert results.hits["sampled"].tolist() == [1.0] * 6
    assert results.hits["full"].tolist() == [1.0] * 6
    assert results.ndcgs["full"] == pytest.approx([1.0] * 6)
