"""Turn validated :class:`~crossfed.shared.data.contract.Tables` into integer codes and feature arrays.

Why here and not in the model: encoding must be deterministic (sorted vocabularies, fixed
codes) so that every federated participant, and every rerun, agrees on what column *j* or code
*k* means. Missing feature values are imputed here (code 0, all-zero rows, the median), which
is why validation only counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .contract import MULTI_SEPARATOR, Tables

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TEXT_TOKENS",
    "EncodedDataset",
    "EncodedFeature",
    "encode",
    "encode_features",
]

#: Text columns become a bag of at most this many most frequent words.
DEFAULT_TEXT_TOKENS = 256
_WORD = r"\w+"


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class EncodedFeature:
    """One feature column, encoded for the model, aligned to the requested ids.

    * ``categorical``: ``values`` int64 ``[n]``; code ``i + 1`` means ``vocabulary[i]``, code 0
      means missing/unknown (an embedding table needs ``cardinality = len(vocabulary) + 1``).
    * ``multi_hot``: ``values`` float32 ``[n, V]``; column ``j`` means ``vocabulary[j]``; a
      missing value is an all-zero row. ``cardinality = V``. (Both "multi" and "text" columns.)
    * ``numeric``: ``values`` float32 ``[n]``, missing imputed with the median, then
      standardised to mean 0 / std 1 (all zeros if constant). ``vocabulary = ()``,
      ``cardinality = 1``.
    """

    kind: Literal["categorical", "multi_hot", "numeric"]
    values: np.ndarray
    vocabulary: tuple[str, ...]
    cardinality: int


def _categorical(values: pd.Series) -> EncodedFeature:
    vocabulary = tuple(sorted(values.dropna().unique().tolist()))
    codes = pd.Categorical(values, categories=list(vocabulary)).codes.astype(np.int64) + 1
    return EncodedFeature("categorical", codes, vocabulary, len(vocabulary) + 1)


def _multi_hot(tokens: pd.Series, n: int, vocabulary: Sequence[str]) -> EncodedFeature:
    """``tokens``: one row per (row position, token), index = row position."""
    columns = pd.Index(vocabulary).get_indexer(tokens.to_numpy())
    keep = columns >= 0
    out = np.zeros((n, len(vocabulary)), dtype=np.float32)
    out[tokens.index.to_numpy()[keep], columns[keep]] = 1.0
    return EncodedFeature("multi_hot", out, tuple(vocabulary), len(vocabulary))


def _multi(values: pd.Series) -> EncodedFeature:
    tokens = values.dropna().str.split(MULTI_SEPARATOR, regex=False).explode().str.strip()
    tokens = tokens[tokens.notna() & (tokens != "")]
    return _multi_hot(tokens, len(values), sorted(tokens.unique().tolist()))


def _text(values: pd.Series, max_tokens: int) -> EncodedFeature:
    tokens = values.dropna().str.lower().str.findall(_WORD).explode().dropna()
    # Rank by document frequency (how many rows use the word), ties alphabetically, so the
    # cut-off at max_tokens is deterministic; then order the kept words alphabetically.
    per_row = pd.DataFrame({"row": tokens.index, "token": tokens.to_numpy()}).drop_duplicates()
    counts = per_row["token"].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_tokens]
    return _multi_hot(tokens, len(values), sorted(token for token, _ in ranked))


def _numeric(values: pd.Series) -> EncodedFeature:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(x)
    x = np.where(present, x, np.median(x[present]) if present.any() else 0.0)
    std = x.std()
    x = (x - x.mean()) / std if std > 0 else np.zeros_like(x)
    return EncodedFeature("numeric", x.astype(np.float32), (), 1)


def encode_features(
    table: pd.DataFrame,
    id_column: str,
    ids: Sequence[str],
    kinds: Mapping[str, str],
    *,
    max_text_tokens: int = DEFAULT_TEXT_TOKENS,
) -> dict[str, EncodedFeature]:
    """Encode the ``kinds`` columns of ``table``, row ``k`` of every result belonging to ``ids[k]``.

    Ids absent from ``table`` get all-missing features. Vocabularies come from the aligned rows
    only (what the model will see) and are sorted, so the result depends on nothing but the data.
    Kinds: "categorical" → categorical; "multi" and "text" → multi_hot; "numeric" → numeric.
    """
    aligned = table.set_index(table[id_column].astype(str)).reindex(pd.Index(ids, dtype="str"))
    aligned = aligned.reset_index(drop=True)
    encoded: dict[str, EncodedFeature] = {}
    for column, kind in kinds.items():
        values = aligned[column]
        if kind == "numeric":
            encoded[column] = _numeric(values)
            continue
        strings = values.astype("str").where(values.notna())
        if kind == "categorical":
            encoded[column] = _categorical(strings)
        elif kind == "multi":
            encoded[column] = _multi(strings)
        elif kind == "text":
            encoded[column] = _text(strings, max_text_tokens)
        else:
            raise ValueError(f"unknown feature kind {kind!r} for column {column!r}")
    return encoded


@dataclass(frozen=True, eq=False)
class EncodedDataset:
    """A dataset as the model and the partitioners see it: codes, arrays and features.

    ``users``, ``items``, ``timestamps`` and ``weights`` have one entry per interaction.
    ``user_ids[c]`` / ``item_ids[c]`` is the original id of code ``c``. Users are coded in sorted
    id order; items in catalog order, every catalog item included (never-interacted items stay
    recommendable). ``user_attributes`` is the user table indexed by user code (for
    partitioning clients by attribute, e.g. region); it has no columns if there is no user
    table. ``has_timestamps`` is false when the source had none (``timestamps`` is then file order).
    """

    name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    weights: np.ndarray
    user_features: dict[str, EncodedFeature]
    item_features: dict[str, EncodedFeature]
    user_attributes: pd.DataFrame
    has_timestamps: bool = True

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def encode(tables: Tables, *, max_text_tokens: int = DEFAULT_TEXT_TOKENS) -> EncodedDataset:
    """Encode validated tables. Only users with interactions get a code (others cannot train)."""
    inter = tables.interactions
    user_ids = np.sort(inter["user_id"].unique().to_numpy(dtype=str))
    item_ids = tables.items["item_id"].to_numpy(dtype=str)
    users = pd.Index(user_ids).get_indexer(inter["user_id"]).astype(np.int64)
    items = pd.Index(item_ids).get_indexer(inter["item_id"]).astype(np.int64)
    if (items < 0).any():  # validate() guarantees this; guard against hand-built Tables
        raise ValueError("interactions reference items missing from the catalog")

    item_features = encode_features(
        tables.items,
        "item_id",
        item_ids,
        tables.feature_kinds.get("items", {}),
        max_text_tokens=max_text_tokens,
    )
    if tables.users is None:
        user_features: dict[str, EncodedFeature] = {}
        attributes = pd.DataFrame(index=pd.RangeIndex(len(user_ids), name="user"))
    else:
        user_features = encode_features(
            tables.users,
            "user_id",
            user_ids,
            tables.feature_kinds.get("users", {}),
            max_text_tokens=max_text_tokens,
        )
        attributes = tables.users.set_index("user_id", drop=False).reindex(user_ids).reset_index(drop=True)
        attributes.index.name = "user"
    logger.info(
        "%s: encoded %d interactions, %d users, %d items",
        tables.name,
        len(inter),
        len(user_ids),
        len(item_ids),
    )
    return EncodedDataset(
        name=tables.name,
        user_ids=user_ids,
        item_ids=item_ids,
        users=users,
        items=items,
        timestamps=inter["timestamp"].to_numpy(dtype=np.int64),
        weights=inter["weight"].to_numpy(dtype=np.float32),
        user_features=user_features,
        item_features=item_features,
        user_attributes=attributes,
        has_timestamps=tables.has_timestamps,
    )
