"""An operator's own files as one platform's data, with item codes from the coordinator's catalog.

Why a separate loader: the simulation carves platforms out of one named dataset, but an
operator brings files (CSV or Parquet, in the data contract's columns) and the coordinator's
catalog. Items get their catalog code (never a platform-local one), so the platform's model
fits the global item tower; users are numbered 0..n-1 in sorted id order, exactly as
``features.encode`` numbers them, and the mapping stays on the platform.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossfed.shared.data.catalog import Catalog
from crossfed.shared.data.contract import DataValidationError, Tables, ValidationReport, read_table, validate
from crossfed.shared.data.features import EncodedDataset, encode
from crossfed.shared.data.interactions import Interactions, PlatformData

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class OperatorData:
    """One platform's validated data: the model's view plus the ids and raw tables behind it."""

    data: PlatformData
    user_ids: np.ndarray  # local user code -> the operator's user id
    item_ids: np.ndarray  # item code -> catalog id
    tables: Tables
    catalog: Catalog | None
    attributes: pd.DataFrame | None  # raw user features, one row per local user code (None: no user table)

    @property
    def report(self) -> ValidationReport:
        return self.tables.report

    def user_code(self, user_id: str) -> int:
        """Local code of ``user_id``, -1 if the platform has no interactions for that user."""
        position = int(np.searchsorted(self.user_ids, user_id))
        return position if position < len(self.user_ids) and self.user_ids[position] == user_id else -1

    def item_codes(self, item_ids: pd.Series | np.ndarray | list[str]) -> np.ndarray:
        return pd.Index(self.item_ids).get_indexer(pd.Index(np.asarray(item_ids, dtype=str)))


def check_tables(
    interactions: str | Path,
    *,
    users: str | Path | None = None,
    catalog: Catalog | None = None,
    items: str | Path | None = None,
) -> Tables:
    """Read and validate an operator's files against the contract and the catalog.

    With a catalog, interacted items it does not hold are counted and their rows dropped
    (``unknown_items="drop"``); with only an own item table (no coordinator catalog yet) an
    unknown item is an error, as the contract has always said.

    Raises:
        DataValidationError: names file, row and column.
    """
    if catalog is None and items is None:
        raise ValueError("check_tables needs the coordinator's catalog or an item table")
    sources = {"interactions": str(interactions)}
    if users is not None:
        sources["users"] = str(users)
    interactions_frame = read_table(interactions)
    users_frame = read_table(users) if users is not None else None
    if items is not None:
        own_items = read_table(items)
        sources["items"] = str(items)
        tables = validate(interactions_frame, own_items, users_frame, sources=sources, name="platform")
        if catalog is None:
            return tables
        _report_items_outside(tables, catalog, str(items))
    sources["items"] = catalog.source
    return validate(
        interactions_frame,
        catalog.items,
        users_frame,
        sources=sources,
        feature_kinds={"items": catalog.feature_kinds},
        name="platform",
        unknown_items="drop",
    )


def _report_items_outside(tables: Tables, catalog: Catalog, source: str) -> None:
    outside = catalog.codes(tables.items["item_id"]) < 0
    if outside.any():
        examples = ", ".join(repr(x) for x in tables.items["item_id"][outside][:5])
        logger.warning(
            "%s: %d of %d items are not in catalog %s (e.g. %s)",
            source,
            int(outside.sum()),
            len(outside),
            catalog.version,
            examples,
        )


def load_operator_data(
    interactions: str | Path,
    catalog: Catalog,
    *,
    users: str | Path | None = None,
    platform: int = 0,
) -> OperatorData:
    """The platform's data for training and serving, coded against ``catalog``."""
    tables = check_tables(interactions, users=users, catalog=catalog)
    return from_tables(tables, catalog, platform)


def from_tables(tables: Tables, catalog: Catalog | None, platform: int = 0) -> OperatorData:
    encoded: EncodedDataset = encode(tables)
    if catalog is not None and not np.array_equal(encoded.item_ids, catalog.item_ids):
        raise DataValidationError(catalog.source, "item table differs from the catalog it was validated against")
    interactions = Interactions(
        users=encoded.users,
        items=encoded.items,
        timestamps=encoded.timestamps,
        num_users=encoded.num_users,
        num_items=encoded.num_items,
    )
    data = PlatformData(platform, interactions, encoded.user_features, encoded.item_features, user_ids=encoded.user_ids)
    attributes = encoded.user_attributes if tables.users is not None else None
    return OperatorData(data, encoded.user_ids, encoded.item_ids, tables, catalog, attributes)
