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
    same lists. Each user's negatives are ``rng.choice`` over the sorted items the user has
    not touched; the draw depends only on how many there are, so the chosen positions are
    mapped to items through the user's sorted history, never building the whole complement
    (a catalog-sized array per user).
    """
    rng = np.random.default_rng(seed)
    items_by_user = known.items_per_user()
    candidates = np.empty((len(users), count + 1), dtype=np.int64)
    candidates[:, 0] = targets[users]
    for row, user in enumerate(users):
        seen = np.unique(items_by_user[user])
        allowed = known.num_items - len(seen)
        if allowed < count:
            raise ValueError(f"a user has interacted with all but {allowed} items; {count} negatives needed")
        candidates[row, 1:] = unseen_item(seen, rng.choice(allowed, size=count, replace=False))
    return candidates


def unseen_item(seen: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The items at 0-based ``positions`` in the sorted list of items not in ``seen`` (sorted, distinct).

    Below ``seen[j]`` lie ``seen[j] - j`` unseen items, so the unseen item at position ``p``
    is ``p`` plus the number of seen items with ``seen[j] - j <= p``.
    """
    gaps = seen - np.arange(len(seen))
    return positions + np.searchsorted(gaps, positions, side="right")
