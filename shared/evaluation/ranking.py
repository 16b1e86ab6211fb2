"""Ranking metrics and the two evaluation protocols.

* ``sampled``: the NCF protocol - the held-out item among ``eval_negatives`` sampled
  negatives (fixed by seed).
* ``full``: the held-out item among every catalog item not in the user's history.

Ties are counted against the held-out item (pessimistic), so a model that scores
everything the same gets no credit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from crossfed.shared.data.interactions import Interactions, LeaveLastOutSplit
from crossfed.shared.training.sampling import evaluation_candidates

PROTOCOLS = ("sampled", "full")


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the held-out item is in the top ``k`` (0-based ``ranks``), else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with one relevant item: ``1 / log2(rank + 2)`` inside the top ``k``, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def rank_of_first(scores: np.ndarray) -> np.ndarray:
    """0-based rank of column 0 among the columns of each row, ties counted as losses."""
    return (scores[:, 1:] >= scores[:, :1]).sum(axis=1)


@dataclass(frozen=True)
class UserResults:
    """Per-user hit and NDCG for each protocol. Stays on the platform: it is per-user data."""

    users: np.ndarray
    hits: dict[str, np.ndarray]
    ndcgs: dict[str, np.ndarray]

    def summary(self) -> dict[str, dict[str, float]]:
        """Platform-level means - the only evaluation output that may leave a platform."""
        return {
            protocol: {
                "hr": float(self.hits[protocol].mean()) if len(self.users) else 0.0,
                "ndcg": float(self.ndcgs[protocol].mean()) if len(self.users) else 0.0,
            }
            for protocol in PROTOCOLS
        }


#: Whole-catalog scoring holds every (user, item) pair of a chunk in the interaction layer at
#: once; bounding the pairs, not the users, keeps evaluation memory flat as the catalog grows.
PAIRS_PER_CHUNK = 1 << 18

ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@torch.no_grad()
def evaluate_ranking(
    score_fn: ScoreFn,
    split: LeaveLastOutSplit,
    known_items: Interactions,
    *,
    stage: str = "test",
    k: int = 10,
    eval_negatives: int = 99,
    seed: int = 0,
    chunk: int | None = None,
) -> UserResults:
    """Rank each user's held-out item under both protocols.

    ``score_fn(users [U], items [U, C]) -> scores [U, C]`` and ``score_fn(users, None)``
    scores the whole catalog. ``known_items`` holds every interaction the platform
    has (negatives for the sampled protocol avoid them all).
    """
    if chunk is None:  # users scored at once: about PAIRS_PER_CHUNK (user, item) pairs, whatever the catalog
        chunk = max(1, PAIRS_PER_CHUNK // max(known_items.num_items, 1))
    targets = split.targets(stage)
    users = np.flatnonzero(targets >= 0)
    history = split.history(stage)
    candidates = evaluation_candidates(targets, users, eval_negatives, known_items, seed)
    sampled_ranks, full_ranks = [], []
    for start in range(0, len(users), chunk):
        batch_users = users[start : start + chunk]
        batch_candidates = candidates[start : start + chunk]
        everything = score_fn(torch.as_tensor(batch_users), None).numpy()  # one pass serves both protocols
        sampled_ranks.append(rank_of_first(np.take_along_axis(everything, batch_candidates, axis=1)))
        seen = _history_mask(history, batch_users, everything.shape[1])
        target_items = targets[batch_users]
        target_scores = everything[np.arange(len(batch_users)), target_items]
        beats = (everything >= target_scores[:, None]) & ~seen
        beats[np.arange(len(batch_users)), target_items] = False
        full_ranks.append(beats.sum(axis=1))
    sampled_ranks = np.concatenate(sampled_ranks) if sampled_ranks else np.zeros(0, dtype=np.int64)
    full_ranks = np.concatenate(full_ranks) if full_ranks else np.zeros(0, dtype=np.int64)
    return UserResults(
        users=users,
        hits={"sampled": hit_rate(sampled_ranks, k), "full": hit_rate(full_ranks, k)},
        ndcgs={"sampled": ndcg(sampled_ranks, k), "full": ndcg(full_ranks, k)},
    )


def _history_mask(history: Interactions, users: np.ndarray, num_items: int) -> np.ndarray:
    """Boolean [len(users), num_items]: True where the item is in that user's history."""
    row_of_user = np.full(history.num_users, -1, dtype=np.int64)
    row_of_user[users] = np.arange(len(users))
    rows = row_of_user[history.users]
    selected = rows >= 0
    mask = np.zeros((len(users), num_items), dtype=bool)
    mask[rows[selected], history.items[selected]] = True
    return mask
