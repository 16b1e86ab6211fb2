"""A small non-MovieLens dataset in the data contract, generated from a seed: a music service.

Why generated: the manual's worked example and the tests need a dataset that is not MovieLens,
that anyone can rebuild bit for bit, and that the repository never stores. Taste has
structure a model can learn and popularity cannot: each user favours one genre, and a
region leans towards two of them, so the regions also make a natural partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FORMATS = ("csv", "parquet")
GENRES = ("ambient", "blues", "folk", "jazz", "metal", "pop")
REGIONS = ("north", "south", "east", "west")
AGE_BANDS = ("18-24", "25-34", "35-49", "50+")
#: How much likelier a user's favoured genre is than any other, before popularity.
TASTE_BOOST = 6.0


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and shape of the generated dataset."""

    users: int = 600
    items: int = 300
    min_interactions: int = 8
    max_interactions: int = 30
    timestamps: bool = True
    file_format: str = "csv"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.file_format not in FORMATS:
            raise ValueError(f"file format {self.file_format!r}: expected one of {FORMATS}")
        if not 3 <= self.min_interactions <= self.max_interactions <= self.items:
            raise ValueError("expected 3 <= min_interactions <= max_interactions <= items")


def write_music_dataset(folder: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> dict[str, Path]:
    """Write ``interactions``, ``items`` and ``users`` tables into ``folder``; returns their paths.

    Without ``spec.timestamps`` the interactions table has no ``timestamp`` column (a play-count
    style export), and its rows are shuffled so that file order says nothing about time.
    """
    rng = np.random.default_rng(spec.seed)
    item_genre = rng.integers(0, len(GENRES), size=spec.items)
    popularity = rng.zipf(1.6, size=spec.items).clip(max=200).astype(float)
    items = pd.DataFrame(
        {
            "item_id": [f"track-{i:04d}" for i in range(spec.items)],
            "genre": [GENRES[g] for g in item_genre],
            "artist": [f"artist-{a}" for a in rng.integers(0, max(2, spec.items // 6), size=spec.items)],
            "duration_s": rng.normal(230, 45, size=spec.items).round(),
        }
    )
    region = rng.integers(0, len(REGIONS), size=spec.users)
    # A region leans towards two genres; each user favours one genre, mostly from their region's.
    leaning = np.where(rng.random(spec.users) < 0.7, (2 * region + rng.integers(0, 2, spec.users)) % len(GENRES), -1)
    favourite = np.where(leaning >= 0, leaning, rng.integers(0, len(GENRES), size=spec.users))
    users = pd.DataFrame(
        {
            "user_id": [f"listener-{u:05d}" for u in range(spec.users)],
            "region": [REGIONS[r] for r in region],
            "age_band": [AGE_BANDS[a] for a in rng.integers(0, len(AGE_BANDS), size=spec.users)],
        }
    )
    rows = []
    for user in range(spec.users):
        weights = popularity * np.where(item_genre == favourite[user], TASTE_BOOST, 1.0)
        count = int(rng.integers(spec.min_interactions, spec.max_interactions + 1))
        chosen = rng.choice(spec.items, size=count, replace=False, p=weights / weights.sum())
        start = 1_700_000_000 + int(rng.integers(0, 86_400 * 30))
        times = start + np.cumsum(rng.integers(60, 86_400, size=count))
        plays = rng.integers(1, 20, size=count)
        rows.append(
            pd.DataFrame(
                {
                    "user_id": users["user_id"].iloc[user],
                    "item_id": items["item_id"].to_numpy()[chosen],
                    "timestamp": times,
                    "weight": plays.astype(float),
                }
            )
        )
    interactions = pd.concat(rows, ignore_index=True)
    if not spec.timestamps:
        interactions = interactions.drop(columns="timestamp").sample(frac=1.0, random_state=spec.seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, table in (("interactions", interactions), ("items", items), ("users", users)):
        path = folder / f"{name}.{spec.file_format}"
        if spec.file_format == "csv":
            table.to_csv(path, index=False)
        else:
            table.to_parquet(path, index=False)
        written[name] = path
    return written
