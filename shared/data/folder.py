"""A dataset folder in the data contract: the files it holds, how they are read, what identifies them.

Why a folder: a researcher's own dataset needs no adapter code. ``interactions`` and either
``items`` or a published ``catalog.json`` (optionally ``users``), each ``.csv`` or ``.parquet``,
go through the same contract checks an operator's export does, so every mode, split and
protocol applies to them unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from crossfed.shared.data.catalog import Catalog, load_catalog
from crossfed.shared.data.contract import DataValidationError, Tables, load_tables
from crossfed.shared.data.platform_files import check_tables

CATALOG_FILE = "catalog.json"
_SUFFIXES = (".csv", ".parquet")
_HASH_CHUNK = 1 << 20


def one_file(folder: Path, stem: str, *, required: bool, key: str) -> Path | None:
    """``folder/stem.csv`` or ``folder/stem.parquet``; both present is ambiguous, neither is an error if required."""
    found = [folder / f"{stem}{suffix}" for suffix in _SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise DataValidationError(str(folder), f"both {found[0].name} and {found[1].name}: keep one")
    if not found and required:
        raise DataValidationError(str(folder), f"no {stem}.csv or {stem}.parquet (config key '{key}')")
    return found[0] if found else None


@dataclass(frozen=True)
class DatasetFolder:
    """The files of one contract-format dataset folder."""

    path: Path
    interactions: Path
    items: Path | None
    catalog: Path | None
    users: Path | None

    @classmethod
    def find(cls, path: str | Path) -> DatasetFolder:
        """The folder's files; the item side is ``items.*`` or ``catalog.json``, never both.

        Raises:
            DataValidationError: a required file is missing or a table is present twice.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise DataValidationError(str(folder), "is not a folder (config key 'dataset')")
        interactions = one_file(folder, "interactions", required=True, key="dataset")
        items = one_file(folder, "items", required=False, key="dataset")
        catalog = folder / CATALOG_FILE if (folder / CATALOG_FILE).is_file() else None
        if items is not None and catalog is not None:
            raise DataValidationError(str(folder), f"both {items.name} and {CATALOG_FILE}: keep one item side")
        if items is None and catalog is None:
            raise DataValidationError(
                str(folder), f"no items.csv, items.parquet or {CATALOG_FILE} (config key 'dataset')"
            )
        users = one_file(folder, "users", required=False, key="dataset")
        assert interactions is not None  # required=True
        return cls(folder, interactions, items, catalog, users)

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.interactions, self.items, self.catalog, self.users) if p is not None)

    def content_hash(self) -> str:
        """sha256 over every data file's name and bytes: two runs name the same data only if this matches."""
        digest = hashlib.sha256()
        for path in sorted(self.files(), key=lambda p: p.name):
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as stream:
                while chunk := stream.read(_HASH_CHUNK):
                    digest.update(chunk)
        return digest.hexdigest()

    def load_catalog(self) -> Catalog | None:
        return load_catalog(self.catalog) if self.catalog is not None else None

    def tables(self) -> Tables:
        """Read and validate the folder's tables (name: the folder's name).

        Raises:
            DataValidationError: names file, row and column.
        """
        catalog = self.load_catalog()
        if catalog is None:
            return load_tables(self.interactions, self.items, self.users, name=self.path.name)
        tables = check_tables(self.interactions, users=self.users, catalog=catalog)
        return Tables(
            tables.interactions,
            tables.items,
            tables.users,
            tables.feature_kinds,
            tables.report,
            self.path.name,
            tables.has_timestamps,
        )
