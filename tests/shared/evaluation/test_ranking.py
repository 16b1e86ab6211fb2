import numpy as np
import pytest
import torch

from crossfed.shared.config import ModelConfig
from crossfed.shared.data.interactions import Interactions, leave_last_out
from crossfed.shared.evaluation.candidates import candidate_lists
from crossfed.shared.evaluation.ranking import evaluate_ranking, hit_rate, ndcg, rank_of_first
from crossfed.shared.model.recommender import build_model
from tests.helpers import make_dataset


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


def _random_platform(num_users: int = 12, num_items: int = 300, per_user: int = 9, seed: int = 0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    items = np.concatenate([rng.choice(num_items, size=per_user, replace=False) for _ in range(num_users)])
    interactions = Interactions(users, items, np.tile(np.arange(per_user), num_users), num_users, num_items)
    return interactions, leave_last_out(interactions)


def _table_scorer(table: torch.Tensor, seen: list):
    """Scores from a fixed [users, items] table; records the item columns each call asked for."""

    def score(u, i):
        seen.append(None if i is None else i.shape[1])
        return table[u] if i is None else torch.gather(table[u], 1, i)

    return score


@pytest.mark.parametrize("pairs_per_chunk", [7, 64, 1 << 16])
def test_streamed_full_ranks_match_a_whole_catalog_count_whatever_the_block_size(pairs_per_chunk):
    interactions, split = _random_platform()
    # Few distinct values: many ties, which must count against the target in every block.
    table = torch.as_tensor(np.random.default_rng(1).integers(0, 20, size=(12, 300)).astype(np.float32))
    results = evaluate_ranking(
        _table_scorer(table, []), split, interactions, k=300, eval_negatives=20, pairs_per_chunk=pairs_per_chunk
    )
    history = split.history("test")
    expected = []
    for user in results.users:
        scores = table[user].numpy()
        target = split.test_items[user]
        unseen = np.ones(300, dtype=bool)
        unseen[history.items[history.users == user]] = False
        unseen[target] = False
        expected.append(int((scores[unseen] >= scores[target]).sum()))
    np.testing.assert_allclose(results.ndcgs["full"], ndcg(np.array(expected), 300))


def test_validation_without_full_ranking_scores_only_the_candidates():
    """Per-round cost independent of the catalog: no call sees more than the candidate list."""
    interactions, split = _random_platform(num_items=5000)
    calls: list = []
    table = torch.rand(12, 5000, generator=torch.Generator().manual_seed(0))
    results = evaluate_ranking(
        _table_scorer(table, calls), split, interactions, stage="validation", eval_negatives=30, full=False
    )
    assert calls and all(width == 31 for width in calls)
    assert results.protocols == ("sampled",) and set(results.summary()) == {"sampled"}
    with_full = evaluate_ranking(_table_scorer(table, []), split, interactions, stage="validation", eval_negatives=30)
    np.testing.assert_array_equal(results.hits["sampled"], with_full.hits["sampled"])
    assert with_full.protocols == ("sampled", "full")


def test_candidate_lists_are_built_once_and_never_for_other_data():
    interactions, split = _random_platform(seed=2)
    first = candidate_lists(split, interactions, "validation", 25, seed=3)
    assert candidate_lists(leave_last_out(interactions), interactions, "validation", 25, seed=3) is first
    assert candidate_lists(split, interactions, "test", 25, seed=3) is not first
    # Another run's data of the same shape: lists of its own, avoiding its own histories.
    other, other_split = _random_platform(seed=5)
    lists = candidate_lists(other_split, other, "validation", 25, seed=3)
    assert lists is not first
    users = np.flatnonzero(other_split.validation_items >= 0)
    for row, user in zip(lists, users):
        assert row[0] == other_split.validation_items[user]
        assert not set(row[1:].tolist()) & set(other.items[other.users == user].tolist())


def test_the_model_scores_candidates_and_catalog_blocks_as_its_forward_pass_does():
    dataset = make_dataset()
    model = build_model(ModelConfig(), 30, dataset.item_features, 40, dataset.user_features, seed=0).eval()
    users = torch.arange(6)
    candidates = torch.as_tensor(np.random.default_rng(0).integers(0, 30, size=(6, 9)))
    with torch.no_grad():
        torch.testing.assert_close(model.score(users, candidates), model(users, candidates))
        block = torch.arange(4, 17).expand(6, -1)
        torch.testing.assert_close(model.score(users, block), model(users, block.contiguous()))
        torch.testing.assert_close(model.score(users, None), model(users, torch.arange(30).expand(6, -1).contiguous()))
