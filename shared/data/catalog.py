"""The coordinator's item catalog: one self-checking file that fixes every item's global id.

Why a published file and not each platform's own item table: the shared item tower is indexed
by item code, so every platform must agree on which row is which item, and on the item
features the tower encodes (their vocabularies decide parameter shapes). The catalog is that
agreement. Item ``k`` of the catalog has code ``k``; its ``item_id`` is the global catalog id
platforms use in their interaction files.

The file is JSON (readable, diffable) holding a ``version``, the feature kinds, the items, and
the SHA-256 of all of that in canonical form; :func:`load_catalog` refuses a file whose checksum
does not match, and, when told which version the run expects, a file of another version.

Versions are append-only: :func:`publish` refuses a new version that drops or reorders items
of the previous one, so item codes stay valid for every platform still on the older version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfed.shared.data.contract import DataValidationError, validate_features
from crossfed.shared.data.features import EncodedFeature, encode_features
from crossfed.shared.storage.checked import atomic_write_bytes

logger = logging.getLogger(__name__)

FORMAT = "crossfed-catalog/1"


class CatalogError(DataValidationError):
    """The catalog file is unreadable, altered, or not the version the run expects."""


@dataclass(frozen=True, eq=False)
class Catalog:
    """A published catalog: items in code order, their feature kinds, version and checksum."""

    version: str
    items: pd.DataFrame
    feature_kinds: dict[str, str]
    sha256: str
    source: str = "catalog"

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy(dtype=str)

    def __len__(self) -> int:
        return len(self.items)

    def codes(self, item_ids: pd.Series | np.ndarray | list[str]) -> np.ndarray:
        """Catalog code of each id, -1 for ids the catalog does not hold (never guessed)."""
        return pd.Index(self.item_ids).get_indexer(pd.Index(np.asarray(item_ids, dtype=str)))

    def item_features(self) -> dict[str, EncodedFeature]:
        """Encoded item features: identical on every platform, since they depend on the catalog only."""
        return encode_features(self.items, "item_id", self.item_ids, self.feature_kinds)


def _canonical(version: str, kinds: Mapping[str, str], items: pd.DataFrame) -> tuple[bytes, list[dict]]:
    """The checksummed content: sorted keys, missing values as null, no float noise."""
    rows = []
    for record in items.to_dict(orient="records"):
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()})
    body = {"format": FORMAT, "version": version, "feature_kinds": dict(kinds), "items": rows}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(), rows


def publish(
    items: pd.DataFrame,
    version: str,
    path: str | Path,
    *,
    feature_kinds: Mapping[str, str] | None = None,
    previous: Catalog | None = None,
    source: str = "items",
) -> Catalog:
    """Validate an item table and write it atomically as catalog ``version``.

    ``previous``: the version platforms run on now. The new one must keep every one of its
    items at the same position (new items are appended), so that running platforms' item codes
    and the global model's item rows keep their meaning.

    Raises:
        DataValidationError: the item table breaks the contract (names file, row, column).
        CatalogError: empty version, or the new version drops or reorders earlier items.
    """
    if not str(version).strip():
        raise CatalogError(str(path), "a catalog needs a non-empty version")
    table, kinds = _validated_items(items, feature_kinds, source)
    if previous is not None:
        old = previous.item_ids
        new = table["item_id"].to_numpy(dtype=str)
        if len(new) < len(old) or not np.array_equal(new[: len(old)], old):
            mismatch = next((i for i in range(len(old)) if i >= len(new) or new[i] != old[i]), len(old))
            raise CatalogError(
                source,
                f"catalog version {version!r} does not extend version {previous.version!r}: item "
                f"{str(old[mismatch])!r} (position {mismatch + 1}) is missing or moved; new items may only be "
                "appended",
                row=mismatch + 1,
                column="item_id",
            )
        if previous.version == version:
            raise CatalogError(source, f"version {version!r} is already published; pick a new one")
    content, rows = _canonical(version, kinds, table)
    digest = hashlib.sha256(content).hexdigest()
    document = {"format": FORMAT, "version": version, "sha256": digest, "feature_kinds": kinds, "items": rows}
    atomic_write_bytes(Path(path), json.dumps(document, ensure_ascii=False, indent=1).encode())
    logger.info("published catalog %s: %d items, sha256 %s -> %s", version, len(table), digest, path)
    return Catalog(version, table, kinds, digest, str(path))


def _validated_items(
    items: pd.DataFrame, kinds: Mapping[str, str] | None, source: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The item table through the data contract's feature-table rules (ids, types, kinds)."""
    table, found_kinds, _missing = validate_features(items, "items", "item_id", source, kinds)
    return table.reset_index(drop=True), found_kinds


def load_catalog(path: str | Path, expected_version: str = "") -> Catalog:
    """Read and verify a catalog file.

    Raises:
        CatalogError: unreadable, not a catalog, checksum mismatch (edited or truncated), or
            ``expected_version`` given and different.
    """
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise CatalogError(name, "catalog file not found")
    try:
        document = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(name, f"is not a catalog file (not UTF-8 JSON: {exc})") from exc
    except RecursionError:  # nesting deeper than the parser's stack: no catalog is shaped like that
        raise CatalogError(name, "is not a catalog file (JSON nested too deeply)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CatalogError(name, f"is not a catalog file (expected format {FORMAT!r})")
    try:
        version = str(document["version"])
        digest = str(document["sha256"])
        kinds = {str(k): str(v) for k, v in dict(document["feature_kinds"]).items()}
        rows: list[dict[str, Any]] = list(document["items"])
        if not all(isinstance(row, dict) for row in rows):
            raise TypeError("every item must be an object of fields")
        items = pd.DataFrame(rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(name, f"catalog file lacks or garbles a field: {exc}") from exc
    if "item_id" not in items.columns:
        raise CatalogError(name, "catalog holds no items", column="item_id")
    try:
        items = items.astype({c: (np.float64 if kinds.get(c) == "numeric" else "str") for c in items.columns})
    except (TypeError, ValueError) as exc:
        raise CatalogError(name, f"catalog values do not match their feature kinds: {exc}") from exc
    content, _ = _canonical(version, kinds, items)
    actual = hashlib.sha256(content).hexdigest()
    if actual != digest:
        raise CatalogError(
            name,
            f"checksum mismatch: file says {digest}, content hashes to {actual}; the catalog "
            "was altered or truncated, fetch it again from the coordinator",
        )
    if expected_version and version != expected_version:
        raise CatalogError(
            name, f"catalog version {version!r}, but this run uses {expected_version!r} (config key 'catalog-version')"
        )
    return Catalog(version, items, kinds, digest, name)
