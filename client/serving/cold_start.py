"""Recommendations for a user with no history: what is popular on this platform among similar users.

Why popularity: with no interaction there is nothing for a user embedding to learn from, and
popularity is the strongest history-free ranking on implicit feedback. "Similar users" are the
platform's users who share the given feature values (categorical: equal; numeric: same
quartile). A small segment is noisy, so its counts are shrunk toward the platform-wide
popularity, and features are dropped (greedily, keeping the largest segment) until at least
``MIN_SEGMENT_USERS`` users match. The same segment seeds a new user's vector before fold-in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crossfed.shared.data.interactions import Interactions

logger = logging.getLogger(__name__)

#: Fewest platform users a feature segment must hold before its popularity is trusted.
MIN_SEGMENT_USERS = 20
#: Pseudo-users of platform-wide popularity mixed into a segment's counts.
SHRINKAGE = 20.0


@dataclass(frozen=True)
class Segment:
    """Platform users matching a new user's features, and the features that were used."""

    users: np.ndarray
    features: dict[str, str]

    def describe(self) -> str:
        if not self.features:
            return f"popular among all {len(self.users)} users of this platform"
        which = ", ".join(f"{k}={v!r}" for k, v in self.features.items())
        return f"popular among the {len(self.users)} users of this platform with {which}"


def find_segment(
    attributes: pd.DataFrame | None, features: Mapping[str, object] | None, min_users: int = MIN_SEGMENT_USERS
) -> Segment:
    """Users (row positions of ``attributes``, one row per local user) sharing ``features``.

    Features the platform's user table does not have are ignored (and logged): an operator
    may pass whatever it knows about a newcomer.
    """
    count = 0 if attributes is None else len(attributes)
    everyone = Segment(np.arange(count), {})
    if attributes is None or not features:
        return everyone
    masks: dict[str, np.ndarray] = {}
    shown: dict[str, str] = {}
    for column, value in features.items():
        if column not in attributes.columns or value is None or (isinstance(value, float) and np.isnan(value)):
            logger.info("cold start: ignoring feature %r (not a user feature of this platform, or empty)", column)
            continue
        masks[column], shown[column] = _matches(attributes[column], value)
    used = list(masks)
    while used:
        mask = np.logical_and.reduce([masks[c] for c in used])
        if mask.sum() >= min_users:
            return Segment(np.flatnonzero(mask), {c: shown[c] for c in used})
        # Drop the feature whose removal leaves the largest segment.
        used.remove(
            max(
                used,
                key=lambda c: np.logical_and.reduce(
                    [masks[o] for o in used if o != c] or [np.ones(count, dtype=bool)]
                ).sum(),
            )
        )
    return everyone


def _matches(column: pd.Series, value: object) -> tuple[np.ndarray, str]:
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        target = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        target = np.nan
    if np.isfinite(numbers).sum() >= len(column) / 2 and np.isfinite(target):
        edges = np.nanquantile(numbers, [0.25, 0.5, 0.75])
        bins = np.searchsorted(edges, numbers, side="right")
        target_bin = int(np.searchsorted(edges, target, side="right"))
        low = -np.inf if target_bin == 0 else edges[target_bin - 1]
        high = np.inf if target_bin == 3 else edges[target_bin]
        return (bins == target_bin) & np.isfinite(numbers), f"[{low:g}, {high:g})"
    text = column.astype("str").str.strip()
    return (text == str(value).strip()).to_numpy(dtype=bool), str(value).strip()


class Popularity:
    """Who interacted with what on this platform, counted once; a segment's scores per request."""

    def __init__(self, history: Interactions) -> None:
        pairs = np.unique(history.users.astype(np.int64) * history.num_items + history.items)
        self.users, self.items = pairs // history.num_items, pairs % history.num_items
        self.num_items = history.num_items
        self.overall = np.bincount(self.items, minlength=self.num_items) / max(history.num_users, 1)

    def scores(self, segment: Segment) -> np.ndarray:
        """``[items]``: the share of segment users who interacted with each item, shrunk toward the platform's."""
        in_segment = np.isin(self.users, segment.users)
        counts = np.bincount(self.items[in_segment], minlength=self.num_items)
        # The platform-wide term also breaks ties between items no segment user touched.
        return (counts + SHRINKAGE * self.overall) / (len(segment.users) + SHRINKAGE)


def popularity_scores(history: Interactions, segment: Segment) -> np.ndarray:
    """One-off :meth:`Popularity.scores` (a service keeps a :class:`Popularity`)."""
    return Popularity(history).scores(segment)
