"""Builders the tests share; fixtures live in ``conftest.py``, plain functions here so tests can import them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crossfed.shared.data.features import EncodedDataset, EncodedFeature


def make_dataset(num_users: int = 40, num_items: int = 30, per_user: int = 8, seed: int = 0) -> EncodedDataset:
    """A small synthetic dataset with two user attributes and one item feature."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    items = np.concatenate([rng.choice(num_items, size=per_user, replace=False) for _ in range(num_users)])
    timestamps = np.tile(np.arange(per_user), num_users) + 1000
    region = np.array([str(u % 6) for u in range(num_users)])
    return EncodedDataset(
        name="synthetic",
        user_ids=np.array([f"u{u}" for u in range(num_users)]),
        item_ids=np.array([f"i{i}" for i in range(num_items)]),
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        timestamps=timestamps.astype(np.int64),
        weights=np.ones(len(users), np.float32),
        user_features={
            "region": EncodedFeature(
                "categorical", (np.arange(num_users) % 6 + 1).astype(np.int64), tuple(str(r) for r in range(6)), 7
            ),
        },
        item_features={
            "genre": EncodedFeature(
                "multi_hot", np.eye(3, dtype=np.float32)[np.arange(num_items) % 3], ("a", "b", "c"), 3
            ),
        },
        user_attributes=pd.DataFrame({"region": region, "occupation": [f"o{u % 4}" for u in range(num_users)]}),
    )


def multi_hot_table(rows: int, vocabulary: int, seed: int) -> np.ndarray:
    """Mean-normalised indicator rows with 0 to 4 words each (some rows empty), as the towers build them."""
    rng = np.random.default_rng(seed)
    values = np.zeros((rows, vocabulary), dtype=np.float32)
    for row in range(rows):
        values[row, rng.choice(vocabulary, size=rng.integers(0, 5), replace=False)] = 1.0
    return values / np.maximum(values.sum(axis=1, keepdims=True), 1.0)
