"""Ranking metrics and the two evaluation protocols.

* ``sampled``: the NCF protocol - the held-out item among ``eval_negatives`` sampled
  negatives (fixed by seed). Its cost per user is ``eval_negatives + 1`` scores whatever the
  catalog, so it runs every round.
* ``full``: the held-out item among every catalog item not in the user's history. Its cost
  grows with the catalog, so it runs when asked (the final test, or every
  ``full-ranking-every`` rounds), streamed in blocks of users x items so memory stays bounded.

Ties are counted against the held-out item (pessimistic), so a model that scores
everything the same gets no credit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from crossfed.shared.data.interactions import Interactions, LeaveLastOutSplit
from crossfed.shared.evaluation.candidates import candidate_lists

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
    """Per-user hit and NDCG for each protocol that ran. Stays on the platform: it is per-user data."""

    users: np.ndarray
    hits: dict[str, np.ndarray]
    ndcgs: dict[str, np.ndarray]

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols measured, in :data:`PROTOCOLS` order (``sampled`` always; ``full`` when it ran)."""
        return tuple(protocol for protocol in PROTOCOLS if protocol in self.hits)

    def summary(self) -> dict[str, dict[str, float]]:
        """Platform-level means - the only evaluation output that may leave a platform."""
        return {
            protocol: {
                "hr": float(self.hits[protocol].mean()) if len(self.users) else 0.0,
                "ndcg": float(self.ndcgs[protocol].mean()) if len(self.users) else 0.0,
            }
            for protocol in self.protocols
        }


#: Scoring holds every (user, item) pair of a block in the interaction layer at once; bounding the
#: pairs, not the users, keeps evaluation memory flat whatever the catalog and the platform's size.
PAIRS_PER_CHUNK = 1 << 16
#: Items per block of the full protocol: with PAIRS_PER_CHUNK, 64 users share one item-tower pass, and a
#: block's activations (a few MiB) stay in cache, which is about twice as fast as larger blocks on CPU.
ITEMS_PER_CHUNK = 1 << 10

#: ``score_fn(users [U], items [U, C]) -> scores [U, C]``; ``score_fn(users, None)`` scores the whole catalog.
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
    full: bool = True,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
) -> UserResults:
    """Rank each user's held-out item under the sampled protocol and, with ``full``, the full one.

    ``known_items`` holds every interaction the platform has (negatives for the sampled
    protocol avoid them all). The item rows ``score_fn`` gets for a block of the full protocol
    are one item range expanded over the users (stride 0), so a scorer may run its item side
    once per block.
    """
    targets = split.targets(stage)
    users = np.flatnonzero(targets >= 0)
    candidates = candidate_lists(split, known_items, stage, eval_negatives, seed)
    sampled_ranks = _sampled_ranks(score_fn, users, candidates, pairs_per_chunk)
    hits = {"sampled": hit_rate(sampled_ranks, k)}
    ndcgs = {"sampled": ndcg(sampled_ranks, k)}
    if full:
        full_ranks = full_catalog_ranks(
            score_fn, users, targets[users], split.history(stage), known_items.num_items, pairs_per_chunk
        )
        hits["full"], ndcgs["full"] = hit_rate(full_ranks, k), ndcg(full_ranks, k)
    return UserResults(users=users, hits=hits, ndcgs=ndcgs)


def _sampled_ranks(score_fn: ScoreFn, users: np.ndarray, candidates: np.ndarray, pairs_per_chunk: int) -> np.ndarray:
    """Rank of column 0 of each user's candidate list, scoring only the candidates."""
    chunk = max(1, pairs_per_chunk // max(candidates.shape[1], 1))
    ranks = [
        rank_of_first(
            score_fn(torch.as_tensor(users[start : start + chunk]), torch.tensor(candidates[start : start + chunk]))
            .numpy()
            .reshape(-1, candidates.shape[1])
        )
        for start in range(0, len(users), chunk)
    ]
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def full_catalog_ranks(
    score_fn: ScoreFn,
    users: np.ndarray,
    targets: np.ndarray,
    history: Interactions,
    num_items: int,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
) -> np.ndarray:
    """0-based rank of each user's ``targets`` item among every item outside the user's ``history``.

    With one held-out item per user, HR@k and NDCG@k need only its rank: the number of
    unseen items scoring at least as high. That count runs over blocks of users x items, so
    memory holds one block of ``pairs_per_chunk`` scores whatever the catalog.
    """
    item_chunk = max(1, min(num_items, ITEMS_PER_CHUNK, pairs_per_chunk))
    user_chunk = max(1, pairs_per_chunk // item_chunk)
    seen_users, seen_items = _unique_pairs(history)
    ranks = np.zeros(len(users), dtype=np.int64)
    for start in range(0, len(users), user_chunk):
        rows = slice(start, start + user_chunk)
        batch = torch.as_tensor(users[rows])
        batch_targets = targets[rows]
        target_scores = score_fn(batch, torch.as_tensor(batch_targets[:, None])).numpy().reshape(len(batch), 1)
        seen_row, seen_item = _rows_seen(seen_users, seen_items, users[rows])
        for first in range(0, num_items, item_chunk):
            last = min(first + item_chunk, num_items)
            items = torch.arange(first, last).expand(len(batch), -1)
            beats = score_fn(batch, items).numpy().reshape(len(batch), last - first) >= target_scores
            in_block = (seen_item >= first) & (seen_item < last)
            beats[seen_row[in_block], seen_item[in_block] - first] = False
            own = np.flatnonzero((batch_targets >= first) & (batch_targets < last))
            beats[own, batch_targets[own] - first] = False
            ranks[rows] += beats.sum(axis=1)
    return ranks


def _unique_pairs(history: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """History's distinct ``(user, item)`` pairs, sorted by user."""
    keys = history.keys
    return keys // history.num_items, keys % history.num_items


def _rows_seen(seen_users: np.ndarray, seen_items: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row in batch, item)`` for every history item of the users in ``batch``."""
    lower = np.searchsorted(seen_users, batch, side="left")
    counts = np.searchsorted(seen_users, batch, side="right") - lower
    rows = np.repeat(np.arange(len(batch)), counts)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, seen_items[np.repeat(lower, counts) + offsets]
