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
