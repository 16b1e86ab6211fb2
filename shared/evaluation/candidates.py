"""The sampled protocol's candidate lists: the held-out item and negatives no mode or round redraws.

Every mode, every round and every platform ranks the very same lists, so validation curves
compare; building them is a pure function of the data and the seed, so each is built once.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from crossfed.shared.data.interactions import Interactions, LeaveLastOutSplit


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


#: Candidate lists by what determines them, shared by every round of a run in this process.
_CANDIDATES: OrderedDict[tuple[int, str, int, int], tuple[Interactions, np.ndarray, np.ndarray]] = OrderedDict()
#: Two stages for each of the platforms one process may serve (a simulation's worker serves many).
_CANDIDATE_CACHE_SIZE = 512


def candidate_lists(
    split: LeaveLastOutSplit, known_items: Interactions, stage: str, count: int, seed: int
) -> np.ndarray:
    """The sampled protocol's candidate lists of ``stage`` (see :func:`evaluation_candidates`), built once.

    They are a pure function of the platform's interactions, the held-out items, ``count`` and
    ``seed``, and every round asks for the same ones. The cache keys on that very
    interactions object (kept alive with the entry, so its identity cannot be reused) and
    checks the held-out items, so a run never ranks lists built from other data.
    """
    targets = split.targets(stage)
    key = (id(known_items), stage, count, seed)
    cached = _CANDIDATES.get(key)
    if cached is not None and cached[0] is known_items and np.array_equal(cached[1], targets):
        _CANDIDATES.move_to_end(key)
        return cached[2]
    users = np.flatnonzero(targets >= 0)
    candidates = evaluation_candidates(targets, users, count, known_items, seed)
    candidates.setflags(write=False)
    _CANDIDATES[key] = (known_items, targets.copy(), candidates)
    while len(_CANDIDATES) > _CANDIDATE_CACHE_SIZE:
        _CANDIDATES.popitem(last=False)
    return candidates
