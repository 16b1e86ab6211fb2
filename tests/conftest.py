"""Shared fixtures. Tests that need MovieLens read it from ``CROSSFED_DATA_DIR`` (CI: ../shared)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfed.shared.data.features import EncodedDataset, EncodedFeature


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """``CROSSFED_DATA_DIR`` if set, else the download cache (fetched once if the network allows)."""
    from crossfed.shared.data.movielens import DatasetUnavailableError, resolve_data_dir

    try:
        return resolve_data_dir(os.environ.get("CROSSFED_DATA_DIR") or None)
    except DatasetUnavailableError as error:
        pytest.skip(f"MovieLens-100K unavailable: {error}")


@pytest.fixture(scope="session")
def crossfed_command() -> str:
    """The ``crossfed`` console script installed beside the Python running the tests."""
    return str(Path(sys.executable).with_name("crossfed"))


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
            "region": EncodedFeature("categorical", (np.arange(num_users) % 6 + 1).astype(np.int64),
                                     tuple(str(r) for r in range(6)), 7),
        },
        item_features={
            "genre": EncodedFeature("multi_hot", np.eye(3, dtype=np.float32)[np.arange(num_items) % 3],
                                    ("a", "b", "c"), 3),
        },
        user_attributes=pd.DataFrame({"region": region, "occupation": [f"o{u % 4}" for u in range(num_users)]}),
    )


@pytest.fixture
def dataset() -> EncodedDataset:
    return make_dataset()
