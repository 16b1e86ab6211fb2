"""MovieLens-100K as an operator would hold it: contract files, a published catalog, a trained platform.

Why: the operator tools (validate, recommend, fold-in) must work on data in the generic format,
not on MovieLens' raw ``u.*`` files. The latency benchmark, the fold-in measurement and the
tests all start here: export the tables to CSV or Parquet, publish the catalog, and train one
platform alone, writing the very files a federation leaves behind (the platform's
``PlatformState`` and the coordinator's ``FinalModel``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossfed.shared.config import RunConfig
from crossfed.shared.data.catalog import Catalog, publish
from crossfed.shared.data.movielens import load_movielens_100k
from crossfed.shared.data.platform_files import OperatorData
from crossfed.shared.model.sharing import shared_arrays
from crossfed.shared.storage.checkpoint import FinalModel
from crossfed.shared.trainer import PlatformTrainer

logger = logging.getLogger(__name__)

CATALOG_VERSION = "ml-100k-1"


@dataclass(frozen=True)
class ExportedPlatform:
    """Paths of an exported platform, and the interactions of users kept out of its files."""

    interactions: Path
    users: Path
    catalog: Path
    held_out: pd.DataFrame  # user_id, item_id, timestamp, weight of the held-out users


def export_movielens(
    data_dir: str | Path | None,
    out: str | Path,
    *,
    suffix: str = ".csv",
    hold_out_users: int = 0,
    max_users: int = 0,
    seed: int = 0,
) -> ExportedPlatform:
    """Write interactions and users (``suffix`` .csv or .parquet) and the catalog under ``out``.

    ``max_users``: keep a random subset of users (0 = all). ``hold_out_users`` of those are
    left out of the files entirely (new users for fold-in), their interactions returned.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = load_movielens_100k(data_dir)
    rng = np.random.default_rng(seed)
    users = np.sort(tables.interactions["user_id"].unique())
    if max_users:
        users = np.sort(rng.choice(users, size=min(max_users, len(users)), replace=False))
    held = set(rng.choice(users, size=hold_out_users, replace=False).tolist()) if hold_out_users else set()
    inter = tables.interactions
    inter = inter[inter["user_id"].isin(users)]
    keep = ~inter["user_id"].isin(held)
    user_table = tables.users[tables.users["user_id"].isin(users) & ~tables.users["user_id"].isin(held)]
    paths = {"interactions": out / f"interactions{suffix}", "users": out / f"users{suffix}"}
    for name, frame in (("interactions", inter[keep]), ("users", user_table)):
        if suffix == ".parquet":
            frame.to_parquet(paths[name], index=False)
        else:
            frame.to_csv(paths[name], index=False)
    catalog_path = out / "catalog.json"
    publish(tables.items, CATALOG_VERSION, catalog_path, feature_kinds=tables.feature_kinds["items"], source="u.item")
    held_out = inter[~keep].merge(tables.users, on="user_id", how="left").reset_index(drop=True)
    return ExportedPlatform(paths["interactions"], paths["users"], catalog_path, held_out)


def train_platform(
    platform: OperatorData, config: RunConfig, run_dir: str | Path, state_dir: str | Path, epochs: int
) -> PlatformTrainer:
    """Train the platform alone for ``epochs`` and leave the files a federation would leave."""
    trainer = PlatformTrainer(platform.data, config)
    result = trainer.train(epochs, salt=1)
    logger.info("trained %d epochs, last loss %.4f", epochs, result.loss)
    trainer.snapshot(last_round=1).save(state_dir)
    FinalModel(arrays=dict(shared_arrays(trainer.model)), config=config.to_flat()).save(run_dir)
    return trainer


def demo_config(catalog: Catalog, **overrides: object) -> RunConfig:
    return RunConfig.from_mapping({"catalog-version": catalog.version, **overrides})
