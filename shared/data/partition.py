"""Split one dataset into platforms, the way real services carve up a population.

Every scheme returns, for each interaction, the platform it lives on. Schemes:

* ``natural``   - by a user attribute (default: US zip-code region). Whole attribute
                  groups go to one platform, balanced greedily by interaction count:
                  platforms differ in who their users are (non-IID), as regional
                  services do.
* ``dirichlet`` - label skew: for each value of the attribute (default for this
                  scheme: occupation), platform shares are drawn from Dir(alpha); small
                  alpha gives very unequal platforms.
* ``iid``       - users shuffled and dealt round-robin.
* ``overlap``   - one person on several services: each user picks ``k`` platforms and
                  each of their interactions lands on one of them. The platforms never
                  link identities: each sees a separate local user.

All platforms share one item catalog; a platform only ever sees items its users touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crossfed.shared.config import PARTITION_SCHEMES, ConfigError
from crossfed.shared.data.features import EncodedDataset

logger = logging.getLogger(__name__)

#: An overlap platform needs test, validation and at least one training interaction.
MIN_INTERACTIONS_PER_PLATFORM_USER = 3


@dataclass(frozen=True)
class PartitionSpec:
    scheme: str = "natural"
    num_platforms: int = 5
    seed: int = 0
    attribute: str = "region"
    alpha: float = 0.5
    overlap_k: int = 2


def assign_platforms(dataset: EncodedDataset, spec: PartitionSpec) -> np.ndarray:
    """Platform index (0..N-1) of every interaction of ``dataset``."""
    if spec.scheme not in PARTITION_SCHEMES:
        raise ValueError(f"unknown partition scheme {spec.scheme!r}; expected one of {PARTITION_SCHEMES}")
    rng = np.random.default_rng(spec.seed)
    if spec.scheme == "overlap":
        platform_of_interaction = _overlap(dataset, spec.num_platforms, spec.overlap_k, rng)
    else:
        if spec.scheme == "natural":
            user_platform = _natural(dataset, spec.attribute, spec.num_platforms)
        elif spec.scheme == "dirichlet":
            user_platform = _dirichlet(dataset, spec.attribute, spec.num_platforms, spec.alpha, rng)
        else:
            user_platform = rng.permutation(dataset.num_users) % spec.num_platforms
        platform_of_interaction = user_platform[dataset.users]
    counts = np.bincount(platform_of_interaction, minlength=spec.num_platforms)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0).tolist()
        raise ValueError(
            f"partition '{spec.scheme}' left platforms {empty} without data; "
            f"use fewer platforms than there are groups or another scheme"
        )
    logger.info("partition %s: interactions per platform %s", spec.scheme, counts.tolist())
    return platform_of_interaction


def _user_attribute(dataset: EncodedDataset, attribute: str) -> pd.Series:
    table = dataset.user_attributes
    if attribute not in table.columns:
        available = sorted(table.columns)
        raise ConfigError(
            f"config key 'partition-attribute' = {attribute!r} is not a column of {dataset.name}'s user table; "
            + (f"available: {available}" if available else "it has no user table: use partition 'iid' or 'overlap'")
        )
    return table[attribute].astype("string").fillna("<missing>").reset_index(drop=True)


def _natural(dataset: EncodedDataset, attribute: str, num_platforms: int) -> np.ndarray:
    groups = _user_attribute(dataset, attribute)
    interactions_per_user = np.bincount(dataset.users, minlength=dataset.num_users)
    load = pd.Series(interactions_per_user).groupby(groups.to_numpy()).sum()
    if len(load) < num_platforms:
        raise ValueError(
            f"natural partition by {attribute!r} has {len(load)} groups, fewer than {num_platforms} platforms"
        )
    # Largest groups first, each to the lightest platform: deterministic and balanced.
    order = load.sort_values(ascending=False, kind="stable")
    platform_load = np.zeros(num_platforms)
    group_platform: dict[str, int] = {}
    for group, size in order.items():
        target = int(np.argmin(platform_load))
        group_platform[group] = target
        platform_load[target] += size
    return groups.map(group_platform).to_numpy(dtype=np.int64)


def _dirichlet(
    dataset: EncodedDataset, attribute: str, num_platforms: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    groups = _user_attribute(dataset, attribute).to_numpy()
    user_platform = np.empty(dataset.num_users, dtype=np.int64)
    for _attempt in range(100):
        for group in np.unique(groups):
            members = rng.permutation(np.flatnonzero(groups == group))
            shares = rng.dirichlet(np.full(num_platforms, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).round().astype(int)
            for platform, chunk in enumerate(np.split(members, cuts)):
                user_platform[chunk] = platform
        if np.bincount(user_platform, minlength=num_platforms).min() > 0:
            return user_platform
    raise ValueError(f"dirichlet partition with alpha={alpha} kept leaving a platform empty; raise the alpha")


def _overlap(dataset: EncodedDataset, num_platforms: int, k: int, rng: np.random.Generator) -> np.ndarray:
    platform = np.empty(len(dataset.users), dtype=np.int64)
    order = np.argsort(dataset.users, kind="stable")
    starts = np.searchsorted(dataset.users[order], np.arange(dataset.num_users + 1))
    for user in range(dataset.num_users):
        rows = order[starts[user] : starts[user + 1]]
        if len(rows) == 0:
            continue
        usable = max(1, min(k, len(rows) // MIN_INTERACTIONS_PER_PLATFORM_USER))
        chosen = rng.choice(num_platforms, size=usable, replace=False)
        # Deal shuffled interactions round-robin so each chosen platform gets enough to split.
        platform[rows[rng.permutation(len(rows))]] = chosen[np.arange(len(rows)) % usable]
    return platform
