"""The one way any mode gets a platform's data: a split of a dataset, or the platform's own files.

Every mode (federated, centralized, local-only, popularity) and the ClientApp call
:func:`platform_data` or :func:`all_platforms`, so a run never trains on data other than
what its configuration names. Both paths are cached per process: Flower keeps a simulated
platform's process alive across rounds, and a Flower message must not re-read and
re-validate files. Operator files are cached by path, size and modification time, so a
changed file is read again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from crossfed.shared.config import DataConfig, RunConfig
from crossfed.shared.data.catalog import load_catalog
from crossfed.shared.data.datasets import (
    BUILT_IN_DATASETS,
    dataset_folder,
    held_out_in_random_order,
    load_platforms,
)
from crossfed.shared.data.folder import one_file
from crossfed.shared.data.interactions import PlatformData
from crossfed.shared.data.platform_files import load_operator_data

#: A file's identity for the cache: path, size in bytes, modification time in nanoseconds.
FileStamp = tuple[str, int, int]

LEAVE_LAST_OUT = "leave-last-out: per user the latest interaction is the test item, the one before it validation"
RANDOM_HELD_OUT = (
    "random held-out (no timestamps): per user a random interaction (seed {seed}) is the test item, "
    "another the validation item"
)


def platform_data(config: RunConfig, platform: int) -> PlatformData:
    """Platform ``platform``'s training data as the configuration names it."""
    if config.data.operator_data:
        return _own_files(config.data, platform, config.experiment.seed)
    return load_platforms(config)[platform]


def all_platforms(config: RunConfig) -> tuple[PlatformData, ...]:
    """Every platform's data (simulation only: one machine holds all)."""
    if config.data.operator_data:
        return tuple(platform_data(config, p) for p in range(config.data.num_platforms))
    return load_platforms(config)


def operator_folder(data: DataConfig, platform: int) -> Path:
    """Platform ``platform``'s folder: ``operator-data`` with ``{partition-id}`` replaced."""
    return Path(data.operator_data.replace("{partition-id}", str(platform)))


def _own_files(data: DataConfig, platform: int, seed: int) -> PlatformData:
    folder = operator_folder(data, platform)
    interactions = one_file(folder, "interactions", required=True, key="operator-data")
    assert interactions is not None  # required=True
    users = one_file(folder, "users", required=False, key="operator-data")
    return _cached_own_files(
        _stamp(interactions),
        _stamp(users) if users is not None else None,
        _stamp(Path(data.catalog)),
        data.catalog_version,
        platform,
        seed,
    )


@lru_cache(maxsize=8)
def _cached_own_files(
    interactions: FileStamp,
    users: FileStamp | None,
    catalog: FileStamp,
    catalog_version: str,
    platform: int,
    seed: int,
) -> PlatformData:
    loaded = load_operator_data(
        interactions[0],
        load_catalog(catalog[0], catalog_version),
        users=users[0] if users is not None else None,
        platform=platform,
    )
    if loaded.tables.has_timestamps:
        return loaded.data
    order = held_out_in_random_order(len(loaded.data.interactions), seed)
    return replace(loaded.data, interactions=replace(loaded.data.interactions, timestamps=order), timestamped=False)


def _stamp(path: Path) -> FileStamp:
    try:
        status = path.stat()
    except FileNotFoundError:
        return (str(path), -1, -1)  # the reader names the missing file
    return (str(path), status.st_size, status.st_mtime_ns)


@dataclass(frozen=True)
class DataDescription:
    """What a run trained on, truthfully: the summary's ``dataset`` and ``data`` entries."""

    label: str
    record: dict[str, Any]

    def summary_entries(self) -> dict[str, Any]:
        return {"dataset": self.label, "data": self.record}


def describe(config: RunConfig, platforms: tuple[PlatformData, ...]) -> DataDescription:
    """The dataset (built-in name, or folder with catalog version and content hash) and the split rule."""
    data = config.data
    split = _split_rule(platforms, config.experiment.seed)
    if data.operator_data:
        catalog = load_catalog(data.catalog, data.catalog_version)
        record: dict[str, Any] = {
            "source": "operator-data",
            "path": data.operator_data,
            "catalog": data.catalog,
            "catalog_version": catalog.version,
            "catalog_sha256": catalog.sha256,
        }
        label = f"operator-data {data.operator_data} (catalog {catalog.version})"
    elif data.dataset in BUILT_IN_DATASETS:
        record = {"source": "built-in", "name": data.dataset, "partition": data.partition}
        label = data.dataset
    else:
        folder = dataset_folder(data.dataset)
        catalog = folder.load_catalog()
        record = {
            "source": "folder",
            "path": str(folder.path.resolve()),
            "files": [p.name for p in folder.files()],
            "catalog_version": catalog.version if catalog is not None else None,
            "content_sha256": folder.content_hash(),
            "partition": data.partition,
        }
        version = f", catalog {catalog.version}" if catalog is not None else ""
        label = f"{folder.path.name} (folder{version}, sha256 {record['content_sha256'][:12]})"
    record["users"] = sum(p.num_users for p in platforms)
    record["items"] = platforms[0].num_items if platforms else 0
    record["interactions"] = sum(len(p.interactions) for p in platforms)
    record["split"] = split
    return DataDescription(label, record)


def _split_rule(platforms: tuple[PlatformData, ...], seed: int) -> str:
    timed = [p.platform for p in platforms if p.timestamped]
    untimed = [p.platform for p in platforms if not p.timestamped]
    if not untimed:
        return LEAVE_LAST_OUT
    if not timed:
        return RANDOM_HELD_OUT.format(seed=seed)
    return f"platforms {timed}: {LEAVE_LAST_OUT}; platforms {untimed}: {RANDOM_HELD_OUT.format(seed=seed)}"
