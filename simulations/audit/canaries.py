"""Canaries: extra users (or extra interaction rows) whose inclusion in training is a coin flip.

Each canary is a new user that copies the user features of a random real user (so it lands on
that user's platform under a natural partition). Two kinds:

* ``own-items`` (the default): the canary's training items are new catalog items that nobody
  else rates, each with the features of a random real item. Every canary's items are in the
  catalog whether or not its coin includes it, so the catalog reveals nothing; but the rows
  of those items (their bias, their id embedding) receive a positive gradient only when the
  canary trains. That is the easiest signal to detect a recommender can offer, as the
  crafted canaries of Steinke et al. are for image models.
* ``random``: ``k`` existing catalog items drawn uniformly at random; its signal drowns among
  the real users who rate the same items.

A coin with probability 1/2, from a recorded seed, decides whether a canary is in the
training data. The privacy unit decides what the coin covers: the whole user for ``user``
(and for a non-private run, whose natural unit is the user), one interaction row for
``interaction``.

The canaries reach training through the ordinary data path: the source dataset and the
included canaries are written as a dataset folder in the data contract, and the audited run
names that folder. Nothing in a normal run changes.

Leave-last-out keeps a user's two latest interactions for validation and test, so a canary's
items are time-ordered and its two latest are never audited: the first ``k - 2`` are its
training items. An ``own-items`` canary's two held-out items are existing catalog items: they
are never trained on, so new items there would only grow the catalog.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossfed.shared.data.contract import Tables
from crossfed.shared.data.interactions import PlatformData
from crossfed.shared.errors import UsageError
from crossfed.simulations.audit.kinds import CANARY_KINDS, OWN_ITEMS, RANDOM_ITEMS

CANARY_PREFIX = "canary-"
CANARY_ITEM_PREFIX = "canary-item-"
CANARIES_FILE = "canaries.json"
#: Salt of the canaries' random stream, so they never reuse the run seed's draws.
_CANARY_SALT = 0xCA7A
#: Validation and test items every user keeps out of training.
_HELD_OUT = 2
#: Each canary's rows are this many seconds apart, after the dataset's last interaction.
_SPACING = 60


@dataclass(frozen=True)
class Canary:
    """One canary: its user id, items in time order, the coin's outcome and where it trains.

    ``item_templates`` name, for each of the canary's own new items (its first items), the real
    item whose features it copies; empty for a ``random`` canary.
    """

    user_id: str
    items: tuple[str, ...]
    included: bool
    template_user: str
    platform: int = -1
    item_templates: tuple[str, ...] = ()

    @property
    def training_items(self) -> tuple[str, ...]:
        return self.items[: len(self.items) - _HELD_OUT]


@dataclass(frozen=True)
class CanarySet:
    """Every canary of an audit with the seed and unit that produced them."""

    canaries: tuple[Canary, ...]
    unit: str
    seed: int
    kind: str = RANDOM_ITEMS

    def __len__(self) -> int:
        return len(self.canaries)

    @property
    def included(self) -> np.ndarray:
        return np.array([c.included for c in self.canaries], dtype=bool)

    def targets(self, canary: Canary) -> tuple[str, ...]:
        """The items whose training the coin decides: every training item of a user, or the one audited row."""
        return canary.training_items[:1] if self.unit == "interaction" else canary.training_items

    def support_and_query(self, canary: Canary) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What a black-box adversary fits a user vector from, and the items it then ranks.

        User unit: alternate halves of the training items. Interaction unit: the canary's other,
        always-present training rows, and the audited row.
        """
        training = canary.training_items
        if self.unit == "interaction":
            return training[1:], training[:1]
        return training[0::2], training[1::2]

    def with_platforms(self, platforms: Sequence[int]) -> CanarySet:
        canaries = tuple(
            Canary(c.user_id, c.items, c.included, c.template_user, int(p), c.item_templates)
            for c, p in zip(self.canaries, platforms)
        )
        return CanarySet(canaries, self.unit, self.seed, self.kind)

    def save(self, folder: Path, scores: dict[str, np.ndarray] | None = None) -> Path:
        """``canaries.json``: every canary, its coin, platform and (once scored) each adversary's score."""
        rows = []
        for index, canary in enumerate(self.canaries):
            row = asdict(canary)
            row["items"] = list(canary.items)
            row["item_templates"] = list(canary.item_templates)
            for name, values in (scores or {}).items():
                row[f"score_{name}"] = float(values[index])
            rows.append(row)
        path = folder / CANARIES_FILE
        saved = {"unit": self.unit, "seed": self.seed, "kind": self.kind, "canaries": rows}
        path.write_text(json.dumps(saved, indent=1) + "\n")
        return path


def draw_canaries(
    tables: Tables, count: int, items_each: int, seed: int, unit: str, kind: str = OWN_ITEMS
) -> CanarySet:
    """``count`` canaries of ``items_each`` distinct items, each included with probability 1/2.

    ``own-items``: the first ``items_each - 2`` items are new (named ``canary-item-N-J``), the
    two held-out ones are distinct catalog items. ``random``: all are distinct catalog items.

    Raises:
        UsageError: an unknown kind, too few items per canary to keep any in training, or (random
            canaries) more items than the catalog holds.
    """
    if kind not in CANARY_KINDS:
        raise UsageError(f"--canary-kind {kind!r} is not one of {', '.join(CANARY_KINDS)}")
    unit = "interaction" if unit == "interaction" else "user"
    smallest = _HELD_OUT + 2  # two training items: one to fit from and one to rank, or a row beside the audited one
    catalog = tables.items["item_id"].to_numpy(dtype=str)
    if items_each < smallest:
        raise UsageError(f"--canary-items {items_each} is out of range: expected at least {smallest}")
    if kind == RANDOM_ITEMS and items_each > len(catalog):
        raise UsageError(
            f"--canary-items {items_each} is out of range: expected at most {len(catalog)} (the catalog's size)"
        )
    if count < 2:
        raise UsageError(f"--canaries {count} is out of range: expected at least 2")
    rng = np.random.default_rng([seed, _CANARY_SALT])
    real_users = tables.interactions["user_id"].drop_duplicates().to_numpy(dtype=str)
    width = len(str(count - 1))
    canaries = []
    for index in range(count):
        user_id = f"{CANARY_PREFIX}{index:0{width}d}"
        templates: tuple[str, ...] = ()
        if kind == RANDOM_ITEMS:
            items = tuple(str(i) for i in rng.choice(catalog, size=items_each, replace=False))
        else:
            owned = items_each - _HELD_OUT
            templates = tuple(str(i) for i in rng.choice(catalog, size=owned))
            held_out = tuple(str(i) for i in rng.choice(catalog, size=_HELD_OUT, replace=False))
            items = tuple(f"{CANARY_ITEM_PREFIX}{index:0{width}d}-{j}" for j in range(owned)) + held_out
        canaries.append(
            Canary(
                user_id=user_id,
                items=items,
                included=bool(rng.random() < 0.5),
                template_user=str(rng.choice(real_users)),
                item_templates=templates,
            )
        )
    return CanarySet(tuple(canaries), unit, seed, kind)


def keep_users(tables: Tables, max_users: int, seed: int) -> Tables:
    """A seeded subset of ``max_users`` real users with all their interactions (all of them when 0).

    The audit subsamples before adding canaries, so ``max-users`` never drops a canary.
    """
    users = tables.interactions["user_id"].drop_duplicates().to_numpy(dtype=str)
    if not max_users or max_users >= len(users):
        return tables
    kept = set(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    interactions = tables.interactions[tables.interactions["user_id"].isin(kept)].reset_index(drop=True)
    people = (
        tables.users[tables.users["user_id"].isin(kept)].reset_index(drop=True) if tables.users is not None else None
    )
    return Tables(
        interactions, tables.items, people, tables.feature_kinds, tables.report, tables.name, tables.has_timestamps
    )


def write_audited_dataset(
    tables: Tables, canaries: CanarySet, folder: Path, hidden_user_columns: Sequence[str] = ()
) -> Path:
    """The dataset plus the included canaries, as a contract folder (Parquet) the run's data path reads.

    Every canary's own new items join the items table, included or not, each with its template
    item's features. ``hidden_user_columns`` are left out of the users table (a built-in's partition-only columns,
    which its own loader hides from the model).
    """
    folder.mkdir(parents=True, exist_ok=True)
    interactions = tables.interactions[["user_id", "item_id", "timestamp", "weight"]]
    start = int(interactions["timestamp"].max()) + _SPACING
    rows: dict[str, list] = {"user_id": [], "item_id": [], "timestamp": [], "weight": []}
    present = []
    for index, canary in enumerate(canaries.canaries):
        kept = range(len(canary.items))
        if not canary.included:
            if canaries.unit == "user":
                continue
            kept = range(1, len(canary.items))  # the audited row is the first, a training row
        present.append(canary)
        base = start + index * _SPACING * (len(canary.items) + 1)
        for position in kept:
            rows["user_id"].append(canary.user_id)
            rows["item_id"].append(canary.items[position])
            rows["timestamp"].append(base + position * _SPACING)
            rows["weight"].append(1.0)
    added = pd.DataFrame(rows).astype({"timestamp": "int64", "weight": "float32"})
    pd.concat([interactions, added], ignore_index=True).to_parquet(folder / "interactions.parquet", index=False)
    canary_items(tables.items, canaries).to_parquet(folder / "items.parquet", index=False)
    if tables.users is not None:
        users = tables.users.drop(columns=[c for c in hidden_user_columns if c in tables.users.columns])
        by_id = users.set_index("user_id")
        copies = by_id.loc[[c.template_user for c in present]].reset_index(drop=True)
        copies.insert(0, "user_id", [c.user_id for c in present])
        pd.concat([users, copies], ignore_index=True).to_parquet(folder / "users.parquet", index=False)
    return folder


def canary_items(items: pd.DataFrame, canaries: CanarySet) -> pd.DataFrame:
    """The items table plus every canary's own items, each a copy of its template item's row."""
    new_ids = [i for c in canaries.canaries for i in c.items[: len(c.item_templates)]]
    if not new_ids:
        return items
    templates = [t for c in canaries.canaries for t in c.item_templates]
    copies = items.set_index("item_id").loc[templates].reset_index(drop=True)
    copies.insert(0, "item_id", new_ids)
    return pd.concat([items, copies.astype(items.dtypes.to_dict())], ignore_index=True)


def canary_platforms(canaries: CanarySet, platforms: Sequence[PlatformData]) -> list[int]:
    """Each canary's platform: where it trains if included, else where the user it copies trains."""
    where: dict[str, int] = {}
    for platform in platforms:
        for user in platform.user_ids:
            where[str(user)] = platform.platform
    located = []
    for canary in canaries.canaries:
        platform = where.get(canary.user_id, where.get(canary.template_user))
        if platform is None:
            raise UsageError(f"canary {canary.user_id}: neither it nor user {canary.template_user} is on any platform")
        located.append(platform)
    return located
