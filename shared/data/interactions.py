"""One platform's interactions in its own local user ids, and the leave-last-out split.

A platform numbers its users 0..n-1 itself; the mapping to anybody else's ids never
leaves it. Items use the shared catalog's ids, which is what makes federation possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from crossfed.shared.data.features import EncodedDataset, EncodedFeature


@dataclass(frozen=True)
class Interactions:
    """Positive interactions ``(users[i], items[i])`` at ``timestamps[i]``."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> Interactions:
        return Interactions(self.users[mask], self.items[mask], self.timestamps[mask], self.num_users, self.num_items)

    @cached_property
    def keys(self) -> np.ndarray:
        """Sorted ``user * num_items + item`` codes: O(log n) membership tests for sampling."""
        return np.unique(self.users.astype(np.int64) * self.num_items + self.items)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each ``(user, item)`` pair is among these interactions."""
        queries = users.astype(np.int64) * self.num_items + items
        position = np.searchsorted(self.keys, queries)
        position = np.minimum(position, len(self.keys) - 1)
        return self.keys[position] == queries if len(self.keys) else np.zeros(queries.shape, dtype=bool)

    def items_per_user(self) -> list[np.ndarray]:
        order = np.argsort(self.users, kind="stable")
        bounds = np.searchsorted(self.users[order], np.arange(self.num_users + 1))
        return [self.items[order[bounds[u] : bounds[u + 1]]] for u in range(self.num_users)]


@dataclass(frozen=True)
class PlatformData:
    """Everything one platform knows: its users' interactions and features, and the catalog."""

    platform: int
    interactions: Interactions
    user_features: dict[str, EncodedFeature]
    item_features: dict[str, EncodedFeature]
    #: The platform's own user id of each local user code (row ``u`` of the user tower is ``user_ids[u]``).
    user_ids: np.ndarray
    #: False when the data had no timestamps: ``interactions.timestamps`` is then a seeded random
    #: order, so leave-last-out holds out random items instead of the latest.
    timestamped: bool = True

    @property
    def num_users(self) -> int:
        return self.interactions.num_users

    @property
    def num_items(self) -> int:
        return self.interactions.num_items


def platform_view(dataset: EncodedDataset, platform_of_interaction: np.ndarray, platform: int) -> PlatformData:
    """Platform ``platform``'s data, its users renumbered 0..n-1 in order of global code."""
    mask = platform_of_interaction == platform
    global_users, local_users = np.unique(dataset.users[mask], return_inverse=True)
    interactions = Interactions(
        users=local_users.astype(np.int64),
        items=dataset.items[mask].astype(np.int64),
        timestamps=dataset.timestamps[mask],
        num_users=len(global_users),
        num_items=dataset.num_items,
    )
    user_features = {name: _take(feature, global_users) for name, feature in dataset.user_features.items()}
    return PlatformData(
        platform, interactions, user_features, dataset.item_features, user_ids=dataset.user_ids[global_users]
    )


def pool(platforms: list[PlatformData]) -> PlatformData:
    """All platforms' data as one (the centralized baseline); platform p's users come p-th.

    Users stay distinct per platform, exactly as the platforms see them: nobody links
    identities, not even the upper bound.
    """
    offsets = np.cumsum([0] + [p.num_users for p in platforms])
    interactions = Interactions(
        users=np.concatenate([p.interactions.users + off for p, off in zip(platforms, offsets)]),
        items=np.concatenate([p.interactions.items for p in platforms]),
        timestamps=np.concatenate([p.interactions.timestamps for p in platforms]),
        num_users=int(offsets[-1]),
        num_items=platforms[0].num_items,
    )
    user_features = {name: _concat([p.user_features[name] for p in platforms]) for name in platforms[0].user_features}
    return PlatformData(
        -1,
        interactions,
        user_features,
        platforms[0].item_features,
        user_ids=np.concatenate([p.user_ids for p in platforms]),
    )


@dataclass(frozen=True)
class LeaveLastOutSplit:
    """Per user: the latest interaction is the test item, the one before the validation item.

    Ties in time keep file order (stable sort), so the split is deterministic. A user
    with fewer than three interactions keeps all of them for training and has no
    held-out items (``-1``).
    """

    train: Interactions
    validation_items: np.ndarray
    test_items: np.ndarray

    def history(self, stage: str) -> Interactions:
        """What the model may know about each user when ranking ``stage``'s held-out item."""
        if stage == "validation":
            return self.train
        if stage != "test":
            raise ValueError(f"unknown stage {stage!r}; expected 'validation' or 'test'")
        users = np.flatnonzero(self.validation_items >= 0)
        extra = Interactions(
            users,
            self.validation_items[users],
            np.zeros(len(users), np.int64),
            self.train.num_users,
            self.train.num_items,
        )
        return concat_interactions(self.train, extra)

    def targets(self, stage: str) -> np.ndarray:
        return self.validation_items if stage == "validation" else self.test_items


def leave_last_out(interactions: Interactions) -> LeaveLastOutSplit:
    n = len(interactions)
    order = np.lexsort((np.arange(n), interactions.timestamps, interactions.users))
    users_sorted = interactions.users[order]
    counts = np.bincount(users_sorted, minlength=interactions.num_users)
    ends = np.cumsum(counts)
    eligible = counts >= 3
    test_rows = order[ends[eligible] - 1]
    validation_rows = order[ends[eligible] - 2]
    test_items = np.full(interactions.num_users, -1, dtype=np.int64)
    validation_items = np.full(interactions.num_users, -1, dtype=np.int64)
    test_items[interactions.users[test_rows]] = interactions.items[test_rows]
    validation_items[interactions.users[validation_rows]] = interactions.items[validation_rows]
    train_mask = np.ones(n, dtype=bool)
    train_mask[test_rows] = False
    train_mask[validation_rows] = False
    return LeaveLastOutSplit(interactions.subset(train_mask), validation_items, test_items)


def concat_interactions(a: Interactions, b: Interactions) -> Interactions:
    return Interactions(
        np.concatenate([a.users, b.users]),
        np.concatenate([a.items, b.items]),
        np.concatenate([a.timestamps, b.timestamps]),
        a.num_users,
        a.num_items,
    )


def _take(feature: EncodedFeature, rows: np.ndarray) -> EncodedFeature:
    return EncodedFeature(feature.kind, feature.values[rows], feature.vocabulary, feature.cardinality)


def _concat(features: list[EncodedFeature]) -> EncodedFeature:
    first = features[0]
    return EncodedFeature(first.kind, np.concatenate([f.values for f in features]), first.vocabulary, first.cardinality)
