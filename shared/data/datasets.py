"""Datasets (a built-in or any folder in the data contract) and their platform split, cached per process.

Flower keeps a simulated platform's process (a Ray actor) alive across rounds, so
parsing and partitioning happen once per process, not once per round. A built-in is
only an adapter into the data contract: a folder and MovieLens take the same path from
here on (the same encoding, partitions, split and protocols).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from crossfed.shared.config import ConfigError, PrivacyConfig, RunConfig
from crossfed.shared.data.contract import Tables
from crossfed.shared.data.features import EncodedDataset, EncodedFeature, encode
from crossfed.shared.data.folder import DatasetFolder
from crossfed.shared.data.interactions import PlatformData, platform_view
from crossfed.shared.data.movielens import load_movielens_100k
from crossfed.shared.data.movielens_1m import load_movielens_1m
from crossfed.shared.data.partition import PartitionSpec, assign_platforms

#: Each built-in's adapter into the data contract: its argument is the local copy ("" or None: env var or cache).
_BUILT_IN_LOADERS: dict[str, Callable[[str | None], Tables]] = {
    "ml-100k": load_movielens_100k,
    "ml-1m": load_movielens_1m,
}
BUILT_IN_DATASETS = tuple(_BUILT_IN_LOADERS)
#: Salt of the seeded order that stands in for time when a dataset has no timestamps.
_SPLIT_SALT = 0x5EED

#: User columns kept for partitioning but not fed to the model. Raw zip codes are near
#: identifiers (796 values for 943 users): they add nothing the user-id embedding lacks,
#: and under DP they would be a per-user parameter. The zip region carries location.
_PARTITION_ONLY_USER_COLUMNS = {"ml-100k": ("zip",), "ml-1m": ("zip",)}


def load_dataset(name: str, data_dir: str = "") -> EncodedDataset:
    """Dataset ``name`` encoded for the model: a built-in (``data_dir`` empty means env var or
    cache) or a folder in the data contract (``data_dir`` is for built-ins only)."""
    return _load_dataset(name, data_dir, folder_stamp(name))


def folder_stamp(name: str) -> tuple[tuple[str, int, int], ...]:
    """Path, size and modification time of a folder dataset's files (empty for a built-in):
    part of every cache key, so a changed file is read again."""
    if name in BUILT_IN_DATASETS or not Path(name).is_dir():
        return ()
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in DatasetFolder.find(name).files())


@lru_cache(maxsize=2)
def _load_dataset(name: str, data_dir: str, stamp: tuple[tuple[str, int, int], ...]) -> EncodedDataset:
    if name not in BUILT_IN_DATASETS:
        if data_dir:
            raise ConfigError(
                f"config key 'data-dir' = {data_dir!r} names a copy of a built-in dataset, but 'dataset' = "
                f"{name!r} is a folder: leave 'data-dir' out"
            )
        return encode(dataset_folder(name).tables())
    dataset = encode(_BUILT_IN_LOADERS[name](data_dir or None))
    hidden = _PARTITION_ONLY_USER_COLUMNS.get(name, ())
    return dataclasses.replace(
        dataset, user_features={k: v for k, v in dataset.user_features.items() if k not in hidden}
    )


def source_tables(name: str, data_dir: str = "") -> Tables:
    """Dataset ``name`` as validated contract tables, before encoding: what a tool that adds rows starts from."""
    if name in BUILT_IN_DATASETS:
        return _BUILT_IN_LOADERS[name](data_dir or None)
    return dataset_folder(name).tables()


def partition_only_columns(name: str) -> tuple[str, ...]:
    """User columns of built-in ``name`` that partition platforms but never reach the model."""
    return _PARTITION_ONLY_USER_COLUMNS.get(name, ())


def dataset_folder(name: str) -> DatasetFolder:
    """The contract folder config key ``dataset`` names (anything but a built-in name)."""
    if not Path(name).is_dir():
        raise ConfigError(
            f"config key 'dataset' = {name!r} is neither a built-in dataset {BUILT_IN_DATASETS} "
            "nor a folder in the data contract (interactions, items or catalog.json, optional users)"
        )
    return DatasetFolder.find(name)


def held_out_in_random_order(interactions: int, seed: int) -> np.ndarray:
    """A seeded random order standing in for time: leave-last-out over it holds out random items.

    Without timestamps file order says nothing about which interaction came last, so the
    split must not pretend it does; a seeded order keeps the split reproducible.
    """
    return np.random.default_rng([seed, _SPLIT_SALT]).permutation(interactions).astype(np.int64)


@lru_cache(maxsize=4)
def _platforms(
    name: str,
    data_dir: str,
    spec: PartitionSpec,
    max_users: int,
    extra_items: int,
    stamp: tuple[tuple[str, int, int], ...],
) -> tuple[PlatformData, ...]:
    dataset = _simulated_catalog(name, data_dir, extra_items, spec.seed)
    if not dataset.has_timestamps:
        dataset = dataclasses.replace(dataset, timestamps=held_out_in_random_order(len(dataset.users), spec.seed))
    if max_users:
        dataset = subsample_users(dataset, max_users, spec.seed)
    assignment = assign_platforms(dataset, spec)
    return tuple(
        dataclasses.replace(platform_view(dataset, assignment, p), timestamped=dataset.has_timestamps)
        for p in range(spec.num_platforms)
    )


def partition_spec(config: RunConfig) -> PartitionSpec:
    return PartitionSpec(
        scheme=config.data.partition,
        num_platforms=config.data.num_platforms,
        seed=config.experiment.seed,
        attribute=config.data.partition_attribute,
        alpha=config.data.dirichlet_alpha,
        overlap_k=config.data.overlap_k,
    )


def load_platforms(config: RunConfig) -> tuple[PlatformData, ...]:
    """Every platform's data under the configured partition (simulation only: one machine holds all)."""
    data = config.data
    return _platforms(
        data.dataset,
        data.data_dir,
        partition_spec(config),
        data.max_users,
        data.extra_items,
        folder_stamp(data.dataset),
    )


def item_side(config: RunConfig) -> tuple[int, dict[str, EncodedFeature]]:
    """The simulated catalog (padded with ``extra-items``, as the platforms see it): what the
    coordinator builds the global model from when no published catalog is named."""
    data = config.data
    dataset = _simulated_catalog(data.dataset, data.data_dir, data.extra_items, config.experiment.seed)
    return dataset.num_items, dataset.item_features


def _simulated_catalog(name: str, data_dir: str, extra_items: int, seed: int) -> EncodedDataset:
    """The dataset with its catalog padded as configured: platforms and coordinator both start here,
    so their catalogs cannot drift apart (padding touches items only, so it commutes with ``max-users``)."""
    return pad_catalog(load_dataset(name, data_dir), extra_items, seed)


def check_platforms_fit(privacy: PrivacyConfig, platforms: tuple[PlatformData, ...]) -> None:
    """Cross-field checks that need the data: run by whoever holds every platform, before any round.

    Under user-level DP a step samples users at rate 1 / ceil(users / user-batch); a batch
    larger than a platform means sampling everyone every step - no amplification, and a
    noise calibration for a batch the platform cannot fill. The one Gram release samples no batches.
    """
    if privacy.privacy_unit != "user" or privacy.mechanism != "dp-sgd" or not platforms:
        return
    smallest = min(platforms, key=lambda p: p.num_users)
    if privacy.user_batch > smallest.num_users:
        raise ConfigError(
            f"config key 'user-batch' = {privacy.user_batch} is out of range: expected at most the smallest "
            f"platform's number of users ({smallest.num_users}, platform {smallest.platform})"
        )


def subsample_users(dataset: EncodedDataset, max_users: int, seed: int) -> EncodedDataset:
    """A random subset of users with all their interactions (for quick tests), catalog unchanged."""
    if max_users >= dataset.num_users:
        return dataset
    keep = np.sort(np.random.default_rng(seed).choice(dataset.num_users, size=max_users, replace=False))
    new_code = np.full(dataset.num_users, -1, dtype=np.int64)
    new_code[keep] = np.arange(len(keep))
    rows = new_code[dataset.users] >= 0
    return dataclasses.replace(
        dataset,
        user_ids=dataset.user_ids[keep],
        users=new_code[dataset.users[rows]],
        items=dataset.items[rows],
        timestamps=dataset.timestamps[rows],
        weights=dataset.weights[rows],
        user_features={
            name: dataclasses.replace(feature, values=feature.values[keep])
            for name, feature in dataset.user_features.items()
        },
        user_attributes=dataset.user_attributes.iloc[keep].reset_index(drop=True),
    )


def pad_catalog(dataset: EncodedDataset, extra_items: int, seed: int) -> EncodedDataset:
    """The catalog grown by ``extra_items`` items nobody interacted with; interactions unchanged.

    Cost studies need catalog size as a variable on its own, and one dataset has one
    catalog: padding changes the size while keeping the data fixed. Each added item copies
    the features of a random real item, so feature embeddings see realistic rows.
    """
    if extra_items <= 0:
        return dataset
    copied = np.random.default_rng(seed).integers(0, len(dataset.item_ids), size=extra_items)
    padding_ids = np.array([f"padding-{i}" for i in range(extra_items)])
    return dataclasses.replace(
        dataset,
        item_ids=np.concatenate([dataset.item_ids, padding_ids]),
        item_features={
            name: dataclasses.replace(feature, values=np.concatenate([feature.values, feature.values[copied]]))
            for name, feature in dataset.item_features.items()
        },
    )
