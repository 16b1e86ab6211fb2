"""Every mode on a researcher's own contract-format folder, with no MovieLens reachable.

The folders are written by the test (CSV with timestamps, Parquet without), and each run's
summary must name them and count exactly their users and items.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crossfed.shared.config import ConfigError, RunConfig
from crossfed.shared.data.catalog import publish
from crossfed.shared.data.interactions import leave_last_out
from crossfed.shared.data.loader import LEAVE_LAST_OUT, all_platforms, platform_data
from crossfed.shared.errors import UsageError
from crossfed.simulations.runner import check_keys_for_mode, run_mode
from crossfed.simulations.synthetic import SyntheticSpec, write_music_dataset

SMALL = {"users": 48, "items": 30, "min_interactions": 5, "max_interactions": 9}
BASELINES = ("centralized", "local-only", "popularity")


@pytest.fixture(autouse=True)
def no_movielens(monkeypatch, tmp_path_factory):
    """Neither a local copy nor the download cache holds MovieLens: a run needing it fails."""
    monkeypatch.delenv("CROSSFED_DATA_DIR", raising=False)
    monkeypatch.setenv("CROSSFED_CACHE", str(tmp_path_factory.mktemp("empty-cache")))


@pytest.fixture(scope="module", params=["csv-timestamps", "parquet-no-timestamps"])
def folder(request, tmp_path_factory):
    file_format, _, timing = request.param.partition("-")
    spec = SyntheticSpec(**SMALL, file_format=file_format, timestamps=timing == "timestamps", seed=3)
    root = tmp_path_factory.mktemp(request.param)
    write_music_dataset(root, spec)
    return root


def _config(folder, run_dir, **overrides) -> RunConfig:
    keys = {
        "dataset": str(folder),
        "run_dir": str(run_dir),
        "num_platforms": 2,
        "partition": "natural",
        "partition_attribute": "region",
        "num_server_rounds": 1,
        "min_platforms": 2,
        "embedding_dim": 8,
        "mlp_layers": "16,8",
        "eval_negatives": 20,
    }
    return RunConfig().replace(**(keys | overrides))


def _ids(folder, table: str) -> set[str]:
    (path,) = folder.glob(f"{table}.*")
    frame = pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path).astype(str)
    return set(frame["user_id" if table in ("users", "interactions") else "item_id"])


def _check_summary(summary, folder, run_dir) -> None:
    written = json.loads((run_dir / "summary.json").read_text())
    assert written["dataset"] == summary["dataset"] and folder.name in summary["dataset"]
    data = summary["data"]
    assert data["source"] == "folder" and data["path"] == str(folder.resolve())
    assert data["users"] == len(_ids(folder, "interactions"))
    assert data["items"] == len(_ids(folder, "items"))
    assert sum(entry["users"] for entry in summary["per_platform"]) <= data["users"]
    if (folder / "interactions.csv").exists():
        assert data["split"] == LEAVE_LAST_OUT
    else:
        assert data["split"].startswith("random held-out")
    assert 0 < summary["metrics"]["sampled"]["hr@10"] <= 1


@pytest.mark.parametrize("mode", BASELINES)
def test_baselines_run_on_the_folder_and_name_it(folder, mode, tmp_path):
    config = _config(folder, tmp_path)
    platforms = all_platforms(config)
    user_ids = {str(u) for p in platforms for u in p.user_ids}
    assert user_ids == _ids(folder, "interactions")
    assert {len(p.item_features["genre"].values) for p in platforms} == {len(_ids(folder, "items"))}
    _check_summary(run_mode(mode, config), folder, tmp_path)


@pytest.mark.slow
@pytest.mark.ray
def test_federated_run_on_the_folder_and_names_it(folder, tmp_path):
    _check_summary(run_mode("federated", _config(folder, tmp_path)), folder, tmp_path)


def test_a_missing_partition_column_is_named(folder, tmp_path):
    with pytest.raises(ConfigError, match=r"partition-attribute.*'occupation'.*age_band"):
        all_platforms(_config(folder, tmp_path, partition_attribute="occupation"))


def test_any_user_column_makes_a_natural_partition(folder, tmp_path):
    platforms = all_platforms(_config(folder, tmp_path, partition_attribute="age_band"))
    users = (
        pd.read_csv(folder / "users.csv")
        if (folder / "users.csv").exists()
        else pd.read_parquet(folder / "users.parquet")
    )
    band = dict(zip(users["user_id"].astype(str), users["age_band"]))
    bands_per_platform = [{band[str(u)] for u in p.user_ids} for p in platforms]
    assert not bands_per_platform[0] & bands_per_platform[1]  # a band lives on one platform only


def test_a_name_that_is_neither_built_in_nor_a_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.*nowhere"):
        all_platforms(_config(tmp_path / "nowhere", tmp_path))


def _held_out(folder, tmp_path, seed: int) -> list[set[str]]:
    platforms = all_platforms(_config(folder, tmp_path, seed=seed))
    held = []
    for platform in platforms:
        split = leave_last_out(platform.interactions)
        users = np.flatnonzero(split.test_items >= 0)
        held.append({f"{platform.user_ids[u]}:{split.test_items[u]}" for u in users})
    return held


def test_without_timestamps_a_seeded_random_item_is_held_out(tmp_path):
    spec = SyntheticSpec(**SMALL, file_format="csv", timestamps=False, seed=3)
    write_music_dataset(tmp_path / "data", spec)
    interactions = pd.read_csv(tmp_path / "data" / "interactions.csv", dtype=str)
    items = pd.read_csv(tmp_path / "data" / "items.csv", dtype=str)["item_id"].tolist()
    last_in_file = {
        f"{user}:{items.index(item)}" for user, item in interactions.groupby("user_id").last()["item_id"].items()
    }
    first = _held_out(tmp_path / "data", tmp_path / "run", seed=0)
    assert first == _held_out(tmp_path / "data", tmp_path / "run", seed=0)  # reproducible
    assert first != _held_out(tmp_path / "data", tmp_path / "run", seed=1)  # the seed decides
    held = set().union(*first)
    assert len(held & last_in_file) < len(held) / 2  # file order is not taken for time


def test_operator_files_are_read_once_and_again_when_changed(tmp_path):
    root = tmp_path / "platform-0"
    write_music_dataset(root, SyntheticSpec(**SMALL, seed=5))
    catalog = tmp_path / "catalog.json"
    publish(pd.read_csv(root / "items.csv"), "v1", catalog)
    (root / "items.csv").unlink()
    config = RunConfig().replace(
        operator_data=str(tmp_path / "platform-{partition-id}"), catalog=str(catalog), num_platforms=1
    )
    first = platform_data(config, 0)
    assert platform_data(config, 0) is first  # cached: a Flower message does not re-validate the files
    with (root / "interactions.csv").open("a") as stream:
        stream.write("listener-00000,track-0000,1800000000,1.0\n")
    again = platform_data(config, 0)
    assert again is not first and len(again.interactions) == len(first.interactions) + 1


def test_local_only_trains_on_operator_files(tmp_path):
    for platform in (0, 1):
        write_music_dataset(tmp_path / f"platform-{platform}", SyntheticSpec(**SMALL, seed=7 + platform))
    catalog = tmp_path / "catalog.json"
    publish(pd.read_csv(tmp_path / "platform-0" / "items.csv"), "v1", catalog)
    config = _config(tmp_path / "unused", tmp_path / "run", dataset="ml-100k").replace(
        operator_data=str(tmp_path / "platform-{partition-id}"), catalog=str(catalog)
    )
    summary = run_mode("local-only", config)
    assert summary["data"]["source"] == "operator-data" and "v1" in summary["dataset"]
    assert summary["data"]["users"] == SMALL["users"] * 2
    assert summary["data"]["items"] == SMALL["items"]


@pytest.mark.parametrize(
    ("mode", "key"),
    [("centralized", "privacy-unit"), ("local-only", "secagg"), ("popularity", "learning-rate")],
)
def test_a_key_the_mode_cannot_honour_is_named(mode, key):
    with pytest.raises(UsageError, match=rf"'{key}' has no effect in mode '{mode}'"):
        check_keys_for_mode(mode, {key}, RunConfig())


def test_keys_the_mode_honours_pass():
    check_keys_for_mode("local-only", {"num-server-rounds", "learning-rate", "dataset"}, RunConfig())
    check_keys_for_mode("federated", {"privacy-unit", "secagg"}, RunConfig())


def test_split_keys_beside_operator_data_are_named(tmp_path):
    config = RunConfig().replace(operator_data=str(tmp_path), catalog=str(tmp_path / "catalog.json"))
    with pytest.raises(UsageError, match="'partition' shapes a split"):
        check_keys_for_mode("local-only", {"partition", "num-platforms"}, config)
