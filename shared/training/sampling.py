"""Negative sampling for implicit feedback: anything a user has not touched may be a negative."""

from __future__ import annotations

import numpy as np

from crossfed.shared.data.interactions import Interactions

_MAX_REJECTION_ROUNDS = 64


def sample_negatives(users: np.ndarray, count: int, known: Interactions, rng: np.random.Generator) -> np.ndarray:
    """``count`` items per user drawn uniformly from the catalog minus that user's ``known`` items.

    Rejection sampling, vectorised: draws that hit a known item are redrawn. With
    catalogs far larger than any user's history this converges in a few rounds.
    """
    negatives = rng.integers(0, known.num_items, size=(len(users), count))
    row_users = np.broadcast_to(users[:, None], negatives.shape)
    bad = known.contains(row_users.ravel(), negatives.ravel()).reshape(negatives.shape)
    for _ in range(_MAX_REJECTION_ROUNDS):
        if not bad.any():
            return negatives
        redraw = rng.integers(0, known.num_items, size=int(bad.sum()))
        negatives[bad] = redraw
        bad[bad] = known.contains(row_users[bad], redraw)
    raise RuntimeError("negative sampling did not converge: some user has interacted with almost every item")


def evaluation_candidates(
    targets: np.ndarray, users: np.ndarray, count: int, known: Interactions, seed: int
) -> np.ndarray:
    """The NCF protocol's candidate lists: column 0 is the held-out item, then ``count`` negatives.

    Negatives are distinct, exclude everything the user ever interacted with on the
    platform, and are fixed by ``seed``, so every mode and every round ranks the very
    same lists.
    """
    rng = np.random.default_rng(seed)
    items_by_user = known.items_per_user()
    candidates = np.empty((len(users), count + 1), dtype=np.int64)
    candidates[:, 0] = targets[users]
    for row, user in enumerate(users):
        allowed = np.setdiff1d(np.arange(known.num_items), items_by_user[user], assume_unique=False)
        if len(allowed) < count:
            raise ValueError(f"a user has interacted with all but {len(allowed)} items; {count} negatives needed")
        candidates[row, 1:] = rng.choice(allowed, size=count, replace=False)
    return candidates
